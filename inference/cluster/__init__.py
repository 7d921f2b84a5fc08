"""The GPU render cluster on Ray Serve (``render.cluster``): render replicas, one per GPU,
each with its own MuseTalk engine and ``RenderScheduler``; media nodes send each call's
reply audio and get back the blended face patches.

Nothing here imports Ray until a cluster is used: ``inference.cluster.app`` (the Serve
application) and ``inference.cluster.connection`` (a media node's connection) import it,
the rest does not. docs/cluster.md explains the design and its numbers.
"""

from inference.cluster.admission import Admission, ClusterState, ClusterStatus, Refusal, decide
from inference.cluster.wire import Patch, RenderRequest, ReplicaReport

__all__ = [
    "Admission",
    "ClusterState",
    "ClusterStatus",
    "Patch",
    "Refusal",
    "RenderRequest",
    "ReplicaReport",
    "decide",
]
