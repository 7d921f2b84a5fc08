"""Driving Debian's chromium against a real ``avatar-rtc serve`` process.

Shared by the browser tests and ``scripts/bench_browser.py``: the server process, a spoken
question as chromium's fake microphone, the browser launch (never a downloaded browser), and
page-side probes that read the ``<video>`` pixels and the browser's own WebRTC statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.harness.spawn import free_port, spawn_server

__all__ = [
    "CHROMIUM",
    "ROOT",
    "FakeMic",
    "chromium_args",
    "free_port",
    "launch_chromium",
    "run_server",
    "sample_audio_levels",
    "sample_video",
    "write_question_wav",
]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FAKE_AUDIO_RATE = 48_000  # chromium's fake capture device takes 16-bit PCM WAV; 48 kHz is safe


@contextlib.contextmanager
def run_server(
    *,
    log: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    ready_timeout_s: float = 180.0,
) -> Iterator[str]:
    """A real ``avatar-rtc serve`` on 127.0.0.1 with the embedded models; yields its URL."""
    with spawn_server(
        args=args, env=env, port=port, log=log, cwd=ROOT, ready_timeout_s=ready_timeout_s
    ) as server:
        yield server.url


async def _synthesize(text: str) -> tuple[np.ndarray, int]:
    from inference.tts import PiperTtsOptions, make_tts

    tts = make_tts(PiperTtsOptions(noise_scale=0.0, noise_w_scale=0.0))
    parts: list[np.ndarray] = []
    rate = 22_050
    async for chunk in tts.synthesize(text, "en"):
        parts.append(np.asarray(chunk.samples, dtype=np.int16))
        rate = chunk.sample_rate
    if not parts:
        raise RuntimeError(f"the TTS produced no audio for {text!r}")
    return np.concatenate(parts), rate


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeMic:
    """A WAV for ``--use-file-for-fake-audio-capture``: silence, the question, silence."""

    path: Path
    lead_s: float
    speech_s: float

    @property
    def flag_value(self) -> str:
        """The flag's value: played once (``%noloop``), silence after its end."""
        return f"{self.path}%noloop"


