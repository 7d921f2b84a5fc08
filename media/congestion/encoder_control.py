"""Encoder control for one call's video sender, and the RTCP reader that feeds the controller.

aiortc's sender creates its encoder lazily (``get_encoder(codec)`` on the first frame) and
lets every REMB packet set ``encoder.target_bitrate``; its VP8/H.264 encoders rebuild — a
keyframe — on every change over 10 %. :func:`install_encoder` puts a
:class:`LiveVideoEncoder` into *one* sender before its first frame (the sender's private
encoder slot, :func:`media.aiortc_hooks.set_sender_encoder`, the same object aiortc would have
created): nothing global is patched, other calls keep aiortc's encoders. Our encoders

- change the bitrate on the running encoder (VP8 through :mod:`.vpx_live`, H.264 through
  libx264's VBV reconfiguration), so a rate change never costs a keyframe;
- make a keyframe only on a resolution change or when aiortc passes ``force_keyframe`` (a
  PLI or FIR from the receiver);
- have no ``target_bitrate`` attribute, so aiortc's REMB handler leaves them alone: REMB goes
  to the :class:`.controller.QualityController` through :class:`RtcpMonitor` instead.

:func:`install_voice_encoder` does the same for the audio sender with aiortc's Opus encoder
at a voice bitrate (32 kbps) instead of its 96 kbps.

:class:`.rtcp.RtcpMonitor` (re-exported here) reads the RTCP reaching the same sender.
"""

from __future__ import annotations

import fractions
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase
from aiortc.rtcrtpsender import RTCRtpSender
from av.frame import Frame
from av.packet import Packet

from media.aiortc_hooks import (
    h264_nal_units,
    h264_payloads,
    sender_encoder,
    set_sender_encoder,
    vp8_payloads,
)
from media.congestion.rtcp import RtcpMonitor, RtcpSnapshot
from media.congestion.vpx_live import VpxError, VpxVp8Encoder, load_libvpx

__all__ = [
    "EncoderStats",
    "LiveH264Encoder",
    "LiveVideoEncoder",
    "LiveVp8Encoder",
    "RtcpMonitor",
    "RtcpSnapshot",
    "install_encoder",
    "install_voice_encoder",
    "make_encoder",
    "offers_inband_fec",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EncoderStats:
    """Counters of a live encoder (read from the event loop, written by the encode thread)."""

    frames: int = 0
    keyframes: int = 0
    forced_keyframes: int = 0  # keyframes asked for by aiortc (PLI / FIR)
    resolution_changes: int = 0
    out_of_order: int = 0  # frames skipped because their pts did not increase
    paused: int = 0  # frames skipped while paused (draining a bottleneck queue)
    bitrate_changes: int = 0
    bytes: int = 0


class LiveVideoEncoder(Protocol):
    """The aiortc ``Encoder`` interface plus a live ``bitrate``."""

    stats: EncoderStats

    @property
    def bitrate(self) -> int: ...

    def set_bitrate(self, bitrate: int) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def resume(self) -> None: ...

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]: ...

    def pack(self, packet: Packet) -> tuple[list[bytes], int]: ...


