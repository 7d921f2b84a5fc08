import asyncio

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from media.clock import ManualClock
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack

pytestmark = pytest.mark.timeout(20)

SR, FPS = 48000, 25


async def _recv_at(clock: ManualClock, track, t: float):  # type: ignore[no-untyped-def]
    """Start recv, move the manual clock to ``t``, return the frame."""
    task = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    if t > clock.now():
        clock.set(t + 1e-9)  # a hair past t: tick times are computed in floating point
    return await task


def _setup(start: float = 0.0) -> tuple[ManualClock, AvPlayer]:
    clock = ManualClock(start=start)
    return clock, AvPlayer(clock=clock, fps=FPS, sample_rate=SR, lead_s=0.0)


async def test_audio_track_continuous_frames_and_content() -> None:
    clock, player = _setup(start=2.0)
    track = ClockedAudioTrack(player, clock)
    tone = (np.sin(np.arange(1920) / 5) * 10000).astype(np.int16)
    start = player.push(tone, [np.zeros((8, 8, 3), np.uint8)])
    frames = []
    for k in range(4):
        frames.append(await _recv_at(clock, track, 2.0 + 0.02 * k))
    assert [f.pts for f in frames] == [0, 960, 1920, 2880]
    for f in frames:
        assert f.samples == 960 and f.sample_rate == SR
        assert f.format.name == "s16" and f.layout.name == "mono"
        assert f.time_base.denominator == SR
    got = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert start == pytest.approx(2.0)
    np.testing.assert_array_equal(got[:1920], tone)
    assert (got[1920:] == 0).all()  # silence when idle
    assert track.frames_sent == 4 and track.frames_skipped == 0


async def test_audio_track_waits_for_its_release_time() -> None:
    clock, player = _setup()
    track = ClockedAudioTrack(player, clock)
    await _recv_at(clock, track, 0.0)
    task = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    clock.set(0.019)
    await asyncio.sleep(0)
    assert not task.done()
    clock.set(0.02)
    assert (await task).pts == 960


async def test_audio_track_catches_up_then_jumps() -> None:
    clock, player = _setup()
    track = ClockedAudioTrack(player, clock, max_catchup_s=0.2)
    await _recv_at(clock, track, 0.0)
    clock.set(0.1)  # 100 ms stall: the due frames come at once (catch-up)
    for k in range(1, 6):
        f = await track.recv()
        assert f.pts == 960 * k
    assert track.frames_skipped == 0
    clock.set(1.1)  # 1 s stall: jump forward, pts still counts samples continuously
    f = await track.recv()
    assert f.pts == 960 * 6
    assert track.frames_skipped >= 40
    assert track.frame_time(track._k) >= 1.1 - 0.2


async def test_video_track_pts_from_clock_and_drops_stale_ticks() -> None:
    clock, player = _setup(start=1.0)
    idle = IdleLoop([np.full((16, 16, 3), 7, np.uint8)])
    seen: list[tuple[float, bool]] = []
    track = ClockedVideoTrack(
        player, clock, idle, fps=FPS, on_frame=lambda t, r: seen.append((t, r))
    )
    f0 = await _recv_at(clock, track, 1.0)  # ticks lie on the clock's 40 ms grid
    assert f0.pts == 90000 and f0.time_base.denominator == 90000
    f1 = await _recv_at(clock, track, 1.04)
    assert f1.pts == round(1.04 * 90000)
    clock.set(1.25)  # woke late: ticks 1.08..1.24 are due; only the newest is sent
    f2 = await track.recv()
    assert f2.pts == round(1.24 * 90000)
    assert track.frames_dropped == 4 and track.frames_sent == 3  # 1.08 .. 1.20 dropped
    assert [r for _, r in seen] == [False, False, False]
    assert f2.to_ndarray(format="rgb24")[0, 0, 0] == 7


async def test_video_track_reply_frames_resize_and_fps_change() -> None:
    clock, player = _setup()
    idle = IdleLoop([np.zeros((16, 16, 3), np.uint8)])
    track = ClockedVideoTrack(player, clock, idle)
    await _recv_at(clock, track, 0.0)
    red = np.zeros((32, 24, 3), np.uint8)
    red[..., 0] = 255
    player.push(np.zeros(1920 * 2, np.int16), [red, red])  # at 0.0 (lead 0) .. 0.08
    f = await _recv_at(clock, track, 0.04)
    assert (f.width, f.height) == (24, 32) and track.reply_frames_sent == 1
    track.fps = 10  # the next tick is the next one of the 10 fps grid
    f = await _recv_at(clock, track, 0.1)
    assert f.pts == round(0.1 * 90000) and (f.width, f.height) == (16, 16)
    track.set_idle(IdleLoop([np.zeros((8, 8, 3), np.uint8)]))
    f = await _recv_at(clock, track, 0.2)
    assert f.pts == 18000
    assert (f.width, f.height) == (8, 8)
    with pytest.raises(ValueError):
        track.fps = 0


async def test_stopped_tracks_raise() -> None:
    clock, player = _setup()
    a = ClockedAudioTrack(player, clock)
    v = ClockedVideoTrack(player, clock, IdleLoop([np.zeros((4, 4, 3), np.uint8)]))
    a.stop()
    v.stop()
    with pytest.raises(MediaStreamError):
        await a.recv()
    with pytest.raises(MediaStreamError):
        await v.recv()


async def test_video_first_tick_is_on_the_frame_grid() -> None:
    clock, player = _setup(start=0.05)
    track = ClockedVideoTrack(player, clock, IdleLoop([np.zeros((4, 4, 3), np.uint8)]))
    f = await _recv_at(clock, track, 0.08)
    assert f.pts == round(0.08 * 90000) and track.start_time == pytest.approx(0.08)


async def test_barge_in_flush_silences_both_tracks_at_once() -> None:
    clock, player = _setup()
    idle_px = np.full((8, 8, 3), 9, np.uint8)
    a = ClockedAudioTrack(player, clock)
    v = ClockedVideoTrack(player, clock, IdleLoop([idle_px]))
    await _recv_at(clock, a, 0.0)
    await _recv_at(clock, v, 0.0)
    reply = np.full((8, 8, 3), 200, np.uint8)
    player.push(np.full(1920 * 10, 5000, np.int16), [reply] * 10)  # 0.0 .. 0.4 s
    f = await _recv_at(clock, a, 0.02)
    assert (f.to_ndarray() == 5000).all()
    assert (await _recv_at(clock, v, 0.04)).to_ndarray(format="rgb24")[0, 0, 0] == 200
    assert player.flush() == pytest.approx(0.4 - 0.04, abs=1e-3)
    f = await _recv_at(clock, a, 0.06)
    assert (f.to_ndarray() == 0).all()
    assert (await _recv_at(clock, v, 0.08)).to_ndarray(format="rgb24")[0, 0, 0] == 9
    assert not player.speaking(clock.now())


async def test_fps_change_while_a_frame_is_scheduled_keeps_pts_increasing() -> None:
    clock = ManualClock(1.0)
    player = AvPlayer(clock=clock, fps=25)
    track = ClockedVideoTrack(player, clock, IdleLoop([np.zeros((16, 16, 3), np.uint8)]), fps=25)
    pts: list[int] = []
    for fps_after in (10, 25, 15):
        pending = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0)  # recv is now sleeping towards its tick
        track.fps = fps_after
        clock.advance(0.2)
        frame = await pending
        assert frame.pts is not None
        pts.append(frame.pts)
        nxt = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0)
        clock.advance(0.2)
        frame = await nxt
        assert frame.pts is not None
        pts.append(frame.pts)
    assert pts == sorted(set(pts)), pts
