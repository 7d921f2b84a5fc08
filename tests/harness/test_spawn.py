"""spawn_server: a server that cannot start is reported with its log, never left running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness.spawn import ServerStartError, spawn_server

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_bad_argument_raises_with_the_end_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "server.log"
    with (
        pytest.raises(ServerStartError) as caught,
        spawn_server(args=("--renderer", "nonsense"), log=log, cwd=ROOT, ready_timeout_s=60),
    ):
        pytest.fail("a server with a bad argument was reported ready")
    err = caught.value
    assert err.returncode == 2
    assert "invalid choice: 'nonsense'" in err.log_tail
    assert "exited with 2" in str(err) and "invalid choice: 'nonsense'" in str(err)
    assert str(log) in str(err)
    assert "invalid choice" in log.read_text()  # the log stays for reading


def test_a_server_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    # The embedded models take seconds to load: 0.2 s is never enough.
    log = tmp_path / "server.log"
    avatars = tmp_path / "avatars"
    with (
        pytest.raises(ServerStartError) as caught,
        spawn_server(args=("--avatars-dir", str(avatars)), log=log, cwd=ROOT, ready_timeout_s=0.2),
    ):
        pytest.fail("the server was ready within 0.2 s")
    err = caught.value
    assert err.returncode is None
    assert "not ready within 0.2 s" in str(err)
    assert _gone(err.pid)


def test_a_log_is_kept_when_none_is_given() -> None:
    with pytest.raises(ServerStartError) as caught, spawn_server(args=("--port", "x")):
        pass
    try:
        assert caught.value.returncode == 2
        assert "--port: invalid int value: 'x'" in caught.value.log.read_text()
    finally:
        caught.value.log.unlink()


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"), spawn_server(ready_timeout_s=0):
        pass
