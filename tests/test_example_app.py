"""The example app's routes, against the stub upstream served on a free loopback port."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi.testclient import TestClient

import httpool
from example_app.app import DEFAULT_STUB_URL, create_app, load_providers
from example_app.serving import serve_in_thread
from example_app.stub_upstream import DIMENSIONS, StubState, create_stub_app, fake_vector

from .servers import free_port
from .upstream import Upstream

REPO = Path(__file__).resolve().parent.parent
WRONG_KEY = "sk-wrong-key-4242-do-not-leak"
HELLO = {"messages": [{"role": "user", "content": "hi there"}]}


@dataclass
class Stub:
    """A running stub upstream: its base URL (with `/v1`) and what it has seen."""

    url: str
    state: StubState


@contextlib.contextmanager
def serve_stub(**options: Any) -> Iterator[Stub]:
    """Serve a stub upstream made with `options` on a free loopback port."""
    app = create_stub_app(**options)
    with serve_in_thread(app) as url:
        yield Stub(f"{url}/v1", app.state.stub)


def for_stub(url: str, *, api_key: str | None = None) -> list[httpool.Provider]:
    """The example's providers, every one at `url` (sending `api_key` if given)."""
    providers = load_providers(url)
    if api_key is None:
        return providers
    auth = {"Authorization": httpool.Secret(f"Bearer {api_key}")}
    return [dataclasses.replace(p, headers=auth) for p in providers]


@pytest.fixture(autouse=True)
def _no_provider_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests see `providers.toml` only, whatever the shell exports."""
    for name in os.environ:
        if name.startswith("HTTPOOL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def stub() -> Iterator[Stub]:
    """The stub upstream, accepting any key."""
    with serve_stub() as running:
        yield running


@pytest.fixture
def client(stub: Stub) -> Iterator[TestClient]:
    """A `TestClient` running the example app, every provider pointing at the stub."""
    with TestClient(create_app(for_stub(stub.url))) as test_client:
        yield test_client


def sse_data(lines: Iterable[str]) -> list[str]:
    """The `data:` payloads of a server-sent event stream, in order."""
    return [line.removeprefix("data:").strip() for line in lines if line.startswith("data:")]


def streamed_text(data: list[str]) -> str:
    """The answer that the chunks of a streamed chat completion spell out."""
    chunks = [json.loads(d) for d in data if d != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll `condition` until it holds or `seconds` pass; return its last value."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def port_is_free(port: int) -> bool:
    """Whether a server could listen on loopback `port`."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the routes, at the sync level ------------------------------------------------------


def test_the_status_page_is_at_the_root(client: TestClient) -> None:
    """`/` is httpool's status page, which reads `/stats`."""
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "stats" in response.text
    assert "Content-Security-Policy" in response.headers


def test_docs_are_served_without_a_cdn(client: TestClient) -> None:
    """`/docs` loads Swagger UI's script and style from this app, and they are there."""
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css|png))"', page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    schema = client.get("/openapi.json").json()
    assert {"/embed", "/chat", "/chat/stream", "/stats", "/health"} <= set(schema["paths"])


def test_health_pings_every_provider(client: TestClient, stub: Stub) -> None:
    """`/health` is 200 with each provider's `health_path` answered by the stub."""
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["providers"]) == {"openai", "voyage", "cohere"}
    assert all(p["status"] == "ok" for p in body["providers"].values())


def test_health_fails_when_a_provider_is_down() -> None:
    """With nobody listening at the providers' address, `/health` is 503."""
    with TestClient(create_app(for_stub(f"http://127.0.0.1:{free_port()}/v1"))) as test_client:
        response = test_client.get("/health")
    assert response.status_code == 503
    assert response.json()["providers"]["openai"]["status"] == "fail"


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    """`/metrics` answers the pool's counters in the Prometheus text format."""
    assert client.post("/chat", json=HELLO).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert 'provider="openai"' in response.text


