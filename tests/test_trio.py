"""httpool under trio: providers on httpool's transport use httpx's own, logged once.

httpool's transport runs on asyncio only. Opened under trio, a pool gives the providers
that would use it (`transport="httpool"`, the default) httpx's own transport instead, says
so once per provider, and reports their stats as usual. Tested on a pool run by anyio's
trio backend and on a FastAPI app served by hypercorn's trio worker.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import httpool
from httpool._clients import _httpx as _clients

from .servers import free_port, serve_process
from .upstream import Upstream

pytestmark = pytest.mark.anyio
#: The async tests run on trio only (the conftest's anyio_backend, given its value).
ON_TRIO = pytest.mark.parametrize("anyio_backend", ["trio"])
HERE = Path(__file__).parent
NOTE = "runs under trio: it uses httpx's own transport"


@pytest.fixture(autouse=True)
def _say_again() -> Iterator[None]:
    """Each test sees the once-per-provider note afresh."""
    said: set[str] = getattr(_clients, "_said_trio", set())
    said.clear()
    yield
    said.clear()


@ON_TRIO
async def test_pool_under_trio_uses_httpx_transport(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests succeed, stats are reported, the note is logged once, closing is clean."""
    pool = httpool.ClientPool(
        httpool.Provider("up", base_url=upstream.url),
        httpool.Provider("explicit", base_url=upstream.url, transport="httpx"),
    )
    with caplog.at_level(logging.INFO, logger="httpool"):
        for _ in range(2):  # a second opening (a second app run) says nothing new
            async with pool:
                response = await pool.client("up").post("/v1/chat", json={"a": 1})
                assert response.status_code == 200
                assert response.json()["body"] == '{"a":1}'
                stats = pool.stats()
                assert stats["up"]["transport"] == "AsyncHTTPTransport"
                assert stats["up"]["requests_in_flight"] == 0
                assert stats["up"]["closed"] is False
            assert pool.state is httpool.PoolState.CLOSED
    notes = [r for r in caplog.records if NOTE in r.getMessage()]
    assert len(notes) == 1
    assert notes[0].levelno == logging.INFO
    assert notes[0].provider == "up"  # type: ignore[attr-defined]


@ON_TRIO
async def test_options_of_httpool_transport_lost_under_trio_are_named(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """max_lifetime and retry_post, which httpx's transport lacks, are named in a warning."""
    provider = httpool.Provider("up", base_url=upstream.url, max_lifetime=60, retry_post=True)
    with caplog.at_level(logging.INFO, logger="httpool"):
        async with httpool.ClientPool(provider) as pool:
            assert (await pool.client("up").get("/")).status_code == 200
    (note,) = [r for r in caplog.records if NOTE in r.getMessage()]
    assert note.levelno == logging.WARNING
    assert "max_lifetime and retry_post not applied" in note.getMessage()


@ON_TRIO
async def test_pool_transport_given_explicitly_fails_clearly_and_closes(
    upstream: Upstream,
) -> None:
    """A PoolTransport given as the transport says what to set, and closing never raises."""
    provider = httpool.Provider("up", base_url=upstream.url, transport=httpool.PoolTransport)
    async with httpool.ClientPool(provider) as pool:
        with pytest.raises(RuntimeError, match="transport='httpx'"):
            await pool.client("up").get("/")
    transport = httpool.PoolTransport()
    await transport.aclose()  # no "no running event loop"
    await transport.aclose()


# -- an app on hypercorn's trio worker ---------------------------------------------------


@pytest.fixture
def trio_app(upstream: Upstream) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """hypercorn's trio worker serving `trio_app:create_app()` on 127.0.0.1; stopped after the test."""
    port = free_port()
    hypercorn = Path(sys.executable).parent / "hypercorn"
    command = [str(hypercorn), "--worker-class", "trio", "--bind", f"127.0.0.1:{port}"]
    command += ["--graceful-timeout", "5", "--log-level", "info", "trio_app:create_app()"]
    env = {"UPSTREAM_URL": upstream.url}
    with serve_process(command, port, cwd=HERE, env=env, output=subprocess.PIPE) as process:
        yield f"http://127.0.0.1:{port}", process


def test_fastapi_app_on_hypercorn_trio_worker(
    trio_app: tuple[str, subprocess.Popen[bytes]], upstream: Upstream
) -> None:
    """Routes call the upstream through the pool, stats show the transport, and the app
    starts and stops without an error."""
    url, process = trio_app
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(3):
            response = client.get("/relay")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == 200
            assert response.json()["upstream"]["body"] == '{"hello":"trio"}'
        stats = client.get("/stats").json()
    assert stats["up"]["transport"] == "AsyncHTTPTransport"
    assert upstream.connections == 1  # one kept-alive connection served all three
    process.terminate()  # a graceful stop: the lifespan closes the pool under trio
    output, _ = process.communicate(timeout=15)
    log = output.decode()
    assert process.returncode == 0, log
    assert log.count(NOTE) == 1, log
    assert "Traceback" not in log, log
    assert "no running event loop" not in log, log
    assert " ERROR " not in log, log
