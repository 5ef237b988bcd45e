"""Start the local upstreams: plain HTTP/1.1, HTTP/1.1 over TLS, HTTP/2 over TLS (granian),
and one nginx serving the same answer over TLS with HTTP/1.1 on one port and HTTP/2 on
another (`SAME_SERVER`).

The first three are each the cheapest server at hand for its protocol, but not the same
server: the HTTP/1.1 ones answer from bytes made once, granian runs an ASGI app in
Python for each HTTP/2 request. On a 2-core machine the server's CPU time is taken from
the client's, so their HTTP/2 ÷ HTTP/1.1 ratio also compares two servers. Against the
nginx pair (one worker process, the answer from its configuration, no file or
upstream) only the client's protocol differs.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from .certs import Certs
from .procs import Supervisor, free_port, python, wait_for_port
from .upstream import BODY

__all__ = ["SAME_SERVER", "UPSTREAMS", "Upstream", "start_upstreams"]

#: Upstream kinds, in report order.
UPSTREAMS: Final = ("h1", "h1-tls", "h2-tls")
#: The HTTP/1.1 and HTTP/2 upstreams served by one nginx: (HTTP/1.1 kind, HTTP/2 kind).
SAME_SERVER: Final = ("h1-tls-nginx", "h2-tls-nginx")

_LABELS: Final = {
    "h1": "HTTP/1.1 (raw asyncio + httptools)",
    "h1-tls": "HTTP/1.1 over TLS (raw asyncio + httptools)",
    "h2-tls": "HTTP/2 over TLS (granian --http 2)",
    "h1-tls-nginx": "HTTP/1.1 over TLS (nginx)",
    "h2-tls-nginx": "HTTP/2 over TLS (the same nginx)",
}

_NGINX_CONF: Final = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    ssl_certificate {chain};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{h1} ssl;
        location / {{ default_type application/json; return 200 '{body}'; }}
    }}
    server {{
        listen 127.0.0.1:{h2} ssl http2;
        http2_max_concurrent_streams 128;
        location / {{ default_type application/json; return 200 '{body}'; }}
    }}
}}
"""


def _start_nginx(sup: Supervisor, certs: Certs) -> tuple[int, int] | None:
    """One nginx on two free ports (HTTP/1.1 and HTTP/2 over TLS); `None` without nginx."""
    # Debian installs it in /usr/sbin, which a non-root PATH may leave out
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        return None
    prefix = certs.chain.parent / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    h1, h2 = free_port(), free_port()
    conf = prefix / "nginx.conf"
    body = BODY.decode().replace("\\", "\\\\").replace("'", "\\'")
    conf.write_text(
        _NGINX_CONF.format(prefix=prefix, chain=certs.chain, key=certs.key, h1=h1, h2=h2, body=body)
    )
    argv = [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    child = sup.start("upstream-nginx", argv, port=h1)
    wait_for_port(h2, child.proc)
    return h1, h2


#: The path every upstream answers with the bench's embedding-sized JSON body.
PATH: Final = "/embed"


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

    def command(self, op: str, variant: str, concurrency: int, **more: Any) -> dict[str, Any]:
        """A load generator's command (`loadgen`): `op` for `variant` against this
        upstream's `PATH` at `concurrency`, with the op's own fields in `more`."""
        return {
            "op": op,
            "variant": variant,
            "base_url": self.base_url,
            "ca": self.ca,
            "http2": self.http2,
            "path": PATH,
            "concurrency": concurrency,
            **more,
        }


def start_upstreams(sup: Supervisor, certs: Certs, kinds: Iterable[str]) -> dict[str, Upstream]:
    """Start one upstream process per kind; each is stopped by `sup`."""
    running: dict[str, Upstream] = {}
    nginx: tuple[int, int] | None = None
    for kind in kinds:
        port = free_port()
        if kind in SAME_SERVER:
            if nginx is None:
                nginx = _start_nginx(sup, certs) or (0, 0)
            if not nginx[0]:
                print(f"nginx is not installed: {kind} is left out", file=sys.stderr)
                continue
            port = nginx[SAME_SERVER.index(kind)]
            running[kind] = Upstream(
                kind, f"https://127.0.0.1:{port}/", str(certs.ca), http2=kind.startswith("h2")
            )
        elif kind == "h1":
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
            known = ", ".join((*UPSTREAMS, *SAME_SERVER))
            raise ValueError(f"unknown upstream {kind!r}; known: {known}")
    return running
