"""Start the bench's child processes and stop every one of them, whatever happens.

Each child gets its own session (process group), so a Ctrl-C in the terminal reaches only
the bench's driver, which then stops the children itself: SIGTERM to the child's group,
then SIGKILL after a grace period. Only processes started here are ever signalled.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Child", "Supervisor", "free_port", "python", "wait_for_port"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """Wait until 127.0.0.1:`port` accepts connections, or fail if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class Child:
    """A started process; `call()` talks to a worker that answers one JSON line per line."""

    def __init__(self, name: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log

    def call(self, command: Mapping[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """Send one command to a worker and wait (bounded) for its one-line JSON answer."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{self.name} gave no answer; see {self.log}:\n{self.tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Supervisor:
    """Owns the children: `with Supervisor(logdir) as sup: sup.start(...)`."""

    def __init__(self, logdir: Path) -> None:
        self._logdir = logdir
        self._children: list[Child] = []
        atexit.register(self.stop_all)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        worker: bool = False,
    ) -> Child:
        """Start `argv`; wait for `port` to listen when given; `worker` pipes stdin/stdout."""
        log = self._logdir / (re.sub(r"[^\w.@-]", "_", name) + ".log")  # a rev may hold "/"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), full_env.get("PYTHONPATH", "")) if p
        )
        with log.open("w") as log_file:
            proc = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=full_env,
                stdin=subprocess.PIPE if worker else subprocess.DEVNULL,
                stdout=subprocess.PIPE if worker else log_file,
                stderr=log_file,
                text=True,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self._children.append(child)
        if port is not None:
            try:
                wait_for_port(port, proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{name} did not start: {exc}\n{child.tail()}") from None
        return child

    def stop(self, child: Child, grace: float = 5.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after `grace` seconds."""
        proc = child.proc
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        if proc.returncode is None:  # not reaped yet: its pid, and so its group, is ours
            _signal_group(proc.pid, signal.SIGTERM)
            if not _exited(proc.pid, grace):
                _signal_group(proc.pid, signal.SIGKILL)
                _exited(proc.pid, grace)
            # a server's own workers (granian) share the group; the leader is a zombie
            # until reaped below, so the group id cannot have been reused yet
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if child in self._children:
            self._children.remove(child)

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for child in reversed(list(self._children)):
            self.stop(child)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The group id is the child's pid (start_new_session=True): only what the bench started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` for `pid` to exit, without reaping it (it stays a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def python(*args: str) -> list[str]:
    """argv for running this interpreter."""
    return [sys.executable, *args]
