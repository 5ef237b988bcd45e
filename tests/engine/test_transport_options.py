"""PoolTransport's own options: bad values refused with the option's name, and a CA path
given with a client certificate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..upstream import Upstream

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"http1": False, "http2": False}, "needs http1=True or http2=True"),
        ({"max_lifetime": 0}, "max_lifetime must be positive seconds or None, not 0"),
        ({"max_head_size": 0}, "max_head_size must be a positive whole number, not 0"),
        ({"max_headers": "100"}, "max_headers must be a positive whole number, not '100'"),
        ({"max_headers": True}, "max_headers must be a positive whole number, not True"),
        ({"dns_ttl": -1.0}, r"dns_ttl must be seconds >= 0 \(0 turns the DNS cache off\)"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], said: str) -> None:
    """Each bad option raises a ValueError naming it and the value given."""
    with pytest.raises(ValueError, match=said):
        PoolTransport(**options)


async def test_a_ca_path_with_a_client_certificate(
    uvicorn_tls: Upstream, tls: dict[str, Any], tmp_path: Path
) -> None:
    """`verify` as a CA bundle path and `cert` as (certificate, key): the server is
    verified against that bundle and the request goes through."""
    bundle = tmp_path / "ca.pem"
    tls["ca"].cert_pem.write_to_path(str(bundle))
    client_cert = tls["ca"].issue_cert("client.test")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    transport = PoolTransport(verify=str(bundle), cert=(str(cert_file), str(key_file)))
    async with transport, httpx.AsyncClient(transport=transport) as client:
        response = await client.get(uvicorn_tls.url + "/ok")
    assert response.status_code == 200
    assert uvicorn_tls.requests[0]["path"] == "/ok"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        async with httpx.AsyncClient(transport=PoolTransport(verify=str(cert_file))) as other:
            await other.get(uvicorn_tls.url + "/ok")


async def test_a_ca_folder_verifies_the_server(
    uvicorn_tls: Upstream, tls: dict[str, Any], tmp_path: Path
) -> None:
    """`verify` as a folder of hashed CA files (OpenSSL's `capath`) verifies the server;
    an empty folder does not."""
    folder, empty = tmp_path / "cas", tmp_path / "empty"
    folder.mkdir()
    empty.mkdir()
    pem = tmp_path / "ca.pem"
    tls["ca"].cert_pem.write_to_path(str(pem))
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()
    (folder / f"{digest}.0").write_bytes(pem.read_bytes())
    async with httpx.AsyncClient(transport=PoolTransport(verify=str(folder))) as client:
        assert (await client.get(uvicorn_tls.url + "/ok")).status_code == 200
    async with httpx.AsyncClient(transport=PoolTransport(verify=str(empty))) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(uvicorn_tls.url + "/ok")


def test_the_system_store_without_truststore_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """verify='system' with truststore not installed says which extra to install."""
    monkeypatch.setitem(sys.modules, "truststore", None)  # as if not installed
    with pytest.raises(RuntimeError, match=r"pip install 'httpool\[truststore\]'"):
        PoolTransport(verify="system")


async def test_what_the_engine_cannot_send_is_refused_clearly() -> None:
    """A scheme other than http(s) is httpx's UnsupportedProtocol; a sync body (from a
    sync client's request) a TypeError saying to use an async client."""
    async with PoolTransport() as transport:
        with pytest.raises(httpx.UnsupportedProtocol, match=r"'ftp://' \(use http or https\)"):
            await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))
        sync_body = httpx.Request("POST", "http://127.0.0.1:9/", content=iter([b"x"]))
        with pytest.raises(TypeError, match="use httpx.AsyncClient"):
            await transport.handle_async_request(sync_body)
        assert transport.stats()["connections_opened"] == 0
