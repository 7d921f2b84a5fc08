"""The per-process models of the server, loaded once and shared by every call.

``load_services`` builds each speech stage from its configuration section through the stage's
registry (:func:`build_stages`; the section gives the backend's own options, so the settings
stop here), with the fallback a section names, then the renderers and the cache.
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

from inference.asr import Asr
from inference.avatar import DEFAULT_AVATAR_NAME, AvatarNotFound, AvatarStore, PreparedAvatar
from inference.avatar import default_avatar as prepare_default_avatar
from inference.cache import CacheOptions, TieredCache
from inference.dialogue import Dialogue, FaqDialogue, FaqDialogueOptions, dialogue_for_call
from inference.fallback import FallbackAsr, FallbackTts
from inference.preload import (
    Preloader,
    SpeculativePrefetcher,
    faq_predictor,
    machine_busy,
    preload_lines,
    warm,
)
from inference.registry import BackendSettings, Registry
from inference.render.base import Renderer, Warmable
from inference.render.cached import CachedRenderer, CachedRendererOptions
from inference.render.warp import WarpOptions, WarpRenderer
from inference.render.warp_assets import WarpAssets
from inference.tts import CachedTts, CachedTtsOptions, Tts
from inference.types import ReplySentence
from inference.work import FairExecutor
from media.vad import SegmenterOptions
from signaling.config import CacheSettings, MediaSettings, Settings

log = logging.getLogger(__name__)

__all__ = [
    "CachePlan",
    "RendererFactory",
    "Services",
    "Stages",
    "WarpRendererFactory",
    "build_stages",
    "load_services",
]


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
    preload_faq: int = 1000
    preload_languages: tuple[str, ...] = ("en", "zh")
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
    dialogue_options: object | None = None
    _loaded: dict[str, PreparedAvatar] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    preload_busy: Callable[[], bool] = machine_busy  # preloading waits while this is True
    # every call's blocking stage work (TTS, rendering, ASR), shared out fairly by call
    work: FairExecutor = field(default_factory=FairExecutor)
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
        lane = self.work.lane(f"preload:{name}")  # a share like a call's, never more
        task = lane.create_task(self._preload(name))
        task.add_done_callback(lambda _: lane.close())
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
        self, renderer: Renderer, call_id: str, language: str = "en"
    ) -> SpeculativePrefetcher | None:
        """A call's speculative prefetcher (FAQ dialogue with a cache only, else None), on a
        background lane of its own (closed with it).

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
            lane=self.work.lane(f"{call_id}/speculation", background=True),
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


@dataclass(frozen=True, slots=True)
class Stages:
    """The speech stages of the process, and the options the dialogue was built from."""

    asr: Asr
    dialogue: Dialogue
    tts: Tts
    dialogue_options: object


def build_stages(settings: Settings, cache: TieredCache | None = None) -> Stages:
    """ASR, dialogue and TTS from their sections, through the registries of the settings;
    a section that names a fallback (a remote service's embedded engine) is wrapped with it."""
    backends = settings.backends
    asr = backends.asr.build(settings.asr)
    asr_fallback = settings.asr.fallback_section()
    if asr_fallback is not None:
        asr = FallbackAsr(asr, backends.asr.build(asr_fallback))
    tts = _cached_tts(settings.tts, backends.tts, cache)
    tts_fallback = settings.tts.fallback_section()
    if tts_fallback is not None:
        tts = FallbackTts(tts, _cached_tts(tts_fallback, backends.tts, cache))
    dialogue_options = settings.dialogue.options()
    dialogue = backends.dialogue.make(dialogue_options)
    return Stages(asr=asr, dialogue=dialogue, tts=tts, dialogue_options=dialogue_options)


def _cached_tts(
    section: BackendSettings, registry: Registry[Tts], cache: TieredCache | None
) -> Tts:
    options = section.options()
    tts = registry.make(options)
    if cache is None:
        return tts
    versions = ",".join(f"{p}={_version(p)}" for p in ("piper-tts", "avatar-rtc"))
    return CachedTts(tts, cache, CachedTtsOptions(voice_id=f"{options!r}|{versions}"))


def _segmenter_options(m: MediaSettings) -> SegmenterOptions:
    return SegmenterOptions(
        aggressiveness=m.vad_aggressiveness,
        end_silence_ms=m.end_silence_ms,
        quiet_db=m.vad_quiet_db,
        min_utterance_s=m.min_utterance_s,
        max_segment_s=m.max_segment_s,
    )


def _renderer_factory(settings: Settings) -> RendererFactory:
    r = settings.render
    if r.cluster is not None:  # MuseTalk on the GPU render cluster (imports Ray)
        from inference.cluster.factory import cluster_factory

        return cluster_factory(r.cluster, fps=r.fps, output_height=r.output_height)
    if r.renderer == "musetalk":
        from signaling.stages.musetalk import musetalk_factory

        return musetalk_factory(
            r.musetalk_dir, output_height=r.output_height, decode=r.musetalk_decode
        )
    return WarpRendererFactory(WarpOptions(fps=r.fps, output_long_side=r.output_height))


def _load_blocking(settings: Settings) -> Services:
    cache = _cache(settings.cache)
    c = settings.cache
    stages = build_stages(settings, cache)
    services = Services(
        asr=stages.asr,
        dialogue=stages.dialogue,
        tts=stages.tts,
        avatars=AvatarStore(Path(settings.render.avatars_dir)),
        renderers=_renderer_factory(settings),
        segmenter_options=_segmenter_options(settings.media),
        cache=cache,
        cache_plan=CachePlan(
            clips=c.clips,
            preload=c.preload,
            preload_faq=c.preload_faq,
            preload_languages=tuple(c.preload_languages),
            speculate=c.speculate,
        ),
        dialogue_options=stages.dialogue_options,
    )
    avatar = services.avatar(settings.render.avatar)  # prepared/loaded before ready
    if isinstance(services.renderers, Warmable):  # GPU renderers compile here, not in a call
        services.renderers.warm(avatar)
    return services


async def load_services(settings: Settings) -> Services:
    """Load every model off the event loop; raises with a clear message when one is missing.

    With the cache on, warming the default avatar's lines starts in the background.
    """
    services = await asyncio.to_thread(_load_blocking, settings)
    services.start_preload(settings.render.avatar)
    return services
