"""`serve_in_thread()`: run an ASGI app with uvicorn on loopback, in a background thread.

`python -m example_app` serves the stub upstream this way next to the app, and the tests
serve the stub (and the app, for disconnect tests) this way on free ports.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

__all__ = ["serve_in_thread"]

#: The loggers uvicorn writes to; one process's servers share them.
_UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access")


class _QuietThread(logging.Filter):
    """Drop INFO and below logged from one thread, so a helper server stays quiet."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != self.thread_name or record.levelno > logging.INFO


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Literal["auto", "on", "off"] = "auto",
    quiet: bool = True,
) -> Iterator[str]:
    """Serve `app` with uvicorn in a daemon thread; yield its URL, `http://host:port`.

    `port=0` picks a free port; a port in use raises `OSError` at once. The server stops
    gracefully (within a few seconds) when the block ends. Signals stay with the main
    thread: uvicorn only handles them there. `quiet` hides the server's INFO log lines
    (start, stop, access log), not its warnings and errors.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan=lifespan, ws="none", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    name = f"uvicorn-{host}:{port}"
    quieting = _QuietThread(name)
    quieted = [logging.getLogger(n) for n in _UVICORN_LOGGERS] if quiet else []
    for logger in quieted:
        logger.addFilter(quieting)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = f"the server on {host}:{port} did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        for logger in quieted:
            logger.removeFilter(quieting)
