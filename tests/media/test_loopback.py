"""Real aiortc peers on 127.0.0.1: the clocked tracks through Opus/VP8 and back."""

import asyncio
from dataclasses import dataclass, field

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.clock import MediaClock
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack
from tests.rtc_helpers import connect_pair, loopback_pc, patch_loopback_ice

pytestmark = pytest.mark.timeout(60)

SIZE = 128
GREY = np.full((SIZE, SIZE, 3), 128, np.uint8)
RED = np.zeros((SIZE, SIZE, 3), np.uint8)
RED[..., 0] = 255


@dataclass
class Received:
    """(arrival clock time, frame pts, frame) of each frame the receiver got."""

    audio: list[tuple[float, int, np.ndarray]] = field(default_factory=list)
    video: list[tuple[float, int, np.ndarray]] = field(default_factory=list)


async def _drain(track: MediaStreamTrack, clock: MediaClock, out: list) -> None:  # type: ignore[type-arg]
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if isinstance(frame, av.AudioFrame):
            data: np.ndarray = frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)]
        else:
            assert isinstance(frame, av.VideoFrame)
            data = frame.to_ndarray(format="rgb24")
        assert frame.pts is not None
        out.append((clock.now(), frame.pts, data))


async def test_clocked_tracks_over_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_loopback_ice(monkeypatch)
    clock = MediaClock()
    player = AvPlayer(clock=clock, lead_s=0.12)
    audio = ClockedAudioTrack(player, clock)
    video = ClockedVideoTrack(player, clock, IdleLoop([GREY]))
    sender, receiver = loopback_pc(), loopback_pc()
    sender.addTrack(audio)
    sender.addTrack(video)
    got = Received()
    tasks: list[asyncio.Task[None]] = []

    @receiver.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        out = got.audio if track.kind == "audio" else got.video
        tasks.append(asyncio.create_task(_drain(track, clock, out)))

    try:
        async with asyncio.timeout(10):
            await connect_pair(sender, receiver)
        await asyncio.sleep(2.2)
        # --- idle: ~25 fps of video, continuous audio
        t_end = clock.now()
        window = [t for t, _, _ in got.video if t_end - 2.0 <= t < t_end]
        assert 22 <= len(window) / 2.0 <= 26
        pts = [p for _, p, _ in got.audio]
        assert len(pts) >= 90
        assert set(np.diff(pts).tolist()) == {960}  # no gap in the audio timeline
        assert (np.abs(got.video[-1][2].astype(int) - 128) < 20).all()  # grey idle
        n_audio, n_video = len(got.audio), len(got.video)

        # --- a reply segment: 0.4 s of 1 kHz tone with red frames
        t = np.arange(48000 * 10 // 25) / 48000
        tone = (np.sin(2 * np.pi * 1000 * t) * 12000).astype(np.int16)
        start = player.push(tone, [RED] * 10)
        await asyncio.sleep(1.0)
    finally:
        await sender.close()
        await receiver.close()
        await asyncio.gather(*tasks)

    assert audio.start_time is not None and video.start_time is not None
    # map receiver pts (origin = first frame) back to the sender's clock
    a_on = next(
        (audio.start_time + (p + int(np.argmax(np.abs(x) > 3000))) / 48000, arr)
        for arr, p, x in got.audio[n_audio:]
        if (np.abs(x) > 3000).any()
    )
    v_on = next(
        (video.start_time + p / 90000, arr)
        for arr, p, x in got.video[n_video:]
        if x[..., 0].mean() > 200 and x[..., 1].mean() < 60
    )
    audio_t, audio_arrival = a_on
    video_t, video_arrival = v_on
    assert abs(audio_t - start) < 0.02  # Opus look-ahead adds ~6.5 ms
    assert abs(video_t - start) < 0.002  # segments start on the video frame grid
    assert abs(audio_t - video_t) < 0.02  # aligned well within one frame (40 ms)
    # arrival at this (aiortc) receiver: its audio jitter buffer prefetches 4 packets (~80 ms)
    skew = audio_arrival - video_arrival
    print(f"media skew {1000 * (audio_t - video_t):+.1f} ms, arrival skew {1000 * skew:+.1f} ms")
    assert -0.05 < skew < 0.15
    assert video.frames_dropped <= 2 and audio.frames_skipped == 0
    assert video.reply_frames_sent >= 9
