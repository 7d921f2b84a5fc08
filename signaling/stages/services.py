"""The per-process models of the server, loaded once and shared by every call.

``load_services`` turns the validated settings into the stages' own options objects (the
settings object stops here) and builds each stage through its factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from inference.asr import (
    Asr,
    make_asr,
)
from inference.avatar import DEFAULT_AVATAR_NAME, AvatarNotFound, AvatarStore, PreparedAvatar
from inference.avatar import default_avatar as prepare_default_avatar
from inference.cache import CacheOptions, TieredCache
from inference.dialogue import (
    Dialogue,
    DialogueOptions,
    FaqDialogue,
    FaqDialogueOptions,
    dialogue_for_call,
    make_dialogue,
)
from inference.fallback import FallbackAsr, FallbackTts
from inference.preload import (
    Preloader,
    SpeculativePrefetcher,
    faq_predictor,
    machine_busy,
    preload_lines,
    warm,
)
from inference.render.base import Renderer
from inference.render.cached import CachedRenderer, CachedRendererOptions
from inference.render.warp import WarpOptions, WarpRenderer
from inference.render.warp_assets import WarpAssets
from inference.tts import (
    CachedTts,
    CachedTtsOptions,
    Tts,
    TtsOptions,
    make_tts,
)
from inference.types import ReplySentence
from media.vad import SegmenterOptions
from signaling.config import CacheSettings, Settings
from signaling.stages.options import (
    asr_options,
    dialogue_options,
    embedded_asr_options,
    embedded_tts_options,
    segmenter_options,
    tts_options,
)

log = logging.getLogger(__name__)

__all__ = [
    "CachePlan",
    "RendererFactory",
    "Services",
    "WarpRendererFactory",
    "load_services",
    "mouth_box",
]


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


class RendererFactory(Protocol):
    """Makes a cheap per-call renderer from a process-wide prepared avatar."""

    def make(self, avatar: PreparedAvatar, *, session: str) -> Renderer: ...

    def release(self, session: str) -> None:
        """Forget what the factory kept for ``session`` (its place on a GPU, say)."""
        ...


@dataclass
class WarpRendererFactory:
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

    def release(self, session: str) -> None:
        """Warp renderers hold nothing per call beyond themselves."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePlan:
    """What the cache serves and what gets warmed (from the ``cache:`` settings)."""

    clips: bool = True
    preload: bool = True
    preload_faq: int = 8
    preload_languages: tuple[str, ...] = ("en",)
    speculate: bool = True


@dataclass
class Services:
    """Models shared by every call."""

    asr: Asr
    dialogue: Dialogue
    tts: Tts
    avatars: AvatarStore
    renderers: RendererFactory
    segmenter_options: SegmenterOptions = field(default_factory=SegmenterOptions)
    cache: TieredCache | None = None
    cache_plan: CachePlan = field(default_factory=CachePlan)
    dialogue_options: DialogueOptions | None = None
    _loaded: dict[str, PreparedAvatar] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    preload_busy: Callable[[], bool] = machine_busy  # preloading waits while this is True
    _preloads: dict[str, asyncio.Task[int]] = field(default_factory=dict)

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

    def dialogue_for_call(self) -> Dialogue:
        """The dialogue view of one call (its own history for the LLM backend)."""
        return dialogue_for_call(self.dialogue)

    def _cached_renderer(self, avatar: PreparedAvatar, renderer: Renderer) -> Renderer:
        if self.cache is None or not self.cache_plan.clips or avatar.is_video:
            return renderer
        options = getattr(renderer, "options", "")
        version = _version("avatar-rtc")
        kind = f"{type(renderer).__module__}.{type(renderer).__qualname__}"
        return CachedRenderer(
            renderer,
            self.cache,
            CachedRendererOptions(
                avatar_id=f"{avatar.name}|{avatar.source_hash}|{avatar.num_frames}|{avatar.size}",
                renderer_id=f"{kind}|{options!r}|{self.renderers!r}|{version}",
            ),
        )

    async def renderer_for(self, name: str, *, session: str = "") -> Renderer:
        avatar = await asyncio.to_thread(self.avatar, name)
        renderer = await asyncio.to_thread(self.renderers.make, avatar, session=session)
        await asyncio.to_thread(renderer.idle_frames)  # builds and caches the idle loop
        renderer = self._cached_renderer(avatar, renderer)
        # The bot and the page find the lips through this (normalized to the output frame).
        renderer.mouth_box = mouth_box(avatar)  # type: ignore[attr-defined]
        self.start_preload(name)
        return renderer

    def avatar_names(self) -> list[str]:
        names = {info.name for info in self.avatars.list()}
        names.add(DEFAULT_AVATAR_NAME)
        return sorted(names)

    # ---- predictive preloading -------------------------------------------------------------
    def start_preload(self, name: str) -> asyncio.Task[int] | None:
        """Warm the caches for avatar ``name`` in the background (once per avatar)."""
        if self.cache is None or not self.cache_plan.preload or name in self._preloads:
            return self._preloads.get(name)
        task = asyncio.ensure_future(self._preload(name))
        self._preloads[name] = task
        return task

    async def _preload(self, name: str) -> int:
        session = f"preload:{name}"
        try:
            avatar = await asyncio.to_thread(self.avatar, name)
            made = await asyncio.to_thread(self.renderers.make, avatar, session=session)
            renderer = self._cached_renderer(avatar, made)
            plan = self.cache_plan
            lines = await preload_lines(
                self.dialogue, languages=plan.preload_languages, faq_answers=plan.preload_faq
            )
            preloader = Preloader(tts=self.tts, renderer=renderer, busy=self.preload_busy)
            done = await preloader.run(lines)
            log.info("preload %s: %d sentences warmed; cache %s", name, done, self.cache_stats())
            return done
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("preload of avatar %s failed (calls are not affected)", name)
            return 0
        finally:
            self.renderers.release(session)

    def prefetcher_for_call(
        self, renderer: Renderer, language: str = "en"
    ) -> SpeculativePrefetcher | None:
        """A call's speculative prefetcher (FAQ dialogue with a cache only, else None).

        The session feeds it ``observe(segmenter.current_speech(), now)`` for every mic
        frame and awaits ``final(transcript)`` before the reply turn.
        """
        opts = self.dialogue_options
        if (
            self.cache is None
            or not self.cache_plan.speculate
            or not isinstance(self.dialogue, FaqDialogue)
            or not isinstance(opts, FaqDialogueOptions)
        ):
            return None
        tts = self.tts

        async def warm_reply(sentences: list[ReplySentence]) -> None:
            await warm(tts, renderer, sentences)

        return SpeculativePrefetcher(
            asr=self.asr,
            predict=faq_predictor(self.dialogue, opts),
            warm_reply=warm_reply,
            language=language,
        )

    def cache_stats(self) -> dict[str, object]:
        """Hit/miss counters of the cache (empty when it is off)."""
        return {} if self.cache is None else self.cache.stats.as_dict()

    async def aclose(self) -> None:
        """Stop background preloading."""
        for task in self._preloads.values():
            task.cancel()
        for task in self._preloads.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "0"


