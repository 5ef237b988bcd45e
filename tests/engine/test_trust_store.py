"""`verify="system"` (the OS trust store through truststore) and `SSL_CERT_FILE` with
`trust_env`, for httpool's engine, httpx's and aiohttp's transports and the sync client.

On Linux the OS trust store is OpenSSL's default verify paths, which `SSL_CERT_FILE`
names: pointing it at the test CA stands in for a company CA installed in the system.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import pytest

import httpool
from httpool._config import TransportName

from ..upstream import Upstream

pytestmark = pytest.mark.anyio

KINDS = ["httpool", "httpx", "aiohttp", "sync"]
#: httpx-aiohttp reports a certificate failure as ConnectTimeout
REFUSED = (httpx.ConnectError, httpx.ConnectTimeout)


@pytest.fixture
def ca_file(tls: dict[str, Any], tmp_path: Path) -> str:
    """The test CA's certificate as a PEM file."""
    path = tmp_path / "ca.pem"
    tls["ca"].cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def no_cert_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start without SSL_CERT_FILE / SSL_CERT_DIR or proxies."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


async def _get(provider: httpool.Provider, kind: str) -> httpx.Response:
    async with httpool.ClientPool(provider) as pool:
        if kind == "sync":
            with pool.sync_client(provider.name) as client:
                return client.get("/ok")
        return await pool.client(provider.name).get("/ok")


def _provider(url: str, kind: str, **options: Any) -> httpool.Provider:
    transport = cast("TransportName", "httpool" if kind == "sync" else kind)
    if transport == "aiohttp":
        pytest.importorskip("httpx_aiohttp")
    return httpool.Provider("p", base_url=url, transport=transport, http2=False, **options)


@pytest.mark.parametrize("kind", KINDS)
async def test_system_trust_store(
    kind: str, uvicorn_tls: Upstream, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify='system' trusts what the OS store trusts, and nothing else."""
    pytest.importorskip("truststore")
    provider = _provider(uvicorn_tls.url, kind, verify="system")
    with pytest.raises(REFUSED, match="(?i)certificate"):
        await _get(provider, kind)  # the test CA is not in the system store
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # now it is, for OpenSSL's default paths
    assert (await _get(provider, kind)).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
async def test_ssl_cert_file_follows_trust_env(
    kind: str, uvicorn_tls: Upstream, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE is read with trust_env=True (the default) and ignored without it."""
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert (await _get(_provider(uvicorn_tls.url, kind), kind)).status_code == 200
    with pytest.raises(REFUSED, match="(?i)certificate"):
        await _get(_provider(uvicorn_tls.url, kind, trust_env=False), kind)


def test_system_without_truststore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without truststore, verify='system' fails at construction naming the extra."""
    import httpool._engine._truststore

    monkeypatch.setattr(httpool._engine._truststore, "available", lambda: False)
    with pytest.raises(httpool.ConfigError, match=r"verify.*httpool\[truststore\]"):
        httpool.Provider("p", base_url="https://api.example.com", verify="system")


def test_system_context_is_truststore() -> None:
    """The engine's context for verify='system' is truststore's, offering our protocols."""
    truststore = pytest.importorskip("truststore")
    from httpool._engine._transport import _ssl_context

    context = _ssl_context("system", None, trust_env=True, http1=True, http2=True)
    assert isinstance(context, truststore.SSLContext)
