"""A real ``avatar-rtc serve`` as a child process on loopback, for tests and benchmarks.

    with spawn_server(args=("--max-sessions", "4"), log=Path("artifacts/server.log")) as server:
        ...  # server.url answers /health/ready with 200

The server's output goes to a log file; if it exits or is not ready in time,
:class:`ServerStartError` says so with the end of that log. Leaving the block stops it
(SIGTERM, then SIGKILL after ``stop_timeout_s``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOST", "ServerStartError", "SpawnedServer", "free_port", "spawn_server"]

HOST = "127.0.0.1"
_POLL_S = 0.3
_TAIL_LINES = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class SpawnedServer:
    """A running server: its base URL (no trailing slash), port, process id and log file."""

    url: str
    port: int
    pid: int
    log: Path


class ServerStartError(RuntimeError):
    """The server exited (``returncode`` set) or was not ready in time (``returncode`` None)."""

    def __init__(self, reason: str, *, pid: int, returncode: int | None, log: Path) -> None:
        self.pid = pid
        self.returncode = returncode
        self.log = log
        self.log_tail = _tail(log)
        super().__init__(f"{reason}; the end of {log}:\n{self.log_tail}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def spawn_server(
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    ready_timeout_s: float = 180.0,
    stop_timeout_s: float = 15.0,
    tls_ca: Path | None = None,
) -> Iterator[SpawnedServer]:
    """Run ``avatar-rtc serve --host 127.0.0.1 --port PORT *args`` (this interpreter) until
    the block ends; yield it once ``/health/ready`` answers 200.

    ``port``: a free one if None. ``env``: added to this process's environment. ``log``: the
    server's stdout and stderr (overwritten; a kept temporary file if None). ``cwd``: the
    server's working directory (this process's if None). ``tls_ca``: the server serves
    HTTPS (``args`` say how) with a certificate for 127.0.0.1 that this file vouches for.
    """
    if ready_timeout_s <= 0 or stop_timeout_s <= 0:
        raise ValueError("ready_timeout_s and stop_timeout_s must be > 0")
    port = free_port() if port is None else port
    log = _temp_log() if log is None else log
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "signaling.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += args
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        scheme = "http" if tls_ca is None else "https"
        server = SpawnedServer(url=f"{scheme}://{HOST}:{port}", port=port, pid=proc.pid, log=log)
        context = None if tls_ca is None else ssl.create_default_context(cafile=str(tls_ca))
        try:
            problem = _wait_ready(server.url, proc, ready_timeout_s, context)
            if problem is not None:
                returncode = proc.poll()  # None: still running, not ready in time
                _stop(proc, stop_timeout_s)
                raise ServerStartError(
                    f"{problem}: {' '.join(cmd)}", pid=proc.pid, returncode=returncode, log=log
                )
            yield server
        finally:
            _stop(proc, stop_timeout_s)


def _wait_ready(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float, context: ssl.SSLContext | None
) -> str | None:
    """None once ``url``/health/ready answers 200, else why not (exited, or timed out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            return f"avatar-rtc serve exited with {proc.returncode}"
        with contextlib.suppress(OSError, http.client.HTTPException):
            with urllib.request.urlopen(url + "/health/ready", timeout=2, context=context) as r:
                if r.status == 200:
                    return None
        if time.monotonic() >= deadline:
            return f"avatar-rtc serve at {url} was not ready within {timeout_s:g} s"
        time.sleep(_POLL_S)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (the server drains its calls), SIGKILL if it is still there after ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _temp_log() -> Path:
    fd, name = tempfile.mkstemp(prefix="avatar-rtc-serve-", suffix=".log")
    os.close(fd)
    return Path(name)


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16_384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc})"
    lines = text.splitlines()[-_TAIL_LINES:]
    return "\n".join(lines) if lines else "(empty)"