class _Pause:
    """Skips frames while paused; keyframe requests (PLI/FIR) wait for the pause to end and
    come at most once per ``min_key_interval_s``.

    A receiver behind a full bottleneck queue keeps asking for keyframes; each one is the
    largest frame there is, so answering every request (or ending a drain for it) refills
    the queue that the pause is emptying.
    """

    def __init__(
        self, *, min_key_interval_s: float = 0.5, time_fn: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_key_interval_s = min_key_interval_s
        self._time = time_fn
        self._until = 0.0
        self._want_key = False
        self._last_key = -math.inf

    def start(self, seconds: float) -> None:
        if not 0 <= seconds <= 5:
            raise ValueError(f"pause must be within 0..5 s, got {seconds}")
        self._until = max(self._until, self._time() + seconds)

    def end(self) -> None:
        """End the pause now (the queue it was emptying is gone)."""
        self._until = min(self._until, self._time())

    def admit(self, force_keyframe: bool, stats: EncoderStats) -> tuple[bool, bool]:
        """(encode this frame?, as a forced keyframe?)"""
        now = self._time()
        self._want_key |= force_keyframe
        if now < self._until:
            stats.paused += 1
            return False, False
        if self._want_key and now - self._last_key >= self.min_key_interval_s:
            self._want_key = False
            self._last_key = now
            return True, True
        return True, False

    def keyframe_sent(self) -> None:
        """A keyframe went out (e.g. on a size change): it answers any pending request."""
        self._want_key = False
        self._last_key = self._time()


def _check_bitrate(bitrate: int) -> int:
    if bitrate < 10_000:
        raise ValueError(f"bitrate must be >= 10 kbps, got {bitrate}")
    return int(bitrate)


class LiveVp8Encoder:
    """VP8 for aiortc on a live libvpx encoder; packetized like aiortc's ``Vp8Encoder``."""

    def __init__(self, *, bitrate: int, time_fn: Callable[[], float] = time.monotonic) -> None:
        self._bitrate = _check_bitrate(bitrate)
        load_libvpx()  # fail here, not in aiortc's encode thread
        self._vpx: VpxVp8Encoder | None = None
        self._lock = threading.Lock()
        self.picture_id = Vp8Encoder().picture_id  # random start, as aiortc does
        self._last_ts: int | None = None
        self._pause = _Pause(time_fn=time_fn)
        self.stats = EncoderStats()

    @property
    def bitrate(self) -> int:
        return self._bitrate

    def set_bitrate(self, bitrate: int) -> None:
        """Change the target bitrate (bps) of the running encoder: no keyframe."""
        bitrate = _check_bitrate(bitrate)
        with self._lock:
            if bitrate != self._bitrate:
                self.stats.bitrate_changes += 1
            self._bitrate = bitrate
            if self._vpx is not None:
                self._vpx.set_bitrate(bitrate)

    def pause(self, seconds: float) -> None:
        """Send no video for ``seconds`` (the next frame after it is a normal delta frame)."""
        self._pause.start(seconds)

    def resume(self) -> None:
        """End a pause early."""
        self._pause.end()

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert isinstance(frame, av.VideoFrame)
        if frame.pts is None or frame.time_base is None:
            raise ValueError("video frames need pts and time_base")
        timestamp = convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)
        if self._last_ts is not None and timestamp <= self._last_ts:
            self.stats.out_of_order += 1  # libvpx needs increasing pts: skip the frame
            return [], timestamp
        go, force_keyframe = self._pause.admit(force_keyframe, self.stats)
        if not go:
            return [], timestamp
        with self._lock:
            if self._vpx is None:
                self._vpx = VpxVp8Encoder(frame.width, frame.height, self._bitrate)
            elif (frame.width, frame.height) != (self._vpx.width, self._vpx.height):
                self.stats.resolution_changes += 1
            try:
                data, key = self._vpx.encode(frame, timestamp, keyframe=force_keyframe)
            except VpxError:
                # never let one bad frame end the call's video: start a fresh encoder
                log.exception("VP8 encode failed; re-opening the encoder")
                self._vpx.close()
                self._vpx = VpxVp8Encoder(frame.width, frame.height, self._bitrate)
                data, key = self._vpx.encode(frame, timestamp, keyframe=True)
        self._last_ts = timestamp
        if key:
            self._pause.keyframe_sent()
        self._count(len(data), key, force_keyframe)
        payloads = vp8_payloads(data, self.picture_id) if data else []
        self.picture_id = (self.picture_id + 1) % (1 << 15)
        return payloads, timestamp

    def _count(self, size: int, key: bool, forced: bool) -> None:
        s = self.stats
        s.frames += 1
        s.bytes += size
        s.keyframes += int(key)
        s.forced_keyframes += int(key and forced)

    def pack(self, packet: Packet) -> tuple[list[bytes], int]:
        payloads = vp8_payloads(bytes(packet), self.picture_id)
        assert packet.pts is not None and packet.time_base is not None
        self.picture_id = (self.picture_id + 1) % (1 << 15)
        return payloads, convert_timebase(packet.pts, packet.time_base, VIDEO_TIME_BASE)


