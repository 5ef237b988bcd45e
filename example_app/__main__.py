"""`python -m example_app`: the stub upstream and the example app, stopped together.

The stub runs on its own port (default 8100) in a background thread of this process,
the app on the main thread with uvicorn (default http://127.0.0.1:8000). Ctrl-C
(SIGINT) or SIGTERM stops the app gracefully (its lifespan closes the provider
clients), then the stub; no process or port is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

import uvicorn

import httpool

from .serving import serve_in_thread
from .stub_upstream import DEFAULT_PORT, create_stub_app

__all__ = ["main"]


class _AppServer(uvicorn.Server):
    """A uvicorn server that says where to go once it listens."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(self._banner, flush=True)


@contextlib.contextmanager
def _signals_absorbed() -> Iterator[None]:
    """Let SIGINT/SIGTERM do nothing, for the stop that uvicorn does itself.

    uvicorn handles both while it serves and, after its graceful shutdown, raises the
    signal again for the handler that was there before it started: this do-nothing one,
    so that the stub is still stopped and the process ends normally (not killed by a
    re-raised SIGTERM, nor with a KeyboardInterrupt traceback).
    """

    def absorb(signum: int, frame: FrameType | None) -> None:
        pass

    previous = {sig: signal.signal(sig, absorb) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the stub upstream and the example app until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app",
        description="Serve the httpool example app, with a stub of the provider APIs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the app's host (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8000, help="the app's port (default: %(default)s)"
    )
    parser.add_argument(
        "--stub-port",
        type=int,
        default=DEFAULT_PORT,
        help="the stub's port on 127.0.0.1 (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    stub_url = f"http://127.0.0.1:{args.stub_port}/v1"
    # Imported only now: the module makes its `app` from the environment on import,
    # and a configuration error should read as the message below, not a traceback.
    try:
        from .app import create_app, load_providers

        providers = load_providers(stub_url)
    except httpool.ConfigError as exc:
        print(f"example_app: {exc}", file=sys.stderr)
        return 2
    uses_stub = any(p.base_url == stub_url for p in providers)
    url = f"http://{args.host}:{args.port}"
    where = "\n".join(
        f"  {p.name:<8} {p.base_url} ({'stub' if p.base_url == stub_url else 'real API'})"
        for p in providers
    )
    banner = (
        f"\nhttpool example app is ready:\n"
        f"  status page  {url}/\n"
        f"  API docs     {url}/docs\n"
        f"  health       {url}/health\n"
        f"  stats        {url}/stats\n"
        f"providers:\n{where}\nPress Ctrl-C to stop.\n"
    )
    with contextlib.ExitStack() as stack:
        if uses_stub:
            try:
                stack.enter_context(serve_in_thread(create_stub_app(), port=args.stub_port))
            except OSError as exc:
                print(
                    f"example_app: cannot serve the stub upstream on 127.0.0.1:{args.stub_port} "
                    f"({exc.strerror}); is another one running? Try --stub-port.",
                    file=sys.stderr,
                )
                return 1
        config = uvicorn.Config(
            create_app(providers), host=args.host, port=args.port, timeout_graceful_shutdown=5
        )
        with _signals_absorbed():
            _AppServer(config, banner).run()
    print("example app stopped" + (", stub upstream too" if uses_stub else ""), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the app served
        sys.exit(130)
