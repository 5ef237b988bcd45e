"""With several worker processes, /metrics adds all of them up and /stats says how many."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .stub import Stub

ROOT = Path(__file__).resolve().parents[2]


def served(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_of_two_uvicorn_workers_are_added_up(stub: Stub, tmp_path: Path) -> None:
    """Two uvicorn workers serve the calls; a scrape of either counts every call."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = {
        **os.environ,
        "HTTPOOL_TEST_STUB": stub.url,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    argv = [
        sys.executable, "-m", "uvicorn", "tests.policy.multiapp:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        pids: set[int] = set()
        calls = 0
        deadline = time.monotonic() + 30
        # new connections each time, so the kernel hands them to either worker
        with httpx.Client(base_url=base, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            while time.monotonic() < deadline and (len(pids) < 2 or calls < 20):
                try:
                    answer = c.get("/call").json()
                except httpx.TransportError:
                    time.sleep(0.1)  # still starting
                    continue
                pids.add(answer["pid"])
                calls += 1
            assert len(pids) == 2
            time.sleep(1.6)  # every worker publishes each second
            text = c.get("/ops/metrics").text
            stats = c.get("/ops/stats")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert served(text, "httpool_requests_served_total", provider="stub") == calls
    assert served(text, "httpool_answers_total", provider="stub", status="2xx") == calls
    assert stats.headers["x-httpool-workers"] == "2"
    assert stats.json()["stub"]["requests_served"] < calls  # one worker's share
