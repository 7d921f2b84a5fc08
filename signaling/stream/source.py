"""A stream's timeline on a thread of its own: the :class:`~media.gst.source.AvSource`
that ``avatarsrc`` plays, and :func:`open_source`, the element's source factory.

GStreamer runs its own threads and (in ``gst-launch-1.0``) a GLib main loop; the stages are
asyncio. So a source owns an event loop in a daemon thread: the services, the engine, the
control server and the element's pump all live there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from inference.work import FairExecutor, FairExecutorOptions
from media.clock import MediaClock
from media.gst.source import SourceError, SourceRequest
from signaling.config import ConfigError, Settings, load_settings
from signaling.stages.services import Services, load_services
from signaling.stream.control import ControlServer
from signaling.stream.engine import StreamEngine, StreamOptions

__all__ = ["StreamSource", "open_source", "stream_settings"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def stream_settings(request: SourceRequest) -> Settings:
    """The process settings for a stream: the configuration file and environment, with
    the request's avatar, renderer, frame rate and height on top."""
    render: dict[str, Any] = {
        "avatar": request.avatar,
        "fps": request.fps,
        "output_height": max(64, min(2160, request.height)),
    }
    if request.renderer:
        render["renderer"] = request.renderer
    try:
        return load_settings(Path(request.config) if request.config else None, {"render": render})
    except ConfigError as exc:
        raise SourceError(str(exc)) from exc


class StreamSource:
    """A :class:`StreamEngine` (and its control server) on its own event-loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self._loop = loop
        self._thread = thread
        self.engine: StreamEngine | None = None
        self.services: Services | None = None
        self.control: ControlServer | None = None
        self.control_address = ""
        self._retired: list[FairExecutor] = []

    # ---- AvSource ---------------------------------------------------------------------
    @property
    def fps(self) -> int:
        assert self.engine is not None
        return self.engine.fps

    @property
    def clock(self) -> MediaClock:
        assert self.engine is not None
        return self.engine.clock

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def audio_at(self, t: float, n: int) -> np.ndarray:
        assert self.engine is not None
        return self.engine.audio_at(t, n)

    def frame_at(self, t: float) -> np.ndarray:
        assert self.engine is not None
        return self.engine.frame_at(t)

    def resume(self) -> None:
        if self.engine is not None:
            self.engine.resume()

    def pause(self) -> None:
        if self.engine is not None:
            self.engine.pause()

    # ---- from other threads -----------------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the source's loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self.call(self._aclose(), timeout=10.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)

    async def _aclose(self) -> None:
        if self.control is not None:
            await self.control.aclose()
        if self.engine is not None:
            await self.engine.aclose()
        if self.services is not None:
            await self.services.aclose()
            self.services.work.shutdown()
        for work in self._retired:
            work.shutdown()

    async def _open(self, request: SourceRequest, services: Services | None) -> None:
        settings = stream_settings(request)
        if services is None:
            try:
                services = await load_services(settings)
            except KeyError as exc:
                raise SourceError(_no_avatar(request.avatar, settings)) from exc
            except (FileNotFoundError, RuntimeError) as exc:
                raise SourceError(f"cannot load the stream's models: {exc}") from exc
            self.services = services  # owned: closed with the source
            # A process that serves one stream gives its lane the workers a call shares with
            # other calls (two at a time, no quarter-core budget): the stream is the job.
            self._retired.append(services.work)
            services.work = FairExecutor(FairExecutorOptions(share=2.0, per_lane=2))
        options = StreamOptions(
            avatar=request.avatar,
            fps=request.fps,
            height=request.height,
            dialogue=request.dialogue,
            lead_s=settings.media.lead_ms / 1000.0,
        )
        self.engine = StreamEngine(services, options, name=f"stream:{request.avatar}")
        await self.engine.start()
        if request.control:
            self.control = ControlServer(self.engine, request.control)
            try:
                self.control_address = await self.control.start()
            except OSError as exc:
                raise SourceError(f"control channel {request.control}: {exc}") from exc
            log.info("avatarsrc: control channel on %s", self.control_address)


def _no_avatar(name: str, settings: Settings) -> str:
    folder = settings.render.avatars_dir
    return (
        f"avatar {name!r} is not prepared in {folder}/; prepare it with "
        f"`avatar-rtc prepare PHOTO --name {name}` (or use the built-in 'astronaut')"
    )


def open_source(request: SourceRequest, services: Services | None = None) -> StreamSource:
    """Start a stream's timeline (loading the models unless ``services`` are given) and
    return once it can play; ``SourceError`` names what is missing."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="avatar-stream", daemon=True)
    thread.start()
    source = StreamSource(loop, thread)
    try:
        source.call(source._open(request, services))
    except BaseException:
        source.close()
        raise
    return source
