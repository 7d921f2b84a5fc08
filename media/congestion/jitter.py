"""Receive jitter buffers that never keep latency after loss (mic audio, the bot's audio;
client video).

aiortc's audio receiver uses ``JitterBuffer(capacity=16, prefetch=4)``: after one lost
packet it waits until the buffer is full (16 packets) and from then on releases one frame
per arriving packet, so the whole backlog stays in it — +200..300 ms on the mic path for
the rest of the call. The mic feeds VAD and ASR, which want the newest audio, not smooth
playout, (and a recording bot, the avatar's voice as it was sent, not a growing delay behind it),
so :class:`LowLatencyJitterBuffer` releases each frame as soon as it is complete,
waits at most ``max_wait_packets`` for a missing one, and then skips ahead to the newest
packet (the few frames in between are dropped and counted). Its latency after a loss is
bounded by ``max_wait_packets`` frames.

:class:`LowLatencyVideoJitterBuffer` is the video counterpart for an aiortc *client* (the
bot, benchmarks): aiortc's video buffer (512 packets) waits for a hole until 512 more packets
arrived — tens of seconds at a low bitrate — when a retransmission is lost too. This one gives
up on a hole after ``max_wait_s``, skips to the next frame start and asks for a keyframe.

The ``install_*`` functions replace the buffer of one receiver (aiortc's private slot,
:func:`media.aiortc_hooks.set_receiver_jitter_buffer`); nothing global is patched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

from media.aiortc_hooks import packet_payload, set_receiver_jitter_buffer
from media.congestion.fast_remb import RembObserver, install_fast_remb

__all__ = [
    "LowLatencyJitterBuffer",
    "LowLatencyVideoJitterBuffer",
    "install_audio_jitter_buffer",
    "install_receive_buffers",
    "install_video_jitter_buffer",
]


def _diff(a: int, b: int) -> int:
    """Signed distance a - b of two 16-bit sequence numbers."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


class LowLatencyJitterBuffer:
    """Drop-in for aiortc's audio ``JitterBuffer`` (one packet = one audio frame).

    ``add(packet)`` returns ``(pli_flag, frame or None)`` like aiortc's. Packets older than
    the next expected one are dropped (``late``); a gap blocks at most ``max_wait_packets``
    arrivals, after which the buffer jumps to the newest packet (``skipped`` frames lost).
    If several consecutive frames are ready at once (a reordered packet filled a gap) the
    older ones are dropped so the output is never more than one frame behind. A packet
    without payload (padding that a browser sends on the audio stream to probe bandwidth)
    keeps its place in the sequence but gives no frame: an empty packet handed to the Opus
    decoder ends its stream, and every later frame of the call fails to decode.
    """

    capacity = 16  # aiortc reads it for statistics only

    def __init__(self, *, max_wait_packets: int = 3) -> None:
        if max_wait_packets < 1:
            raise ValueError(f"max_wait_packets must be >= 1, got {max_wait_packets}")
        self.max_wait_packets = max_wait_packets
        self._next: int | None = None
        self._packets: dict[int, RtpPacket] = {}
        self.frames_out = 0
        self.skipped = 0
        self.late = 0
        self.padding = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        if _diff(seq, self._next) < 0:
            self.late += 1
            return False, None
        self._packets[seq] = packet
        if self._next not in self._packets:
            ahead = max(_diff(s, self._next) for s in self._packets)
            if ahead < self.max_wait_packets:
                return False, None
            # give up on the gap: jump to the newest packet
            newest = uint16_add(self._next, ahead)
            self.skipped += ahead
            self._drop_before(newest)
        # release the newest ready frame of the consecutive run, drop older ready ones
        run = self._next
        while uint16_add(run, 1) in self._packets:
            run = uint16_add(run, 1)
        if run != self._next:
            self.skipped += _diff(run, self._next)
            self._drop_before(run)
        out = self._packets.pop(run)
        self._next = uint16_add(run, 1)
        data = packet_payload(out)
        if not data:
            self.padding += 1
            return False, None
        self.frames_out += 1
        return False, JitterFrame(data=data, timestamp=out.timestamp)

    def _drop_before(self, seq: int) -> None:
        for s in [s for s in self._packets if _diff(s, seq) < 0]:
            del self._packets[s]
        self._next = seq


def install_audio_jitter_buffer(
    receiver: RTCRtpReceiver, *, max_wait_packets: int = 3
) -> LowLatencyJitterBuffer:
    """Give an *audio* receiver a :class:`LowLatencyJitterBuffer` (before media flows)."""
    if receiver.track is None or receiver.track.kind != "audio":
        raise ValueError("install_audio_jitter_buffer needs an audio receiver")
    buffer = LowLatencyJitterBuffer(max_wait_packets=max_wait_packets)
    set_receiver_jitter_buffer(receiver, buffer)
    return buffer


