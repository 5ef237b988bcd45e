"""The examples of docs/proxies.md, run against a forward proxy and an API on loopback.

Each fenced python block runs as written, with the placeholder addresses replaced by
the test servers': `proxy.internal:3128` by the proxy's, `api.internal.example:8080` by
the upstream's port (the proxy alone resolves `api.internal.example`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .proxies import ProxyLog, serve_proxy
from .upstream import Upstream

DOC = Path(__file__).parent.parent / "docs" / "proxies.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
HOSTS = {"api.internal.example": "127.0.0.1"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable of the machine applies."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxies() -> Iterator[tuple[ProxyLog, ProxyLog]]:
    """An open proxy, and one that wants alice's password."""
    with (
        serve_proxy(hosts=HOSTS) as open_,
        serve_proxy(hosts=HOSTS, auth=("alice", "s3cret")) as auth,
    ):
        yield open_, auth


def test_every_block_is_collected() -> None:
    """The page has its five examples."""
    assert len(BLOCKS) == 5


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_docs_example(
    index: int, proxies: tuple[ProxyLog, ProxyLog], upstream: Upstream
) -> None:
    """The example runs and does what the page says."""
    source = BLOCKS[index]
    proxy = proxies[1] if "alice" in source else proxies[0]
    port = upstream.url.rsplit(":", 1)[1]
    source = source.replace("proxy.internal:3128", proxy.url.removeprefix("http://"))
    source = source.replace("api.internal.example:8080", f"api.internal.example:{port}")
    namespace: dict[str, Any] = {}
    exec(compile(source, f"{DOC.name}[{index}]", "exec"), namespace)
    if "main" in namespace:
        await namespace["main"]()
        assert proxy.requests + len(proxy.refused) >= 1  # it went through the proxy