def test_embed_returns_one_vector_per_text(client: TestClient) -> None:
    """`POST /embed` returns Voyage's vectors, in the order of the texts."""
    texts = ["a sunny day", "a rainy night", "fog"]
    response = client.post("/embed", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert body["provider"] == "voyage"
    assert body["model"] == "voyage-3"
    assert body["dimensions"] == DIMENSIONS
    assert body["vectors"] == [fake_vector(text, "voyage-3") for text in texts]
    assert body["input_tokens"] == 7


def test_embed_with_cohere(client: TestClient) -> None:
    """`"provider": "cohere"` embeds through the Cohere-style provider instead."""
    response = client.post("/embed", json={"texts": ["fog"], "provider": "cohere"})
    assert response.status_code == 200
    body = response.json()
    assert body["provider"] == "cohere"
    assert body["vectors"] == [fake_vector("fog", "embed-english-v3.0")]


def test_embed_validates_its_input(client: TestClient, stub: Stub) -> None:
    """An empty list of texts is refused with 422 before any upstream call."""
    assert client.post("/embed", json={"texts": []}).status_code == 422
    assert stub.state.requests == 0


def test_chat_returns_the_answer(client: TestClient) -> None:
    """`POST /chat` returns the completion's text, finish reason and token count."""
    response = client.post("/chat", json=HELLO)
    assert response.status_code == 200
    body = response.json()
    assert body["answer"].endswith("You said: hi there")
    assert body["model"] == "gpt-4o-mini"
    assert body["finish_reason"] == "stop"
    assert body["total_tokens"] > 0


def test_chat_stream_relays_every_chunk_and_done(client: TestClient, stub: Stub) -> None:
    """`POST /chat/stream` relays the upstream's SSE chunks, ending with `[DONE]`."""
    answer = client.post("/chat", json=HELLO).json()["answer"]
    with client.stream("POST", "/chat/stream", json=HELLO) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = sse_data(response.iter_lines())
    assert data[-1] == "[DONE]"
    assert len(data) >= 10
    assert streamed_text(data) == answer
    assert wait_for(lambda: stub.state.streams_open == 0)


def test_stats_route_lists_the_providers(client: TestClient, stub: Stub) -> None:
    """`GET /stats` shows and each provider's counters, never its key."""
    for _ in range(5):
        assert client.post("/chat", json=HELLO).status_code == 200
    response = client.get("/stats")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"openai", "voyage", "cohere"}
    openai = body["openai"]
    assert openai["base_url"] == stub.url
    assert openai["transport"] == "PoolTransport"
    assert openai["connections_opened"] == 1  # five calls over one kept-alive connection
    assert openai["requests_in_flight"] == 0
    assert "stub-key" not in response.text


def test_the_pool_is_closed_after_the_app_stops(stub: Stub) -> None:
    """Leaving the `TestClient` block runs the lifespan's shutdown: every client closes."""
    app = create_app(for_stub(stub.url))
    with TestClient(app) as test_client:
        pool = httpool.get_pool(test_client)
        assert test_client.post("/chat", json=HELLO).status_code == 200
    assert pool.state is httpool.PoolState.CLOSED
    assert not hasattr(app.state, "httpool")


# -- upstream failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "provider"),
    [
        ("/chat", HELLO, "openai"),
        ("/chat/stream", HELLO, "openai"),
        ("/embed", {"texts": ["fog"]}, "voyage"),
        ("/embed", {"texts": ["fog"], "provider": "cohere"}, "cohere"),
    ],
)
def test_a_refused_key_is_a_clean_502(path: str, body: Any, provider: str) -> None:
    """A key the upstream refuses gives a 502 naming the provider; the key never shows."""
    with serve_stub(api_keys=["the-right-key"]) as stub:
        app = create_app(for_stub(stub.url, api_key=WRONG_KEY))
        with TestClient(app) as test_client:
            response = test_client.post(path, json=body)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["provider"] == provider
    assert error["kind"] == "upstream_status"
    assert error["upstream_status"] == 401
    shown = response.text + json.dumps(dict(response.headers))
    assert WRONG_KEY not in shown
    assert "127.0.0.1" not in shown  # nor the upstream's URL


def test_the_stub_refuses_a_request_without_a_key(stub: Stub) -> None:
    """The stub answers 401 JSON when the `Authorization` header is absent."""
    response = httpx.post(f"{stub.url}/chat/completions", json=HELLO)
    assert response.status_code == 401
    assert "missing API key" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/chat", "/chat/stream"])
def test_an_answer_of_the_wrong_shape_is_a_clean_502(upstream: Upstream, path: str) -> None:
    """A 2xx body that is not a chat completion gives a 502, not a 500 or the body."""
    # The test upstream echoes the request, headers included: a body the app must not relay.
    app = create_app(for_stub(f"{upstream.url}/v1", api_key=WRONG_KEY))
    with TestClient(app) as test_client:
        response = test_client.post(path, json=HELLO)
    assert response.status_code == 502
    assert response.json()["error"] == {
        "provider": "openai",
        "kind": "bad_answer",
        "message": "the provider's answer was not understood",
    }
    assert upstream.requests[0]["headers"]["authorization"] == f"Bearer {WRONG_KEY}"
    assert WRONG_KEY not in response.text


def test_an_unreachable_provider_is_a_clean_502() -> None:
    """A provider that nobody listens for gives a 502 `connect_error` naming it."""
    app = create_app(for_stub(f"http://127.0.0.1:{free_port()}/v1"))
    with TestClient(app) as test_client:
        response = test_client.post("/embed", json={"texts": ["fog"]})
    assert response.status_code == 502
    assert response.json()["error"]["provider"] == "voyage"
    assert response.json()["error"]["kind"] == "connect_error"


