"""Run an avatar stream to one output, reconnecting with backoff when the ingest drops.

Each attempt builds a fresh pipeline around the same :class:`~media.gst.source.AvSource`.
While no pipeline plays, the element has paused the source's clock, so the avatar picks up
on the word it was saying when the ingest went away. SRT and RTMP outputs get a
:class:`~media.gst.congestion.StreamQuality` that follows their send-side signals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from media.gst.congestion import StreamQuality
from media.gst.pipelines import OutputSpec, describe, required
from media.gst.runtime import gst
from media.gst.source import AvSource

__all__ = ["Backoff", "OutputRunner", "StreamEvent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): ``first_s * factor**n`` up to
    ``max_s``; an output that stayed up ``reset_after_s`` starts again from ``first_s``."""

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 8.0
    reset_after_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.first_s * self.factor ** max(0, attempt)))


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """Something that happened to the output (``kind``: playing, dropped, retry, rung)."""

    at: float  # time.monotonic()
    kind: str
    detail: str = ""


@dataclass
class OutputRunner:
    """Plays ``source`` to ``spec``'s output until ``stop`` is set."""

    spec: OutputSpec
    source: AvSource
    backoff: Backoff = field(default_factory=Backoff)
    quality: bool = True
    on_event: Callable[[StreamEvent], None] | None = None
    poll_s: float = 0.2
    events: list[StreamEvent] = field(default_factory=list)
    pipeline: Any = None

    def __post_init__(self) -> None:
        required(self.spec)  # a missing element is a clear error before anything starts

    def _event(self, kind: str, detail: str = "") -> None:
        event = StreamEvent(time.monotonic(), kind, detail)
        self.events.append(event)
        log.info("stream: %s %s", kind, detail)
        if self.on_event is not None:
            self.on_event(event)

    def build(self) -> Any:
        """A new pipeline for one attempt, playing this runner's source."""
        Gst = gst()
        pipeline = Gst.parse_launch(describe(self.spec))
        pipeline.get_by_name("src").use_source(self.source)
        return pipeline

    def run(self, stop: threading.Event) -> None:
        attempt = 0
        while not stop.is_set():
            began = time.monotonic()
            self.pipeline = self.build()
            try:
                reason = self._play(self.pipeline, stop)
            finally:
                self.pipeline.set_state(gst().State.NULL)
                self.pipeline = None
            if stop.is_set():
                return
            if time.monotonic() - began >= self.backoff.reset_after_s:
                attempt = 0
            delay = self.backoff.delay(attempt)
            attempt += 1
            self._event("dropped", reason)
            self._event("retry", f"in {delay:.1f} s")
            stop.wait(delay)

    def _play(self, pipeline: Any, stop: threading.Event) -> str:
        Gst = gst()
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            return _first_error(pipeline) or "the pipeline did not start"
        quality = self._quality(pipeline)
        bus = pipeline.get_bus()
        kinds = Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.STATE_CHANGED
        next_poll = time.monotonic() + self.poll_s
        while not stop.is_set():
            msg = bus.timed_pop_filtered(int(self.poll_s * Gst.SECOND / 2), kinds)
            if msg is not None:
                if msg.type == Gst.MessageType.ERROR:
                    err, _ = msg.parse_error()
                    return f"{msg.src.get_name()}: {err.message}"
                if msg.type == Gst.MessageType.EOS:
                    return "end of stream"
                if msg.src is pipeline and msg.parse_state_changed()[1] == Gst.State.PLAYING:
                    self._event("playing", self.spec.url)
            now = time.monotonic()
            if quality is not None and now >= next_poll:
                next_poll = now + self.poll_s
                rung = quality.poll(now)
                if rung is not None:
                    self._event("rung", f"{rung.height}p {rung.fps} fps {rung.bitrate} bps")
        return "stopped"

    def _quality(self, pipeline: Any) -> StreamQuality | None:
        kind = self.spec.output_kind
        if not self.quality or kind not in ("srt", "rtmp"):
            return None
        sink = pipeline.get_by_name("sink")
        return StreamQuality(
            kind=kind,
            sink=sink,
            fed=_byte_counter(sink.get_static_pad("sink")),
            encoder=pipeline.get_by_name("venc"),
            rung_filter=pipeline.get_by_name("rung"),
            width=self.spec.width,
            height=self.spec.height,
            fps=self.spec.fps,
            bitrate=self.spec.video_bps,
        )


def _byte_counter(pad: Any) -> Callable[[], int]:
    """Counts the bytes that pass ``pad`` (buffers and buffer lists)."""
    Gst = gst()
    total = [0]

    def probe(_: Any, info: Any) -> Any:
        if info.type & Gst.PadProbeType.BUFFER_LIST:
            items = info.get_buffer_list()
            total[0] += sum(items.get(i).get_size() for i in range(items.length()))
        else:
            total[0] += info.get_buffer().get_size()
        return Gst.PadProbeReturn.OK

    pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, probe)
    return lambda: total[0]


def _first_error(pipeline: Any) -> str | None:
    Gst = gst()
    msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    if msg is None:
        return None
    err, _ = msg.parse_error()
    return f"{msg.src.get_name()}: {err.message}"
