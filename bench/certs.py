"""Throw-away TLS certificates for the local upstreams (trustme), written to a directory."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certs", "client_context", "make_certs", "server_context"]


@dataclass(frozen=True, slots=True)
class Certs:
    """Paths of a test CA and of a server certificate for 127.0.0.1 and localhost."""

    ca: Path
    chain: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """Make a CA and a server certificate; the key is PKCS#8, as granian requires."""
    import trustme
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    certs = Certs(
        ca=directory / "ca.pem", chain=directory / "server.pem", key=directory / "server.key"
    )
    ca.cert_pem.write_to_path(str(certs.ca))
    with certs.chain.open("wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    certs.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certs


def client_context(ca: str | Path) -> ssl.SSLContext:
    """A fresh client context that trusts only the bench CA and offers h2 and http/1.1.

    httpool never changes a context it is given, so the context offers HTTP/2 itself, as
    a caller's context must for an `http2=True` client; httpx sets ALPN on it anyway.
    """
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def server_context(chain: str | Path, key: str | Path, *, alpn: list[str]) -> ssl.SSLContext:
    """A server context for the raw asyncio upstream."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(chain), str(key))
    ctx.set_alpn_protocols(alpn)
    return ctx