class LowLatencyVideoJitterBuffer:
    """Drop-in for aiortc's video ``JitterBuffer``: frames end at the RTP marker bit.

    ``add(packet)`` returns ``(pli_flag, frame or None)``: the oldest complete frame (one per
    call, as aiortc expects). A hole older than ``max_wait_s`` is given up: the buffer jumps
    to the next frame start after it and returns ``pli_flag=True`` (the receiver then sends a
    PLI, the sender a keyframe). ``time_fn`` is the clock of the waits.
    """

    capacity = 512

    def __init__(
        self, *, max_wait_s: float = 0.3, time_fn: Callable[[], float] = time.monotonic
    ) -> None:
        if max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be positive, got {max_wait_s}")
        self.max_wait_s = max_wait_s
        self._time = time_fn
        self._next: int | None = None
        self._packets: dict[int, RtpPacket] = {}
        self._hole_since: float | None = None
        self.frames_out = 0
        self.gaps_skipped = 0
        self.late = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        if _diff(seq, self._next) < 0:
            self.late += 1
            return False, None
        self._packets[seq] = packet
        frame = self._pop_frame()
        if frame is not None:
            self._hole_since = None
            return False, frame
        now = self._time()
        if self._hole_since is None:
            self._hole_since = now
            return False, None
        if now - self._hole_since < self.max_wait_s:
            return False, None
        self._skip_hole()
        self._hole_since = None
        return True, self._pop_frame()

    def _pop_frame(self) -> JitterFrame | None:
        assert self._next is not None
        seq, parts = self._next, []
        while seq in self._packets:
            parts.append(self._packets[seq])
            if parts[-1].marker:
                for p in parts:
                    del self._packets[p.sequence_number]
                self._next = uint16_add(seq, 1)
                self.frames_out += 1
                data = b"".join(packet_payload(p) for p in parts)
                return JitterFrame(data=data, timestamp=parts[0].timestamp)
            seq = uint16_add(seq, 1)
        return None

    def _skip_hole(self) -> None:
        """Jump to the oldest complete frame after the hole, else to the newest frame start."""
        assert self._next is not None
        origin = self._next
        self.gaps_skipped += 1
        starts = sorted(
            (
                s
                for s in self._packets
                if _diff(s, origin) > 0
                and (prev := self._packets.get(uint16_add(s, -1))) is not None
                and prev.marker
            ),
            key=lambda s: _diff(s, origin),
        )
        new = None
        for start in starts:
            if self._complete(start):
                new = start
                break
        if new is None:
            if starts:
                new = starts[-1]
            else:  # nothing usable yet: wait for what comes after the newest packet
                newest = max(self._packets, key=lambda s: _diff(s, origin))
                new = uint16_add(newest, 1)
        for s in [s for s in self._packets if _diff(s, new) < 0]:
            del self._packets[s]
        self._next = new

    def _complete(self, start: int) -> bool:
        seq = start
        while (p := self._packets.get(seq)) is not None:
            if p.marker:
                return True
            seq = uint16_add(seq, 1)
        return False


def install_video_jitter_buffer(
    receiver: RTCRtpReceiver, *, max_wait_s: float = 0.3
) -> LowLatencyVideoJitterBuffer:
    """Give a *video* receiver a :class:`LowLatencyVideoJitterBuffer` (before media flows)."""
    if receiver.track is None or receiver.track.kind != "video":
        raise ValueError("install_video_jitter_buffer needs a video receiver")
    buffer = LowLatencyVideoJitterBuffer(max_wait_s=max_wait_s)
    set_receiver_jitter_buffer(receiver, buffer)
    return buffer


def install_receive_buffers(
    pc: RTCPeerConnection, *, fast_remb: bool = True, on_remb: RembObserver | None = None
) -> list[object]:
    """A client's (the bot's) low-latency buffers on every receiving transceiver of ``pc``,
    after the remote description is set: aiortc's video buffer can stall for good after a
    lost retransmission, and its audio buffer waits for 16 packets after one lost packet,
    then keeps that backlog (a recording would fall behind the call). Video receivers also
    get :class:`.fast_remb.FastRemoteBitrateEstimator`, whose REMB leaves as soon as a
    bottleneck queue starts filling (``fast_remb=False``: aiortc's REMBs only; ``on_remb``
    sees each REMB sent either way)."""
    installed: list[object] = []
    for transceiver in pc.getTransceivers():
        track = transceiver.receiver.track
        if track is None:
            continue
        if track.kind == "video":
            installed.append(install_video_jitter_buffer(transceiver.receiver))
            installed.append(
                install_fast_remb(transceiver.receiver, detect=fast_remb, on_remb=on_remb)
            )
        elif track.kind == "audio":
            installed.append(install_audio_jitter_buffer(transceiver.receiver))
    return installed
