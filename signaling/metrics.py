"""Prometheus metrics of one server process (served at ``/metrics``).

The registry belongs to the app, not to the module, so tests and several apps in one
process never share counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from inference.cluster.admission import ClusterState

__all__ = ["CONTENT_TYPE_LATEST", "STAGES", "Metrics"]

# Stage names of ``stage_seconds`` (turn timings are ms after the caller's speech end).
STAGES = ("vad", "asr", "llm_first_token", "tts_first_audio", "render_batch", "encode")
_METRIC_NAMES = (
    "stage_seconds",
    "turn_seconds",
    "active_sessions",
    "sessions_total",
    "rejected_total",
    "errors_total",
    "frames_total",
    "batch_size",
    "cluster_headroom_fps",
    "cluster_replicas",
    "cluster_reachable",
    "cluster_failovers_total",
    "cluster_held_frames_total",
    "cluster_patch_bytes_total",
    "quality_rung",
    "path_rtt",
    "path_queue",
    "cache_total",
    "gpu_memory_bytes",
    "barge_ins_total",
)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class _Off:
    """Stands in for every metric when metrics are turned off: each call does nothing."""

    def labels(self, *args: object, **kwargs: object) -> _Off:
        return self

    def observe(self, value: float) -> None:
        pass

    def inc(self, amount: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def remove(self, *labels: object) -> None:
        pass


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    enabled: bool = True

    def __post_init__(self) -> None:
        r = self.registry
        self._cache_seen: dict[tuple[str, str], int] = {}
        self._cluster_seen = (0, 0, 0)
        if not self.enabled:
            off: Any = _Off()
            for name in _METRIC_NAMES:
                setattr(self, name, off)
            return
        self.stage_seconds = Histogram(
            "avatar_stage_seconds",
            "Duration of a pipeline stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_seconds = Histogram(
            "avatar_turn_seconds",
            "Time from the caller's speech end to a turn milestone",
            ["milestone"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.active_sessions = Gauge("avatar_active_sessions", "Calls in progress", registry=r)
        self.sessions_total = Counter("avatar_sessions_total", "Calls started", registry=r)
        self.rejected_total = Counter(
            "avatar_rejected_total", "Offers refused", ["reason"], registry=r
        )
        self.errors_total = Counter("avatar_errors_total", "Errors by kind", ["kind"], registry=r)
        self.frames_total = Counter(
            "avatar_frames_total", "Video frames by outcome", ["outcome"], registry=r
        )
        self.batch_size = Histogram(
            "avatar_render_batch_frames",
            "Frames per render batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.quality_rung = Gauge(
            "avatar_quality_rung",
            "Quality ladder rung per call (0 = top)",
            ["session"],
            registry=r,
        )
        self.path_rtt = Gauge(
            "avatar_path_rtt_seconds",
            "Smallest round trip of the call's ICE pings (its path without a queue)",
            ["session"],
            registry=r,
        )
        self.path_queue = Gauge(
            "avatar_path_queue_seconds",
            "Queue the call's voice met on its way to the caller (the caller's transport feedback)",
            ["session"],
            registry=r,
        )
        self.cache_total = Counter(
            "avatar_cache_total", "Cache lookups", ["cache", "result"], registry=r
        )
        self.gpu_memory_bytes = Gauge(
            "avatar_gpu_memory_bytes", "GPU memory allocated", ["device"], registry=r
        )
        self.barge_ins_total = Counter("avatar_barge_ins_total", "Barge-ins", registry=r)
        self._cluster_metrics(r)

    def _cluster_metrics(self, r: CollectorRegistry) -> None:
        """The render cluster as this media node sees it (render.cluster set)."""
        self.cluster_headroom_fps = Gauge(
            "avatar_cluster_headroom_fps",
            "Frames/s the render replicas can still take within deadlines",
            ["scope"],  # "total" over replicas, "best" replica
            registry=r,
        )
        self.cluster_replicas = Gauge(
            "avatar_cluster_replicas", "Render replicas reporting their budget", registry=r
        )
        self.cluster_reachable = Gauge(
            "avatar_cluster_reachable",
            "1 while the render cluster answers, 0 once it is lost (calls show the idle loop)",
            registry=r,
        )
        self.cluster_failovers_total = Counter(
            "avatar_cluster_failovers_total",
            "Pieces of reply moved to another render replica after a failure",
            registry=r,
        )
        self.cluster_held_frames_total = Counter(
            "avatar_cluster_held_frames_total",
            "Frames shown frozen because their patch came too late",
            registry=r,
        )
        self.cluster_patch_bytes_total = Counter(
            "avatar_cluster_patch_bytes_total", "Patch bytes received from the cluster", registry=r
        )

    def sync_cluster(self, state: ClusterState) -> None:
        """Bring the cluster gauges and counters up to ``state`` (called on scrape)."""
        self.cluster_headroom_fps.labels(scope="total").set(state.headroom_fps)
        self.cluster_headroom_fps.labels(scope="best").set(state.best_headroom_fps)
        self.cluster_replicas.set(state.replicas)
        self.cluster_reachable.set(1.0 if state.reachable else 0.0)
        now = (state.failovers, state.held_frames, state.patch_bytes)
        counters = (
            self.cluster_failovers_total,
            self.cluster_held_frames_total,
            self.cluster_patch_bytes_total,
        )
        for counter, seen, total in zip(counters, self._cluster_seen, now, strict=True):
            if total > seen:
                counter.inc(total - seen)
        self._cluster_seen = now

    def sync_cache(self, stats: dict[str, object]) -> None:
        """Bring ``avatar_cache_total`` up to the cache's own counters (called on scrape)."""
        by_kind = stats.get("by_kind", {})
        if not isinstance(by_kind, dict):
            return
        for kind, counts in by_kind.items():
            if not isinstance(counts, dict):
                continue
            for result in ("hits", "misses"):
                label = "hit" if result == "hits" else "miss"
                key = (str(kind), label)
                total = int(counts.get(result, 0))
                delta = total - self._cache_seen.get(key, 0)
                if delta > 0:
                    self.cache_total.labels(cache=kind, result=label).inc(delta)
                    self._cache_seen[key] = total

    def observe_turn(self, stages: dict[str, float]) -> None:
        """Record one turn's timings (ms after speech end, as TurnRunner reports them)."""
        for milestone, ms in stages.items():
            self.turn_seconds.labels(milestone=milestone).observe(max(0.0, ms) / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
