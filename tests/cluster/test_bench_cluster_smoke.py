"""``scripts/bench_cluster.py`` runs end to end on the CPU with the tiny architecture: a local
Ray cluster, one replica, the in-process path, the table (not a test of the numbers: those
come from a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.ray_local import LOCAL_RAY_ENV

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_bench_cluster_runs_on_a_tiny_config() -> None:
    env = {**os.environ, **LOCAL_RAY_ENV}
    proc = subprocess.run(
        [sys.executable, "scripts/bench_cluster.py", "--quick", "--budget-s", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for needle in (
        "calls meeting every deadline, in-process scheduler",
        "through Ray Serve",
        "Ray Serve / in-process",
        "network per talking call",
        "calls at 40% talk",
    ):
        assert needle in out, out
    assert "Ray Serve cluster" in proc.stderr  # at least one trial ran through the cluster
