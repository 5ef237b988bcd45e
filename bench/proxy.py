"""Client-level throughput through a local CONNECT proxy: httpool versus plain httpx.

Run alone: ``python -m bench.proxy [--requests 3000] [--concurrency 64] [--rounds 3]``.

It starts the bench's TLS upstream (``bench.upstream``) and a small forward proxy that
only tunnels (``CONNECT``), each in a process of its own on 127.0.0.1, then sends the
same GET requests through the proxy with an httpool client (a one-provider
``ClientPool`` with ``proxy=``) and with a plain ``httpx.AsyncClient(proxy=...)``, in
interleaved rounds, and prints requests per second for each (median of the rounds)
and the ratio. Both use HTTP/1.1 (the upstream offers no h2) and up to 100 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from .certs import client_context, make_certs

ROOT = Path(__file__).resolve().parent.parent


# -- the proxy process -----------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except (OSError, ValueError, asyncio.IncompleteReadError):
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _serve_proxy(port: int) -> None:
    server = await asyncio.start_server(_tunnel, "127.0.0.1", port, backlog=2048)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


# -- the measurement -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(*args: str) -> Iterator[None]:
    child = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"READY":
            raise RuntimeError(f"{' '.join(args)} did not start")
        yield
    finally:
        child.terminate()
        child.wait(10)


async def _load(client: httpx.AsyncClient, url: str, requests: int, concurrency: int) -> float:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            response = await client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def _measure(args: argparse.Namespace, ca: Path, upstream: str, proxy: str) -> dict[str, Any]:
    import httpool

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0)
    provider = httpool.Provider(
        "bench",
        base_url=upstream,
        proxy=proxy,
        verify=client_context(ca),
        http2=False,
        limits=limits,
        trust_env=False,
    )
    rates: dict[str, list[float]] = {"httpool": [], "httpx": []}
    async with httpool.ClientPool(provider) as pool:
        ours = pool.client("bench")
        async with httpx.AsyncClient(
            proxy=proxy, verify=client_context(ca), limits=limits, trust_env=False
        ) as plain:
            for client in (ours, plain):  # warm both: connections and tunnels open
                await _load(client, f"{upstream}/", args.concurrency * 2, args.concurrency)
            for _ in range(args.rounds):
                for name, client in (("httpool", ours), ("httpx", plain)):
                    rate = await _load(client, f"{upstream}/", args.requests, args.concurrency)
                    rates[name].append(rate)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "rounds": rates,
        "median_rps": medians,
        "httpool_over_httpx": medians["httpool"] / medians["httpx"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-proxy", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_proxy:
        asyncio.run(_serve_proxy(args.serve_proxy))
        return
    result = run(args.requests, args.concurrency, args.rounds)
    medians = result["median_rps"]
    print(
        f"through a local CONNECT proxy, {args.requests} GETs at concurrency "
        f"{args.concurrency}, median of {args.rounds} rounds:\n"
        f"  httpool {medians['httpool']:8.0f} req/s\n"
        f"  httpx   {medians['httpx']:8.0f} req/s\n"
        f"  ratio   {result['httpool_over_httpx']:8.2f}x"
    )
    print(json.dumps(result))


def run(requests: int = 3000, concurrency: int = 64, rounds: int = 3) -> dict[str, Any]:
    """The figure `make bench` quotes: both clients through the proxy, interleaved rounds."""
    args = argparse.Namespace(requests=requests, concurrency=concurrency, rounds=rounds)
    with tempfile.TemporaryDirectory() as folder:
        certs = make_certs(Path(folder))
        up_port, proxy_port = _free_port(), _free_port()
        tls = ("--tls", str(certs.chain), str(certs.key))
        with (
            _process("-m", "bench.upstream", "--port", str(up_port), *tls),
            _process("-m", "bench.proxy", "--serve-proxy", str(proxy_port)),
        ):
            result: dict[str, Any] = asyncio.run(
                _measure(
                    args, certs.ca, f"https://127.0.0.1:{up_port}", f"http://127.0.0.1:{proxy_port}"
                )
            )
    return result


if __name__ == "__main__":
    main()
