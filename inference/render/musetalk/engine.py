"""The batched MuseTalk forward pass: UNet, VAE decode and GPU blend to uint8 frames.

One ``MuseTalkEngine`` per device; the ``RenderScheduler`` of that device calls
``run_batch`` from its single worker thread. Jobs of one batch may come from different
calls and different avatars. On CUDA it runs in fp16 (NCHW or channels-last), optionally
through ``torch.compile`` (one static graph at the batch cap, every batch padded to it, or
one graph with a dynamic batch), and sizes its largest batch from the free device memory
measured after warm-up.

``decode="mask"`` decodes only the latent rows from a few rows above the avatar's mask
downwards: the blend keeps the source pixels wherever the mask is zero, so rows above it
never reach the output. It is an approximation (the decoder's GroupNorm statistics and
its mid-block attention see fewer rows); ``scripts/bench_render.py`` measures it against
the full decode.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk.audio import AudioEncoder
from inference.render.musetalk.blend import blend_faces
from inference.render.musetalk.config import CROP_SIZE, LATENT_SCALE
from inference.render.musetalk.latents import AvatarLatents, encode_avatar
from inference.render.musetalk.model import MuseTalkModels, positional_encoding

__all__ = ["EngineOptions", "FrameJob", "MuseTalkEngine"]

LATENT_SIDE = CROP_SIZE // 8


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
    margin_rows: int = 2  # latent rows of context decoded above the mask
    max_batch: int = 64
    batch_multiple: int | None = None  # pad batches to a multiple (default: 8 on CUDA, 1 on CPU)
    channels_last: bool = False  # NHWC convolutions on CUDA (measured slower here: see bench)
    pinned_blocks: int = 6  # whole-batch pinned host buffers made ready at warm-up
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

    @property
    def dtype(self) -> torch.dtype:
        half = self.half if self.half is not None else self.device.startswith("cuda")
        return torch.float16 if half else torch.float32


class MuseTalkEngine:
    """Shared per-device renderer core. Not thread-safe: one worker thread calls it."""

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
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.options.compile:
            dyn = None if self.options.dynamic_batch else False
            unet = torch.compile(self._unet_eager, dynamic=dyn)
            decode = torch.compile(self._decode_eager, dynamic=dyn)
            decode_part = torch.compile(self._decode_eager, dynamic=dyn)
        self._unet, self._decode, self._decode_part = unet, decode, decode_part

    def configure(
        self, *, decode: Literal["full", "mask"] | None = None, max_batch: int | None = None
    ) -> None:
        """Change the decode mode or batch cap (between batches; the worker thread's call)."""
        changes: dict[str, object] = {}
        if decode is not None:
            changes["decode"] = decode
        if max_batch is not None:
            changes["max_batch"] = max_batch
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

    @torch.inference_mode()
    def predict_latents(self, jobs: Sequence[FrameJob]) -> torch.Tensor:
        """UNet output latents (B, 4, 32, 32) for ``jobs``."""
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
        return self._unet(self._prep(refs), audio)

    def decode_window(self, jobs: Sequence[FrameJob]) -> tuple[int, int, int]:
        """Latent rows from r0 down and columns [c0, c1) that ``decode="mask"`` decodes."""
        m = self.options.margin_rows
        boxes = [self.avatar(j.avatar).mask_box for j in jobs]
        r0 = max(0, min(b[0] for b in boxes) // 8 - m)
        c0 = max(0, min(b[1] for b in boxes) // 8 - m)
        c1 = min(LATENT_SIDE, -(-max(b[2] for b in boxes) // 8) + m)
        return r0, c0, c1

    @torch.inference_mode()
    def decode_faces(
        self, jobs: Sequence[FrameJob], latents: torch.Tensor, mode: str | None = None
    ) -> torch.Tensor:
        """Faces (B, 3, 256, 256) in [0, 1]; ``mode`` overrides the engine's decode option.

        In "mask" mode only the latent window around the avatars' masks is decoded; each
        face keeps the decoded pixels from its own mask box (aligned to the 8-pixel latent
        grid) and its reference crop elsewhere, where the blend never looks.
        """
        mode = mode or self.options.decode
        if mode == "full":
            return self._decode(self._prep(latents))
        if mode != "mask":
            raise ValueError(f"unknown decode mode {mode!r}")
        r0, c0, c1 = self.decode_window(jobs)
        if (r0, c0, c1) == (0, 0, LATENT_SIDE):
            return self._decode(self._prep(latents))
        window = latents[:, :, r0:, c0:c1].contiguous()
        part = self._decode_part(self._prep(window, spatial=True))
        faces = torch.stack([self.avatar(j.avatar).crops[j.index] for j in jobs])
        for i, j in enumerate(jobs):
            top, left, right = self.avatar(j.avatar).mask_box
            y, x0, x1 = top // 8 * 8, left // 8 * 8, -(-right // 8) * 8
            faces[i, :, y:, x0:x1] = part[i, :, y - r0 * 8 :, x0 - c0 * 8 : x1 - c0 * 8]
        return faces

    @torch.inference_mode()
    def blend(self, jobs: Sequence[FrameJob], faces: torch.Tensor) -> list[np.ndarray]:
        """Blend into full frames on the device; one device-to-host copy for the batch."""
        groups: dict[tuple[str, tuple[int, int] | None], list[int]] = {}
        for i, j in enumerate(jobs):
            groups.setdefault((j.avatar, j.out_size), []).append(i)
        flat: list[torch.Tensor] = []
        shapes: list[tuple[list[int], tuple[int, ...]]] = []
        for (name, size), members in groups.items():
            av = self.avatar(name)
            idx = torch.tensor([jobs[i].index for i in members], device=self.device)
            pos = torch.tensor(members, device=faces.device)
            out = blend_faces(
                av.frames[idx], faces[pos], av.masks[idx], av.boxes[idx], out_size=size
            )
            flat.append(out.reshape(-1))
            shapes.append((members, tuple(out.shape)))
        total = sum(int(t.numel()) for t in flat)
        pinned = self.device.type == "cuda"
        host_t = torch.empty(total, dtype=torch.uint8, pin_memory=pinned)
        offset = 0
        for t in flat:  # one device-to-host copy per group, into one (pinned) host buffer
            host_t[offset : offset + t.numel()].copy_(t, non_blocking=pinned)
            offset += int(t.numel())
        if pinned:
            torch.cuda.current_stream(self.device).synchronize()
        host = host_t.numpy()
        result: list[np.ndarray] = [np.empty(0, np.uint8)] * len(jobs)
        offset = 0
        for members, shape in shapes:
            n = int(np.prod(shape))
            block = host[offset : offset + n].reshape(shape)
            offset += n
            for k, i in enumerate(members):
                result[i] = block[k]
        return result

    def run_batch(self, jobs: Sequence[FrameJob]) -> list[np.ndarray]:
        """Render ``jobs`` to (h, w, 3) uint8 RGB frames, in order."""
        n = len(jobs)
        padded = self._padded_size(n)
        if padded > n:  # few distinct shapes: compiled graphs and cuDNN plans are all warm
            jobs = [*jobs, *([jobs[-1]] * (padded - n))]
        latents = self.predict_latents(jobs)
        faces = self.decode_faces(jobs, latents)
        return self.blend(jobs, faces)[:n]

    def _padded_size(self, n: int) -> int:
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
        self._warm_host()
        if self.options.compile and not self.options.dynamic_batch:
            self._warm([self.options.max_batch])  # the one static graph
            cap = self.max_batch_size()
            if cap < self.options.max_batch:  # free memory says less: recompile smaller
                self.shrink_batch(cap)
                self._warm([cap])
            return time.perf_counter() - t0
        self._warm(batch_sizes)
        if all_sizes and self.device.type == "cuda":
            cap = self.max_batch_size()
            sizes = sorted({self._padded_size(n) for n in range(1, cap + 1)} - set(batch_sizes))
            self._warm(sizes, measure=False)
        return time.perf_counter() - t0

    def _warm_host(self) -> None:
        """Audio encoder at its one chunk shape, and pinned host blocks for whole batches
        (kept by the caching host allocator), so the first calls pay no setup."""
        window = int(self.audio.window_samples // 4)
        self.audio.encode(torch.zeros(self.audio.chunk, window))
        if self.device.type != "cuda" or not self._avatars:
            return
        frame = max(int(np.prod(a.frames.shape[1:])) for a in self._avatars.values())
        size = frame * self.options.max_batch
        blocks = [
            torch.empty(size, dtype=torch.uint8, pin_memory=True)
            for _ in range(self.options.pinned_blocks)
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
        free, _total = torch.cuda.mem_get_info(self.device)
        cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        budget = (free + cached) * self.options.memory_fraction
        return max(1, min(cap, int(budget // self._per_frame_bytes)))
