"""A real ``avatar-rtc serve`` process on 127.0.0.1 and spoken questions made with our TTS."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from inference.tts import PiperTtsOptions, make_tts

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("server did not become ready")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    avatars = tmp_path_factory.mktemp("avatars")
    log = (ROOT / "artifacts").resolve()
    log.mkdir(exist_ok=True)
    out = (log / "e2e-server.log").open("wb")
    cmd = [sys.executable, "-m", "signaling.cli", "serve", "--port", str(port)]
    cmd += ["--avatars-dir", str(avatars)]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()


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
