"""The render replica's work, without Ray: one device's ``MuseTalkService`` (one engine, one
``RenderScheduler``, so frames of every call on the replica share batches), one
``MuseTalkRenderer`` per call, patches cut from the rendered frames, and the frame budget
the replica reports.

``inference.cluster.app`` wraps a ``ReplicaCore`` in a Ray Serve deployment; tests and the
benchmark can also drive one directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from inference.avatar.model import PreparedAvatar
from inference.cluster.wire import (
    Patch,
    RenderRequest,
    ReplicaReport,
    cycle_index,
    encode_patch,
    patch_boxes,
)
from inference.render.base import frame_count
from inference.render.musetalk import (
    MuseTalkModels,
    MuseTalkRenderer,
    MuseTalkService,
    RendererOptions,
    ServiceOptions,
    build_models,
    load_musetalk,
    official_arch,
    tiny_arch,
)
from inference.render.scheduler import SchedulerOptions

__all__ = ["WEIGHTS_ENV", "ReplicaCore", "ReplicaOptions", "synthetic_avatar"]

WEIGHTS_ENV = "AVATAR_RTC_MUSETALK_DIR"  # the weights folder on a GPU node

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaOptions:
    """How a replica builds its engine and counts its frame budget."""

    weights_dir: str | None = None  # the official weights folder (or $AVATAR_RTC_MUSETALK_DIR)
    random_weights: bool = False  # no weights: random ones of ``arch`` (benchmarks, tests)
    arch: Literal["official", "tiny"] = "official"  # the architecture of random weights
    device: str = "auto"  # "auto": cuda:0 where CUDA is visible, else the CPU
    compile: bool = True  # torch.compile on CUDA (ignored on the CPU)
    decode: Literal["full", "mask"] = "full"
    max_batch: int = 64
    fps: int = 25
    start_latency_s: float = 0.15  # first frame due this long after its audio arrives (the
    # media node shows it 0.3 s after, and holds the last frame from 0.2 s: 50 ms for transit)
    yield_frames: int = 2  # frames per streamed message
    # frames/s the replica can render; None measures it (a timed batch at start, then the
    # scheduler's estimate from its batches). Tests fix it to make capacity deterministic.
    capacity_fps: float | None = None
    budget: float = 0.9  # share of the capacity the calls may commit
    talk_share: float = 0.4  # a call commits at least this share of its frame rate
    warm_size: tuple[int, int] = (256, 256)  # (width, height) of the warm-up avatar
    stall_floor_s: float = 5.0  # device work running longer is a hang (the watchdog)
    call_idle_s: float = 600.0  # a call without a request for this long is forgotten
    torch_threads: int | None = None  # CPU threads of torch in the replica (None: torch's)

    def __post_init__(self) -> None:
        if self.capacity_fps is not None and self.capacity_fps <= 0:
            raise ValueError("capacity_fps must be positive")
        if not 0 < self.budget <= 1 or not 0 < self.talk_share <= 1:
            raise ValueError("budget and talk_share must be in (0, 1]")
        if self.fps <= 0 or self.max_batch < 1 or min(self.stall_floor_s, self.call_idle_s) <= 0:
            raise ValueError("fps, max_batch, stall_floor_s and call_idle_s must be positive")

    @classmethod
    def from_mapping(cls, raw: dict[str, object]) -> ReplicaOptions:
        """Options from a Serve config's ``args`` (unknown keys are an error)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown replica options {unknown}; known: {sorted(known)}")
        values = dict(raw)
        if "warm_size" in values:
            size: Any = values["warm_size"]
            values["warm_size"] = (int(size[0]), int(size[1]))
        return cls(**values)  # type: ignore[arg-type]


def _models(o: ReplicaOptions) -> MuseTalkModels:
    """The official weights (``WeightsError`` names what is wrong), or random ones when the
    options say so; neither is a clear error, never a silent fallback."""
    weights = o.weights_dir or os.environ.get(WEIGHTS_ENV)
    if weights:
        return load_musetalk(Path(weights))
    if o.random_weights:
        return build_models(tiny_arch() if o.arch == "tiny" else official_arch(), seed=0)
    raise ValueError(
        f"the render replica needs MuseTalk weights: set weights_dir (or ${WEIGHTS_ENV}) to "
        "the official folder (musetalkV15/, sd-vae/, whisper/), or random_weights: true "
        "for benchmarks"
    )


