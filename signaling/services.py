"""The per-process models of the server, loaded once and shared by every call.

``load_services`` turns the validated settings into the stages' own options objects (the
settings object stops here) and builds each stage through its factory.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.asr import Asr, ScriptedAsrOptions, WhisperAsrOptions, make_asr
from inference.avatar import DEFAULT_AVATAR_NAME, AvatarNotFound, AvatarStore, PreparedAvatar
from inference.avatar import default_avatar as prepare_default_avatar
from inference.dialogue import Dialogue, FaqDialogueOptions, ScriptedDialogueOptions, make_dialogue
from inference.render.base import Renderer
from inference.render.warp import WarpOptions, WarpRenderer
from inference.render.warp_assets import WarpAssets
from inference.tts import (
    EspeakTtsOptions,
    FakeTtsOptions,
    LanguageRouterTtsOptions,
    PiperTtsOptions,
    Tts,
    make_tts,
)
from media.vad import SegmenterOptions
from signaling.config import Settings

__all__ = ["RendererFactory", "Services", "WarpRendererFactory", "load_services", "mouth_box"]


def mouth_box(avatar: PreparedAvatar, margin: float = 0.35) -> tuple[float, float, float, float]:
    """Normalized (0..1) box around the lips over all source frames, with a margin."""
    boxes = np.asarray(avatar.mouth_boxes, dtype=np.float64)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    w, h = avatar.size
    return (
        max(0.0, (x0 - mx) / w),
        max(0.0, (y0 - my) / h),
        min(1.0, (x1 + mx) / w),
        min(1.0, (y1 + my) / h),
    )


class RendererFactory:
    """Makes a cheap per-call renderer from a process-wide prepared avatar."""

    def make(self, avatar: PreparedAvatar, *, session: str) -> Renderer:
        raise NotImplementedError

    def release(self, session: str) -> None:
        """Forget what the factory kept for ``session`` (its place on a GPU, say)."""


@dataclass
class WarpRendererFactory(RendererFactory):
    """Warp renderers that share one precomputation (``WarpAssets``) per avatar."""

    options: WarpOptions = field(default_factory=WarpOptions)
    _assets: dict[str, WarpAssets] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def make(self, avatar: PreparedAvatar, *, session: str) -> Renderer:
        with self._lock:
            key = f"{avatar.name}:{avatar.source_hash}"
            assets = self._assets.get(key)
            if assets is None:
                assets = self._assets[key] = WarpAssets(avatar)
        return WarpRenderer(avatar, options=self.options, assets=assets)


@dataclass
class Services:
    """Models shared by every call."""

    asr: Asr
    dialogue: Dialogue
    tts: Tts
    avatars: AvatarStore
    renderers: RendererFactory
    segmenter_options: SegmenterOptions = field(default_factory=SegmenterOptions)
    _loaded: dict[str, PreparedAvatar] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def avatar(self, name: str) -> PreparedAvatar:
        """A prepared avatar by name, loaded once (``KeyError`` when there is none)."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            if name == DEFAULT_AVATAR_NAME:
                avatar = prepare_default_avatar(self.avatars.root)
            else:
                try:
                    avatar = self.avatars.load(name)
                except AvatarNotFound as exc:
                    raise KeyError(name) from exc
            self._loaded[name] = avatar
            return avatar

    async def renderer_for(self, name: str, *, session: str = "") -> Renderer:
        avatar = await asyncio.to_thread(self.avatar, name)
        renderer = await asyncio.to_thread(self.renderers.make, avatar, session=session)
        await asyncio.to_thread(renderer.idle_frames)  # builds and caches the idle loop
        # The bot and the page find the lips through this (normalized to the output frame).
        renderer.mouth_box = mouth_box(avatar)  # type: ignore[attr-defined]
        return renderer

    def avatar_names(self) -> list[str]:
        names = {info.name for info in self.avatars.list()}
        names.add(DEFAULT_AVATAR_NAME)
        return sorted(names)


def _asr_options(settings: Settings) -> WhisperAsrOptions | ScriptedAsrOptions:
    if settings.asr.backend == "fake":
        return ScriptedAsrOptions()
    return WhisperAsrOptions(model_dir=settings.asr.model_dir, language=settings.asr.language)


def _dialogue_options(settings: Settings) -> FaqDialogueOptions | ScriptedDialogueOptions:
    if settings.dialogue.backend == "fake":
        return ScriptedDialogueOptions()
    if settings.dialogue.knowledge_base is not None:
        return FaqDialogueOptions(kb_path=settings.dialogue.knowledge_base)
    return FaqDialogueOptions()


def _tts_options(settings: Settings) -> FakeTtsOptions | LanguageRouterTtsOptions:
    t = settings.tts
    if t.backend == "fake":
        return FakeTtsOptions()
    piper = PiperTtsOptions(
        voice=t.voice,
        noise_scale=t.noise_scale,
        noise_w_scale=t.noise_w_scale,
        length_scale=t.length_scale,
    )
    return LanguageRouterTtsOptions(routes={"en": piper, "zh": EspeakTtsOptions(voice=t.zh_voice)})


def _renderer_factory(settings: Settings) -> RendererFactory:
    r = settings.render
    if r.renderer == "musetalk":
        from signaling.musetalk_factory import musetalk_factory

        return musetalk_factory(r.musetalk_dir)
    return WarpRendererFactory(WarpOptions(fps=r.fps, output_long_side=r.output_height))


def _segmenter_options(settings: Settings) -> SegmenterOptions:
    m = settings.media
    return SegmenterOptions(
        aggressiveness=m.vad_aggressiveness,
        end_silence_ms=m.end_silence_ms,
        min_utterance_s=m.min_utterance_s,
        max_segment_s=m.max_segment_s,
    )


def _load_blocking(settings: Settings) -> Services:
    services = Services(
        asr=make_asr(_asr_options(settings)),
        dialogue=make_dialogue(_dialogue_options(settings)),
        tts=make_tts(_tts_options(settings)),
        avatars=AvatarStore(Path(settings.render.avatars_dir)),
        renderers=_renderer_factory(settings),
        segmenter_options=_segmenter_options(settings),
    )
    services.avatar(settings.render.avatar)  # prepare/load the default avatar before ready
    return services


async def load_services(settings: Settings) -> Services:
    """Load every model off the event loop; raises with a clear message when one is missing."""
    return await asyncio.to_thread(_load_blocking, settings)