class LiveH264Encoder:
    """H.264 (libx264, baseline, zerolatency) whose bitrate follows without a rebuild.

    libx264 reconfigures the rate of a running encoder when VBV is on, so the encoder opens
    with ``maxrate = max_bitrate`` and a small buffer, and a rate change only sets the
    codec context's ``bit_rate``. A size change re-opens it (a keyframe).
    """

    def __init__(
        self, *, bitrate: int, max_bitrate: int, time_fn: Callable[[], float] = time.monotonic
    ) -> None:
        self._bitrate = _check_bitrate(bitrate)
        self._max = _check_bitrate(max_bitrate)
        if self._bitrate > self._max:
            raise ValueError(f"bitrate {bitrate} is above max_bitrate {max_bitrate}")
        self._codec: Any = None
        self._lock = threading.Lock()
        self._pause = _Pause(time_fn=time_fn)
        self.stats = EncoderStats()

    @property
    def bitrate(self) -> int:
        return self._bitrate

    def set_bitrate(self, bitrate: int) -> None:
        """Change the target bitrate (bps; clamped to ``max_bitrate``): no keyframe."""
        bitrate = min(_check_bitrate(bitrate), self._max)
        with self._lock:
            if bitrate != self._bitrate:
                self.stats.bitrate_changes += 1
            self._bitrate = bitrate
            if self._codec is not None:
                self._codec.bit_rate = bitrate

    def pause(self, seconds: float) -> None:
        """Send no video for ``seconds``."""
        self._pause.start(seconds)

    def resume(self) -> None:
        """End a pause early."""
        self._pause.end()

    def _open(self, width: int, height: int) -> Any:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = self._bitrate
        codec.framerate = fractions.Fraction(30, 1)
        codec.time_base = fractions.Fraction(1, 30)
        codec.gop_size = 3000
        codec.options = {
            "tune": "zerolatency",
            "level": "31",
            "maxrate": str(self._max),
            "bufsize": str(self._max // 4),
            "sc_threshold": "0",
        }
        codec.profile = "Baseline"
        return codec

    def _frames(self, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        if self._codec is not None and (frame.width, frame.height) != (
            self._codec.width,
            self._codec.height,
        ):
            self.stats.resolution_changes += 1
            self._codec = None
        if self._codec is None:
            self._codec = self._open(frame.width, frame.height)
        frame.pict_type = (
            av.video.frame.PictureType.I if force_keyframe else av.video.frame.PictureType.NONE
        )
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        for packet in self._codec.encode(frame):
            self.stats.bytes += packet.size
            if packet.is_keyframe:
                self._pause.keyframe_sent()
                self.stats.keyframes += 1
                self.stats.forced_keyframes += int(force_keyframe)
            yield from h264_nal_units(bytes(packet))

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert isinstance(frame, av.VideoFrame)
        if frame.pts is None or frame.time_base is None:
            raise ValueError("video frames need pts and time_base")
        timestamp = convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)
        go, force_keyframe = self._pause.admit(force_keyframe, self.stats)
        if not go:
            return [], timestamp
        with self._lock:
            nals = list(self._frames(frame, force_keyframe))
        self.stats.frames += 1
        return h264_payloads(nals), timestamp

    def pack(self, packet: Packet) -> tuple[list[bytes], int]:
        assert packet.pts is not None and packet.time_base is not None
        nals = h264_nal_units(bytes(packet))
        return h264_payloads(nals), convert_timebase(packet.pts, packet.time_base, VIDEO_TIME_BASE)


def make_encoder(
    mime_type: str,
    *,
    bitrate: int,
    max_bitrate: int,
    time_fn: Callable[[], float] = time.monotonic,
) -> LiveVideoEncoder:
    """A live encoder for ``video/VP8`` or ``video/H264`` (case-insensitive)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return LiveVp8Encoder(bitrate=bitrate, time_fn=time_fn)
    if mime == "video/h264":
        return LiveH264Encoder(bitrate=bitrate, max_bitrate=max_bitrate, time_fn=time_fn)
    raise ValueError(f"no live encoder for {mime_type!r} (VP8 and H.264 are supported)")


def install_encoder(
    sender: RTCRtpSender, mime_type: str, *, bitrate: int, max_bitrate: int
) -> LiveVideoEncoder:
    """Give ``sender`` a live encoder for the negotiated ``mime_type`` before it starts.

    Must be called before the sender encodes its first frame (right after the answer is
    set); raises ``RuntimeError`` if aiortc already created its own encoder.
    """
    if sender.kind != "video":
        raise ValueError(f"install_encoder needs a video sender, got {sender.kind!r}")
    if sender_encoder(sender) is not None:
        raise RuntimeError("the sender already encodes: install the encoder before it starts")
    encoder = make_encoder(mime_type, bitrate=bitrate, max_bitrate=max_bitrate)
    set_sender_encoder(sender, encoder)
    return encoder


def install_voice_encoder(
    sender: RTCRtpSender, *, bitrate: int = 32_000, fec_loss_pct: int | None = None
) -> OpusEncoder:
    """Give an Opus audio ``sender`` an encoder at ``bitrate`` bps before it starts.

    aiortc's Opus encoder runs at 96 kbps: for a voice that buys nothing a listener hears
    over 32 kbps (what browsers send for a voice by default), and on a 400 kbps link it
    takes a quarter of the link from the video, in a stream that must never be cut.

    ``fec_loss_pct`` turns on Opus in-band FEC sized for that packet loss (%): each packet
    also carries a coarse copy of the one before, which a receiver that lost that one
    decodes instead of concealing it (a browser's NetEq does; only for a receiver that
    declared ``useinbandfec=1``, see :func:`offers_inband_fec`). It is paid out of the same
    bitrate.
    """
    if sender.kind != "audio":
        raise ValueError(f"install_voice_encoder needs an audio sender, got {sender.kind!r}")
    if not 6_000 <= bitrate <= 510_000:
        raise ValueError(f"Opus bitrate must be within 6..510 kbps, got {bitrate}")
    if fec_loss_pct is not None and not 1 <= fec_loss_pct <= 100:
        raise ValueError(f"fec_loss_pct must be within 1..100, got {fec_loss_pct}")
    if sender_encoder(sender) is not None:
        raise RuntimeError("the sender already encodes: install the encoder before it starts")
    encoder = OpusEncoder()
    encoder.codec.bit_rate = bitrate
    if fec_loss_pct is not None:  # the codec opens on the first frame, with these
        encoder.codec.options = {
            **encoder.codec.options,
            "fec": "1",
            "packet_loss": str(fec_loss_pct),
        }
    set_sender_encoder(sender, encoder)
    return encoder


def offers_inband_fec(sdp: str, payload_type: int) -> bool:
    """Whether the description ``sdp`` says its side decodes Opus in-band FEC on
    ``payload_type`` (``a=fmtp:<pt> ...;useinbandfec=1``, RFC 7587; browsers say so)."""
    prefix = f"a=fmtp:{payload_type} "
    for line in sdp.splitlines():
        if line.startswith(prefix):
            params = dict(
                part.strip().partition("=")[::2] for part in line[len(prefix) :].split(";")
            )
            return params.get("useinbandfec", "").strip() == "1"
    return False