def synthetic_avatar(width: int, height: int, *, name: str = "warmup") -> PreparedAvatar:
    """A smooth random one-frame avatar with a centred face box and a lower-face mask: what a
    replica warms up (compiles) with before any call's avatar arrives."""
    import cv2

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (1, max(1, height // 16), max(1, width // 16), 3), np.uint8)
    frames = np.stack([cv2.resize(small[0], (width, height), interpolation=cv2.INTER_CUBIC)])
    side = min(width, height) * 3 // 4
    cx, cy = width // 2, height // 2
    box = [cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side]
    mask = np.zeros((1, 256, 256), np.float32)
    mask[:, 140:236, 56:200] = 1.0
    return PreparedAvatar(
        name=name,
        frames=frames,
        fps=25.0,
        crop_boxes=np.array([box], np.int32),
        landmarks=np.zeros((1, 468, 2), np.float32),
        masks=mask,
        mouth_boxes=np.zeros((1, 4), np.float32),
        source_hash="synthetic",
    )


@dataclass(slots=True)
class _Call:
    renderer: MuseTalkRenderer
    avatar: str
    render_fps: int
    frame_no: int = 0  # the renderer's own frame counter, mirrored (source frame choice)
    talking_until: float = 0.0  # replica clock: when the frames sent so far end playing
    last_request: float = 0.0
    patch_bytes: int = 0


@dataclass(slots=True)
class _Totals:
    patches: int = 0
    patch_bytes: int = 0
    calls_opened: int = 0
    avatars_fetched: int = 0


class ReplicaCore:
    """One device's MuseTalk service and the calls placed on it."""

    def __init__(
        self,
        options: ReplicaOptions,
        *,
        name: str = "replica",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = o = options
        self.name = name
        self._clock = clock
        if o.torch_threads is not None:
            torch.set_num_threads(o.torch_threads)
        device = o.device
        if device == "auto":
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        models = _models(o)
        self.service = MuseTalkService(
            models,
            ServiceOptions(
                devices=(device,),
                compile=o.compile,
                decode=o.decode,
                max_batch=o.max_batch,
                scheduler=SchedulerOptions(max_batch=o.max_batch, stall_floor_s=o.stall_floor_s),
                renderer=RendererOptions(
                    start_latency_s=o.start_latency_s, yield_frames=o.yield_frames
                ),
            ),
        )
        self.device = device
        self._calls: dict[str, _Call] = {}
        self._avatars: dict[str, PreparedAvatar] = {}
        self._boxes: dict[str, np.ndarray] = {}
        self.totals = _Totals()
        warm = synthetic_avatar(*o.warm_size)
        self._add_avatar(warm)
        t0 = time.perf_counter()
        self.service.start(warmup=True)
        self.warmup_s = time.perf_counter() - t0
        self._startup_fps = o.capacity_fps or self._time_a_batch(warm.name)
        log.info(
            "render replica %s on %s ready in %.1f s, about %.0f frames/s",
            name,
            device,
            self.warmup_s,
            self._startup_fps,
        )

    # ---- avatars -------------------------------------------------------------------------
    def has_avatar(self, name: str) -> bool:
        return name in self._avatars

    def add_avatar(self, avatar: PreparedAvatar, name: str) -> None:
        """Keep ``avatar`` under its cluster ``name`` (latents on the device; once)."""
        if name not in self._avatars:
            self._add_avatar(dataclasses.replace(avatar, name=name))
            self.totals.avatars_fetched += 1

    def _add_avatar(self, avatar: PreparedAvatar) -> None:
        self.service.add_avatar(avatar)
        self._avatars[avatar.name] = avatar
        self._boxes[avatar.name] = patch_boxes(avatar)

    def _time_a_batch(self, avatar: str) -> float:
        """Frames/s of one full batch on the worker thread (the capacity before any call's
        batches have measured it)."""
        from inference.render.musetalk import FrameJob

        engine = self.service.engines[0]
        scheduler = self.service.schedulers[0]
        arch = engine.models.arch
        audio = torch.zeros(10 * arch.audio_layers, arch.audio_dim)  # one frame's window
        jobs = [FrameJob(avatar, 0, audio) for _ in range(self.options.max_batch)]
        t0 = time.perf_counter()
        scheduler.call(engine.run_batch, jobs).result()
        return self.options.max_batch / max(1e-6, time.perf_counter() - t0)

    # ---- calls ---------------------------------------------------------------------------
    def open(self, call: str, avatar: str, render_fps: int | None = None) -> None:
        """Place ``call`` here before its first piece (its avatar must have been added)."""
        audio = np.zeros(0, np.int16)
        fps = render_fps or self.options.fps
        state = self._call(
            RenderRequest(call=call, avatar=avatar, avatar_ref=None, audio=audio, render_fps=fps)
        )
        state.last_request = self._clock()

    def _call(self, req: RenderRequest) -> _Call:
        call = self._calls.get(req.call)
        if call is not None and call.avatar != req.avatar:
            self.release(req.call)
            call = None
        if call is None:
            avatar = self._avatars[req.avatar]
            renderer = self.service.renderer(avatar, session=req.call)
            call = _Call(renderer, req.avatar, renderer.render_fps)
            self._calls[req.call] = call
            self.totals.calls_opened += 1
        if req.render_fps != call.render_fps:
            call.renderer.set_render_fps(req.render_fps)
            call.render_fps = call.renderer.render_fps
        return call

    async def render(self, req: RenderRequest) -> AsyncIterator[list[Patch]]:
        """Render one piece of a call's audio; patches in order, a few frames at a time.
        The avatar must have been added (``has_avatar``)."""
        if not self.service.healthy:
            raise RuntimeError(f"replica {self.name}: {self.service.health()}")
        call = self._call(req)
        call.last_request = self._clock()
        fps = self.options.fps
        n = frame_count(len(req.audio), fps)
        base = call.frame_no
        call.frame_no += n
        start = max(self._clock() + self.options.start_latency_s, call.talking_until)
        call.talking_until = start + n / fps
        avatar = self._avatars[req.avatar]
        boxes = self._boxes[req.avatar]
        done = 0
        async for frames in call.renderer.render(req.audio):
            first = done
            done += len(frames)
            patches = await asyncio.to_thread(
                self._encode, frames, first, base, avatar.num_frames, boxes, req
            )
            call.patch_bytes += sum(p.nbytes for p in patches)
            self.totals.patches += len(patches)
            self.totals.patch_bytes += sum(p.nbytes for p in patches)
            yield patches

    @staticmethod
    def _encode(
        frames: list[np.ndarray],
        first: int,
        base: int,
        num_frames: int,
        boxes: np.ndarray,
        req: RenderRequest,
    ) -> list[Patch]:
        out = []
        for k, frame in enumerate(frames):
            i = first + k
            src = cycle_index(base + i, num_frames)
            out.append(
                encode_patch(
                    frame,
                    boxes[src],
                    frame_no=i,
                    source=src,
                    encoding=req.encoding,
                    quality=req.quality,
                )
            )
        return out

    def release(self, call: str) -> bool:
        """Forget ``call`` (its scheduler session and audio context); False if unknown."""
        state = self._calls.pop(call, None)
        if state is None:
            return False
        state.renderer.close()
        self.service.release(call)
        return True

    @property
    def calls(self) -> list[str]:
        return list(self._calls)

    # ---- frame budget --------------------------------------------------------------------
    def capacity_fps(self) -> float:
        """Frames/s this replica renders: fixed by the options, else the scheduler's
        estimate from its batches, else the timed batch at start."""
        if self.options.capacity_fps is not None:
            return self.options.capacity_fps
        measured = self.service.schedulers[0].stats.capacity_fps
        return float(measured) if measured else self._startup_fps

    def report(self) -> ReplicaReport:
        """The frame budget now: each call commits the larger of what it asks for now
        (its render rate while its frames are due) and its talk share of that rate."""
        o = self.options
        now = self._clock()
        for name, gone in list(self._calls.items()):
            if now - max(gone.last_request, gone.talking_until) > o.call_idle_s:
                log.info("call %s idle for %.0f s: forgotten", name, o.call_idle_s)
                self.release(name)
        committed = demand = 0.0
        for call in self._calls.values():
            active = call.talking_until > now
            want = float(call.render_fps) if active else 0.0
            demand += want
            committed += max(want, o.talk_share * call.render_fps)
        capacity = self.capacity_fps()
        return ReplicaReport(
            replica=self.name,
            calls=len(self._calls),
            capacity_fps=capacity,
            committed_fps=committed,
            headroom_fps=o.budget * capacity - committed,
            demand_fps=demand,
            healthy=self.service.healthy,
        )

    def stats(self) -> dict[str, float]:
        """The scheduler's counters (frames rendered, repeated by decimation, dropped late)."""
        st = self.service.schedulers[0].stats
        return {
            "frames": st.frames,
            "batches": st.batches,
            "repeated": st.repeated,
            "dropped_late": st.dropped_late,
            "capacity_fps": self.capacity_fps(),
            "patches": self.totals.patches,
            "patch_bytes": self.totals.patch_bytes,
            "avatars_fetched": self.totals.avatars_fetched,
        }

    def close(self) -> None:
        for call in list(self._calls):
            self.release(call)
        self.service.close()
