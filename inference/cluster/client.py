"""``ClusterRenderer``: a call's ``Renderer`` on a media node, rendering on the cluster.

Each piece of reply audio becomes one streamed Serve request (multiplexed by the call, so
the call stays on its replica); the patches that come back are pasted into the avatar's
source frames here. Every frame has a due time (the piece's first frame ``start_latency_s``
after its audio, or when the previous piece ends, then one frame period apart): a frame
whose patch is not back ``hold_margin_s`` before it is due is shown frozen (the last frame
again, or the idle loop's), so the voice, which is pushed with the frames, never waits for
the cluster.

When the stream fails (the replica died) or stalls (no patch ``failover_s`` past the next
due frame), the rest of the piece is asked again under a new multiplexing key, so the
router places it afresh; the replica it lands on fetches the avatar from the object store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.avatar.model import PreparedAvatar
from inference.cluster.connection import RenderCluster
from inference.cluster.wire import Patch, RenderRequest, cycle_index, paste
from inference.render.base import RENDER_RATE, frame_count

__all__ = ["ClusterRenderer", "RenderStats"]

log = logging.getLogger(__name__)


def _even(x: float) -> int:
    return max(2, round(x / 2.0) * 2)


@dataclass(slots=True)
class RenderStats:
    """What one call's renderer saw: pieces asked, patches shown, frames shown frozen,
    the longest frozen run (frames) and the times the call moved to another replica."""

    pieces: int = 0
    patches: int = 0
    held: int = 0
    longest_hold: int = 0
    moves: int = 0
    _run: int = 0

    def shown(self, held: bool) -> None:
        if held:
            self.held += 1
            self._run += 1
            self.longest_hold = max(self.longest_hold, self._run)
        else:
            self.patches += 1
            self._run = 0


@dataclass(slots=True)
class _Piece:
    """One piece in flight: due times, arrived patches, and the wake-up of the reader."""

    due: list[float]
    patches: dict[int, Patch] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False  # nothing more will arrive


class ClusterRenderer:
    """Implements ``inference.render.base.Renderer`` and ``FrameRateFollower`` for one call."""

    def __init__(
        self,
        cluster: RenderCluster,
        avatar: PreparedAvatar,
        *,
        session: str,
        output_height: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        o = cluster.options
        self.fps = o.fps
        self._cluster = cluster
        self._avatar = avatar
        self._session = session
        self._clock = clock
        self._height = min(output_height or avatar.size[1], avatar.size[1])
        self._render_fps = self.fps
        self._play_end = 0.0
        self._moves = 0  # multiplexing key generation: bumped to move the call
        self._frame_no = 0  # the idle loop's position for frames shown frozen
        self._last: np.ndarray | None = None
        self._idle: list[np.ndarray] | None = None
        self._idle_height = -1
        self.avatar_name, self._avatar_ref = cluster.avatar_ref(avatar)
        self.stats = RenderStats()

    def open(self, timeout_s: float = 30.0, settle_s: float = 2.0) -> str | None:
        """Place the call on a replica now (blocking: the factory calls this off the event
        loop, one call at a time), so its first piece meets a replica that holds its avatar;
        the replica's name, or None when that failed (the first piece then places it).
        A replica that has less room than another refuses, and the call is offered again
        under a new key.

        Serve's router places a new call on a replica holding the fewest calls; it learns
        of a placement moments later, so this waits (``settle_s`` at most) until requests
        under the call's key reach the replica it was placed on, and the next call is
        placed knowing it."""
        try:
            for _ in range(6):  # a replica with less room than another sends the call on
                handle = self._cluster.replicas.options(multiplexed_model_id=self.key)
                placed: str = handle.open.remote(self._request(np.zeros(0, np.int16))).result(
                    timeout_s=timeout_s
                )
                if placed:
                    break
                self._moves += 1
            deadline = time.monotonic() + settle_s
            while placed and time.monotonic() < deadline:
                seen = handle.describe.remote().result(timeout_s=timeout_s)
                if seen["replica"] == placed:
                    break
                time.sleep(0.05)
        except Exception as exc:
            log.warning("call %s: placing it on the render cluster failed: %s", self._session, exc)
            return None
        return placed

    def _request(self, audio: np.ndarray) -> RenderRequest:
        o = self._cluster.options
        return RenderRequest(
            call=self._session,
            avatar=self.avatar_name,
            avatar_ref=self._avatar_ref,
            audio=np.ascontiguousarray(audio),
            render_fps=self._render_fps,
            encoding=o.encoding,
            quality=o.quality,
        )

    # ---- Renderer protocol ---------------------------------------------------------------
    @property
    def frame_size(self) -> tuple[int, int]:
        w, h = self._avatar.size
        if self._height == h:
            return w, h
        return _even(w * self._height / h), _even(self._height)

    def set_output_height(self, height: int) -> None:
        if height < 16:
            raise ValueError(f"output height must be >= 16, got {height}")
        self._height = min(int(height), self._avatar.size[1])

    @property
    def render_fps(self) -> int:
        return self._render_fps

    def set_render_fps(self, fps: int) -> None:
        if fps <= 0:
            raise ValueError(f"render fps must be positive, got {fps}")
        self._render_fps = min(int(fps), self.fps)

    def idle_frames(self) -> Sequence[np.ndarray]:
        if self._idle is None or self._idle_height != self._height:
            self._idle = [self._resize(f) for f in self._avatar.frames]
            self._idle_height = self._height
        return self._idle

    @property
    def key(self) -> str:
        """The multiplexing key the call's pieces go under now."""
        return self._session if self._moves == 0 else f"{self._session}#{self._moves}"

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        if audio_16k.ndim != 1 or audio_16k.dtype != np.int16:
            raise ValueError("render() takes 1-D int16 audio at 16 kHz")
        n = frame_count(len(audio_16k), self.fps)
        if n == 0:
            return
        o = self._cluster.options
        self.stats.pieces += 1
        start = max(self._clock() + o.start_latency_s, self._play_end)
        self._play_end = start + n / self.fps
        piece = _Piece(due=[start + i / self.fps for i in range(n)])
        pump = asyncio.create_task(self._pump(audio_16k, piece))
        try:
            step = o.yield_frames
            for first in range(0, n, step):
                batch = await self._frames(piece, first, min(n, first + step))
                yield batch
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            self._frame_no += n

    def clear(self) -> None:
        """Barge-in: the next piece starts afresh (the turn cancels the one in flight)."""
        self._play_end = 0.0

    def close(self) -> None:
        self._cluster.release(self.key, self._session)

    # ---- receiving -----------------------------------------------------------------------
    async def _frames(self, piece: _Piece, lo: int, hi: int) -> list[np.ndarray]:
        """Frames ``lo..hi``: each as rendered if its patch came in time, else frozen."""
        margin = self._cluster.options.hold_margin_s
        chosen: list[Patch | None] = []
        for i in range(lo, hi):
            hold_at = piece.due[i] - margin
            while i not in piece.patches and not piece.done:
                wait = hold_at - self._clock()
                if wait <= 0:
                    break
                piece.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(piece.arrived.wait(), wait)
            chosen.append(piece.patches.pop(i, None))
        frames = await asyncio.to_thread(self._compose, chosen, lo)
        return frames

    def _compose(self, chosen: list[Patch | None], lo: int) -> list[np.ndarray]:
        out = []
        for k, patch in enumerate(chosen):
            self.stats.shown(held=patch is None)
            if patch is None:
                self._cluster.held_frames += 1
                if self._last is None:
                    idle = self.idle_frames()
                    self._last = idle[cycle_index(self._frame_no + lo + k, len(idle))]
                out.append(self._last)
                continue
            frame = self._resize(paste(self._avatar.frames[patch.source], patch))
            self._last = frame
            out.append(frame)
        return out

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        size = self.frame_size
        if (frame.shape[1], frame.shape[0]) == size:
            return frame
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    async def _pump(self, audio: np.ndarray, piece: _Piece) -> None:
        """Stream the piece's patches in; on a failure or stall move the rest of it."""
        o = self._cluster.options
        per_frame = RENDER_RATE // self.fps
        offset = 0  # frames of the piece the current request starts at
        attempts = 0
        try:
            while offset < len(piece.due):
                ok = await self._stream(audio[offset * per_frame :], piece, offset)
                if ok:
                    return
                self._moves += 1
                self.stats.moves += 1
                self._cluster.failovers += 1
                attempts += 1
                if attempts > o.max_moves:
                    log.error("call %s: render cluster keeps failing; frozen video", self._session)
                    return
                await asyncio.sleep(0.1 * attempts)  # the router learns of a dead replica
                # frames that would come too late anyway are not asked again
                behind = self._clock() + o.start_latency_s - piece.due[0]
                offset = max(
                    self._next_missing(piece, offset), math.ceil(behind * self.fps), offset
                )
                log.warning(
                    "call %s moved to another render replica from frame %d of %d",
                    self._session,
                    min(offset, len(piece.due)),
                    len(piece.due),
                )
        finally:
            piece.done = True
            piece.arrived.set()

    @staticmethod
    def _next_missing(piece: _Piece, offset: int) -> int:
        i = offset
        while i in piece.patches:
            i += 1
        return i

    async def _stream(self, audio: np.ndarray, piece: _Piece, offset: int) -> bool:
        """One request for frames ``offset..`` of the piece; False when it failed or
        stalled (the caller moves the call)."""
        if len(audio) == 0:
            return True
        o = self._cluster.options
        request = self._request(audio)
        expected = len(piece.due) - offset
        got = 0
        try:
            stream = self._cluster.replicas.options(
                stream=True, multiplexed_model_id=self.key
            ).render.remote(request)
            it = stream.__aiter__()
            while got < expected:
                nxt = piece.due[min(len(piece.due) - 1, offset + got)]
                timeout = max(o.failover_s, nxt - self._clock() + o.failover_s)
                try:
                    patches = await asyncio.wait_for(it.__anext__(), timeout)
                except StopAsyncIteration:
                    return True
                for p in patches:
                    piece.patches[offset + p.frame] = p
                    self._cluster.patch_bytes += p.nbytes
                got += len(patches)
                piece.arrived.set()
            return True
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            log.warning("call %s: render replica stalled", self._session)
            with contextlib.suppress(Exception):
                stream.cancel()
            return False
        except Exception as exc:
            log.warning("call %s: render request failed: %s", self._session, exc)
            return False
