"""The batched MuseTalk forward pass: UNet, VAE decode and GPU blend to uint8 frames.

One ``MuseTalkEngine`` per device; the ``RenderScheduler`` of that device drives it from
its single worker thread. Jobs of one batch may come from different calls and different
avatars. On CUDA it runs in fp16 (NCHW or channels-last), optionally through
``torch.compile`` (one static graph at the batch cap, every batch padded to it, or one
graph with a dynamic batch; inductor settings per network from ``EngineOptions``: the
decoder's coordinate-descent tuning costs minutes of compilation, once per machine while
the inductor cache keeps the result), and sizes its largest batch from the free device
memory measured after warm-up.

With a static compiled graph the UNet and the decode are captured at warm-up as one CUDA
graph (``capture_graphs``) and replayed per batch: the same kernels, without launch gaps.

A batch is submitted (``submit_batch``: every kernel and the device-to-host copy of the
uint8 frames enqueued, nothing waited for; the few host tensors go to the device through
pinned memory, as a copy from pageable memory would wait for the batch's own kernels) and
finished later (``finish_batch``: wait for the copy, hand out the frames), so the
scheduler can queue batch k+1 while batch k's frames cross to the host on a separate copy
stream. ``run_batch`` does both at once. Audio
features run on their own CUDA stream (``audio_lane``), from the scheduler's audio thread,
so whisper overlaps with render batches instead of delaying them.

cuDNN keeps its autotuned convolution plans per thread (``torch.backends.cudnn.benchmark``
tunes every convolution shape again in each new thread, for seconds at batch 64), so
``warmup`` must run on the thread that renders and ``warmup_audio`` on the audio thread:
``RenderScheduler.start`` does both.

``decode="mask"`` decodes only the latent rows from a few rows above the avatar's mask
downwards: the blend keeps the source pixels wherever the mask is zero, so rows above it
never reach the output. It is an approximation (the decoder's GroupNorm statistics and
its mid-block attention see fewer rows); ``scripts/bench_render.py`` measures it against
the full decode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk.audio import AudioEncoder
from inference.render.musetalk.blend import blend_faces, to_device
from inference.render.musetalk.config import CROP_SIZE, LATENT_SCALE
from inference.render.musetalk.graphs import CapturedForward
from inference.render.musetalk.latents import AvatarLatents, encode_avatar
from inference.render.musetalk.model import MuseTalkModels, positional_encoding

__all__ = ["TUNED_INDUCTOR", "EngineOptions", "FrameJob", "MuseTalkEngine", "PendingBatch"]

LATENT_SIDE = CROP_SIZE // 8
_log = logging.getLogger(__name__)

# inductor settings known to help SD-style UNets and VAEs (EngineOptions.*_inductor); on
# an H100 they speed up the VAE decoder (about 11 %) and slow down the UNet
TUNED_INDUCTOR: Mapping[str, Any] = {
    "conv_1x1_as_mm": True,
    "coordinate_descent_tuning": True,
    "epilogue_fusion": False,
}


@dataclass(frozen=True, slots=True)
class FrameJob:
    """One frame to render: avatar key, source frame index, audio window, output size."""

    avatar: str
    index: int
    audio: torch.Tensor  # (tokens, dim): one window from AudioFeatureStream
    out_size: tuple[int, int] | None = None  # (width, height); None keeps the source size


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    """How the engine runs on its device."""

    device: str = "cpu"
    half: bool | None = None  # default: fp16 on CUDA, fp32 on the CPU
    compile: bool = False
    # one static graph at max_batch (every batch padded to it: the fastest kernels), or one
    # graph with a dynamic batch dimension (no padding beyond batch_multiple)
    dynamic_batch: bool = False
    decode: Literal["full", "mask"] = "full"
    # latent rows of context decoded above the mask (H100, random weights: 2 rows gave a
    # PSNR of 30.6 dB against the full decode, 4 rows 34.0 dB, 6 rows 38.0 dB)
    margin_rows: int = 4
    max_batch: int = 64
    batch_multiple: int | None = None  # pad batches to a multiple (default: 8 on CUDA, 1 on CPU)
    # compiled on an H100 at batch 64 (UNet / full decode ms): NCHW 33.1 / 100.2,
    # channels-last 32.5 / 102.9, channels-last with TUNED_INDUCTOR 36.6 / 89.3
    channels_last: bool = True  # NHWC convolutions on CUDA
    unet_inductor: Mapping[str, Any] = field(default_factory=dict)  # torch.compile options
    decode_inductor: Mapping[str, Any] = field(default_factory=lambda: dict(TUNED_INDUCTOR))
    # cuDNN algorithms timed per convolution shape at warm-up (torch.backends.cudnn
    # .benchmark_limit; 0: every one; None: PyTorch's default, 10); process-wide
    cudnn_benchmark_limit: int | None = None
    # replay the static compiled forward pass (UNet + decode) as one CUDA graph, captured
    # at warm-up (H100, batch 64, full decode: 513-519 frames/s, 501-505 without)
    cuda_graphs: bool = True
    copy_stream: bool = True  # frames cross to the host on their own CUDA stream
    audio_stream: bool = True  # audio features on their own CUDA stream (audio_lane)
    # pinned host frames made ready at warm-up (the caching host allocator keeps them): every
    # frame has its own, so a frame a call still holds keeps no whole batch pinned
    pinned_frames: int = 256
    memory_fraction: float = 0.85

    def __post_init__(self) -> None:
        if self.decode not in ("full", "mask"):
            raise ValueError(f"decode must be 'full' or 'mask', got {self.decode!r}")
        if not 0 <= self.margin_rows <= 16:
            raise ValueError("margin_rows must be in [0, 16]")
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if not 0.1 <= self.memory_fraction <= 0.95:
            raise ValueError("memory_fraction must be in [0.1, 0.95]")
        if self.half and not self.device.startswith("cuda"):
            raise ValueError("half precision needs a CUDA device")
        if self.cudnn_benchmark_limit is not None and self.cudnn_benchmark_limit < 0:
            raise ValueError("cudnn_benchmark_limit must be >= 0")

    @property
    def dtype(self) -> torch.dtype:
        half = self.half if self.half is not None else self.device.startswith("cuda")
        return torch.float16 if half else torch.float32


@dataclass(slots=True)
class PendingBatch:
    """A submitted batch: its kernels and its frames' copy to the host are enqueued."""

    jobs: Sequence[FrameJob]  # the padded jobs: keep the audio windows alive until done
    count: int  # real jobs (the rest is padding, never copied)
    frames: list[torch.Tensor]  # (h, w, 3) uint8 host frames (pinned on CUDA), job order
    computed: torch.cuda.Event | None = None  # the device finished computing the frames
    copied: torch.cuda.Event | None = None  # the frames are on the host
    started: torch.cuda.Event | None = None  # the device began the batch

    def device_seconds(self) -> float:
        """Device time from the batch's first kernel to its frames computed (0 on the CPU);
        read it once the batch is finished."""
        if self.started is None or self.computed is None:
            return 0.0
        return float(self.started.elapsed_time(self.computed)) / 1000.0

    def wait_computed(self) -> None:
        """Block until the device has computed the frames (their copy may still run)."""
        if self.computed is not None:
            self.computed.synchronize()


