"""A real ``avatar-rtc serve`` process on 127.0.0.1 and spoken questions made with our TTS."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from inference.tts import PiperTtsOptions, make_tts
from tests.harness.spawn import spawn_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    avatars = tmp_path_factory.mktemp("avatars")
    with spawn_server(
        args=("--avatars-dir", str(avatars)),
        log=ROOT / "artifacts" / "e2e-server.log",
        cwd=ROOT,
    ) as spawned:
        yield spawned.url


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())


async def _speak(text: str) -> tuple[np.ndarray, int]:
    tts = make_tts(PiperTtsOptions(noise_scale=0.0, noise_w_scale=0.0))
    parts = []
    rate = 22050
    async for chunk in tts.synthesize(text, "en"):
        parts.append(chunk.samples)
        rate = chunk.sample_rate
    return np.concatenate(parts), rate


@pytest.fixture(scope="session")
def speak(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """``speak(text) -> Path`` of a WAV of our own TTS saying ``text`` (deterministic)."""
    folder = tmp_path_factory.mktemp("questions")

    def make(text: str) -> Path:
        path = folder / (str(abs(hash(text))) + ".wav")
        if not path.exists():
            # Tests that ask may already run an event loop: synthesize on a thread of its own.
            with ThreadPoolExecutor(1) as pool:
                pcm, rate = pool.submit(asyncio.run, _speak(text)).result()
            _write_wav(path, pcm, rate)
        return path

    return make
