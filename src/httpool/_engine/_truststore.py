"""Contexts httpool makes for `verify`: the OS trust store (`"system"`), or a CA path.

`verify="system"` verifies with the operating system's trust store (truststore).

A company CA installed in the OS (the macOS keychain, the Windows certificate store, a
Linux distribution's CA directory) is trusted without exporting a bundle. The context
comes from the `truststore` package, an extra: `pip install 'httpool[truststore]'`.
"""

from __future__ import annotations

import importlib.util
import os
import ssl

__all__ = ["MISSING", "SYSTEM", "available", "path_context", "system_context"]

SYSTEM = "system"
MISSING = (
    "verify='system' uses the operating system's trust store through the truststore "
    "package: pip install 'httpool[truststore]'"
)


def available() -> bool:
    """Whether truststore can be imported."""
    return importlib.util.find_spec("truststore") is not None


def system_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A new client context that verifies with the OS trust store, offering `alpn`."""
    try:
        import truststore
    except ImportError:
        raise RuntimeError(MISSING) from None
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def path_context(path: str) -> ssl.SSLContext:
    """A new client context that trusts the CA bundle file, or the CA folder, at `path`.

    What httpx's `verify=<str>` does, without its deprecation warning (httpx 0.28 asks
    for a context instead).
    """
    if os.path.isdir(path):
        return ssl.create_default_context(capath=path)
    return ssl.create_default_context(cafile=path)
