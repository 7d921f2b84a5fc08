"""Admission and the cluster's state as a media node sees them, without Ray.

A renderer factory that places calls on a shared render cluster declares two abilities
(``Admission``: may a new call start; ``ClusterStatus``: what ``/metrics`` exports); the
server checks them with ``isinstance``, so the embedded renderers never import this
package's Ray parts. ``decide`` is the pure policy: a new call needs one replica whose
frame-budget headroom covers what the call is expected to commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from inference.cluster.wire import ReplicaReport

__all__ = ["Admission", "ClusterState", "ClusterStatus", "Refusal", "decide"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a new call cannot start now, and when to try again."""

    reason: str
    retry_after_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterState:
    """The render cluster as this media node last saw it."""

    reachable: bool  # the capacity view is fresh
    replicas: int
    calls: int  # calls on the replicas (every media node's)
    capacity_fps: float
    headroom_fps: float  # summed over replicas
    best_headroom_fps: float  # of the replica with the most room
    failovers: int  # pieces this node moved to another replica after a failure
    held_frames: int  # frames shown frozen because their patch came too late
    patch_bytes: int  # patch bytes received by this node


@runtime_checkable
class Admission(Protocol):
    """A renderer factory that may refuse a new call (no room in its render cluster)."""

    def admit(self) -> Refusal | None: ...


@runtime_checkable
class ClusterStatus(Protocol):
    """A renderer factory backed by a render cluster."""

    def cluster_state(self) -> ClusterState: ...


def decide(
    reports: Sequence[ReplicaReport],
    *,
    reachable: bool,
    call_fps: float,
    talk_share: float,
) -> Refusal | None:
    """None when some healthy replica has ``talk_share * call_fps`` frames/s of headroom."""
    if not reachable:
        return Refusal("render cluster unreachable", 10)
    need = talk_share * call_fps
    room = [r.headroom_fps for r in reports if r.healthy]
    if not room:
        return Refusal("no render replica is up", 10)
    if max(room) < need:
        return Refusal(
            f"render cluster full: the best replica has {max(room):.0f} frames/s of "
            f"headroom, a call needs {need:.0f}",
            10,
        )
    return None
