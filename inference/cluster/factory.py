"""``ClusterRendererFactory``: per-call ``ClusterRenderer`` views on one media node's
connection to the render cluster, with admission and the cluster's state for ``/metrics``.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

from inference.avatar.model import PreparedAvatar
from inference.cluster.admission import ClusterState, Refusal
from inference.cluster.client import ClusterRenderer
from inference.cluster.connection import ClusterOptions, RenderCluster

__all__ = ["ClusterRendererFactory", "cluster_factory"]


@dataclass
class ClusterRendererFactory:
    """Makes the renderers of this node's calls; implements ``Admission``,
    ``ClusterStatus`` and ``Warmable``."""

    cluster: RenderCluster
    output_height: int | None = None
    _renderers: dict[str, ClusterRenderer] = field(default_factory=dict, repr=False)
    _placing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def warm(self, avatar: PreparedAvatar) -> None:
        """Put the avatar in the object store now, not in the first call."""
        self.cluster.avatar_ref(avatar)

    def make(self, avatar: PreparedAvatar, *, session: str) -> ClusterRenderer:
        renderer = ClusterRenderer(
            self.cluster, avatar, session=session, output_height=self.output_height
        )
        with self._placing:  # one placement at a time, each seen by the router
            renderer.open()
        self._renderers[session] = renderer
        return renderer

    def release(self, session: str) -> None:
        renderer = self._renderers.pop(session, None)
        if renderer is not None:
            renderer.close()

    def renderers(self) -> dict[str, ClusterRenderer]:
        """The renderers of the calls in progress, by session."""
        return dict(self._renderers)

    def admit(self) -> Refusal | None:
        return self.cluster.admit()

    def cluster_state(self) -> ClusterState:
        return self.cluster.state()

    def close(self) -> None:
        for session in list(self._renderers):
            self.release(session)
        self.cluster.close()


def cluster_factory(
    address: str,
    *,
    fps: int = 25,
    output_height: int | None = None,
    options: ClusterOptions | None = None,
) -> ClusterRendererFactory:
    """Connect to the render cluster at ``address`` (``ClusterUnavailable`` when Ray is
    missing or no render replica answers); ``options`` override the defaults but for the
    address and the frame rate."""
    base = options or ClusterOptions(address=address)
    cluster = RenderCluster(dataclasses.replace(base, address=address, fps=fps))
    cluster.connect()
    return ClusterRendererFactory(cluster, output_height=output_height)
