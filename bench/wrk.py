"""Load an HTTP endpoint from its own process: wrk when installed, else `bench.pyload`.

Both answer the same dict: ``rps`` (successful responses per second), ``requests``,
``errors`` (socket errors, timeouts and non-2xx answers), ``timeouts``, ``p50_ms``,
``p99_ms`` and ``tool``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

from .procs import python

__all__ = ["load", "parse_wrk", "tool_name"]

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def tool_name() -> str:
    """``wrk`` when it is on PATH, else ``python`` (the fallback load generator)."""
    return "wrk" if shutil.which("wrk") else "python"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """The figures of a ``wrk --latency`` report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    if total is None:
        raise ValueError(f"not a wrk report:\n{text}")
    requests = int(total.group(1))
    seconds = _ms(total.group(2), total.group(3)) / 1000
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    connect, read, write, timeouts = (int(g) for g in socket.groups()) if socket else (0,) * 4
    non2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(non2xx_match.group(1)) if non2xx_match else 0
    quantiles = re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    latency = {q: _ms(v, u) for q, v, u in quantiles}
    ok = requests - non2xx
    return {
        "tool": "wrk",
        "requests": requests,
        "rps": ok / seconds if seconds else 0.0,
        "errors": connect + read + write + timeouts + non2xx,
        "timeouts": timeouts,
        "p50_ms": latency.get("50", float("nan")),
        "p99_ms": latency.get("99", float("nan")),
    }


def load(url: str, connections: int, duration: float) -> dict[str, Any]:
    """Load `url` with `connections` keep-alive connections for `duration` (whole) seconds."""
    seconds = max(1, round(duration))  # wrk takes whole seconds
    timeout = seconds + 30  # bounded: the tool itself stops after `seconds`
    if tool_name() == "wrk":
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
        return parse_wrk(done.stdout)
    argv = python("-m", "bench.pyload", url, str(connections), str(seconds))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
