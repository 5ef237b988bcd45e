"""`PoolTransport` never changes an `ssl.SSLContext` it is given.

The context a caller gives (as `verify=`) may be shared by several providers, so the
protocols it offers by ALPN stay the caller's and the server's choice decides between
HTTP/1.1 and HTTP/2. Contexts httpool makes itself offer what `http1`/`http2` ask.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import httpool
from httpool._engine._transport import PoolTransport

from ..upstream import Upstream
from .conftest import client_context
from .servers import serve_granian

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def granian_auto(tls: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """granian over TLS speaking HTTP/1.1 or HTTP/2, as the client's ALPN offer decides."""
    with serve_granian(tls["cert"], tls["key"], "--http", "auto") as port:
        yield f"https://127.0.0.1:{port}", port


def _readable(context: ssl.SSLContext) -> dict[str, Any]:
    """What can be read back from an SSL context."""
    return {
        "verify_mode": context.verify_mode,
        "check_hostname": context.check_hostname,
        "options": context.options,
        "verify_flags": context.verify_flags,
        "minimum_version": context.minimum_version,
        "maximum_version": context.maximum_version,
        "ca_certs": context.get_ca_certs(binary_form=True),
        "cert_store_stats": context.cert_store_stats(),
        "ciphers": [c["name"] for c in context.get_ciphers()],
        "post_handshake_auth": context.post_handshake_auth,
    }


def _offered(context: ssl.SSLContext, port: int) -> str | None:
    """The protocol granian picks from what `context` offers by ALPN (a real handshake)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock,
    ):
        return tls_sock.selected_alpn_protocol()


async def _version(client: httpx.AsyncClient, url: str) -> str:
    response = await client.get(url)
    assert response.status_code == 200
    return response.http_version


async def test_shared_context_is_never_changed(
    tls: dict[str, Any],
    granian_auto: tuple[str, int],
    uvicorn_tls: Upstream,
) -> None:
    """An http2=True and an http2=False provider share one context: it stays as it was,
    and the http2=True one still speaks HTTP/2."""
    url, port = granian_auto
    context = client_context(tls)  # the caller offers h2 and http/1.1
    assert _offered(context, port) == "h2"
    before = _readable(context)  # after a handshake: OpenSSL caches CA lookups in the store
    providers = [
        httpool.Provider("h2", base_url=url, verify=context, http2=True),
        httpool.Provider("h1", base_url=uvicorn_tls.url, verify=context, http2=False),
    ]
    async with httpool.ClientPool(*providers) as pool:
        assert await _version(pool.client("h2"), "/") == "HTTP/2"
        assert await _version(pool.client("h1"), "/") == "HTTP/1.1"
        assert await _version(pool.client("h2"), "/") == "HTTP/2"
    assert _readable(context) == before
    assert _offered(context, port) == "h2"


async def test_context_without_alpn_is_left_so_and_the_reason_is_logged(
    tls: dict[str, Any], granian_auto: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """http2=True on a context that offers nothing by ALPN: HTTP/1.1, a warning once saying
    how to offer HTTP/2, and the context still offers nothing."""
    url, port = granian_auto
    context = client_context(tls, alpn=[])
    assert _offered(context, port) is None
    before = _readable(context)
    with caplog.at_level(logging.WARNING, logger="httpool.transport"):
        async with (
            PoolTransport(verify=context, http2=True) as transport,
            httpx.AsyncClient(transport=transport, base_url=url) as client,
        ):
            assert await _version(client, "/") == "HTTP/1.1"
            fresh = [client.get("/", headers={"connection": "close"}) for _ in range(2)]
            for request in fresh:
                assert (await request).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if "ALPN" in r.getMessage()]
    assert len(warnings) == 1
    assert 'set_alpn_protocols(["h2", "http/1.1"])' in warnings[0]
    assert _readable(context) == before
    assert _offered(context, port) is None


async def test_http2_false_on_a_context_offering_h2_follows_the_server(
    tls: dict[str, Any], granian_auto: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """http2=False on a caller's context that offers h2: the server's choice is spoken, and
    the warning says how to keep to HTTP/1.1."""
    url, port = granian_auto
    context = client_context(tls)
    with caplog.at_level(logging.WARNING, logger="httpool.transport"):
        async with (
            PoolTransport(verify=context, http2=False) as transport,
            httpx.AsyncClient(transport=transport, base_url=url) as client,
        ):
            assert await _version(client, "/") == "HTTP/2"
    assert any('set_alpn_protocols(["http/1.1"])' in r.getMessage() for r in caplog.records)
    assert _offered(context, port) == "h2"


async def test_contexts_httpool_makes_offer_what_is_asked(
    granian_auto: tuple[str, int], tls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With verify=True (the CA from SSL_CERT_FILE) http2 decides: HTTP/2 or HTTP/1.1."""
    url, _ = granian_auto
    ca_file = tls["cert"].replace("cert.pem", "ca.pem")
    tls["ca"].cert_pem.write_to_path(ca_file)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    for http2, expected in ((True, "HTTP/2"), (False, "HTTP/1.1")):
        async with (
            PoolTransport(http2=http2) as transport,
            httpx.AsyncClient(transport=transport, base_url=url) as client,
        ):
            assert await _version(client, "/") == expected


def test_client_certificate_with_a_given_context_is_refused(tls: dict[str, Any]) -> None:
    """cert= with a caller's context would load into that context: refused, saying what to do."""
    with pytest.raises(ValueError, match="load_cert_chain"):
        PoolTransport(verify=client_context(tls), cert=tls["cert"])


async def test_a_ca_path_gives_a_context_httpool_makes_without_httpx_deprecation(
    granian_auto: tuple[str, int], tls: dict[str, Any]
) -> None:
    """verify=<CA file> (httpx 0.28 deprecates paths): httpool makes the context itself,
    offering what http2 asks, on its own transport and on httpx's, with no warning
    (warnings are errors in these tests)."""
    url, _ = granian_auto
    ca_file = tls["cert"].replace("cert.pem", "ca-path.pem")
    tls["ca"].cert_pem.write_to_path(ca_file)
    for http2, expected in ((True, "HTTP/2"), (False, "HTTP/1.1")):
        async with (
            PoolTransport(verify=ca_file, http2=http2) as transport,
            httpx.AsyncClient(transport=transport, base_url=url) as client,
        ):
            assert await _version(client, "/") == expected
    for transport_name in ("httpool", "httpx"):
        provider = httpool.Provider("p", base_url=url, verify=ca_file, transport=transport_name)
        async with httpool.ClientPool(provider) as pool:
            assert await _version(pool.client("p"), "/") == "HTTP/2"
