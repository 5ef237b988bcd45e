"""docs/deployment.md: each server command it shows serves the example app, on loopback.

The commands are read from the page's `bash` blocks (parsed by markdown-it), so the
page and the test cannot drift apart; only the port is changed, to a free one, and the
providers are pointed at a stub upstream served by the test.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from markdown_it import MarkdownIt

from example_app.serving import serve_in_thread
from example_app.stub_upstream import create_stub_app

from .servers import free_port

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "deployment.md"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def fences(language: str) -> list[str]:
    """The contents of the page's fences in `language`, in order."""
    tokens = MarkdownIt("commonmark").parse(PAGE.read_text(encoding="utf-8"))
    return [t.content for t in tokens if t.type == "fence" and t.info.split()[:1] == [language]]


def commands() -> dict[str, str]:
    """The page's server commands by server name (the first word after the variables)."""
    found: dict[str, str] = {}
    for block in fences("bash"):
        for line in block.splitlines():
            words = shlex.split(line)
            server = next(w for w in words if "=" not in w)
            found[server] = line
    return found


COMMANDS = commands()


def test_the_page_shows_every_server() -> None:
    """The page has a command for uvicorn, gunicorn, granian and hypercorn."""
    assert set(COMMANDS) == {"uvicorn", "gunicorn", "granian", "hypercorn"}
    assert all("WEB_CONCURRENCY=2" in line for line in COMMANDS.values())


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    """A stub upstream for the example app's providers."""
    with serve_in_thread(create_stub_app()) as url:
        yield f"{url}/v1"


def serve(line: str, stub_url: str, port: int) -> subprocess.Popen[str]:
    """Start the command `line` of the page on `port`, its providers at the stub."""
    words = shlex.split(line.replace("8000", str(port)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTPOOL_", "WEB_CONC"))}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    for name in ("OPENAI", "VOYAGE", "COHERE"):
        env[f"HTTPOOL_{name}_BASE_URL"] = stub_url
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.Popen(
        words,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_health(url: str, process: subprocess.Popen[str], seconds: float = 40) -> int:
    """Poll `url/health` until it answers (bounded); its status code."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(f"{url}/health", timeout=5).status_code
        except httpx.TransportError:
            time.sleep(0.2)
    return 0


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM the server's process group, wait (bounded), and return its output."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return output


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn", "granian", "hypercorn"])
def test_the_command_serves_health(server: str, stub_url: str) -> None:
    """The page's command starts two workers that answer `/health` with 200, and do not
    warn about WEB_CONCURRENCY, which the command sets."""
    port = free_port()
    process = serve(COMMANDS[server], stub_url, port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_health(url, process) == 200
        stats = httpx.get(f"{url}/stats", timeout=5).json()
        if "MAX_CONNECTIONS_TOTAL=40" in COMMANDS[server]:
            assert stats["openai"]["max_connections"] == 20  # 40 shared by 2 workers
    finally:
        output = stop(process)
    assert "WEB_CONCURRENCY" not in output, output


def test_workers_without_web_concurrency_are_warned_about(stub_url: str) -> None:
    """`gunicorn -w 2` without WEB_CONCURRENCY logs the warning the page shows."""
    line = COMMANDS["gunicorn"].replace("WEB_CONCURRENCY=2 ", "") + " -w 2"
    port = free_port()
    process = serve(line, stub_url, port)
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}", process) == 200
    finally:
        output = stop(process)
    assert "httpool: gunicorn started 2 worker processes but WEB_CONCURRENCY is not set" in output
    assert "Set WEB_CONCURRENCY=2 in the server's environment" in output


def test_the_probes_call_routes_that_answer(stub_url: str) -> None:
    """Each probe of the page's YAML names a route of the app that answers 200 on its
    port, and liveness does not depend on the providers."""
    (probes,) = fences("yaml")
    spec = yaml.safe_load(probes)
    assert set(spec) == {"startupProbe", "readinessProbe", "livenessProbe"}
    assert spec["livenessProbe"]["httpGet"]["path"] != "/health"
    port = free_port()
    process = serve(COMMANDS["uvicorn"], stub_url, port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_health(url, process) == 200
        for probe in spec.values():
            assert probe["httpGet"]["port"] == 8000  # the page's port, moved by the test
            response = httpx.get(f"{url}{probe['httpGet']['path']}", timeout=5)
            assert response.status_code == 200
    finally:
        stop(process)
