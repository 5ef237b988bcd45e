"""The tests' servers on 127.0.0.1, all started and stopped here: a free port, uvicorn in
a thread, a server process (granian, hypercorn, pproxy, nginx) stopped for sure, and the
two ASGI chores every test app does (read the body, send an answer).

Test apps live beside the tests that use them (`tests/upstream.py`, the provider-like
upstream; `tests/nginx.py`; `tests/engine/servers.py`, the raw servers that misbehave);
the machinery to serve them lives here, once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_of(url: str) -> int:
    """The port of a `http(s)://127.0.0.1:port` URL."""
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def listening(port: int) -> bool:
    """Whether 127.0.0.1:port accepts a connection now."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def wait_for_port(port: int, timeout: float = 20) -> None:
    """Block until 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def serve_app(
    app: Any,
    *,
    port: int = 0,
    keep_alive: float = 30,
    ssl: dict[str, str] | None = None,
    ws: str = "auto",
    lifespan: str = "auto",
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yield its URL; stop on exit.

    The one uvicorn-in-a-thread helper of the tests; `ssl` is `{"cert": ..., "key": ...}`
    for https.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    options: dict[str, Any] = (
        {"ssl_certfile": ssl["cert"], "ssl_keyfile": ssl["key"]} if ssl else {}
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan=lifespan,  # type: ignore[arg-type]  # one of uvicorn's names
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # a float works as well
        http="h11",
        ws=ws,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    if not server.started:
        sock.close()
        raise RuntimeError("the test server did not start")
    try:
        yield f"{'https' if ssl else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Terminate a server process, kill it if it lingers, and close its pipes."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


@contextlib.contextmanager
def serve_process(
    command: Sequence[str],
    port: int,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    output: int | None = subprocess.DEVNULL,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process that listens on 127.0.0.1:port; yield it once it listens;
    stop it on exit. `output` is where its stdout and stderr go (`subprocess.PIPE` to
    read them)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    stderr = subprocess.STDOUT if output == subprocess.PIPE else output
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=stderr)
    try:
        wait_for_port(port)
        yield process
    finally:
        stop_process(process)


async def read_body(receive: Any) -> bytes:
    """The whole request body of an ASGI request."""
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def send_response(
    send: Any, body: bytes, *, status: int = 200, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer an ASGI request with `body`, its Content-Length and `headers`."""
    fields = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})
