"""A media node's connection to the render cluster: Ray (imported only here, lazily), the
two Serve deployment handles, the avatars it put in the object store, and the cluster's
frame budget, read from the ledger by one owned thread every ``poll_s``.

When the ledger has not answered for ``lost_s`` the cluster counts as lost: new calls are
refused, calls in progress show their idle loop (their voice goes on), the log says so once,
and ``/metrics`` says so until it answers again.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from inference.avatar.model import PreparedAvatar
from inference.cluster.admission import ClusterState, Refusal, decide
from inference.cluster.wire import (
    APP_NAME,
    LEDGER,
    REPLICA,
    Encoding,
    ReplicaReport,
    cluster_avatar_name,
)

__all__ = ["ClusterOptions", "ClusterUnavailable", "RenderCluster", "import_ray"]

log = logging.getLogger(__name__)


class ClusterUnavailable(RuntimeError):
    """The render cluster cannot be used: Ray missing, or the address does not answer."""


def import_ray() -> Any:
    """``ray`` with its usage statistics off; a clear error naming the extra if missing."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
        from ray import serve  # noqa: F401
    except ImportError as exc:
        raise ClusterUnavailable(
            "render.cluster needs Ray Serve: install the 'cluster' extra "
            "(pip install 'avatar-rtc[cluster]', i.e. ray[serve]==2.60.0)"
        ) from exc
    return ray


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterOptions:
    """Where the cluster is and how a media node uses it."""

    address: str  # "ray://HEAD:10001" (Ray Client) or "HOST:6379" (this node in the cluster)
    app_name: str = APP_NAME
    namespace: str = "avatar-rtc"
    fps: int = 25
    start_latency_s: float = 0.3  # a piece's first frame is due this long after its audio
    hold_margin_s: float = 0.1  # a frame not back this long before it is due shows frozen
    failover_s: float = 1.0  # no patch for this long past the next due frame: move the call
    max_moves: int = 3  # moves of one piece before its rest plays frozen
    encoding: Encoding = "jpeg"
    quality: int = 90
    yield_frames: int = 2  # frames per yielded list
    talk_share: float = 0.4  # a call is expected to need this share of its frame rate
    poll_s: float = 0.5
    lost_s: float = 3.0
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ValueError("the cluster address is empty")
        if min(self.start_latency_s, self.failover_s, self.poll_s, self.lost_s) <= 0:
            raise ValueError("start_latency_s, failover_s, poll_s and lost_s must be > 0")
        if not 0 <= self.hold_margin_s < self.start_latency_s:
            raise ValueError("hold_margin_s must be in [0, start_latency_s)")


class RenderCluster:
    """One per media node process: handles, avatars in the object store, capacity view."""

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        self.replicas: Any = None  # DeploymentHandle of the render replicas
        self.ledger: Any = None
        self._ray: Any = None
        self._reports: list[ReplicaReport] = []
        self._last_ok = -math.inf
        self._lost_logged = False
        self._avatars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failovers = 0
        self.held_frames = 0
        self.patch_bytes = 0

    def __repr__(self) -> str:  # stable: part of the clip cache's renderer identity
        o = self.options
        return f"RenderCluster({o.app_name!r}, {o.encoding}, q{o.quality})"

    # ---- lifecycle -----------------------------------------------------------------------
    def connect(self) -> None:
        """Join the cluster and wait (``connect_timeout_s``) for the render application to
        report a replica; ``ClusterUnavailable`` otherwise."""
        ray = self._ray = import_ray()
        o = self.options
        if o.address.startswith("ray://"):
            raise ClusterUnavailable(
                f"render.cluster {o.address!r} is a Ray Client address, and Ray Serve does not "
                "stream from deployment handles over Ray Client (nor should every frame pass "
                "through the head): make this media node a member of the cluster "
                "(ray start --address=HEAD:6379 --num-cpus=0 --num-gpus=0) and set "
                "render.cluster to HEAD:6379 (docs/cluster.md)"
            )
        if not ray.is_initialized():
            try:
                ray.init(
                    address=o.address,
                    namespace=o.namespace,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                )
            except Exception as exc:
                raise ClusterUnavailable(f"render cluster {o.address!r}: {exc}") from exc
        from ray import serve

        self.replicas = serve.get_deployment_handle(REPLICA, app_name=o.app_name)
        self.ledger = serve.get_deployment_handle(LEDGER, app_name=o.app_name)
        deadline = time.monotonic() + o.connect_timeout_s
        while not self.poll() or not self._reports:
            if time.monotonic() > deadline:
                raise ClusterUnavailable(
                    f"render cluster {o.address!r}: no replica of application "
                    f"{o.app_name!r} reported within {o.connect_timeout_s:.0f} s "
                    "(is deploy/ray/serve.yaml deployed?)"
                )
            time.sleep(0.2)
        self._thread = threading.Thread(target=self._watch, name="render-cluster", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.options.poll_s + 1.0)

    # ---- capacity ------------------------------------------------------------------------
    def poll(self) -> bool:
        """Read the ledger once; False when it did not answer."""
        try:
            reports = self.ledger.snapshot.remote().result(timeout_s=max(1.0, self.options.poll_s))
        except Exception as exc:
            if self.lost and not self._lost_logged:
                self._lost_logged = True
                log.error(
                    "render cluster %s lost (%s): calls show their idle loop, new calls are "
                    "refused until it answers",
                    self.options.address,
                    exc,
                )
            return False
        with self._lock:
            self._reports = list(reports)
            self._last_ok = time.monotonic()
        if self._lost_logged:
            self._lost_logged = False
            log.warning("render cluster %s answers again", self.options.address)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.options.poll_s):
            self.poll()

    @property
    def lost(self) -> bool:
        return time.monotonic() - self._last_ok > self.options.lost_s

    @property
    def reports(self) -> list[ReplicaReport]:
        with self._lock:
            return list(self._reports)

    def admit(self) -> Refusal | None:
        o = self.options
        return decide(
            self.reports, reachable=not self.lost, call_fps=o.fps, talk_share=o.talk_share
        )

    def state(self) -> ClusterState:
        reports = [r for r in self.reports if r.healthy]
        return ClusterState(
            reachable=not self.lost,
            replicas=len(reports),
            calls=sum(r.calls for r in reports),
            capacity_fps=sum(r.capacity_fps for r in reports),
            headroom_fps=sum(r.headroom_fps for r in reports),
            best_headroom_fps=max((r.headroom_fps for r in reports), default=0.0),
            failovers=self.failovers,
            held_frames=self.held_frames,
            patch_bytes=self.patch_bytes,
        )

    # ---- avatars -------------------------------------------------------------------------
    def avatar_ref(self, avatar: PreparedAvatar) -> tuple[str, Any]:
        """The avatar's cluster name and its object-store reference (put once)."""
        name = cluster_avatar_name(avatar)
        with self._lock:
            ref = self._avatars.get(name)
        if ref is None:
            ref = self._ray.put(avatar)
            with self._lock:
                ref = self._avatars.setdefault(name, ref)
        return name, ref

    def release(self, key: str, call: str) -> None:
        """Tell the replica holding ``call`` (multiplexing ``key``) to forget it (best
        effort, not waited for)."""
        if self.replicas is None:
            return
        try:
            self.replicas.options(multiplexed_model_id=key).release.remote(call)
        except Exception:
            log.debug("release of %s failed", call, exc_info=True)
