"""A real local Ray cluster for the tests: ``ray start --head --block`` on 127.0.0.1 in its
own process group (no dashboard, no usage statistics, its own temporary folder), stopped
by signalling that group, and the render application deployed on it with tiny CPU replicas.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.spawn import free_port

__all__ = ["LOCAL_RAY_ENV", "RayHead", "deploy_render_app", "ray_head", "use_local_ray"]

# One machine, loopback only: Ray keeps 127.0.0.1 as the node address instead of looking for
# a "remotely reachable" one, no usage statistics, and no token written to ~/.ray.
LOCAL_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_raylet_start_wait_time_s": "180",  # a loaded test machine starts slowly
}


def use_local_ray() -> None:
    """Set ``LOCAL_RAY_ENV`` in this process (before Ray is imported: Ray reads it then)."""
    os.environ.update(LOCAL_RAY_ENV)


@dataclass(frozen=True, slots=True)
class RayHead:
    client_address: str  # ray://127.0.0.1:PORT (what a media node's render.cluster names)
    gcs_address: str
    temp_dir: Path


def _ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(LOCAL_RAY_ENV)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


@contextlib.contextmanager
def ray_head(*, num_cpus: int = 6, ready_timeout_s: float = 120.0) -> Iterator[RayHead]:
    """A head node on 127.0.0.1 until the block ends."""
    ray_bin = Path(sys.executable).parent / "ray"
    port, client_port = free_port(), free_port()
    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # Ray's socket paths are short
    log = open(temp / "head.log", "wb")
    args = [
        str(ray_bin),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--ray-client-server-port={client_port}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        "--object-store-memory=200000000",
    ]
    proc = subprocess.Popen(
        args, env=_ray_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    head = RayHead(f"ray://127.0.0.1:{client_port}", f"127.0.0.1:{port}", temp)
    try:
        _wait_for_port(client_port, proc, ready_timeout_s, temp / "head.log")
        yield head
    finally:
        _stop_group(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray client port did not open in {timeout_s:.0f} s")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the head and every process it started (its process group, by id)."""
    pgid = proc.pid  # start_new_session: the group's id is the head's pid
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # workers outliving the head


def deploy_render_app(address: str, *, replicas: int, options: dict[str, Any]) -> None:
    """Connect this process to the cluster (Ray Client) and deploy the render application
    with ``replicas`` CPU replicas of ``options`` (``ReplicaOptions`` fields)."""
    use_local_ray()
    import ray
    from ray import serve

    from inference.cluster.app import RenderLedger, RenderReplica
    from inference.cluster.wire import APP_NAME

    if not ray.is_initialized():
        ray.init(address=address, namespace="avatar-rtc", log_to_driver=False)
    serve.start(proxy_location="Disabled")
    replica: Any = RenderReplica  # Serve's deployments (the decorators hide their type)
    ledger: Any = RenderLedger
    app = replica.options(num_replicas=replicas, ray_actor_options={"num_cpus": 1}).bind(
        options, ledger.bind()
    )
    serve.run(app, name=APP_NAME, route_prefix=None, blocking=False)
