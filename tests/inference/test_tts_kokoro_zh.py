"""Kokoro Mandarin TTS with the packaged model (real model; ~0.5 s per short clause)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import inference.tts.kokoro_zh
from inference.tts import KokoroZhTts, KokoroZhTtsOptions
from inference.tts.kokoro_zh import (
    _MAX_TOKENS,
    ZH_VOICES,
    _token_runs,
    missing_packages,
    speech_pieces,
)
from inference.types import PcmChunk

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kokoro() -> KokoroZhTts:
    return KokoroZhTts.load()


async def _all(tts: KokoroZhTts, text: str) -> list[PcmChunk]:
    return [chunk async for chunk in tts.synthesize(text, "zh")]


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


async def test_speaks_a_reply_in_short_first_then_sentence_chunks(kokoro: KokoroZhTts) -> None:
    chunks = await _all(kokoro, "您好，欢迎致电北风好物。请问有什么可以帮您？")
    assert [c.final for c in chunks] == [False, False, True]  # 您好， | 欢迎… | 请问…
    assert all(c.sample_rate == 24000 == kokoro.sample_rate for c in chunks)
    for chunk, syllables in zip(chunks, (2, 8, 9), strict=True):
        assert 0.12 * syllables < chunk.duration_s < 0.3 + 0.35 * syllables
        assert _rms(chunk.samples) > 500
        assert np.abs(chunk.samples[: 24000 // 5]).max() > 3000  # speech starts at once
        assert np.abs(chunk.samples[-24000 // 10 :]).max() < 300  # and ends in a short pause


async def test_empty_text_is_one_empty_final_chunk(kokoro: KokoroZhTts) -> None:
    chunks = await _all(kokoro, "  ")
    assert len(chunks) == 1 and chunks[0].final and chunks[0].samples.size == 0


async def test_stopping_early_starts_no_further_piece(
    kokoro: KokoroZhTts, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    real = kokoro.synthesize_blocking

    def counted(text: str) -> np.ndarray:
        said.append(text)
        return real(text)

    monkeypatch.setattr(kokoro, "synthesize_blocking", counted)
    stream = kokoro.synthesize("好的。还有别的问题吗？再见。")
    first = await anext(stream)
    await stream.aclose()
    assert first.samples.size > 0 and said == ["好的。"]


def test_the_first_sentence_is_cut_after_its_first_clause() -> None:
    assert speech_pieces("您好，欢迎致电。请问，有什么事？") == [
        "您好，",
        "欢迎致电。",
        "请问，有什么事？",
    ]
    assert speech_pieces("好，谢谢。") == ["好，谢谢。"]  # a one-character head stays whole
    assert speech_pieces("要三到五天，") == ["要三到五天，"]  # nothing after the mark
    assert speech_pieces("您好，欢迎。", first_chunk_chars=0) == ["您好，欢迎。"]
    assert speech_pieces("") == []


def test_a_long_first_clause_is_cut_before_its_predicate() -> None:
    text = "我们的客服周一至周五早上八点到晚上八点在线，周末休息。"
    assert speech_pieces(text, first_chunk_chars=8) == [
        "我们的客服",
        "周一至周五早上八点到晚上八点在线，",
        "周末休息。",
    ]
    assert (
        speech_pieces(text, first_chunk_chars=30)[0]
        == "我们的客服周一至周五早上八点到晚上八点在线，"
    )
    assert speech_pieces("订阅我们的电子报，首单九折。") == ["订阅我们的电子报，", "首单九折。"]


def test_long_phoneme_runs_are_cut_after_a_word() -> None:
    space = 16
    tokens = ([5, 6, 7, space] * 200)[:-1]
    runs = _token_runs(tokens, space)
    assert [t for run in runs for t in run] == tokens
    assert all(len(run) <= _MAX_TOKENS for run in runs)
    assert all(run[-1] == space for run in runs[:-1])
    assert _token_runs([5] * (_MAX_TOKENS + 1), space) == [[5] * _MAX_TOKENS, [5]]
    assert _token_runs([], space) == []


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="voice must be one of"):
        KokoroZhTtsOptions(voice="af_heart")
    with pytest.raises(ValueError, match="speed"):
        KokoroZhTtsOptions(speed=3.0)
    assert "threads" not in repr(KokoroZhTtsOptions(threads=4))  # not part of the sound


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "misaki", None)
    assert missing_packages() == ["misaki"]
    with pytest.raises(ImportError, match=r"needs the packages misaki: pip install misaki"):
        KokoroZhTts.load(KokoroZhTtsOptions(threads=3))  # not loaded yet in this process


async def test_synthesis_makes_no_network_attempt(
    kokoro: KokoroZhTts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new voice on the loaded model, then synthesis, with Python's sockets refused."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network attempt: {args!r}")

    for name in ("getaddrinfo", "create_connection", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    other_voice = KokoroZhTts.load(KokoroZhTtsOptions(voice="jf_alpha", speed=0.9))
    chunks = await _all(other_voice, "谢谢您的来电。")
    assert sum(c.samples.size for c in chunks) > 0


_CHILD = textwrap.dedent(
    """
    import os
    import inference.tts
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    from inference.tts import KokoroZhTts, KokoroZhTtsOptions
    tts = KokoroZhTts.load(KokoroZhTtsOptions(threads=1))
    print(tts.synthesize_blocking("请问有什么可以帮您？").size)
    """
)


def test_a_fresh_process_opens_no_internet_socket(tmp_path: Path) -> None:
    """Import, load and synthesis in a new process, onnxruntime's telemetry not disabled by
    the environment: no connect() other than to local (AF_UNIX) sockets."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    trace = tmp_path / "connect.txt"
    cmd = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace), sys.executable, "-c"]
    done = subprocess.run(
        [*cmd, _CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0
    connects = [line for line in trace.read_text().splitlines() if "connect(" in line]
    assert [line for line in connects if "AF_UNIX" not in line] == []


def test_the_shipped_mandarin_styles_are_the_noticed_ones() -> None:
    """Each style in the package is the Kokoro v1.0 file its NOTICE names, bit for bit."""
    folder = Path(inference.tts.kokoro_zh.__file__).parent / "voices"
    sums: dict[str, str] = {}
    for line in (folder / "NOTICE").read_text().splitlines():
        if line.endswith(".bin"):
            digest, name = line.split()
            sums[name] = digest
    with np.load(folder / "kokoro_zh_v1_0.npz") as styles:
        assert sorted(styles.files) == sorted(ZH_VOICES)
        for name in styles.files:
            style = styles[name]
            assert style.shape == (510, 1, 256) and style.dtype == np.float32
            digest = hashlib.sha256(style.astype("<f4").tobytes()).hexdigest()
            assert digest == sums[f"{name}.bin"], name


async def test_a_mandarin_style_speaks(kokoro: KokoroZhTts) -> None:
    tts = KokoroZhTts.load(KokoroZhTtsOptions(voice="zm_yunjian"))
    chunks = await _all(tts, "谢谢您的来电。")
    audio = np.concatenate([c.samples for c in chunks])
    assert 0.5 < audio.size / 24000 < 3.0 and _rms(audio) > 1000
