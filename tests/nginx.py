"""nginx as a real upstream for the tests: the Debian package, started and stopped here.

`run_nginx(...)` starts `nginx -g 'daemon off;'` in the foreground with its own prefix
(configuration, pid, logs and temp folders in a fresh temporary folder) on two random
free ports of 127.0.0.1: one plain HTTP/1.1 server and one TLS server with HTTP/2
(ALPN `h2` and `http/1.1`, certificate from a trustme CA). Both serve the same
locations:

- `/` static files from `nginx.root` (write them before requesting; `gzip on` for
  `text/plain`, so a `.txt` file comes back gzipped to a client that accepts it);
- `/no-content` answers 204;
- `/upstream/...` is proxied (HTTP/1.1, kept alive) to a counting app in the test
  process (uvicorn in a thread) when `upstream=True`: it counts each request by the
  `x-request-id` header the test sends (`nginx.upstream.runs[id]`), so "ran twice" and
  "ran but reported failed" are measured. `/upstream/...?delay=0.5` answers after half
  a second; the body is `<method> <id> <bytes of request body>`. nginx buffers the
  request body before passing it on, and never passes a request on twice
  (`proxy_next_upstream off`), so a count of 2 means the client sent it twice.

Every response carries `X-Conn` (nginx's connection serial number) and
`X-Conn-Requests` (requests served on that connection so far), so a test can tell
whether two requests shared a connection; `nginx.access_log()` returns one dict per
request with the same fields, `request_id`, `status` and `protocol`.

Per-test settings are keyword arguments of `run_nginx` (`keepalive_requests`,
`keepalive_timeout`, `client_max_body_size`, `upstream`, and raw `http_extra` /
`server_extra` directives). From a test, use the fixtures of `tests/conftest.py`:

    async def test_something(nginx: Nginx) -> None:           # default settings
        async with httpx.AsyncClient(transport=PoolTransport()) as client:
            await client.get(nginx.http_url + "/file.bin")

    async def test_other(start_nginx: StartNginx) -> None:    # per-test settings
        server = start_nginx(keepalive_requests=5, upstream=True)
        transport = PoolTransport(http2=True, verify=server.ssl_context())
        async with httpx.AsyncClient(transport=transport, base_url=server.https_url) as c:
            await c.post("/upstream/x", content=b"{}", headers={"x-request-id": "p1"})
        assert server.upstream.runs["p1"] == 1                 # ran exactly once

`start_nginx` may be called more than once in a test (each nginx gets its own folder
and ports); all are stopped when the test ends. In `tests/engine`, the fixtures are
found through `tests/conftest.py`; `Nginx` and `StartNginx` are imported from
`tests.nginx` for the annotations.

Outside pytest, `with run_nginx(tmp_dir, ...) as server:`. When nginx is not installed
the fixtures skip the test (`.ci/run` installs it, so CI runs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trustme

from .servers import (
    free_port,
    listening,
    port_of,
    read_body,
    send_response,
    serve_app,
    stop_process,
)

START_TIMEOUT = 10.0  # seconds for nginx to listen, or to stop
LOG_FIELDS = (
    "connection",
    "connection_requests",
    "status",
    "request",
    "request_id",
    "protocol",
    "server_port",
    "body_bytes_sent",
    "upstream_status",
)


def nginx_binary() -> str | None:
    """The nginx executable (on PATH or in /usr/sbin), or None when it is not installed."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_version(binary: str) -> tuple[int, ...]:
    """nginx's version as a tuple, from `nginx -v`."""
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=True, timeout=10)
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    if found is None:
        msg = f"cannot read the nginx version from {done.stderr!r}"
        raise RuntimeError(msg)
    return tuple(int(part) for part in found.groups())


@dataclass
class CountingUpstream:
    """What the proxied app saw: how many times each `x-request-id` ran, and its URL."""

    runs: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def app(self) -> Any:
        """The ASGI app: counts the request by its id, then answers (after `?delay=` s)."""

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            headers = dict(scope["headers"])
            request_id = headers.get(b"x-request-id", b"").decode()
            size = len(await read_body(receive))
            with self._lock:
                self.runs[request_id] += 1
            delay = float(parse_qs(scope["query_string"].decode()).get("delay", ["0"])[0])
            if delay:
                await asyncio.sleep(delay)
            payload = f"{scope['method']} {request_id} {size}".encode()
            await send_response(send, payload, headers=[(b"content-type", b"text/plain")])

        return app


@dataclass
class Nginx:
    """A running nginx: its URLs, document root, CA, upstream counters and access log."""

    http_url: str
    https_url: str
    root: Path
    prefix: Path
    ca: trustme.CA
    version: tuple[int, ...]
    upstream: CountingUpstream | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this nginx's certificate and offers h2.

        httpool never changes a context it is given, so the context offers HTTP/2 by
        ALPN itself, as a caller's context for an `http2=True` transport must.
        """
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context

    def access_log(self) -> list[dict[str, str]]:
        """One dict per request nginx has logged so far (fields: `LOG_FIELDS`)."""
        path = self.prefix / "logs" / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line]

    def error_log(self) -> str:
        """nginx's error log so far."""
        path = self.prefix / "logs" / "error.log"
        return path.read_text() if path.exists() else ""


