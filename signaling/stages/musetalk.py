"""``renderer: musetalk``: per-call MuseTalk renderers from one process-wide service.

The service (weights, one engine and one RenderScheduler per GPU) is loaded when the server
starts and warmed up with the default avatar before ``/health/ready`` says ready, so no call
pays compilation. Calls are placed on the least loaded GPU and released when they end.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from inference.avatar.model import PreparedAvatar
from inference.render.base import Renderer
from inference.render.musetalk.config import MuseTalkArch
from inference.render.musetalk.renderer import RendererOptions
from inference.render.musetalk.service import MuseTalkService, ServiceOptions

__all__ = ["MuseTalkRendererFactory", "MusetalkSetupError", "cuda_devices", "musetalk_factory"]


class MusetalkSetupError(RuntimeError):
    """The MuseTalk renderer cannot start here; the message says what is missing."""


def cuda_devices() -> tuple[str, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))


@dataclass
class MuseTalkRendererFactory:
    service: MuseTalkService
    _avatars: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: bool = False

    def warm(self, avatar: PreparedAvatar) -> None:
        """Cache the avatar's latents and, the first time, compile and start the GPUs."""
        with self._lock:
            self._add(avatar)
            if not self._started:
                self.service.start(warmup=True)
                self._started = True

    def make(self, avatar: PreparedAvatar, *, session: str) -> Renderer:
        self.warm(avatar)
        return self.service.renderer(avatar, session=session)

    def release(self, session: str) -> None:
        self.service.release(session)

    @property
    def healthy(self) -> bool:
        """False once no GPU can render (every one's render work hung); ``/health/ready``
        then answers 503 ``render_stalled``."""
        return self.service.healthy

    def _add(self, avatar: PreparedAvatar) -> None:
        key = f"{avatar.name}:{avatar.source_hash}"
        if key not in self._avatars:
            self.service.add_avatar(avatar)
            self._avatars.add(key)


def musetalk_factory(
    weights_dir: Path | None,
    *,
    output_height: int | None = None,
    devices: tuple[str, ...] | None = None,
    compile: bool = True,
    arch: MuseTalkArch | None = None,
    decode: Literal["full", "mask"] = "full",
) -> MuseTalkRendererFactory:
    """Load MuseTalk v1.5 from the official weights folder onto every CUDA GPU (or ``devices``).

    Raises ``MusetalkSetupError`` without a weights folder or a GPU, and the loader's
    ``WeightsError`` (naming each missing or mismatched file) for a broken folder.
    """
    if weights_dir is None:
        raise MusetalkSetupError(
            "renderer 'musetalk' needs render.musetalk_dir (--musetalk-dir): a folder with "
            "musetalkV15/{musetalk.json,unet.pth}, sd-vae/{config.json,diffusion_pytorch_model.*}"
            " and whisper/{config.json,pytorch_model.bin,preprocessor_config.json}"
        )
    devices = devices or cuda_devices()
    if not devices:
        raise MusetalkSetupError(
            "renderer 'musetalk' needs a CUDA GPU and none is visible; use renderer 'warp' "
            "on CPU-only machines"
        )
    options = ServiceOptions(
        devices=devices,
        compile=compile,
        decode=decode,
        renderer=RendererOptions(output_height=output_height),
    )
    return MuseTalkRendererFactory(MuseTalkService.load(weights_dir, options, arch=arch))