def write_question_wav(
    text: str, path: Path, *, lead_s: float = 2.0, tail_s: float = 1.0
) -> FakeMic:
    """Our own TTS (piper, deterministic) saying ``text``, as 48 kHz mono 16-bit PCM, with
    ``lead_s`` of silence first: the fake microphone starts at getUserMedia, before the
    call is connected."""
    import soxr

    if lead_s < 0 or tail_s < 0:
        raise ValueError("lead_s and tail_s must be >= 0")
    pcm, rate = asyncio.run(_synthesize(text)) if not _loop_running() else _in_thread(text)
    speech = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, FAKE_AUDIO_RATE)
    pad = lambda s: np.zeros(int(s * FAKE_AUDIO_RATE), dtype=np.float32)  # noqa: E731
    audio = np.concatenate([pad(lead_s), speech, pad(tail_s)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FAKE_AUDIO_RATE)
        w.writeframes((np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes())
    return FakeMic(path=path, lead_s=lead_s, speech_s=len(speech) / FAKE_AUDIO_RATE)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_thread(text: str) -> tuple[np.ndarray, int]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _synthesize(text)).result()


def chromium_args(fake_audio: str) -> list[str]:
    """Headless, offline, fake devices fed from ``fake_audio``, WebRTC over loopback."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_audio}",
        "--allow-loopback-in-peer-connection",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",  # containers' small /dev/shm crashes renderers
    ]


@contextlib.asynccontextmanager
async def launch_chromium(
    fake_audio: str,
    *,
    viewport: tuple[int, int] = (900, 1000),
    executable: Path = CHROMIUM,
    extra_args: tuple[str, ...] = (),
) -> AsyncIterator[Any]:
    """A fresh headless chromium (new user-data dir); yields its BrowserContext.
    ``executable`` may be a wrapper that runs Debian's chromium (in a network namespace)."""
    from playwright.async_api import async_playwright

    if not await asyncio.to_thread(CHROMIUM.exists):
        raise FileNotFoundError(f"{CHROMIUM} is missing: install Debian's chromium (apt)")
    with tempfile.TemporaryDirectory(prefix="avatar-rtc-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                headless=True,
                args=[*chromium_args(fake_audio), *extra_args],
                viewport={"width": viewport[0], "height": viewport[1]},
                permissions=["microphone"],
            )
            try:
                yield context
            finally:
                await context.close()


_SAMPLE_VIDEO_JS = """
async ([selector, count, intervalMs, box]) => {
  // "host >>> inner": look inside the open shadow root of `host`.
  const video = selector.split(">>>").map((s) => s.trim()).reduce(
    (scope, part) => (scope?.shadowRoot ?? scope)?.querySelector(part), document);
  if (!video) throw new Error(`no video element ${selector}`);
  const [x0, y0, x1, y1] = box;
  const canvas = document.createElement("canvas");
  canvas.width = 64; canvas.height = 64;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const out = [];
  let prev = null;
  for (let i = 0; i < count; i++) {
    const w = video.videoWidth, h = video.videoHeight;
    ctx.drawImage(video, x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h, 0, 0, 64, 64);
    const px = ctx.getImageData(0, 0, 64, 64).data;
    let lum = 0, diff = 0;
    const gray = new Float32Array(64 * 64);
    for (let j = 0; j < gray.length; j++) {
      gray[j] = 0.299 * px[4 * j] + 0.587 * px[4 * j + 1] + 0.114 * px[4 * j + 2];
      lum += gray[j];
      if (prev) diff += Math.abs(gray[j] - prev[j]);
    }
    out.push({ t: performance.now(), mean: lum / gray.length,
               diff: prev ? diff / gray.length : null, width: video.videoWidth,
               height: video.videoHeight, time: video.currentTime });
    prev = gray;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return out;
}
"""

_SAMPLE_AUDIO_JS = """
async ([count, intervalMs, stopAbove]) => {
  const call = window.avatarCall;
  if (!call || !call.pc) throw new Error("no call in progress");
  const read = async () => {
    const report = await call.pc.getStats();
    for (const s of report.values()) {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        return { e: s.totalAudioEnergy ?? 0, d: s.totalSamplesDuration ?? 0 };
      }
    }
    return { e: 0, d: 0 };
  };
  const out = [];
  let prev = await read();
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, intervalMs));
    const cur = await read();
    const dd = cur.d - prev.d;
    const rms = dd > 0 ? Math.sqrt(Math.max(0, cur.e - prev.e) / dd) : 0;
    out.push({ t: performance.now(), rms });
    prev = cur;
    if (stopAbove !== null && rms > stopAbove) break;
  }
  return out;
}
"""


async def sample_video(
    frame: Any,
    selector: str = "video",
    *,
    count: int = 12,
    interval_ms: int = 150,
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> list[dict[str, Any]]:
    """``count`` 64×64 grey samples of the playing video ``selector`` (``"host >>> inner"``
    looks into a shadow root) (of ``box``, normalized
    ``x0, y0, x1, y1``, e.g. the ``mouth_box`` of the server's hello): mean level and mean
    absolute change from the previous sample, in grey levels (0..255)."""
    result: list[dict[str, Any]] = await frame.evaluate(
        _SAMPLE_VIDEO_JS, [selector, count, interval_ms, list(box)]
    )
    return result


async def sample_audio_levels(
    frame: Any, *, count: int, interval_ms: int = 100, stop_above: float | None = None
) -> list[dict[str, float]]:
    """RMS level (0..1) of the received audio per interval, from getStats' audio energy
    (at most ``count`` samples; the first one louder than ``stop_above`` is the last)."""
    result: list[dict[str, float]] = await frame.evaluate(
        _SAMPLE_AUDIO_JS, [count, interval_ms, stop_above]
    )
    return result
