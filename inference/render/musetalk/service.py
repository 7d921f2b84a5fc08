"""``MuseTalkService``: the process-wide MuseTalk renderer over any number of devices.

Loads the official weights once, keeps one engine and one ``RenderScheduler`` per device
(warmed up, so no call pays compilation), and hands out cheap per-call renderers placed on
the least loaded device.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk.config import MuseTalkArch
from inference.render.musetalk.engine import EngineOptions, MuseTalkEngine
from inference.render.musetalk.model import MuseTalkModels
from inference.render.musetalk.renderer import MuseTalkRenderer, RendererOptions
from inference.render.musetalk.weights import load_musetalk
from inference.render.scheduler import RenderScheduler, SchedulerOptions
from inference.render.scheduler_pool import SchedulerPool

__all__ = ["MuseTalkService", "ServiceOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceOptions:
    """Devices and per-device engine settings."""

    devices: tuple[str, ...] = ("cuda:0",)
    compile: bool = True
    decode: Literal["full", "mask"] = "full"
    max_batch: int = 64
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    renderer: RendererOptions = field(default_factory=RendererOptions)

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("at least one device")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"devices repeat: {self.devices}")

    def engine_options(self, device: str) -> EngineOptions:
        on_gpu = device.startswith("cuda")
        return EngineOptions(
            device=device,
            compile=self.compile and on_gpu,
            decode=self.decode,
            max_batch=self.max_batch,
        )


class MuseTalkService:
    """Engines and schedulers of every device; ``renderer`` gives per-call views."""

    def __init__(self, models: MuseTalkModels, options: ServiceOptions | None = None) -> None:
        self.options = options or ServiceOptions()
        self.engines: list[MuseTalkEngine] = []
        for i, device in enumerate(self.options.devices):
            dev_models = models if i == len(self.options.devices) - 1 else copy.deepcopy(models)
            self.engines.append(MuseTalkEngine(dev_models, self.options.engine_options(device)))
        self.schedulers = [
            RenderScheduler(e, self.options.scheduler, name=f"render-{d}")
            for e, d in zip(self.engines, self.options.devices, strict=True)
        ]
        self.pool = SchedulerPool(self.schedulers)
        self._started = False

    @classmethod
    def load(
        cls,
        weights_dir: str | Path,
        options: ServiceOptions | None = None,
        *,
        arch: MuseTalkArch | None = None,
    ) -> MuseTalkService:
        """Load the official weights folder (``WeightsError`` names what is wrong)."""
        return cls(load_musetalk(weights_dir, arch=arch), options)

    def add_avatar(self, avatar: PreparedAvatar) -> None:
        """Cache the avatar's latents on every device (blocking; once per avatar)."""
        for engine in self.engines:
            engine.add_avatar(avatar)

    def start(self, *, warmup: bool = True) -> None:
        """Warm every device up (needs an avatar) and start the schedulers.

        Then the objects alive (compiled graphs, the models' modules) are moved out of the
        cyclic GC's reach (``gc.freeze``): torch.compile leaves millions of them, and one
        full collection walking them all stopped every thread for half a second on an
        H100 machine, render workers included."""
        for s in self.schedulers:
            s.start(warmup=warmup)
        gc.collect()
        gc.freeze()
        self._started = True

    def renderer(self, avatar: PreparedAvatar, *, session: str) -> MuseTalkRenderer:
        """A renderer for one call, on the least loaded healthy device
        (``RenderUnavailable`` when none is)."""
        if not self._started:
            raise RuntimeError("start() the service before creating renderers")
        scheduler = self.pool.place(session, fps=float(self.options.renderer.audio.fps))
        engine = self.engines[self.schedulers.index(scheduler)]
        engine.add_avatar(avatar)
        return MuseTalkRenderer(
            avatar, engine, scheduler, session=session, options=self.options.renderer
        )

    def release(self, session: str) -> None:
        self.pool.release(session)

    @property
    def healthy(self) -> bool:
        """True while at least one device takes calls. A device whose render work hung
        (``RenderStalled``) is out of service until the process restarts."""
        return self.pool.healthy

    def health(self) -> dict[str, str]:
        """Each device's scheduler status by name: ``ok``, ``closed`` or why it stalled."""
        return self.pool.health()

    def close(self) -> None:
        self.pool.close()

    @property
    def devices(self) -> Sequence[str]:
        return self.options.devices