async def breaks_off_mid_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI upstream whose SSE stream dies after one chunk (uvicorn drops the connection)."""
    if scope["type"] != "http":
        return
    start = {"type": "http.response.start", "status": 200}
    await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b'data: {"n": 0}\n\n', "more_body": True})
    raise RuntimeError("the upstream fell over (on purpose, in a test)")


def test_an_upstream_that_breaks_off_mid_stream_breaks_off_the_relay_too() -> None:
    """When the upstream dies mid-stream, the caller gets the chunks so far, then an
    incomplete body (never a made-up end), and the app's openai client stays usable."""
    with serve_in_thread(breaks_off_mid_stream, lifespan="off") as url:
        app = create_app(for_stub(f"{url}/v1"))
        with serve_in_thread(app) as app_url, httpx.Client(base_url=app_url) as http:
            received: list[str] = []
            with http.stream("POST", "/chat/stream", json=HELLO) as response:
                assert response.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    received.extend(response.iter_lines())
            assert sse_data(received) == ['{"n": 0}']

            def openai_idle() -> bool:
                stats = http.get("/stats").json()["openai"]
                return bool(stats["requests_in_flight"] == 0 and stats["connections_in_use"] == 0)

            assert wait_for(openai_idle)


def test_a_client_that_goes_away_mid_stream_releases_the_upstream() -> None:
    """When the caller disconnects mid-stream, the app closes the upstream stream too."""
    with serve_stub(chunk_delay=0.2) as stub:  # ten chunks over two seconds
        app = create_app(for_stub(stub.url))
        with serve_in_thread(app) as app_url, httpx.Client(base_url=app_url) as http:
            with http.stream("POST", "/chat/stream", json=HELLO) as response:
                lines = response.iter_lines()  # kept: dropping it would close the stream
                assert next(lines).startswith("data: ")
                assert stub.state.streams_open == 1
            assert wait_for(lambda: stub.state.streams_open == 0)

            def openai_idle() -> bool:
                stats = http.get("/stats").json()["openai"]
                return bool(stats["requests_in_flight"] == 0 and stats["connections_in_use"] == 0)

            assert wait_for(openai_idle)
            # The app is still fine, and so is its openai client.
            assert http.post("/chat", json=HELLO).status_code == 200
            assert http.get("/health").json()["status"] == "ok"


# -- the routes, at the async level ---------------------------------------------------


@pytest.mark.anyio
async def test_routes_through_lifespan_manager(stub: Stub) -> None:
    """Under `LifespanManager` + `ASGITransport`, embed, chat and stream all work."""
    app = create_app(for_stub(stub.url))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://example"
        ) as http,
    ):
        embedded = await http.post("/embed", json={"texts": ["fog"]})
        assert embedded.json()["vectors"] == [fake_vector("fog", "voyage-3")]
        answer = (await http.post("/chat", json=HELLO)).json()["answer"]
        async with http.stream("POST", "/chat/stream", json=HELLO) as response:
            data = sse_data([line async for line in response.aiter_lines()])
        assert data[-1] == "[DONE]"
        assert streamed_text(data) == answer
        assert httpool.get_pool(app).has_client("openai")


# -- configuration ----------------------------------------------------------------------


def test_providers_default_to_the_stub() -> None:
    """With no `HTTPOOL_` variables, `providers.toml` points all three at the stub."""
    providers = {p.name: p for p in load_providers()}
    assert set(providers) == {"openai", "voyage", "cohere"}
    assert {p.base_url for p in providers.values()} == {DEFAULT_STUB_URL}
    assert providers["voyage"].limits == httpool.limits(max_connections=50)
    assert providers["voyage"].timeout == httpool.timeout(read=30)
    assert providers["openai"].timeout == httpool.DEFAULT_TIMEOUT


def test_variables_switch_a_provider_to_a_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """`HTTPOOL_OPENAI_BASE_URL` and `..._API_KEY` win over the file; the key stays secret."""
    monkeypatch.setenv("HTTPOOL_OPENAI_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("HTTPOOL_OPENAI_API_KEY", "sk-real-123")
    providers = {p.name: p for p in load_providers("http://127.0.0.1:9999/v1")}
    assert providers["openai"].base_url == "https://api.openai.com/v1"
    assert providers["voyage"].base_url == "http://127.0.0.1:9999/v1"  # moved with the stub
    assert providers["openai"].plain_headers()["Authorization"] == "Bearer sk-real-123"
    assert "sk-real-123" not in repr(providers["openai"])


def test_a_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value fails at once with a `ConfigError` naming the variable."""
    monkeypatch.setenv("HTTPOOL_VOYAGE_MAX_CONNECTIONS", "lots")
    with pytest.raises(httpool.ConfigError, match="HTTPOOL_VOYAGE_MAX_CONNECTIONS"):
        load_providers()


# -- python -m example_app --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_python_m_example_app_stops_cleanly(signum: signal.Signals) -> None:
    """`python -m example_app` serves app and stub, and stops both on SIGINT or SIGTERM."""
    port, stub_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_BASE_URL")}
    process = subprocess.Popen(
        [sys.executable, "-m", "example_app", "--port", str(port), "--stub-port", str(stub_port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: not port_is_free(port), seconds=20)
        with httpx.Client(base_url=url) as http:
            assert wait_for(lambda: http.get("/health").status_code == 200)
            assert http.post("/chat", json=HELLO).status_code == 200
            assert http.post("/embed", json={"texts": ["fog"]}).status_code == 200
        process.send_signal(signum)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"status page  {url}/\n" in output
    assert f"{url}/docs" in output
    assert "stopped" in output
    assert port_is_free(port)
    assert port_is_free(stub_port)
