"""``avatarsrc``: the avatar as a live GStreamer source, voice and face on one timeline.

A bin of two live ``appsrc`` children behind two always-present source pads, ``video``
(RGB, any size, integer frame rates that divide 48 kHz) and ``audio`` (S16LE mono 48 kHz).
A bin rather than a ``GstBaseSrc``: a base source has one pad, and an element with
sometimes-pads would leave ``gst-launch-1.0 avatarsrc ! videoconvert ! ...`` nothing to
link when the pipeline is parsed; the two ``appsrc`` are live, timestamped by us, and
queue-bounded, which is what a live source needs. Both pads' buffers are read by one pump
(:mod:`media.gst.pump`) from one timeline, stamped with the pipeline's running time.

The size and frame rate come from caps negotiation when the element starts (READY to
PAUSED): downstream's caps are fixated nearest to 512x512 at 25 fps and the source is
built for them; caps that cannot be met are a ``not-negotiated`` error naming what the
element makes. The timeline itself comes from a :class:`~media.gst.source.SourceFactory`
(given to :func:`register`) or from :meth:`AvatarSrc.use_source` for an application
that keeps one source across pipelines (``avatar-rtc stream`` reconnecting).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from typing import Any, ClassVar

import numpy as np

from media.gst.pump import pump
from media.gst.runtime import gst
from media.gst.source import (
    FPS_CHOICES,
    SAMPLE_RATE,
    AvSource,
    SourceError,
    SourceFactory,
    SourceRequest,
)

Gst = gst()
from gi.repository import GLib, GObject  # noqa: E402  (after gst(): the versions are set)

__all__ = ["AUDIO_CAPS", "VIDEO_CAPS", "AvatarSrc", "register"]

log = logging.getLogger(__name__)

_FPS = ", ".join(f"{f}/1" for f in FPS_CHOICES)
VIDEO_CAPS = (
    "video/x-raw, format=RGB, width=[16, 4096], height=[16, 4096], "
    f"framerate={{ {_FPS} }}, pixel-aspect-ratio=1/1"
)
AUDIO_CAPS = f"audio/x-raw, format=S16LE, layout=interleaved, rate={SAMPLE_RATE}, channels=1"
_DEFAULT_SIZE = 512
_DEFAULT_FPS = 25
_RW = GObject.ParamFlags.READWRITE


def _error(domain: Any, code: Any, text: str) -> Any:
    return GLib.Error.new_literal(domain.quark(), text, code)


class AvatarSrc(Gst.Bin):  # type: ignore[misc,name-defined]
    """The live avatar source (see the module docstring)."""

    __gstmetadata__ = (
        "Avatar source",
        "Source/Audio/Video",
        "avatar-rtc's digital human: lip-synced face video and its voice on one timeline, "
        "idle when silent; driven by a control channel (say, lip-sync audio, ask, "
        "interrupt, switch avatar)",
        "avatar-rtc",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new(
            "video", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, Gst.Caps.from_string(VIDEO_CAPS)
        ),
        Gst.PadTemplate.new(
            "audio", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, Gst.Caps.from_string(AUDIO_CAPS)
        ),
    )
    __gproperties__: ClassVar[dict[str, tuple[Any, ...]]] = {
        "avatar": (str, "Avatar", "Name of a prepared avatar", "astronaut", _RW),
        "renderer": (str, "Renderer", "warp or musetalk; empty: the configuration's", "", _RW),
        "config": (str, "Configuration", "avatar-rtc YAML configuration file", "", _RW),
        "control": (
            str,
            "Control channel",
            "Where to listen for JSON-lines commands: HOST:PORT or unix:PATH; empty: none",
            "",
            _RW,
        ),
        "dialogue": (
            bool,
            "Dialogue",
            "Answer questions ('ask') with the dialogue stage, as a call does",
            False,
            _RW,
        ),
    }

    factory: SourceFactory | None = None  # set by register()

    def __init__(self) -> None:
        super().__init__()
        self._props: dict[str, Any] = {
            "avatar": "astronaut",
            "renderer": "",
            "config": "",
            "control": "",
            "dialogue": False,
        }
        self._appsrc: dict[str, Any] = {}
        for kind in ("video", "audio"):
            src = Gst.ElementFactory.make("appsrc", f"{kind}_appsrc")
            src.set_property("is-live", True)
            src.set_property("format", Gst.Format.TIME)
            src.set_property("do-timestamp", False)
            src.set_property("max-buffers", 25 if kind == "video" else 50)
            src.set_property("leaky-type", 2)  # downstream: a stalled encoder drops old media
            self.add(src)
            ghost = Gst.GhostPad.new_from_template(
                kind, src.get_static_pad("src"), self.get_pad_template(kind)
            )
            self.add_pad(ghost)
            self._appsrc[kind] = src
        self._source: AvSource | None = None
        self._owned = False  # the element built the source and closes it
        self._size = (_DEFAULT_SIZE, _DEFAULT_SIZE)
        self._fps = _DEFAULT_FPS
        self._audio_linked = True
        self._pump: concurrent.futures.Future[None] | None = None
        self._rt0 = 0

    # ---- properties -----------------------------------------------------------------
    def do_get_property(self, prop: Any) -> Any:
        return self._props[prop.name]

    def do_set_property(self, prop: Any, value: Any) -> None:
        self._props[prop.name] = value

    def use_source(self, source: AvSource) -> None:
        """Play ``source`` (kept by the caller, not closed by the element): call before
        the element starts. Its frame rate must match the negotiated one."""
        self._source, self._owned = source, False

    @property
    def source(self) -> AvSource | None:
        return self._source

    @property
    def size(self) -> tuple[int, int]:
        """The negotiated (width, height)."""
        return self._size

    # ---- state ----------------------------------------------------------------------
    def do_change_state(self, transition: Any) -> Any:
        try:
            return self._change_state(transition)
        except Exception as exc:  # a Python error must become a failure, never garbage
            log.exception("avatarsrc: state change %s failed", transition)
            self._fail(Gst.CoreError, Gst.CoreError.STATE_CHANGE, f"avatarsrc: {exc}")
            return Gst.StateChangeReturn.FAILURE

    def _change_state(self, transition: Any) -> Any:
        if transition == Gst.StateChange.READY_TO_PAUSED:
            if not self._prepare():
                return Gst.StateChangeReturn.FAILURE
        elif transition in (
            Gst.StateChange.PLAYING_TO_PAUSED,
            Gst.StateChange.PAUSED_TO_READY,
        ):
            self._stop_pump()
        result = Gst.Bin.do_change_state(self, transition)
        if transition == Gst.StateChange.PAUSED_TO_PLAYING and result != (
            Gst.StateChangeReturn.FAILURE
        ):
            self._start_pump()
        elif transition == Gst.StateChange.PAUSED_TO_READY:
            self._release()
        return result

    def _prepare(self) -> bool:
        caps = self._negotiate()
        if caps is None:
            return False
        if self._source is None:
            factory = type(self).factory
            if factory is None:
                self._fail(
                    Gst.CoreError,
                    Gst.CoreError.STATE_CHANGE,
                    "no source factory: "
                    "load avatarsrc through its plugin file (see docs/streaming.md)",
                )
                return False
            request = SourceRequest(
                avatar=self._props["avatar"],
                renderer=self._props["renderer"],
                config=self._props["config"],
                control=self._props["control"],
                dialogue=self._props["dialogue"],
                fps=self._fps,
                height=self._size[1],
            )
            try:
                self._source = factory(request)
            except SourceError as exc:
                self._fail(Gst.ResourceError, Gst.ResourceError.NOT_FOUND, str(exc))
                return False
            except Exception as exc:  # a failure of the stages: an error message, not a crash
                log.exception("avatarsrc: the source did not start")
                text = f"avatarsrc: the source did not start: {type(exc).__name__}: {exc}"
                self._fail(Gst.CoreError, Gst.CoreError.FAILED, text)
                return False
            self._owned = True
        elif self._source.fps != self._fps:
            self._fail(
                Gst.CoreError,
                Gst.CoreError.NEGOTIATION,
                f"avatarsrc: the source runs at {self._source.fps} fps, caps asked for "
                f"{self._fps} fps",
            )
            return False
        self._appsrc["video"].set_property("caps", caps)
        self._appsrc["audio"].set_property("caps", Gst.Caps.from_string(AUDIO_CAPS))
        latency = Gst.SECOND // self._fps  # a frame: buffers leave at their running time
        for src in self._appsrc.values():
            src.set_property("min-latency", latency)
        self._audio_linked = self.get_static_pad("audio").is_linked()
        return True

    def _negotiate(self) -> Any:
        """Fixated video caps from what downstream accepts, or None (error posted)."""
        pad = self.get_static_pad("video")
        template = Gst.Caps.from_string(VIDEO_CAPS)
        if not pad.is_linked():
            self._fail(Gst.CoreError, Gst.CoreError.NEGOTIATION, "avatarsrc: video pad not linked")
            return None
        allowed = pad.peer_query_caps(template)
        if allowed.is_empty():
            theirs = pad.peer_query_caps(None).to_string()
            self._fail(
                Gst.CoreError,
                Gst.CoreError.NEGOTIATION,
                f"avatarsrc makes {VIDEO_CAPS}; downstream accepts only {theirs}",
            )
            return None
        caps = allowed.copy().truncate()
        s = caps.get_structure(0).copy()
        s.fixate_field_nearest_int("width", _DEFAULT_SIZE)
        s.fixate_field_nearest_int("height", _DEFAULT_SIZE)
        s.fixate_field_nearest_fraction("framerate", _DEFAULT_FPS, 1)
        caps = Gst.Caps.new_empty()
        caps.append_structure(s)
        caps = caps.fixate()
        s = caps.get_structure(0)
        _, width = s.get_int("width")
        _, height = s.get_int("height")
        _, num, den = s.get_fraction("framerate")
        self._size, self._fps = (width, height), num // den
        return caps

    def _fail(self, domain: Any, code: Any, text: str) -> None:
        log.error("%s", text)
        self.post_message(Gst.Message.new_error(self, _error(domain, code, text), text))

    def _release(self) -> None:
        source, owned = self._source, self._owned
        if owned and source is not None:
            self._source = None
            source.close()

    def do_send_event(self, event: Any) -> bool:
        """End of stream (``gst-launch-1.0 -e``, an application finishing a recording):
        both streams end after the buffers already pushed, so muxers can close files."""
        if event.type == Gst.EventType.EOS:
            for src in self._appsrc.values():
                src.emit("end-of-stream")
            return True
        return bool(Gst.Bin.do_send_event(self, event))

    # ---- the pump -------------------------------------------------------------------
    def _start_pump(self) -> None:
        source = self._source
        if source is None or self._pump is not None:
            return
        clock = self.get_clock()
        self._rt0 = (clock.get_time() - self.get_base_time()) if clock is not None else 0
        source.resume()
        self._pump = asyncio.run_coroutine_threadsafe(
            pump(source, self, size=self._size), source.loop
        )

    def _stop_pump(self) -> None:
        task, self._pump = self._pump, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(concurrent.futures.CancelledError, Exception):
            task.result(timeout=2.0)
        if self._source is not None:
            self._source.pause()

    def _push(self, kind: str, pts_s: float, data: bytes, duration: int) -> bool:
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = self._rt0 + round(pts_s * Gst.SECOND)
        buf.duration = duration
        ret = self._appsrc[kind].emit("push-buffer", buf)
        return bool(ret == Gst.FlowReturn.OK)

    def video(self, pts_s: float, frame: np.ndarray) -> bool:
        """Outlet: one RGB frame at ``pts_s`` seconds since the pump started."""
        return self._push("video", pts_s, frame.tobytes(), Gst.SECOND // self._fps)

    def audio(self, pts_s: float, samples: np.ndarray) -> bool:
        """Outlet: mono int16 samples at ``pts_s`` seconds since the pump started."""
        if not self._audio_linked:
            return True
        duration = len(samples) * Gst.SECOND // SAMPLE_RATE
        return self._push("audio", pts_s, samples.astype("<i2").tobytes(), duration)


def register(factory: SourceFactory, plugin: Any = None) -> bool:
    """Register ``avatarsrc`` (in ``plugin``, or for this process) making its timelines
    with ``factory``."""
    AvatarSrc.factory = factory
    return bool(Gst.Element.register(plugin, "avatarsrc", Gst.Rank.NONE, AvatarSrc))
