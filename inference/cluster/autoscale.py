"""Ray Serve autoscaling of the render replicas on frame-budget headroom, not GPU %.

Each replica reports ``committed_fps`` and ``capacity_fps`` (``record_autoscaling_stats``);
``headroom_policy`` (named in ``deploy/ray/serve.yaml``) asks for enough replicas that the
calls' commitments fill at most ``budget`` of their capacity with ``spare_calls`` calls of
room left, between the deployment's min and max. Serve's upscale and downscale delays still
apply, so a short burst does not start a GPU and a lull does not stop one.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["desired_replicas", "headroom_policy"]


def desired_replicas(
    committed: list[float],
    capacity: list[float],
    *,
    budget: float = 0.9,
    spare_fps: float = 20.0,
) -> int | None:
    """Replicas needed for ``sum(committed) + spare_fps`` within ``budget`` of the mean
    replica capacity; None without a measured capacity."""
    caps = [c for c in capacity if c > 0]
    if not caps:
        return None
    per_replica = budget * sum(caps) / len(caps)
    return max(1, math.ceil((sum(committed) + spare_fps) / per_replica))


def headroom_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Serve's custom autoscaling policy (``AutoscalingContext`` in, replicas out)."""
    metrics = ctx.aggregated_metrics or {}
    committed = list(metrics.get("committed_fps", {}).values())
    capacity = list(metrics.get("capacity_fps", {}).values())
    want = desired_replicas(committed, capacity)
    if want is None:
        want = ctx.current_num_replicas
    low, high = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
    return max(low, min(high, want)), dict(ctx.policy_state or {})
