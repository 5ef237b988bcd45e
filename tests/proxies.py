"""Real proxies on loopback for the tests: a forward HTTP proxy (CONNECT and absolute form)
in a thread of its own, and pproxy's SOCKS server in a subprocess.

The forward proxy is a small asyncio one because no packaged forward proxy installs here
(proxy.py is not on the index this project uses). It maps host names only it knows
(`only-the-proxy.test` -> 127.0.0.1), so a request that reaches such a host went through
it; it can demand Basic credentials (407 without them) or refuse every tunnel (403).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .servers import free_port, stop_process

ONLY_PROXY_HOST = "only-the-proxy.test"


@dataclass
class ProxyLog:
    """What the forward proxy saw."""

    url: str = ""
    tunnels: list[str] = field(default_factory=list)  # CONNECT targets
    forwarded: list[str] = field(default_factory=list)  # absolute-form request targets
    refused: list[int] = field(default_factory=list)  # statuses it answered itself
    auth_seen: list[str] = field(default_factory=list)  # Proxy-Authorization values
    open_links: int = 0  # client connections it currently holds

    @property
    def requests(self) -> int:
        return len(self.tunnels) + len(self.forwarded)


class ForwardProxy:
    """A forward proxy: CONNECT tunnels and absolute-form HTTP/1.1 requests."""

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        deny: int | None = None,
        hosts: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.log = ProxyLog()
        self._auth = auth
        self._deny = deny
        self._hosts = {ONLY_PROXY_HOST: "127.0.0.1", **(hosts or {})}
        self._tls = tls

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, status: int) -> None:
        self.log.refused.append(status)
        reason = {403: "Forbidden", 407: "Proxy Authentication Required"}.get(status, "Error")
        extra = b'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else b""
        body = b"refused by the test proxy"
        writer.write(
            b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, reason.encode(), extra, len(body), body)
        )
        await writer.drain()
        writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.log.open_links += 1
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.close()
        finally:
            self.log.open_links -= 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [line.split(":", 1) for line in lines[1:] if line]
        given = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), "")
        if given:
            self.log.auth_seen.append(given)
        if self._auth is not None:
            token = base64.b64encode(f"{self._auth[0]}:{self._auth[1]}".encode()).decode()
            if given != f"Basic {token}":
                await self._refuse(writer, 407)
                return
        if self._deny is not None:
            await self._refuse(writer, self._deny)
            return
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            upstream = await asyncio.open_connection(self._hosts.get(host, host), int(port_text))
            self.log.tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            url = urlsplit(target)
            host, port = url.hostname or "", url.port or 80
            upstream = await asyncio.open_connection(self._hosts.get(host, host), port)
            self.log.forwarded.append(target)
            path = url.path + (f"?{url.query}" if url.query else "")
            kept = [f"{k}:{v}" for k, v in headers if k.lower() != "proxy-authorization"]
            first = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in kept) + "\r\n"
            upstream[1].write(first.encode("latin-1"))
        await asyncio.gather(self._pipe(reader, upstream[1]), self._pipe(upstream[0], writer))


@contextlib.contextmanager
def serve_proxy(**options: object) -> Iterator[ProxyLog]:
    """Run a `ForwardProxy` on 127.0.0.1 in a thread with its own loop; yield its log."""
    proxy = ForwardProxy(**options)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    async def start() -> None:
        holder["server"] = await asyncio.start_server(proxy.handle, "127.0.0.1", 0, ssl=proxy._tls)
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the test proxy did not start")
    server: asyncio.Server = holder["server"]
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if proxy._tls is not None else "http"
    proxy.log.url = f"{scheme}://127.0.0.1:{port}"
    try:
        yield proxy.log
    finally:

        async def stop() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass
class PProxy:
    """A running pproxy: its URL and the file where it logs each connection (`-v`)."""

    url: str
    log_file: Path

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


@contextlib.contextmanager
def serve_pproxy(scheme: str, folder: Path, auth: str = "") -> Iterator[PProxy]:
    """Run pproxy's SOCKS server (`socks5` or `socks4`) on 127.0.0.1; yield it."""
    port = free_port()
    listen = f"{scheme}://127.0.0.1:{port}" + (f"#{auth}" if auth else "")
    # pproxy's own script picks uvloop when installed, and then fails to start on
    # Python 3.11+ (no current event loop): run it on asyncio's loop
    start = "import sys; sys.modules['uvloop'] = None; from pproxy.server import main; main()"
    log_file = folder / f"pproxy-{port}.log"
    out = log_file.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", start, "-l", listen, "-v"], stdout=out, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("pproxy did not start")
            time.sleep(0.05)
        yield PProxy(f"{scheme}://127.0.0.1:{port}", log_file)
    finally:
        stop_process(process)
        out.close()


async def start_socks4a(seen: list[str]) -> asyncio.Server:
    """A SOCKS4a server on the running loop (pproxy's SOCKS4 server does not do 4a): it
    resolves names only it knows (`only-the-proxy.test`) and records each target."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(8)
            port = int.from_bytes(head[2:4], "big")
            await reader.readuntil(b"\0")  # the user id
            host = socket.inet_ntoa(head[4:8])
            if head[4:7] == b"\0\0\0":  # 0.0.0.x: the name follows (SOCKS4a)
                host = (await reader.readuntil(b"\0"))[:-1].decode()
            seen.append(f"{host}:{port}")
            address = "127.0.0.1" if host == ONLY_PROXY_HOST else host
            upstream = await asyncio.open_connection(address, port)
            writer.write(b"\0\x5a" + head[2:8])
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            writer.write(b"\0\x5b" + b"\0" * 6)
            writer.close()
            return
        pipe = ForwardProxy()._pipe
        await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))

    return await asyncio.start_server(handle, "127.0.0.1", 0)