def _cache(c: CacheSettings) -> TieredCache | None:
    if not c.enabled:
        return None
    return TieredCache(CacheOptions(directory=c.dir, l1_bytes=c.l1_bytes, l2_bytes=c.l2_bytes))


def _cached_tts(tts: Tts, options: TtsOptions, cache: TieredCache | None) -> Tts:
    if cache is None:
        return tts
    versions = ",".join(f"{p}={_version(p)}" for p in ("piper-tts", "avatar-rtc"))
    return CachedTts(tts, cache, CachedTtsOptions(voice_id=f"{options!r}|{versions}"))


def _renderer_factory(settings: Settings) -> RendererFactory:
    r = settings.render
    if r.renderer == "musetalk":
        from signaling.stages.musetalk import musetalk_factory

        return musetalk_factory(
            r.musetalk_dir, output_height=r.output_height, decode=r.musetalk_decode
        )
    return WarpRendererFactory(WarpOptions(fps=r.fps, output_long_side=r.output_height))


def _load_blocking(settings: Settings) -> Services:
    dialogue_opts = dialogue_options(settings)
    tts_opts = tts_options(settings)
    cache = _cache(settings.cache)
    c = settings.cache
    asr = make_asr(asr_options(settings))
    if settings.asr.backend == "openai" and settings.asr.fallback_embedded:
        asr = FallbackAsr(asr, make_asr(embedded_asr_options(settings)))
    tts = _cached_tts(make_tts(tts_opts), tts_opts, cache)
    if settings.tts.backend == "openai" and settings.tts.fallback_embedded:
        embedded = embedded_tts_options(settings)
        tts = FallbackTts(tts, _cached_tts(make_tts(embedded), embedded, cache))
    services = Services(
        asr=asr,
        dialogue=make_dialogue(dialogue_opts),
        tts=tts,
        avatars=AvatarStore(Path(settings.render.avatars_dir)),
        renderers=_renderer_factory(settings),
        segmenter_options=segmenter_options(settings),
        cache=cache,
        cache_plan=CachePlan(
            clips=c.clips,
            preload=c.preload,
            preload_faq=c.preload_faq,
            preload_languages=tuple(c.preload_languages),
            speculate=c.speculate,
        ),
        dialogue_options=dialogue_opts,
    )
    avatar = services.avatar(settings.render.avatar)  # prepared/loaded before ready
    warm = getattr(services.renderers, "warm", None)  # GPU renderers compile here, not in a call
    if warm is not None:
        warm(avatar)
    return services


async def load_services(settings: Settings) -> Services:
    """Load every model off the event loop; raises with a clear message when one is missing.

    With the cache on, warming the default avatar's lines starts in the background.
    """
    services = await asyncio.to_thread(_load_blocking, settings)
    services.start_preload(settings.render.avatar)
    return services
