import shutil
import subprocess
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from media.vad import (
    Segmenter,
    SegmenterEvent,
    SegmenterOptions,
    SpeechDropped,
    SpeechStarted,
    UtteranceReady,
)

SR = 16000


def voice(seconds: float, amp: float = 8000.0, f0: float = 150.0) -> np.ndarray:
    """A harmonic-rich 'vowel' that webrtcvad calls voiced (a pure sine is not)."""
    t = np.arange(round(seconds * SR)) / SR
    s = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))
    return (s / np.abs(s).max() * amp).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.standard_normal(round(seconds * SR)) * 20).astype(np.int16)


def run(seg: Segmenter, audio: np.ndarray, t0: float = 10.0) -> list[SegmenterEvent]:
    events: list[SegmenterEvent] = []
    for i in range(len(audio) // 320):
        events += seg.push(audio[i * 320 : (i + 1) * 320], t0 + (i + 1) * 0.02)
    return events


def test_start_end_and_pre_roll() -> None:
    audio = np.concatenate([silence(1.0), voice(1.0), silence(1.0)])
    events = run(Segmenter(), audio, t0=10.0)
    assert [type(e) for e in events] == [SpeechStarted, UtteranceReady]
    started, utt = events
    assert isinstance(started, SpeechStarted) and isinstance(utt, UtteranceReady)
    assert 11.1 <= started.t <= 11.22  # 60 % of a 200 ms window voiced
    assert started.start_s == pytest.approx(started.t - 0.2)
    # speech 11.0..12.0; utterance has 200 ms pre-roll before the window and 200 ms tail
    assert utt.start_s == pytest.approx(started.t - 0.4)
    # webrtcvad itself stays voiced ~120 ms after the voice stops, then our 200 ms tail
    assert 12.15 <= utt.end_s <= 12.4
    assert utt.complete and len(utt.samples) == round((utt.end_s - utt.start_s) * SR)
    assert utt.duration_s == pytest.approx(utt.end_s - utt.start_s)
    # ended after the 500 ms hangover: nothing is emitted before then
    events2 = run(Segmenter(), np.concatenate([silence(1.0), voice(1.0), silence(0.4)]))
    assert [type(e) for e in events2] == [SpeechStarted]


def test_hangover_bridges_short_pauses() -> None:
    audio = np.concatenate([silence(0.5), voice(0.6), silence(0.3), voice(0.6), silence(1.0)])
    events = run(Segmenter(), audio, t0=0.0)
    assert [type(e) for e in events] == [SpeechStarted, UtteranceReady]
    utt = events[1]
    assert isinstance(utt, UtteranceReady) and utt.duration_s > 1.5


def test_short_speech_is_dropped() -> None:
    audio = np.concatenate([silence(0.5), voice(0.3), silence(1.0)])
    events = run(Segmenter(), audio, t0=0.0)
    assert [type(e) for e in events] == [SpeechStarted, SpeechDropped]
    dropped = events[1]
    assert isinstance(dropped, SpeechDropped) and 0.2 <= dropped.voiced_s < 0.5


def test_long_speech_split_at_quietest_frame() -> None:
    # 10 s of speech with a quiet (still voiced) stretch at 6.5 s: split there at 8 s.
    speech = np.concatenate([voice(6.5), voice(0.04, amp=600), voice(3.46)])
    audio = np.concatenate([silence(0.5), speech, silence(1.0)])
    events = run(Segmenter(SegmenterOptions(max_segment_s=8.0)), audio, t0=0.0)
    assert [type(e) for e in events] == [SpeechStarted, UtteranceReady, UtteranceReady]
    first, second = events[1], events[2]
    assert isinstance(first, UtteranceReady) and isinstance(second, UtteranceReady)
    assert not first.complete and second.complete
    assert 6.95 <= first.end_s <= 7.05  # speech starts at 0.5 s; the dip is 7.0..7.04
    assert second.start_s == pytest.approx(first.end_s)
    assert len(first.samples) + len(second.samples) == round((second.end_s - first.start_s) * SR)


def test_reset_forgets_current_speech() -> None:
    seg = Segmenter()
    events = run(seg, np.concatenate([silence(0.2), voice(0.6), silence(0.2)]), t0=0.0)
    assert [type(e) for e in events] == [SpeechStarted]
    assert seg.speaking
    seg.reset()
    assert not seg.speaking
    assert run(seg, silence(1.0), t0=1.0) == []  # the ended speech is never reported


def test_validation() -> None:
    seg = Segmenter()
    with pytest.raises(ValueError, match="320 samples"):
        seg.push(np.zeros(160, np.int16), 0.0)
    with pytest.raises(ValueError, match="int16"):
        seg.push(np.zeros(320, np.float32), 0.0)
    with pytest.raises(ValueError, match="aggressiveness"):
        SegmenterOptions(aggressiveness=5)
    with pytest.raises(ValueError, match="start_ratio"):
        SegmenterOptions(start_ratio=0.0)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A real spoken sentence from espeak-ng, 16 kHz mono int16."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng)")
    path = Path(tmp_path_factory.mktemp("vad")) / "s.wav"
    text = "Hello, I would like to check the status of my order, please."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    rs = av.AudioResampler(format="s16", layout="mono", rate=SR)
    out = [f.to_ndarray().reshape(-1) for f in [*rs.resample(frame), *rs.resample(None)]]
    return np.concatenate(out)


def test_real_speech_is_one_utterance(spoken: np.ndarray) -> None:
    pad = np.zeros(SR, np.int16)
    # a steady noise floor under everything, as a real microphone has
    audio = np.concatenate([pad, spoken, pad]) + silence((2 * SR + len(spoken)) / SR)
    events = run(Segmenter(), audio, t0=0.0)
    assert [type(e) for e in events] == [SpeechStarted, UtteranceReady]
    utt = events[1]
    assert isinstance(utt, UtteranceReady)
    speech_s = len(spoken) / SR
    assert abs(utt.duration_s - speech_s) < 0.6
    assert 0.6 <= utt.start_s <= 1.1


def _tail_counts(options: SegmenterOptions) -> list[tuple[int, int]]:
    """(trailing silent frames as early ASR sees them, the segmenter's unvoiced frames) for
    each frame of the silence after one second of voice."""
    seg = Segmenter(options)
    run(seg, np.concatenate([silence(0.3), voice(1.0)]))
    counts = []
    for i in range(15):
        seg.push(silence(0.02), 20.0 + i * 0.02)
        counts.append((seg.trailing_silence_frames, seg._trailing))
    return counts


def test_silence_after_the_voice_counts_from_where_it_fell_quiet() -> None:
    """webrtcvad keeps frames voiced for a while after the voice stops (its hangover); for
    early ASR the silence starts at the first quiet frame, unless quiet_db is off."""
    quiet = _tail_counts(SegmenterOptions(quiet_db=30))
    assert [t for t, _ in quiet] == list(range(1, 16))
    assert all(t > vad for t, vad in quiet[:5])  # the VAD still said "voiced" there
    vad_only = _tail_counts(SegmenterOptions())  # the default: webrtcvad alone
    assert [t for t, _ in vad_only] == [vad for _, vad in vad_only]
    assert vad_only[0][0] == 0
