"""The render application on Ray Serve: ``serve run deploy/ray/serve.yaml`` (import path
``inference.cluster.app:app``, or the builder ``inference.cluster.app:build_app`` that takes
the replica options as ``args``).

Two deployments:

- ``RenderReplica``, one per GPU (``num_gpus: 1``; CPU-only for tests): a ``ReplicaCore``,
  so the frames of every call on it share its scheduler's batches. Calls stick to a replica
  through Serve's model multiplexing keyed by the call (``multiplexed_model_id``): the
  router sends a call's later pieces where its first went, and a new call to a replica that
  holds fewer calls. A request is self-contained (the audio piece and a reference to the
  avatar in the object store), so a call whose replica died continues on another.
- ``RenderLedger``, one small CPU replica: each render replica reports its frame budget
  (``ReplicaReport``) to it twice a second; media nodes read the fresh reports for
  admission and ``/metrics``. A replica that stops reporting drops out after ``stale_s``.

Ray's usage statistics are turned off before Ray is imported (``RAY_USAGE_STATS_ENABLED=0``).
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from inference.cluster.replica import ReplicaCore, ReplicaOptions
from inference.cluster.wire import (
    APP_NAME,
    LEDGER,
    REPLICA,
    Patch,
    RenderRequest,
    ReplicaReport,
)

__all__ = [
    "APP_NAME",
    "LEDGER",
    "REPLICA",
    "RenderLedger",
    "RenderReplica",
    "app",
    "build_app",
]

log = logging.getLogger(__name__)

REPORT_S = 0.5  # how often a replica reports its frame budget
MAX_CALLS_PER_REPLICA = 512  # calls a replica remembers (multiplexing's LRU bound)


@serve.deployment(name=LEDGER, num_replicas=1, ray_actor_options={"num_cpus": 0})
class RenderLedger:
    """The fresh frame-budget reports of every render replica."""

    def __init__(self, stale_s: float = 2.0) -> None:
        self._stale_s = stale_s
        self._reports: dict[str, tuple[ReplicaReport, float]] = {}

    def report(self, report: ReplicaReport) -> None:
        self._reports[report.replica] = (report, time.monotonic())

    def snapshot(self) -> list[ReplicaReport]:
        """Reports younger than ``stale_s`` (older ones are dropped)."""
        now = time.monotonic()
        self._reports = {
            k: (r, t) for k, (r, t) in self._reports.items() if now - t <= self._stale_s
        }
        return [r for r, _ in self._reports.values()]


@serve.deployment(
    name=REPLICA,
    num_replicas=1,
    max_ongoing_requests=256,
    health_check_period_s=2.0,
    health_check_timeout_s=10.0,
    graceful_shutdown_timeout_s=5.0,
)
class RenderReplica:
    """One device's engine and scheduler; renders the pieces of the calls routed here."""

    def __init__(self, options: dict[str, Any], ledger: DeploymentHandle) -> None:
        context = serve.get_replica_context()
        name = getattr(context.replica_id, "unique_id", None) or str(context.replica_id)
        self.core = ReplicaCore(ReplicaOptions.from_mapping(options), name=str(name))
        self._ledger = ledger
        self._peers: list[ReplicaReport] = []
        self._reporter = asyncio.get_event_loop().create_task(self._report_loop())

    async def _report_loop(self) -> None:
        while True:
            try:
                await self._ledger.report.remote(self.core.report())
                self._peers = await self._ledger.snapshot.remote()
            except Exception:  # the ledger restarts; keep reporting
                log.warning("frame budget report failed", exc_info=True)
            await asyncio.sleep(REPORT_S)

    @serve.multiplexed(max_num_models_per_replica=MAX_CALLS_PER_REPLICA)
    async def _hold(self, call: str) -> str:
        """Multiplexing's loader: marks ``call`` as held here, so the router sends its
        later pieces here (the call's state itself lives in the core)."""
        return call

    async def open(self, request: RenderRequest) -> str:
        """Place a call here when it starts (its avatar fetched and encoded now, not in its
        first piece); the replica's name, or "" when another replica has room for at least
        one more call than this one (the media node then asks again under a new key)."""
        mine = self.core.report()
        need = self.core.options.talk_share * request.render_fps
        others = [p.headroom_fps for p in self._peers if p.replica != mine.replica and p.healthy]
        if others and max(others) >= mine.headroom_fps + need:
            return ""
        await self._prepare(request)
        self.core.open(request.call, request.avatar, request.render_fps)
        return self.core.name

    async def render(self, request: RenderRequest) -> AsyncIterator[list[Patch]]:
        """Stream the patches of one piece (a few frames per message)."""
        await self._prepare(request)
        async for patches in self.core.render(request):
            yield patches

    async def _prepare(self, request: RenderRequest) -> None:
        await self._hold(serve.get_multiplexed_model_id() or request.call)
        if not self.core.has_avatar(request.avatar):
            avatar = await request.avatar_ref  # from the object store: a new or moved call
            await asyncio.to_thread(self.core.add_avatar, avatar, request.avatar)

    async def release(self, call: str) -> bool:
        return self.core.release(call)

    async def describe(self) -> dict[str, Any]:
        """Who serves a call (for tests and operators): name, process, calls, budget."""
        return {
            "replica": self.core.name,
            "pid": os.getpid(),
            "calls": self.core.calls,
            "report": self.core.report(),
            "stats": self.core.stats(),
        }

    def record_autoscaling_stats(self) -> dict[str, float]:
        """The frame budget for Serve's autoscaler (``inference.cluster.autoscale``)."""
        r = self.core.report()
        return {
            "committed_fps": r.committed_fps,
            "capacity_fps": r.capacity_fps,
            "headroom_fps": r.headroom_fps,
        }

    def check_health(self) -> None:
        """Serve restarts a replica whose device work hung (the scheduler's watchdog)."""
        if not self.core.service.healthy:
            raise RuntimeError(f"render replica {self.core.name}: {self.core.service.health()}")

    def __del__(self) -> None:
        reporter = getattr(self, "_reporter", None)
        if reporter is not None:
            reporter.cancel()


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The application with replica options ``args`` (``ReplicaOptions`` fields), e.g. from
    ``deploy/ray/serve.yaml``. ``num_gpus`` is set per replica by the config."""
    options = dict(args or {})
    ReplicaOptions.from_mapping(options)  # fail at deploy time, not in a replica
    replica: Any = RenderReplica  # Serve's deployments (the decorators hide their type)
    ledger: Any = RenderLedger
    return replica.bind(options, ledger.bind())


app = build_app()
