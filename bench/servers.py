"""Start the local upstreams: plain HTTP/1.1, HTTP/1.1 over TLS, HTTP/2 over TLS (granian)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .certs import Certs
from .procs import Supervisor, free_port, python

__all__ = ["UPSTREAMS", "Upstream", "start_upstreams"]

#: Upstream kinds, in report order.
UPSTREAMS: Final = ("h1", "h1-tls", "h2-tls")

_LABELS: Final = {
    "h1": "HTTP/1.1 (raw asyncio + httptools)",
    "h1-tls": "HTTP/1.1 over TLS (raw asyncio + httptools)",
    "h2-tls": "HTTP/2 over TLS (granian --http 2)",
}


@dataclass(frozen=True, slots=True)
class Upstream:
    """A running upstream: where to send requests and where to read its counters."""

    kind: str
    base_url: str
    ca: str | None
    http2: bool

    @property
    def stats_url(self) -> str:
        return self.base_url + "__stats"

    @property
    def label(self) -> str:
        return _LABELS[self.kind]


def start_upstreams(sup: Supervisor, certs: Certs, kinds: Iterable[str]) -> dict[str, Upstream]:
    """Start one upstream process per kind; each is stopped by `sup`."""
    running: dict[str, Upstream] = {}
    for kind in kinds:
        port = free_port()
        if kind == "h1":
            sup.start("upstream-h1", python("-m", "bench.upstream", "--port", str(port)), port=port)
            running[kind] = Upstream(kind, f"http://127.0.0.1:{port}/", None, http2=False)
        elif kind == "h1-tls":
            argv = python("-m", "bench.upstream", "--port", str(port), "--tls")
            sup.start("upstream-h1-tls", [*argv, str(certs.chain), str(certs.key)], port=port)
            running[kind] = Upstream(kind, f"https://127.0.0.1:{port}/", str(certs.ca), http2=False)
        elif kind == "h2-tls":
            argv = python(
                "-m", "granian", "--interface", "asgi", "--http", "2",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--ssl-certificate", str(certs.chain), "--ssl-keyfile", str(certs.key),
                "--no-access-log", "--log-level", "warning", "bench.h2app:app",
            )  # fmt: skip
            sup.start("upstream-h2-tls", argv, port=port)
            running[kind] = Upstream(kind, f"https://127.0.0.1:{port}/", str(certs.ca), http2=True)
        else:
            raise ValueError(f"unknown upstream {kind!r}; known: {', '.join(UPSTREAMS)}")
    return running
