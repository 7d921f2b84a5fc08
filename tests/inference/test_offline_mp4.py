"""MP4 writing and audio reading of the offline renderer: streams, fallback, atomicity."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest

from inference.offline import AudioInputError, Mp4Options, Mp4Writer, Pcm, read_audio_file
from inference.offline.mp4 import pick_video_codec
from inference.render.base import render_input


def _tone(seconds: float, rate: int) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return Pcm((np.sin(2 * np.pi * 330 * t) * 9000).astype(np.int16), rate)


def _frames(n: int, w: int = 96, h: int = 64) -> list[np.ndarray]:
    return [np.full((h, w, 3), (i * 10) % 256, np.uint8) for i in range(n)]


def _streams(path: Path) -> dict[str, tuple[str, float, int]]:
    out: dict[str, tuple[str, float, int]] = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            assert s.duration is not None and s.time_base is not None
            out[s.type] = (s.codec_context.name, float(s.duration * s.time_base), s.frames)
    return out


@pytest.mark.parametrize("rate", [22050, 17000])  # 17 kHz is no AAC rate: resampled to 48 kHz
def test_h264_and_aac_of_the_right_length(tmp_path: Path, rate: int) -> None:
    target = tmp_path / "x.mp4"
    with Mp4Writer(target, fps=25, size=(96, 64), audio=_tone(1.0, rate)) as writer:
        for i in range(0, 25, 10):
            writer.write(_frames(25)[i : i + 10])
        assert writer.commit() == target
    streams = _streams(target)
    assert streams["video"][0] == "h264" and streams["video"][2] == 25
    assert streams["video"][1] == pytest.approx(1.0, abs=0.05)
    assert streams["audio"][0] == "aac" and streams["audio"][1] == pytest.approx(1.0, abs=0.06)
    assert read_audio_file(target).duration_s == pytest.approx(1.0, abs=0.07)
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]


def test_codec_fallback_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = Mp4Options(video_codecs=("no-such-encoder", "mpeg4"))
    with caplog.at_level(logging.WARNING):
        assert pick_video_codec(options.video_codecs) == "mpeg4"
    assert "no-such-encoder is not in this PyAV build; encoding with mpeg4" in caplog.text
    with Mp4Writer(
        tmp_path / "m.mp4", fps=25, size=(96, 64), audio=_tone(0.4, 16000), options=options
    ) as writer:
        writer.write(_frames(10))
        writer.commit()
    assert _streams(tmp_path / "m.mp4")["video"][0] == "mpeg4"
    with pytest.raises(RuntimeError, match="none of the video encoders"):
        pick_video_codec(("no-such-encoder",))


def test_failure_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "y.mp4"
    with pytest.raises(ValueError, match=r"frame 5 is \(10, 10, 3\)"):
        with Mp4Writer(target, fps=25, size=(96, 64), audio=_tone(1.0, 16000)) as writer:
            writer.write(_frames(5))
            writer.write([np.zeros((10, 10, 3), np.uint8)])
    assert list(target.parent.iterdir()) == []
    with pytest.raises(ValueError, match="even"):
        Mp4Writer(target, fps=25, size=(95, 64), audio=_tone(1.0, 16000))
    assert list(target.parent.iterdir()) == []


def test_audio_of_any_format_is_mono_int16(tmp_path: Path) -> None:
    path = tmp_path / "stereo.mp3"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libmp3lame", rate=44100, layout="stereo")
        t = np.arange(44100) / 44100
        wave = (np.sin(2 * np.pi * 220 * t) * 0.5).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    pcm = read_audio_file(path)
    assert pcm.rate == 44100 and pcm.samples.dtype == np.int16 and pcm.samples.ndim == 1
    assert pcm.duration_s == pytest.approx(1.0, abs=0.08)
    assert len(render_input(pcm.as_chunk(), 25)) == pytest.approx(16000, abs=800)


def test_unreadable_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="audio file not found"):
        read_audio_file(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav file" * 10)
    with pytest.raises(AudioInputError, match=r"bad\.wav: cannot decode audio"):
        read_audio_file(bad)
    silent_video = tmp_path / "video.mp4"
    with av.open(str(silent_video), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*s.encode(frame), *s.encode(None)]:
            c.mux(packet)
    with pytest.raises(AudioInputError, match="no audio stream"):
        read_audio_file(silent_video)
