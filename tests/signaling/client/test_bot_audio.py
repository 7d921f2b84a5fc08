"""The bot's question audio: decoding odd formats, bad files, and the paced mic track."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from signaling.client.bot import BotOptions, main
from signaling.client.bot_audio import MIC_RATE, AudioFileError, MicTrack, load_audio, voiced_span


def _tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def _dominant_hz(pcm: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spec) * MIC_RATE / pcm.size)


def test_8khz_stereo_int16(tmp_path: Path) -> None:
    x = _tone(8000, 1.0)
    path = tmp_path / "q.wav"
    sf.write(path, np.stack([x, x], axis=1), 8000, subtype="PCM_16")
    pcm = load_audio(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(pcm.size - MIC_RATE) <= 960
    assert _dominant_hz(pcm) == pytest.approx(440, abs=3)
    assert 0.4 < np.abs(pcm).max() / 32768 < 0.6


def test_44k_float_mono_and_flac(tmp_path: Path) -> None:
    x = _tone(44_100, 0.5, 1000.0)
    path = tmp_path / "q.wav"
    sf.write(path, x, 44_100, subtype="FLOAT")
    pcm = load_audio(path)
    assert abs(pcm.size - MIC_RATE // 2) <= 960
    assert _dominant_hz(pcm) == pytest.approx(1000, abs=4)
    flac = tmp_path / "q.flac"
    sf.write(flac, x, 44_100)
    assert abs(load_audio(flac).size - pcm.size) <= 960


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"RIFF\x00\x00garbage-not-a-wav" * 3, "cannot read"), (None, "not found")],
)
def test_unreadable_audio_is_a_clear_error(tmp_path: Path, content, message) -> None:
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioFileError, match=message):
        load_audio(path)


def test_unreadable_audio_exits_2_before_connecting(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(b"this is text, not audio")
    # port 9 (discard) is closed: had the bot tried to connect it would fail with exit 1
    rc = main(["--url", "http://127.0.0.1:9", "--audio", str(path), "--timeout-s", "2"])
    assert rc == 2
    assert "bad.wav" in capsys.readouterr().err


def test_bad_options_exit_2(capsys) -> None:
    assert main(["--url", "ftp://x", "--text", "hi"]) == 2
    assert "url" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--url", "http://127.0.0.1:9"])  # neither --audio nor --text
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="exactly one"):
        BotOptions(url="http://127.0.0.1:1", audio=Path("a.wav"), text="hi")


def test_loopback_default_follows_url(monkeypatch) -> None:
    monkeypatch.delenv("AVATAR_RTC_BOT_LOOPBACK", raising=False)
    assert BotOptions(url="http://127.0.0.1:8080", text="hi").wants_loopback()
    assert not BotOptions(url="http://192.0.2.7:8080", text="hi").wants_loopback()
    monkeypatch.setenv("AVATAR_RTC_BOT_LOOPBACK", "0")
    assert not BotOptions(url="http://localhost:8080", text="hi").wants_loopback()


def test_voiced_span_skips_leading_and_trailing_silence() -> None:
    pcm = np.zeros(MIC_RATE * 2, np.int16)
    pcm[MIC_RATE // 2 : MIC_RATE] = (_tone(MIC_RATE, 0.5) * 32767).astype(np.int16)
    start, end = voiced_span(pcm)
    assert start == pytest.approx(0.5, abs=0.02)
    assert end == pytest.approx(1.0, abs=0.02)


async def test_mic_track_paces_plays_then_silence() -> None:
    mic = MicTrack()
    clip = (_tone(MIC_RATE, 0.1) * 32767).astype(np.int16)  # 5 frames
    pb = mic.play(clip)
    t0 = time.monotonic()
    frames = [await mic.recv() for _ in range(10)]
    elapsed = time.monotonic() - t0
    assert 0.15 <= elapsed <= 0.4  # 10 frames of 20 ms, the first one immediately
    data = [f.to_ndarray().reshape(-1) for f in frames]
    assert all(d.size == 960 for d in data)
    assert np.array_equal(np.concatenate(data[:5]), clip)
    assert not np.any(np.concatenate(data[5:]))
    assert [f.pts for f in frames] == [960 * k for k in range(10)]
    assert pb.finished.result() - pb.started.result() == pytest.approx(0.1, abs=0.03)
    mic.stop()
