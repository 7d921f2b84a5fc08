"""The MuseTalk seam of the offline renderer, on the CPU with tiny random-weight networks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from musetalk_helpers import make_avatar, speech_like, tiny_models

from inference.offline import BatchRenderer, OfflineInputError, RenderJob, RenderOptions
from inference.offline.cli import main
from inference.offline.musetalk import MuseTalkFrames, MuseTalkFramesOptions
from inference.render.musetalk import MuseTalkEngine, save_official_layout, tiny_arch
from inference.tts import FakeTts, FakeTtsOptions

CPU = MuseTalkFramesOptions(device="cpu", max_batch=4)


class _OomEngine:
    """A real tiny engine that runs out of 'GPU memory' for batches above ``limit``."""

    def __init__(self, inner: MuseTalkEngine, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.device, self.audio = inner.device, inner.audio
        self.tried: list[int] = []
        self.shrunk: list[int] = []

    def shrink_batch(self, size: int) -> None:
        self.shrunk.append(size)

    def add_avatar(self, avatar: Any) -> Any:
        return self.inner.add_avatar(avatar)

    def max_batch_size(self) -> int:
        return 8

    def run_batch(self, jobs: Sequence[Any]) -> list[np.ndarray]:
        self.tried.append(len(jobs))
        if len(jobs) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.run_batch(jobs)


@pytest.fixture(scope="module")
def engine() -> MuseTalkEngine:
    return MuseTalkEngine(tiny_models())


async def test_frames_in_memory_sized_batches(engine: MuseTalkEngine) -> None:
    frames = MuseTalkFrames(engine, CPU)
    avatar = make_avatar(n=3)
    audio = speech_like(0.5)
    renderer = frames.renderer(avatar, height=64)
    assert renderer.frame_size == (80, 64) and renderer.fps == 25
    batches = [b async for b in renderer.render(audio)]
    assert [len(b) for b in batches] == [4, 4, 4, 1]  # 13 frames, capped at max_batch
    assert all(f.shape == (64, 80, 3) and f.dtype == np.uint8 for b in batches for f in b)
    full = [f for b in batches for f in b]
    again = [f async for b in frames.renderer(avatar, height=64).render(audio) for f in b]
    assert all(np.array_equal(a, b) for a, b in zip(full, again, strict=True))
    frames.close()


async def test_out_of_memory_halves_the_batch(engine: MuseTalkEngine) -> None:
    oom = _OomEngine(engine, limit=2)
    frames = MuseTalkFrames(oom, MuseTalkFramesOptions(device="cpu", max_batch=16))
    renderer = frames.renderer(make_avatar(), height=128)
    batches = [b async for b in renderer.render(speech_like(0.3))]
    assert sum(len(b) for b in batches) == 8
    assert oom.tried[:3] == [8, 4, 2] and frames.batch_sizes == [2, 2, 2, 2]
    assert oom.shrunk == [4, 2]  # a static compiled graph's cap follows the halving
    frames.close()


async def test_pipeline_writes_an_mp4(engine: MuseTalkEngine, tmp_path: Path) -> None:
    avatar = make_avatar("square", n=2, width=96, height=96)
    frames = MuseTalkFrames(engine, CPU)
    renderer = BatchRenderer(
        frames=frames,
        avatars=lambda name: avatar,
        tts=lambda: FakeTts(FakeTtsOptions(min_sentence_s=0.3, seconds_per_char=0.01)),
        options=RenderOptions(height=96, progress=False),
    )
    [result] = await renderer.run(
        [RenderJob(id="m", out=tmp_path / "m.mp4", avatar="square", text="Hi.")]
    )
    assert result.status == "rendered" and result.frames == 8
    with av.open(str(tmp_path / "m.mp4")) as c:
        assert c.streams.video[0].frames == 8 and c.streams.video[0].codec_context.width == 96
    frames.close()


def test_load_the_official_layout(tmp_path: Path) -> None:
    root = save_official_layout(tiny_models(), tmp_path / "weights")
    frames = MuseTalkFrames.load(root, CPU, arch=tiny_arch())
    assert frames.fps == 25 and frames.engine.device.type == "cpu"
    frames.close()


def test_cli_names_a_bad_weights_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "weights").mkdir()
    argv = [
        "--text",
        "Hi.",
        "--out",
        str(tmp_path / "o.mp4"),
        "--renderer",
        "musetalk",
        "--musetalk-dir",
        str(tmp_path / "weights"),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "musetalkV15/unet.pth" in err


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="device"):
        MuseTalkFramesOptions(device="tpu")
    with pytest.raises(ValueError, match="max_batch"):
        MuseTalkFramesOptions(max_batch=0)
    assert issubclass(OfflineInputError, ValueError)
