"""A real SRT receiver on 127.0.0.1 for tests and benchmarks of stream outputs.

``srtsrc`` in listener mode, MPEG-TS demuxed, H.264 and AAC decoded by GStreamer, every
decoded frame and audio block kept with its stream timestamp and its arrival time
(``time.monotonic()``). Stop it and start it again to play an ingest that goes away.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media.gst.runtime import gst

__all__ = ["Received", "RtmpPlayer", "SrtReceiver", "free_tcp_port", "free_udp_port"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """What arrived: (pts_s, arrival_s, array) per video frame and per audio block."""

    video: list[tuple[float, float, np.ndarray]] = field(default_factory=list)
    audio: list[tuple[float, float, np.ndarray]] = field(default_factory=list)

    def video_times(self) -> np.ndarray:
        return np.array([pts for pts, _, _ in self.video])

    def frames(self) -> list[np.ndarray]:
        return [f for _, _, f in self.video]

    def audio_pts(self) -> np.ndarray:
        return np.array([pts for pts, _, _ in self.audio])

    def audio_chunks(self) -> list[np.ndarray]:
        return [a for _, _, a in self.audio]


class SrtReceiver:
    """Listens on ``srt://127.0.0.1:port``; decoded RGB frames and 48 kHz mono audio."""

    def __init__(self, port: int, *, latency_ms: int = 60, keep_frames: bool = True) -> None:
        self.port = port
        self.latency_ms = latency_ms
        self.keep_frames = keep_frames
        self.got = Received()
        self._lock = threading.Lock()
        self._pipeline: Any = None

    @property
    def uri(self) -> str:
        return f"srt://127.0.0.1:{self.port}"

    def _input(self) -> str:
        """The receiving and demuxing part, a demuxer named ``d``."""
        return (
            f"srtsrc uri=srt://127.0.0.1:{self.port}?mode=listener latency={self.latency_ms} "
            "! tsdemux name=d"
        )

    def start(self) -> None:
        Gst = gst()
        self._pipeline = Gst.parse_launch(
            f"{self._input()} "
            "d. ! queue ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=RGB "
            "! appsink name=v emit-signals=true sync=false "
            "d. ! queue ! aacparse ! avdec_aac ! audioconvert ! audioresample "
            "! audio/x-raw,format=S16LE,rate=48000,channels=1 "
            "! appsink name=a emit-signals=true sync=false"
        )
        self._pipeline.get_by_name("v").connect("new-sample", self._on_video)
        self._pipeline.get_by_name("a").connect("new-sample", self._on_audio)
        self._pipeline.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(gst().State.NULL)
            self._pipeline = None

    def _pull(self, sink: Any) -> tuple[float, Any, Any]:
        Gst = gst()
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        data = bytes(info.data) if ok else b""
        if ok:
            buf.unmap(info)
        return buf.pts / Gst.SECOND, sample.get_caps().get_structure(0), data

    def _on_video(self, sink: Any) -> Any:
        pts, s, data = self._pull(sink)
        _, w = s.get_int("width")
        _, h = s.get_int("height")
        stride = len(data) // h
        frame = np.frombuffer(data, np.uint8).reshape(h, stride)[:, : w * 3].reshape(h, w, 3)
        with self._lock:
            kept = frame.copy() if self.keep_frames else np.zeros((1, 1, 3), np.uint8)
            self.got.video.append((pts, time.monotonic(), kept))
        return gst().FlowReturn.OK

    def _on_audio(self, sink: Any) -> Any:
        pts, _, data = self._pull(sink)
        with self._lock:
            self.got.audio.append((pts, time.monotonic(), np.frombuffer(data, "<i2").copy()))
        return gst().FlowReturn.OK

    def wait_frames(self, n: int, timeout: float) -> bool:
        """True once ``n`` frames arrived (counting from now), within ``timeout`` seconds."""
        start = len(self.got.video)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.got.video) - start >= n:
                return True
            time.sleep(0.02)
        return False


class RtmpPlayer(SrtReceiver):
    """Plays ``rtmp://127.0.0.1:port/APP/STREAM`` from a server, like a viewer would."""

    def __init__(self, url: str, *, keep_frames: bool = True) -> None:
        super().__init__(0, keep_frames=keep_frames)
        self.url = url

    def _input(self) -> str:
        return f"rtmp2src location={self.url} ! flvdemux name=d"
