"""``SchedulerPool``: one render scheduler per device; each call goes to the least loaded
healthy one."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from inference.render.scheduler import RenderScheduler

__all__ = ["RenderUnavailable", "SchedulerPool"]


class RenderUnavailable(RuntimeError):
    """No scheduler of a pool can take a call: every one has stalled or is closed."""


class SchedulerPool:
    """One scheduler per device; each call is placed on the least loaded healthy one."""

    def __init__(self, schedulers: Sequence[RenderScheduler]) -> None:
        if not schedulers:
            raise ValueError("a pool needs at least one scheduler")
        self.schedulers = list(schedulers)
        self._placement: dict[str, RenderScheduler] = {}
        self._lock = threading.Lock()

    def place(self, session: str, *, fps: float = 25.0) -> RenderScheduler:
        """Open ``session`` on the least loaded healthy scheduler (sticky until ``release``,
        or until that scheduler stalls); ``RenderUnavailable`` if none is healthy."""
        with self._lock:
            chosen = self._placement.get(session)
            if chosen is not None and not chosen.healthy:
                del self._placement[session]
                chosen.close_session(session)
                chosen = None
            if chosen is None:
                healthy = [s for s in self.schedulers if s.healthy]
                if not healthy:
                    raise RenderUnavailable(
                        "no render scheduler can take a call: "
                        + "; ".join(f"{s.name}: {s.status}" for s in self.schedulers)
                    )
                chosen = min(healthy, key=lambda s: (s.load(), s.session_count))
                chosen.open_session(session, fps=fps)
                self._placement[session] = chosen
            return chosen

    @property
    def healthy(self) -> bool:
        """True while at least one scheduler can take calls."""
        return any(s.healthy for s in self.schedulers)

    def health(self) -> dict[str, str]:
        """Each scheduler's ``status`` by name."""
        return {s.name: s.status for s in self.schedulers}

    def release(self, session: str) -> None:
        with self._lock:
            chosen = self._placement.pop(session, None)
        if chosen is not None:
            chosen.close_session(session)

    def close(self) -> None:
        for s in self.schedulers:
            s.close()
