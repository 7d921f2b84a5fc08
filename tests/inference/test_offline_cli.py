"""``avatar-rtc render`` end to end with warp: text, audio, scripts, resume, atomicity, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from inference.avatar import DEFAULT_AVATAR_NAME, PreparedAvatar
from inference.offline import AvatarSource, Manifest, WarpFrames
from inference.offline.cli import main
from inference.render.base import Renderer, RendererWrapper
from inference.render.warp import WarpOptions
from inference.tts import FakeTts


@pytest.fixture(scope="module")
def avatars_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("avatars")
    AvatarSource(root).get(DEFAULT_AVATAR_NAME)  # prepared once for the module
    return root


def _decode(path: Path) -> tuple[list[np.ndarray], float, float]:
    """Video frames, video duration and decoded audio duration of an MP4."""
    with av.open(str(path)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert video.duration is not None and video.time_base is not None
        video_s = float(video.duration * video.time_base)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
        rate = c.streams.audio[0].rate
    return frames, video_s, samples / rate


def _wav(path: Path, seconds: float, rate: int = 44100) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    wave = (env * np.sin(2 * np.pi * 180 * t) * 12000).astype(np.int16)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    return path


def _args(avatars_dir: Path, *extra: str) -> list[str]:
    return [*extra, "--avatars-dir", str(avatars_dir), "--height", "128", "--no-progress"]


def test_text_to_mp4_with_piper(avatars_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp4"
    assert (
        main(_args(avatars_dir, "--text", "Hello, welcome to our store.", "--out", str(out))) == 0
    )
    frames, video_s, audio_s = _decode(out)
    assert frames[0].shape == (128, 128, 3)
    assert 1.0 < audio_s < 4.0
    assert video_s == pytest.approx(audio_s, abs=0.1)
    assert len(frames) == pytest.approx(audio_s * 25, abs=2)
    avatar = AvatarSource(avatars_dir).get(DEFAULT_AVATAR_NAME)
    x0, y0, x1, y1 = (avatar.mouth_boxes[0] * 128 / avatar.size[1]).astype(int)
    mouth = np.stack([f[y0 - 2 : y1 + 4, x0 - 2 : x1 + 2].astype(np.float32) for f in frames])
    assert mouth.std(axis=0).mean() > 3.0  # the mouth moves with the speech
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.mp4"]  # no sidecar, no temp


def test_audio_file_to_folder(avatars_dir: Path, tmp_path: Path) -> None:
    wav = _wav(tmp_path / "question.wav", 1.0)
    out_dir = tmp_path / "videos"
    assert main(_args(avatars_dir, "--audio", str(wav), "--out", str(out_dir))) == 0
    frames, video_s, audio_s = _decode(out_dir / "question.mp4")
    assert len(frames) == 25 and video_s == pytest.approx(1.0, abs=0.01)
    assert audio_s == pytest.approx(1.0, abs=0.05)


class _CountingFrames:
    """Wraps a frame source: counts clips, and fails on clip ``fail_on`` after ``after`` batches."""

    def __init__(self, inner: WarpFrames, fail_on: int = 0, after: int = 0) -> None:
        self.inner, self.fail_on, self.after = inner, fail_on, after
        self.name, self.fps = inner.name, inner.fps
        self.calls = 0

    def renderer(self, avatar: PreparedAvatar, *, height: int) -> Renderer:
        self.calls += 1
        failing = self.calls == self.fail_on
        return _FailingRenderer(self.inner.renderer(avatar, height=height), failing, self.after)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


class _FailingRenderer(RendererWrapper):
    """Fails after ``after`` batches when ``failing``."""

    def __init__(self, inner: Renderer, failing: bool, after: int) -> None:
        super().__init__(inner)
        self.failing, self.after = failing, after

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        k = 0
        async for batch in self.inner.render(audio_16k):
            if self.failing and k >= self.after:
                raise RuntimeError("injected renderer failure")
            yield batch
            k += 1


def _script(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in rows), encoding="utf-8")
    return path


ROWS = [("r1", "Good morning."), ("r2", "Your order ships today."), ("r3", "Goodbye now.")]


def _run(avatars_dir: Path, script: Path, out: Path, frames: _CountingFrames) -> int:
    argv = _args(avatars_dir, "--script", str(script), "--out", str(out))
    return main(argv, frames=frames, tts=FakeTts)


def test_script_resumes_where_it_stopped(
    avatars_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script, out = _script(tmp_path / "s.csv", ROWS), tmp_path / "out"
    small = WarpOptions(seed=0, batch_frames=5)
    failing = _CountingFrames(WarpFrames(small), fail_on=2, after=2)
    assert _run(avatars_dir, script, out, failing) == 1
    assert "job 'r2' failed: injected renderer failure" in capsys.readouterr().err
    # row 1 is done, row 2 died after two batches were encoded: nothing partial is left
    assert sorted(p.name for p in out.iterdir()) == ["r1.mp4", "r1.mp4.json"]
    first = (out / "r1.mp4").stat().st_mtime_ns

    (out / ".r2.mp4.0badf00d.tmp").write_bytes(b"left by a killed run")
    again = _CountingFrames(WarpFrames(small))
    assert _run(avatars_dir, script, out, again) == 0
    assert again.calls == 2  # only r2 and r3
    assert "rendered 2, skipped 1, failed 0" in capsys.readouterr().out
    assert (out / "r1.mp4").stat().st_mtime_ns == first
    for rid, _ in ROWS:
        frames, video_s, audio_s = _decode(out / f"{rid}.mp4")
        assert video_s == pytest.approx(audio_s, abs=0.1) and frames[0].shape[0] == 128

    third = _CountingFrames(WarpFrames(small))
    assert _run(avatars_dir, script, out, third) == 0 and third.calls == 0

    # a changed row and a truncated file are rendered again; the rest is kept
    _script(script, [ROWS[0], ROWS[1], ("r3", "See you soon.")])
    data = (out / "r1.mp4").read_bytes()
    (out / "r1.mp4").write_bytes(data[: len(data) // 2])
    fourth = _CountingFrames(WarpFrames(small))
    assert _run(avatars_dir, script, out, fourth) == 0 and fourth.calls == 2
    assert (out / "r1.mp4").read_bytes() == data  # same input, same pixels
    assert Manifest.read(out / "r3.mp4") is not None
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_keep_going_renders_the_other_rows(avatars_dir: Path, tmp_path: Path) -> None:
    script, out = _script(tmp_path / "s.csv", ROWS), tmp_path / "out"
    failing = _CountingFrames(WarpFrames(), fail_on=2)
    argv = _args(avatars_dir, "--script", str(script), "--out", str(out), "--keep-going")
    assert main(argv, frames=failing, tts=FakeTts) == 1
    assert sorted(p.name for p in out.glob("*.mp4")) == ["r1.mp4", "r3.mp4"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--avatar", "nobody", "--text", "Hi."], "no prepared avatar 'nobody'"),
        (["--avatar", "../up", "--text", "Hi."], "must not contain path separators"),
        (["--audio", "{tmp}/missing.wav"], "audio file not found"),
        (["--audio", "{tmp}/garbage.wav"], "garbage.wav: cannot decode audio"),
        (["--script", "{tmp}/bad.csv"], "bad.csv: missing column(s) text"),
        (["--script", "{tmp}/missing.csv"], "script not found"),
        (["--text", "   "], "--text is empty"),
        (["--text", "Hi.", "--height", "10"], "height must be within 64..2160"),
        (["--text", "Hi.", "--renderer", "musetalk"], "needs --musetalk-dir"),
        (["--text", "Hi.", "--musetalk-dir", "{tmp}"], "need --renderer musetalk"),
        (["--text", "Hi.", "--audio", "x.wav"], "not allowed with argument"),
        (["--height", "128"], "one of the arguments --text --audio --script is required"),
    ],
)
def test_bad_input_exits_2(
    avatars_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    (tmp_path / "garbage.wav").write_bytes(b"\x00\x01garbage" * 100)
    (tmp_path / "bad.csv").write_text("id,language\nx,en\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--avatars-dir", str(avatars_dir)], tts=FakeTts) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_script_needs_a_folder(avatars_dir: Path, tmp_path: Path) -> None:
    script = _script(tmp_path / "s.csv", ROWS[:1])
    argv = _args(avatars_dir, "--script", str(script), "--out", str(tmp_path / "x.mp4"))
    assert main(argv, tts=FakeTts) == 2