def render_config(
    *,
    prefix: Path,
    root: Path,
    http_port: int,
    https_port: int,
    cert: Path,
    key: Path,
    version: tuple[int, ...],
    keepalive_requests: int,
    keepalive_timeout: str,
    client_max_body_size: str,
    upstream_port: int | None,
    http_extra: str,
    server_extra: str,
) -> str:
    """The nginx.conf text for these settings."""
    log_format = ",".join(f'"{name}":"${variable}"' for name, variable in _LOG_VARIABLES.items())
    temp = prefix / "temp"
    # nginx 1.25.1 replaced `listen ... http2` by the `http2` directive.
    h2_listen, h2_directive = ("", "http2 on;") if version >= (1, 25, 1) else (" http2", "")
    user = "user root root;" if os.geteuid() == 0 else ""  # workers must read the tmp dir
    upstream_block = proxy = ""
    if upstream_port is not None:
        # Idle upstream connections are closed by nginx (10 s) before uvicorn does (30 s),
        # and nginx never passes a request on a second time: a request the upstream ran
        # twice was sent twice by the client.
        upstream_block = f"""upstream app {{
            server 127.0.0.1:{upstream_port};
            keepalive 16;
            keepalive_timeout 10s;
        }}"""
        proxy = """location /upstream/ {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;
        }"""
    locations = f"""
        root {root};
        location / {{ }}
        location = /no-content {{ return 204; }}
        {proxy}
        {server_extra}
    """
    return f"""
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ text/plain txt; application/octet-stream bin; text/html html; }}
    default_type application/octet-stream;
    log_format conformance escape=json '{{{log_format}}}';
    access_log {prefix}/logs/access.log conformance;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests {keepalive_requests};
    keepalive_timeout {keepalive_timeout};
    client_max_body_size {client_max_body_size};
    gzip on;
    gzip_types text/plain;
    gzip_min_length 20;
    gzip_proxied any;
    add_header X-Conn $connection always;
    add_header X-Conn-Requests $connection_requests always;
    {upstream_block}
    {http_extra}
    server {{
        listen 127.0.0.1:{http_port};
        {locations}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl{h2_listen};
        {h2_directive}
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {locations}
    }}
}}
"""


_LOG_VARIABLES = {
    "connection": "connection",
    "connection_requests": "connection_requests",
    "status": "status",
    "request": "request",
    "request_id": "http_x_request_id",
    "protocol": "server_protocol",
    "server_port": "server_port",
    "body_bytes_sent": "body_bytes_sent",
    "upstream_status": "upstream_status",
}
assert tuple(_LOG_VARIABLES) == LOG_FIELDS


@contextlib.contextmanager
def run_nginx(
    folder: Path,
    *,
    keepalive_requests: int = 1000,
    keepalive_timeout: str = "75s",
    client_max_body_size: str = "1m",
    upstream: bool = False,
    http_extra: str = "",
    server_extra: str = "",
) -> Iterator[Nginx]:
    """Run nginx in the foreground with its prefix in `folder`; stop it on exit.

    Raises `FileNotFoundError` when nginx is not installed (the fixtures skip instead).
    """
    binary = nginx_binary()
    if binary is None:
        msg = "nginx is not installed (apt-get install nginx)"
        raise FileNotFoundError(msg)
    version = nginx_version(binary)
    prefix, root = folder / "prefix", folder / "root"
    for sub in ("logs", "temp", "conf"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    root.mkdir(exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = prefix / "conf" / "cert.pem", prefix / "conf" / "key.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    with contextlib.ExitStack() as stack:
        counting: CountingUpstream | None = None
        if upstream:
            counting = CountingUpstream()
            counting.port = port_of(stack.enter_context(serve_app(counting.app(), lifespan="off")))
        for _attempt in range(3):  # a random port may be taken between the probe and nginx
            http_port, https_port = free_port(), free_port()
            conf = prefix / "conf" / "nginx.conf"
            conf.write_text(
                render_config(
                    prefix=prefix,
                    root=root,
                    http_port=http_port,
                    https_port=https_port,
                    cert=cert_file,
                    key=key_file,
                    version=version,
                    keepalive_requests=keepalive_requests,
                    keepalive_timeout=keepalive_timeout,
                    client_max_body_size=client_max_body_size,
                    upstream_port=counting.port if counting else None,
                    http_extra=http_extra,
                    server_extra=server_extra,
                )
            )
            process = _start(binary, prefix, conf, (http_port, https_port))
            if process is not None:
                break
        else:
            msg = f"nginx did not start:\n{(prefix / 'logs' / 'error.log').read_text()}"
            raise RuntimeError(msg)
        stack.callback(_stop, process)
        yield Nginx(
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=f"https://127.0.0.1:{https_port}",
            root=root,
            prefix=prefix,
            ca=ca,
            version=version,
            upstream=counting,
        )


def _start(
    binary: str, prefix: Path, conf: Path, ports: tuple[int, int]
) -> subprocess.Popen[bytes] | None:
    """Start nginx; the process once both ports listen, None if it exited (port taken)."""
    command = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if all(listening(port) for port in ports):
            return process
        time.sleep(0.02)
    _stop(process)
    msg = f"nginx did not listen on {ports} within {START_TIMEOUT} s"
    raise RuntimeError(msg)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGTERM), then kill if it lingers."""
    stop_process(process, timeout=START_TIMEOUT)


StartNginx = Callable[..., Nginx]
