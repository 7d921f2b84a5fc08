"""MediaRecording: a call's timeline and caller audio muxed to Matroska, and its failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np

from media.clock import MediaClock
from media.player import AvPlayer, IdleLoop
from media.recording import MediaRecording, RecordingOptions


def _tone(seconds: float, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


async def _record(path: Path, seconds: float = 1.2) -> MediaRecording:
    clock = MediaClock()
    player = AvPlayer(clock=clock)
    idle = IdleLoop([np.full((96, 128, 3), 40, np.uint8)])
    recording = MediaRecording(
        RecordingOptions(path=path, lag_s=0.2, tick_s=0.1), player=player, idle=idle, now=clock.now
    )
    task = asyncio.ensure_future(recording.run())
    face = np.full((96, 128, 3), 220, np.uint8)
    player.push(_tone(0.4), [face] * 10)  # 0.4 s of voice with its own face
    for _ in range(int(seconds / 0.02)):
        recording.caller(np.full(320, 3000, np.int16), clock.now())
        await asyncio.sleep(0.02)
    await recording.stop()
    await task
    return recording


async def test_the_avatar_and_the_caller_are_written_in_step(tmp_path: Path) -> None:
    path = tmp_path / "calls" / "a.mkv"
    recording = await _record(path)
    summary = recording.summary
    assert summary.failure is None and summary.bytes == path.stat().st_size > 0
    assert summary.video_frames >= 25 and 1.0 < summary.seconds < 1.6 and summary.caller_s > 1.0
    with av.open(str(path)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "audio", "video"]
        faces = [f.to_ndarray(format="gray").mean() for f in container.decode(video=0)]
    assert len(faces) == summary.video_frames
    bright = [i for i, level in enumerate(faces) if level > 150]  # the voice's own frames
    assert 8 <= len(bright) <= 11 and bright == list(range(bright[0], bright[0] + len(bright)))
    with av.open(str(path)) as container:
        voice = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in container.decode(container.streams.audio[0])]
        )
    loud = np.flatnonzero(np.abs(voice) > 0.05)  # decoded Opus: float samples at 48 kHz
    start_s, end_s = loud[0] / 48000, loud[-1] / 48000
    assert abs(start_s - bright[0] / 25) < 0.06 and 0.35 < end_s - start_s < 0.45  # lips = voice


async def test_a_full_disk_ends_the_recording_not_the_call(tmp_path: Path) -> None:
    recording = await _record(Path("/dev/full"), seconds=0.6)
    assert recording.failure is not None and "No space" in recording.failure


async def test_a_folder_that_cannot_be_made_is_a_clear_failure(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    recording = await _record(tmp_path / "blocked" / "a.mkv", seconds=0.3)
    assert recording.failure is not None and "blocked" in recording.failure
