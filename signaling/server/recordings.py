"""Media recording per call (``records.media``, off by default): each call's caller audio
and the avatar's voice and face go to ``data_dir/recordings/ID.mkv``
(:class:`~media.recording.MediaRecording`), and the call record links it (a ``recording``
action: the file, then how it ended). The caller is told through the ``/offer`` answer's
``recorded``. A folder that cannot be written or a full disk is logged, counted in
``avatar_errors_total{kind="recording"}`` and recorded; the call goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from media.player import IdleLoop
from media.recording import MediaRecording, RecordingOptions, RecordingSummary
from signaling.call.session import Session
from signaling.metrics import Metrics
from signaling.server.desk import ActionLog

__all__ = ["RECORDINGS_DIR", "CallRecordings"]

log = logging.getLogger(__name__)

RECORDINGS_DIR = "recordings"  # under data_dir
_ACTOR = "system"


class CallRecordings:
    """Starts a recording for each call and writes its link into the call record."""

    def __init__(
        self,
        data_dir: Path,
        *,
        metrics: Metrics,
        actions: Callable[[], ActionLog | None] = lambda: None,
    ) -> None:
        self.folder = data_dir / RECORDINGS_DIR
        self._data_dir = data_dir
        self._metrics = metrics
        self._actions = actions
        self.active: dict[str, MediaRecording] = {}
        self.finished: dict[str, RecordingSummary] = {}  # the last few, for tests and probes

    def start(self, session: Session) -> bool:
        """Record ``session`` from now on; False (logged) when the folder cannot be used."""
        path = self.folder / f"{session.id}.mkv"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._failed(session.id, path, f"cannot create {self.folder}: {exc}")
            return False
        recording = MediaRecording(
            RecordingOptions(path=path, fps=session.options.fps),
            player=session.player,
            idle=IdleLoop(session.renderer.idle_frames(), session.options.fps),
            now=session.clock.now,
        )
        self.active[session.id] = recording
        session.mic_taps.append(recording.caller)
        self._record(session.id, {"file": self._link(path), "status": "recording"})
        task = asyncio.get_running_loop().create_task(self._run(session, recording))
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        return True

    def _link(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(self._data_dir))
        return str(path)

    async def _run(self, session: Session, recording: MediaRecording) -> None:
        runner = asyncio.get_running_loop().create_task(recording.run())
        closed = asyncio.get_running_loop().create_task(session.closed.wait())
        try:
            await asyncio.wait({runner, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            with contextlib.suppress(ValueError):
                session.mic_taps.remove(recording.caller)
            summary = await recording.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            self.active.pop(session.id, None)
            self._ended(session.id, summary)

    def _ended(self, call_id: str, summary: RecordingSummary) -> None:
        self.finished[call_id] = summary
        while len(self.finished) > 100:
            self.finished.pop(next(iter(self.finished)))
        if summary.failure is not None:
            self._failed(call_id, summary.path, summary.failure, summary)
            return
        log.info("call %s: recorded %.1f s to %s", call_id, summary.seconds, summary.path)
        self._record(call_id, _detail(self._link(summary.path), "complete", summary))

    def _failed(
        self, call_id: str, path: Path, reason: str, summary: RecordingSummary | None = None
    ) -> None:
        log.error(
            "call %s: media recording failed, the call goes on unrecorded: %s", call_id, reason
        )
        self._metrics.errors_total.labels(kind="recording").inc()
        detail: dict[str, object] = {"file": self._link(path), "status": "failed"}
        detail["error"] = reason
        if summary is not None:
            detail = {**_detail(self._link(path), "failed", summary), "error": reason}
        self._record(call_id, detail)

    def _record(self, call_id: str, detail: dict[str, object]) -> None:
        store = self._actions()
        if store is None:
            return
        try:
            store.record_action(call_id, time.time(), _ACTOR, "recording", detail)
        except Exception:
            log.exception("call %s: recording the media link failed", call_id)

    async def stop_all(self) -> None:
        """The server stops: every recording is finished and closed."""
        for recording in list(self.active.values()):
            await recording.stop()


def _detail(link: str, status: str, summary: RecordingSummary) -> dict[str, object]:
    return {
        "file": link,
        "status": status,
        "seconds": round(summary.seconds, 3),
        "video_frames": summary.video_frames,
        "caller_s": round(summary.caller_s, 3),
        "bytes": summary.bytes,
    }
