"""LiveVoice: a person's voice, streamed through a renderer onto a real A/V timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from inference.audio import resample_int16
from media.clock import ManualClock, MediaClock
from media.player import AvPlayer
from signaling.call.live_voice import VOICE_RATE, LiveVoice, LiveVoiceOptions
from tests.harness.voices import speak


class LoudnessRenderer:
    """Frames whose grey level is the loudness of the audio they cover (so a test can see
    which sound each pushed frame was drawn for)."""

    fps = 25
    frame_size = (8, 8)

    def __init__(self) -> None:
        self.calls = 0

    def set_output_height(self, height: int) -> None:
        pass

    def idle_frames(self) -> list[np.ndarray]:
        return [np.zeros((8, 8, 3), np.uint8)]

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        self.calls += 1
        per = 16000 // self.fps
        frames = []
        for i in range(-(-len(audio_16k) // per)):
            part = audio_16k[i * per : (i + 1) * per].astype(np.float64)
            level = min(255, int(np.sqrt(np.mean(part * part)) / 32))
            frames.append(np.full((8, 8, 3), level, np.uint8))
        yield frames


def _voice() -> np.ndarray:
    """An unseen voice (espeak), 48 kHz: speech, 1 s of silence, speech."""
    pcm = resample_int16(speak("espeak-en-us-140", "Hello, this is Ann."), 16000, VOICE_RATE)
    return np.concatenate([pcm, np.zeros(VOICE_RATE, np.int16), pcm])


async def test_spurts_are_rendered_and_pushed_with_their_own_frames() -> None:
    clock = ManualClock(start=10.0)
    player = AvPlayer(clock=clock)
    renderer = LoudnessRenderer()
    interrupts: list[float] = []
    spurts: list[np.ndarray] = []
    voice = LiveVoice(
        LiveVoiceOptions(chunk_frames=4, hangover_ms=200),
        renderer=renderer,
        sink=player,
        now=clock.now,
        interrupt=lambda: interrupts.append(clock.now()),
        on_spurt=spurts.append,
    )
    pushed: list[tuple[np.ndarray, list[np.ndarray]]] = []
    push = player.push

    def spy(audio: np.ndarray, frames: Sequence[np.ndarray]) -> float:
        pushed.append((audio, list(frames)))
        return push(audio, frames)

    player.push = spy  # type: ignore[method-assign]
    pcm = _voice()
    for i in range(0, len(pcm), 960):  # 20 ms pieces, in real time, as a microphone sends
        await voice.feed(pcm[i : i + 960])
        clock.advance(0.02)
    assert voice.stats.spurts == 2 and len(interrupts) == 2  # each spurt stops the agent
    # each spurt's audio is handed on once it ends (for the transcript): about one line each
    line_s = (len(pcm) - VOICE_RATE) / 2 / VOICE_RATE
    assert len(spurts) == 2, [len(a) for a in spurts]
    for audio in spurts:
        assert audio.dtype == np.int16 and 0.6 * line_s < len(audio) / VOICE_RATE < line_s + 0.3
    sent = sum(len(a) for a, _ in pushed)
    assert 0.5 * len(pcm) < sent < len(pcm) - 0.5 * VOICE_RATE  # the long silence is not sent
    for audio, frames in pushed:  # every chunk: 4 frames, 160 ms, its own loudness drawn
        assert len(frames) == 4 and len(audio) == 4 * 1920
        for k, frame in enumerate(frames):
            part = audio[k * 1920 : (k + 1) * 1920].astype(np.float64)
            assert abs(int(frame[0, 0, 0]) - min(255, np.sqrt(np.mean(part * part)) / 32)) <= 2
    # a chunk plays the player's lead after its last sample arrived (the renderer is instant)
    assert voice.stats.voiced_s > 1.0 and voice.stats.last_delay_s == pytest.approx(0.12, abs=0.05)


async def test_bad_audio_is_refused_and_options_are_checked() -> None:
    clock = MediaClock()
    voice = LiveVoice(
        LiveVoiceOptions(),
        renderer=LoudnessRenderer(),
        sink=AvPlayer(clock=clock),
        now=clock.now,
        interrupt=lambda: None,
    )
    with pytest.raises(ValueError, match="int16"):
        await voice.feed(np.zeros(960, np.float32))
    for bad in ({"chunk_frames": 0}, {"fps": 7}, {"vad_mode": 5}, {"hangover_ms": -1}):
        with pytest.raises(ValueError):
            LiveVoiceOptions(**bad)  # type: ignore[arg-type]