def _filled(frames: list[torch.Tensor | None]) -> list[torch.Tensor]:
    out = [f for f in frames if f is not None]
    if len(out) != len(frames):
        raise RuntimeError("a frame of the batch was not produced")
    return out


class MuseTalkEngine:
    """Shared per-device renderer core. Not thread-safe: one worker thread renders, and
    at most one other thread computes audio features inside ``audio_lane``."""

    def __init__(self, models: MuseTalkModels, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self.device = torch.device(self.options.device)
        self.models = models.to(
            self.device, self.options.dtype, channels_last=self.options.channels_last
        )
        self.dtype = self.options.dtype
        self.audio = AudioEncoder(self.models, device=self.device)
        tokens = 10 * models.arch.audio_layers
        self._pe = positional_encoding(tokens, models.arch.audio_dim).to(self.device, self.dtype)
        self._timestep = torch.zeros((), device=self.device, dtype=torch.long)
        self._avatars: dict[str, AvatarLatents] = {}
        self._per_frame_bytes: int | None = None
        unet: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = self._unet_eager
        decode: Callable[[torch.Tensor], torch.Tensor] = self._decode_eager
        decode_part: Callable[[torch.Tensor], torch.Tensor] = self._decode_eager
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
            if self.options.cudnn_benchmark_limit is not None:
                torch.backends.cudnn.benchmark_limit = self.options.cudnn_benchmark_limit
        self._copy_stream = (
            torch.cuda.Stream(self.device) if cuda and self.options.copy_stream else None
        )
        # high priority: a sentence's features are small and wanted now, so their kernels go
        # ahead of a render batch's queued ones
        self._audio_stream = (
            torch.cuda.Stream(self.device, priority=-1)
            if cuda and self.options.audio_stream
            else None
        )
        if self.options.compile:
            dyn = None if self.options.dynamic_batch else False
            u_opts = dict(self.options.unet_inductor) or None
            d_opts = dict(self.options.decode_inductor) or None
            unet = torch.compile(self._unet_eager, dynamic=dyn, options=u_opts)
            decode = torch.compile(self._decode_eager, dynamic=dyn, options=d_opts)
            decode_part = torch.compile(self._decode_eager, dynamic=dyn, options=d_opts)
        self._unet, self._decode, self._decode_part = unet, decode, decode_part
        self._graphs: dict[tuple[int, tuple[int, int, int] | None], CapturedForward] = {}

    def configure(
        self,
        *,
        decode: Literal["full", "mask"] | None = None,
        max_batch: int | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        """Change the decode mode, batch cap or graph replay (between batches; the worker
        thread's call). A new mode or size has no captured graph until ``warmup`` or
        ``capture_graphs``; a smaller cap drops the graphs (and their memory)."""
        changes: dict[str, object] = {}
        if decode is not None:
            changes["decode"] = decode
        if max_batch is not None:
            changes["max_batch"] = max_batch
            if max_batch < self.options.max_batch:
                self._graphs.clear()
        if cuda_graphs is not None:
            changes["cuda_graphs"] = cuda_graphs
        self.options = dataclasses.replace(self.options, **changes)  # type: ignore[arg-type]

    # ---- avatars -------------------------------------------------------------------------
    def add_avatar(self, avatar: PreparedAvatar) -> AvatarLatents:
        """Encode and keep ``avatar`` (once per name); return its device tensors."""
        cached = self._avatars.get(avatar.name)
        if cached is None:
            cached = encode_avatar(self.models, avatar)
            self._avatars[avatar.name] = cached
        return cached

    def avatar(self, name: str) -> AvatarLatents:
        try:
            return self._avatars[name]
        except KeyError:
            raise KeyError(f"avatar {name!r} was not added to this engine") from None

    # ---- the forward pass ----------------------------------------------------------------
    def _unet_eager(self, latents: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        out = self.models.unet(latents, self._timestep, encoder_hidden_states=audio + self._pe)
        return out.sample

    def _decode_eager(self, latents: torch.Tensor) -> torch.Tensor:
        image = self.models.vae.decode(latents / LATENT_SCALE).sample
        return (image * 0.5 + 0.5).clamp(0.0, 1.0)

    def _prep(self, x: torch.Tensor, *, spatial: bool = False) -> torch.Tensor:
        if self.device.type == "cuda" and self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.options.compile and self.options.dynamic_batch:
            torch._dynamo.maybe_mark_dynamic(x, 0)
            if spatial:
                torch._dynamo.maybe_mark_dynamic(x, 2)
                torch._dynamo.maybe_mark_dynamic(x, 3)
        return x

    def _inputs(self, jobs: Sequence[FrameJob]) -> tuple[torch.Tensor, torch.Tensor]:
        """The UNet's inputs for ``jobs``: reference latents and audio windows."""
        if not jobs:
            raise ValueError("empty batch")
        refs = torch.stack([self.avatar(j.avatar).unet_ref[j.index] for j in jobs])
        audio = torch.stack([j.audio for j in jobs]).to(self.device, self.dtype)
        if audio.shape[1:] != self._pe.shape:
            raise ValueError(
                f"audio windows must be {tuple(self._pe.shape)}, got {tuple(audio.shape[1:])}"
            )
        if self.options.compile and self.options.dynamic_batch:
            torch._dynamo.maybe_mark_dynamic(audio, 0)
        return self._prep(refs), audio

    @torch.inference_mode()
    def predict_latents(self, jobs: Sequence[FrameJob]) -> torch.Tensor:
        """UNet output latents (B, 4, 32, 32) for ``jobs``."""
        return self._unet(*self._inputs(jobs))

    def decode_window(self, jobs: Sequence[FrameJob]) -> tuple[int, int, int]:
        """Latent rows from r0 down and columns [c0, c1) that ``decode="mask"`` decodes."""
        m = self.options.margin_rows
        boxes = [self.avatar(j.avatar).mask_box for j in jobs]
        r0 = max(0, min(b[0] for b in boxes) // 8 - m)
        c0 = max(0, min(b[1] for b in boxes) // 8 - m)
        c1 = min(LATENT_SIDE, -(-max(b[2] for b in boxes) // 8) + m)
        return r0, c0, c1

    def _window(self, jobs: Sequence[FrameJob], mode: str) -> tuple[int, int, int] | None:
        """The latent window that ``mode`` decodes; None for the whole latent."""
        if mode == "full":
            return None
        if mode != "mask":
            raise ValueError(f"unknown decode mode {mode!r}")
        window = self.decode_window(jobs)
        return None if window == (0, 0, LATENT_SIDE) else window

    def _decode_latents(
        self, latents: torch.Tensor, window: tuple[int, int, int] | None
    ) -> torch.Tensor:
        if window is None:
            return self._decode(self._prep(latents))
        r0, c0, c1 = window
        part = latents[:, :, r0:, c0:c1].contiguous()
        return self._decode_part(self._prep(part, spatial=True))

    def _forward(
        self, refs: torch.Tensor, audio: torch.Tensor, window: tuple[int, int, int] | None
    ) -> torch.Tensor:
        return self._decode_latents(self._unet(refs, audio), window)

    def _assemble(
        self, jobs: Sequence[FrameJob], part: torch.Tensor, window: tuple[int, int, int] | None
    ) -> torch.Tensor:
        """Whole faces from a window decode: each face keeps the decoded pixels of its own
        mask box (aligned to the 8-pixel latent grid), its reference crop elsewhere."""
        if window is None:
            return part
        r0, c0, _c1 = window
        faces = torch.stack([self.avatar(j.avatar).crops[j.index] for j in jobs])
        for i, j in enumerate(jobs):
            top, left, right = self.avatar(j.avatar).mask_box
            y, x0, x1 = top // 8 * 8, left // 8 * 8, -(-right // 8) * 8
            faces[i, :, y:, x0:x1] = part[i, :, y - r0 * 8 :, x0 - c0 * 8 : x1 - c0 * 8]
        return faces

    @torch.inference_mode()
    def decode_faces(
        self, jobs: Sequence[FrameJob], latents: torch.Tensor, mode: str | None = None
    ) -> torch.Tensor:
        """Faces (B, 3, 256, 256) in [0, 1]; ``mode`` overrides the engine's decode option.

        In "mask" mode only the latent window around the avatars' masks is decoded; each
        face keeps the decoded pixels from its own mask box (aligned to the 8-pixel latent
        grid) and its reference crop elsewhere, where the blend never looks.
        """
        window = self._window(jobs, mode or self.options.decode)
        return self._assemble(jobs, self._decode_latents(latents, window), window)

    @torch.inference_mode()
    def faces(self, jobs: Sequence[FrameJob]) -> torch.Tensor:
        """Faces for ``jobs`` as a batch renders them: through the captured CUDA graph of
        this batch size and decode window where there is one, else the compiled path.
        The result may be the graph's static output, valid until the next batch."""
        refs, audio = self._inputs(jobs)
        window = self._window(jobs, self.options.decode)
        graph = self._graphs.get((len(jobs), window)) if self.options.cuda_graphs else None
        part = graph(refs, audio) if graph is not None else self._forward(refs, audio, window)
        return self._assemble(jobs, part, window)

    def capture_graphs(self) -> bool:
        """Capture the forward pass (UNet and decode in the current mode, every avatar in
        the batch) at the static batch size as one CUDA graph; call on the thread that ran
        the warm-up batches (torch.compile and cuDNN's tuning done). Only for a static
        compiled graph on CUDA with ``cuda_graphs``; False when not captured."""
        o = self.options
        if not (self.device.type == "cuda" and o.compile and not o.dynamic_batch):
            return False
        if not o.cuda_graphs or not self._avatars:
            return False
        audio = torch.zeros(self._pe.shape, device=self.device, dtype=self.dtype)
        names = list(self._avatars)
        jobs = [FrameJob(names[i % len(names)], 0, audio) for i in range(o.max_batch)]
        window = self._window(jobs, o.decode)
        key = (o.max_batch, window)
        if key in self._graphs:
            return True
        with torch.inference_mode():
            refs, audio_b = self._inputs(jobs)
            try:
                self._graphs[key] = CapturedForward(
                    functools.partial(self._forward, window=window), (refs, audio_b)
                )
            except Exception:  # the compiled path serves; slower, never wrong
                _log.exception("capturing the forward pass as a CUDA graph failed")
                return False
        return True

    @torch.inference_mode()
    def blend(self, jobs: Sequence[FrameJob], faces: torch.Tensor) -> list[np.ndarray]:
        """Blend into full frames on the device and bring them to the host as uint8."""
        return self.finish_batch(self._copy_out(jobs, len(jobs), faces))

    def _blend_device(
        self, jobs: Sequence[FrameJob], faces: torch.Tensor
    ) -> list[tuple[list[int], torch.Tensor]]:
        """uint8 frames on the device: (job positions, (B, h, w, 3)) per (avatar, size)."""
        groups: dict[tuple[str, tuple[int, int] | None], list[int]] = {}
        for i, j in enumerate(jobs):
            groups.setdefault((j.avatar, j.out_size), []).append(i)
        out: list[tuple[list[int], torch.Tensor]] = []
        for (name, size), members in groups.items():
            av = self.avatar(name)
            idx_host = torch.tensor([jobs[i].index for i in members])
            idx = to_device(idx_host, self.device)
            pos = to_device(torch.tensor(members), faces.device)
            frames = blend_faces(
                av.frames[idx], faces[pos], av.masks[idx], av.boxes[idx_host], out_size=size
            )
            out.append((members, frames))
        return out

    def _copy_out(self, jobs: Sequence[FrameJob], count: int, faces: torch.Tensor) -> PendingBatch:
        """Blend, then enqueue each real frame's copy into its own (pinned) host frame."""
        groups = self._blend_device(jobs, faces)
        host: list[torch.Tensor | None] = [None] * count
        if self.device.type != "cuda":
            for members, frames in groups:
                for k, i in enumerate(members):
                    if i < count:
                        host[i] = frames[k]
            return PendingBatch(jobs, count, _filled(host))
        compute = torch.cuda.current_stream(self.device)
        computed = torch.cuda.Event(blocking=True, enable_timing=True)
        computed.record(compute)
        copy = self._copy_stream or compute
        with torch.cuda.stream(copy):
            if copy is not compute:
                copy.wait_event(computed)
            for members, frames in groups:
                for k, i in enumerate(members):
                    if i < count:
                        h = torch.empty(frames.shape[1:], dtype=torch.uint8, pin_memory=True)
                        host[i] = h.copy_(frames[k], non_blocking=True)
                if copy is not compute:  # the compute stream may not reuse it before the copy
                    frames.record_stream(copy)
            copied = torch.cuda.Event(blocking=True)
            copied.record(copy)
        return PendingBatch(jobs, count, _filled(host), computed, copied)

    def submit_batch(self, jobs: Sequence[FrameJob]) -> PendingBatch:
        """Enqueue the batch (padded to a warm size) and its copy to the host; no waiting
        on the device, so the next batch can be queued behind it."""
        n = len(jobs)
        padded = self.padded_size(n)
        if padded > n:  # few distinct shapes: compiled graphs and cuDNN plans are all warm
            jobs = [*jobs, *([jobs[-1]] * (padded - n))]
        started = None
        if self.device.type == "cuda":
            started = torch.cuda.Event(enable_timing=True)
            started.record(torch.cuda.current_stream(self.device))
        faces = self.faces(jobs)
        with torch.inference_mode():
            pending = self._copy_out(jobs, n, faces)
        pending.started = started
        return pending

    def finish_batch(self, pending: PendingBatch) -> list[np.ndarray]:
        """Wait for ``pending``'s frames and return them, (h, w, 3) uint8 RGB, in order."""
        if pending.copied is not None:
            pending.copied.synchronize()
        return [f.numpy() for f in pending.frames]

    def run_batch(self, jobs: Sequence[FrameJob]) -> list[np.ndarray]:
        """Render ``jobs`` to (h, w, 3) uint8 RGB frames, in order."""
        return self.finish_batch(self.submit_batch(jobs))

    # ---- audio ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def audio_lane(self) -> Iterator[None]:
        """Audio-feature work for the scheduler's audio thread: on CUDA on its own stream,
        synchronized before the results leave, so the render stream that reads them later
        needs no event. (The batch that reads them keeps them alive until it finishes.)"""
        if self._audio_stream is None:
            yield
            return
        try:
            with torch.cuda.stream(self._audio_stream):
                yield
        finally:
            self._audio_stream.synchronize()

    def warmup_audio(self) -> None:
        """Run the audio encoder at every chunk shape (on the calling thread's lane)."""
        window = int(self.audio.window_samples // 4)
        with self.audio_lane():
            for size in self.audio.chunk_shapes():
                self.audio.encode(torch.zeros(size, window))

    def padded_size(self, n: int) -> int:
        """The batch size the device runs for ``n`` jobs (the scheduler measures capacity
        in these: a static graph costs the same for any ``n``)."""
        if self.options.compile and not self.options.dynamic_batch:
            if n > self.options.max_batch:
                raise ValueError(f"batch of {n} exceeds max_batch {self.options.max_batch}")
            return self.options.max_batch
        m = self.options.batch_multiple
        if m is None:
            m = 8 if self.device.type == "cuda" else 1
        size = -(-n // m) * m
        return max(size, 2) if self.options.compile else size

    # ---- capacity ------------------------------------------------------------------------
    def warmup(self, batch_sizes: Sequence[int] = (8, 2), *, all_sizes: bool = True) -> float:
        """Compile and run batches of every avatar, measure memory per frame, then (with
        ``all_sizes``) run every padded batch size up to the memory-based cap, so no call
        meets a compilation or a cuDNN autotuning. Returns seconds spent."""
        if not self._avatars:
            raise RuntimeError("add an avatar before warm-up")
        t0 = time.perf_counter()
        self.warmup_audio()
        self._warm_host()
        if self.options.compile and not self.options.dynamic_batch:
            self._warm([self.options.max_batch])  # the one static graph
            cap = self.max_batch_size()
            if cap < self.options.max_batch:  # free memory says less: recompile smaller
                self.shrink_batch(cap)
                self._warm([cap])
            self.capture_graphs()
            self._warm_pipeline(self.options.max_batch)
            return time.perf_counter() - t0
        self._warm(batch_sizes)
        if all_sizes and self.device.type == "cuda":
            cap = self.max_batch_size()
            sizes = sorted({self.padded_size(n) for n in range(1, cap + 1)} - set(batch_sizes))
            self._warm(sizes, measure=False)
            self._warm_pipeline(self.padded_size(cap))
        return time.perf_counter() - t0

    def _warm_pipeline(self, size: int, batches: int = 3) -> None:
        """Batches back to back as the scheduler runs them (the next one submitted once the
        last is computed, whose frames are finished meanwhile), so the device allocator
        and the pinned host frames already hold what steady serving needs."""
        if self.device.type != "cuda":
            return
        audio = torch.randn(self._pe.shape, device=self.device, dtype=self.dtype)
        names = list(self._avatars)
        jobs = [FrameJob(names[i % len(names)], 0, audio) for i in range(size)]
        self.run_pipelined([jobs] * batches)

    def run_pipelined(self, batches: Iterable[Sequence[FrameJob]]) -> None:
        """Render ``batches`` back to back as the scheduler does: batch k+1 is submitted
        once batch k is computed, and k's frames are finished while k+1 runs."""
        prev: PendingBatch | None = None
        for jobs in batches:
            if prev is not None:
                prev.wait_computed()
            cur = self.submit_batch(jobs)
            if prev is not None:
                self.finish_batch(prev)
            prev = cur
        if prev is not None:
            self.finish_batch(prev)

    def _warm_host(self) -> None:
        """Pinned host frames (kept by the caching host allocator), so the first calls pay
        no page pinning."""
        if self.device.type != "cuda" or not self._avatars:
            return
        shapes = {tuple(a.frames.shape[1:]) for a in self._avatars.values()}
        blocks = [
            torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            for shape in shapes
            for _ in range(self.options.pinned_frames)
        ]
        del blocks

    def _warm(self, batch_sizes: Sequence[int], *, measure: bool = True) -> None:
        audio = torch.randn(self._pe.shape, device=self.device, dtype=self.dtype)
        names = list(self._avatars)
        for b in batch_sizes:
            size = max(1, min(b, self.options.max_batch))
            jobs = [FrameJob(names[i % len(names)], 0, audio) for i in range(size)]
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
                base = torch.cuda.memory_allocated(self.device)
            self.run_batch(jobs)
            if self.device.type == "cuda" and measure:
                peak = torch.cuda.max_memory_allocated(self.device) - base
                per = int(peak / len(jobs))
                self._per_frame_bytes = max(self._per_frame_bytes or 0, per)

    def shrink_batch(self, size: int) -> None:
        """Lower the batch cap (the scheduler calls this after out-of-memory); a static
        compiled graph is rebuilt for the new size on the next batch."""
        self.configure(max_batch=max(1, min(size, self.options.max_batch)))

    def max_batch_size(self) -> int:
        """Largest batch the free device memory allows, capped by ``options.max_batch``."""
        cap = self.options.max_batch
        if self.device.type != "cuda" or not self._per_frame_bytes:
            return cap
        if any(size == cap for size, _ in self._graphs):  # its memory is held already
            return cap
        free, _total = torch.cuda.mem_get_info(self.device)
        cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        budget = (free + cached) * self.options.memory_fraction
        return max(1, min(cap, int(budget // self._per_frame_bytes)))
