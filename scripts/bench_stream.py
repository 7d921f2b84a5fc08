"""Benchmark ``avatar-rtc stream``: CPU per stream, glass-to-glass latency over SRT on
loopback, and time to recover after the ingest returns.

- CPU: the whole sending process (piper, the warp renderer, the element, x264 and AAC, SRT)
  while the avatar talks and while it idles, in cores; the baseline is the same encoders and
  SRT output fed by GStreamer's test sources in the same run (``x baseline``).
- Glass-to-glass: the lag between when the avatar's voice and mouth leave the source
  (``avatarsrc``'s pads) and when they are decoded at an SRT receiver in this process,
  found by cross-correlating the voice envelopes and the mouth-opening series.
- Recovery: the receiver is stopped for ``--down`` seconds and started again; the time
  from its return to the first decoded frame (the baseline: the first connection's).

    .venv/bin/python scripts/bench_stream.py [--size 512] [--seconds 10] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media.analysis import audio_envelope, mouth_openness, mouth_rois
from media.gst.output import Backoff, OutputRunner
from media.gst.pipelines import OutputSpec, describe
from media.gst.runtime import gst
from media.gst.source import SourceRequest
from tests.media.gst.receiver import SrtReceiver, free_udp_port

TALK = (
    "Welcome back to the live shop! Today every winter jacket is half price, and shipping "
    "is free for orders over fifty euros. Ask me anything about sizes, colours or delivery. "
    "Our warm parkas come in six colours, from navy blue to forest green. "
)


class _Running:
    """An output runner on its own thread; ``end()`` stops it and waits."""

    def __init__(self, runner: OutputRunner) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=runner.run, args=(self._stop,), daemon=True)
        self._thread.start()

    def end(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _speaking_share(source: Any, seconds: float) -> float:
    """Share of ``seconds`` during which the avatar's voice was scheduled (sampled)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(source.call(_speaking(source.engine)))
        time.sleep(0.25)
    return float(np.mean(samples)) if samples else 0.0


def _cpu_window(seconds: float) -> float:
    """Cores used by this process over the next ``seconds``."""
    t0, c0 = time.monotonic(), time.process_time()
    time.sleep(seconds)
    return (time.process_time() - c0) / (time.monotonic() - t0)


def _sink_process(port: int) -> subprocess.Popen[bytes]:
    """A receiver in its own process (its CPU is not the stream's)."""
    return subprocess.Popen(
        [
            "gst-launch-1.0",
            "-q",
            f"srtsrc uri=srt://127.0.0.1:{port}?mode=listener",
            "!",
            "fakesink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def baseline_cpu(size: int, seconds: float) -> float:
    """Test sources through the same encoders and SRT output."""
    Gst = gst()
    port = free_udp_port()
    receiver = _sink_process(port)
    spec = OutputSpec(url=f"srt://127.0.0.1:{port}", width=size, height=size)
    source = (
        f"videotestsrc is-live=true pattern=ball ! video/x-raw,format=RGB,width={size},"
        f"height={size},framerate=25/1 ! identity name=srcv "
        "audiotestsrc is-live=true wave=sine volume=0.3 ! audio/x-raw,format=S16LE,rate=48000,"
        "channels=1 ! identity name=srca"
    )
    desc = describe(spec, source=source).replace("src.video ! ", "srcv. ! ", 1)
    desc = desc.replace("src.audio ! ", "srca. ! ", 1)
    pipeline = Gst.parse_launch(desc)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        time.sleep(1.0)
        return _cpu_window(seconds)
    finally:
        pipeline.set_state(Gst.State.NULL)
        receiver.terminate()
        receiver.wait(5)


class _Tap:
    """Wall times of the source's own buffers (its voice and mouth as they leave)."""

    def __init__(self, src: Any, box: tuple[float, float, float, float], size: int) -> None:
        Gst = gst()
        self.audio: list[tuple[float, np.ndarray]] = []
        self.mouth: list[tuple[float, np.ndarray]] = []
        self._box, self._size = box, size
        src.get_static_pad("audio").add_probe(Gst.PadProbeType.BUFFER, self._on_audio)
        src.get_static_pad("video").add_probe(Gst.PadProbeType.BUFFER, self._on_video)

    @staticmethod
    def _bytes(info: Any) -> bytes:
        Gst = gst()
        buf = info.get_buffer()
        ok, m = buf.map(Gst.MapFlags.READ)
        data = bytes(m.data) if ok else b""
        if ok:
            buf.unmap(m)
        return data

    def _on_audio(self, pad: Any, info: Any) -> Any:
        samples = np.frombuffer(self._bytes(info), "<i2").copy()
        self.audio.append((time.monotonic(), samples))
        return gst().PadProbeReturn.OK

    def _on_video(self, pad: Any, info: Any) -> Any:
        frame = np.frombuffer(self._bytes(info), np.uint8).reshape(self._size, self._size, 3)
        self.mouth.append((time.monotonic(), mouth_rois([frame], self._box)[0]))
        return gst().PadProbeReturn.OK


def _ms(value: float | None) -> str:
    return "not found" if value is None else f"{value:.0f} ms"


def _lag_ms(
    t_a: np.ndarray, a: np.ndarray, t_b: np.ndarray, b: np.ndarray, max_ms: float = 1500
) -> float | None:
    """How much later series ``b`` shows what ``a`` showed (cross-correlation, 5 ms grid)."""
    lo, hi = max(t_a[0], t_b[0]), min(t_a[-1], t_b[-1])
    if hi - lo < 3.0:
        return None
    grid = np.arange(t_a[0], t_a[-1], 0.005)
    x = np.interp(grid, t_a, a)
    best, best_lag = -math.inf, None
    for lag in np.arange(0, max_ms / 1000.0, 0.005):
        y = np.interp(grid + lag, t_b, b)
        if x.std() == 0 or y.std() == 0:
            continue
        score = float(np.corrcoef(x, y)[0, 1])
        if score > best:
            best, best_lag = score, lag
    return None if best_lag is None else best_lag * 1000.0


def _envelope(chunks: list[tuple[float, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    env = audio_envelope([c for _, c in chunks], [t for t, _ in chunks], sample_rate=48000)
    return env.t + env.window_s / 2, env.rms


def _openness(series: list[tuple[float, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    rois = np.stack([r for _, r in series])
    return np.array([t for t, _ in series]), mouth_openness(rois, np.zeros(len(rois), bool))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512, help="square picture size (512)")
    p.add_argument("--seconds", type=float, default=10.0, help="each CPU window (10)")
    p.add_argument("--down", type=float, default=2.0, help="ingest outage per recovery trial (2)")
    p.add_argument("--trials", type=int, default=3, help="recovery trials (3)")
    p.add_argument("--config", type=Path, help="avatar-rtc YAML (default: fake ASR, piper, warp)")
    p.add_argument("--quick", action="store_true", help="short windows, one trial (smoke test)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.trials, args.size = 3.0, 1, 256
    from media.gst.element import register
    from signaling.stream.source import open_source

    config = args.config
    if config is None:
        folder = Path(tempfile.gettempdir()) / "avatar-rtc-bench-stream"
        folder.mkdir(exist_ok=True)
        config = folder / "stream.yaml"
        config.write_text(
            f"asr:\n  backend: fake\nrender:\n  avatars_dir: {folder / 'avatars'}\n"
            "cache:\n  enabled: false\n"
        )
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, load average {load:.2f}; "
        f"{args.size}x{args.size} at 25 fps, x264, warp"
    )
    base = baseline_cpu(args.size, args.seconds)
    print(f"baseline (test sources, same encoders, SRT): {base:.2f} cores")

    register(open_source)
    request = SourceRequest(avatar="astronaut", config=str(config), fps=25, height=args.size)
    began = time.monotonic()
    source = open_source(request)
    print(f"stream ready in {time.monotonic() - began:.1f} s (models loaded, avatar prepared)")
    assert source.engine is not None and source.services is not None
    engine = source.engine
    box = source.services.avatar("astronaut").mouth_box()
    results: dict[str, Any] = {"size": args.size, "load_average": load, "baseline_cores": base}
    try:
        # ---- CPU, idle and talking (receiver in another process) ----------------------
        port = free_udp_port()
        sink = _sink_process(port)
        spec = OutputSpec(url=f"srt://127.0.0.1:{port}", width=args.size, height=args.size)
        running = _Running(OutputRunner(spec, source, quality=False))
        time.sleep(2.0)
        idle = _cpu_window(args.seconds)
        for _ in range(3):
            source.call(_say(engine, TALK))
        time.sleep(1.5)
        shares: list[float] = []
        sampler = threading.Thread(
            target=lambda: shares.append(_speaking_share(source, args.seconds)), daemon=True
        )
        sampler.start()
        talking = _cpu_window(args.seconds)
        sampler.join()
        source.call(_interrupt(engine))
        running.end()
        sink.terminate()
        sink.wait(5)
        share = shares[0] if shares else 0.0
        results |= {"idle_cores": idle, "talking_cores": talking, "talking_share": share}
        print(
            f"CPU per stream: talking {talking:.2f} cores ({talking / base:.1f}x baseline; "
            f"voice on {share:.0%} of the window), idle {idle:.2f} cores "
            f"({idle / base:.1f}x baseline)"
        )

        # ---- glass-to-glass over SRT, receiver in this process ---------------------------
        receiver = SrtReceiver(free_udp_port(), keep_frames=True)
        receiver.start()
        spec = OutputSpec(url=receiver.uri, width=args.size, height=args.size)
        runner = OutputRunner(spec, source, quality=False, backoff=Backoff(first_s=0.25, max_s=2.0))
        pipeline_ready = threading.Event()
        build = runner.build

        def build_with_tap() -> Any:
            pipeline = build()
            runner.tap = _Tap(pipeline.get_by_name("src"), box, args.size)  # type: ignore[attr-defined]
            pipeline_ready.set()
            return pipeline

        runner.build = build_with_tap  # type: ignore[method-assign]
        running = _Running(runner)
        connected = time.monotonic()
        receiver.wait_frames(1, timeout=15)
        first_connect = receiver.got.video[0][1] - connected if receiver.got.video else math.nan
        pipeline_ready.wait(10)
        tap: _Tap = runner.tap  # type: ignore[attr-defined]
        source.call(_say(engine, TALK))
        time.sleep(max(6.0, args.seconds))
        video, audio = list(receiver.got.video), list(receiver.got.audio)  # still arriving
        ta, ea = _envelope(list(tap.audio))
        tb, eb = _envelope([(arr, a) for _, arr, a in audio])
        voice = _lag_ms(ta, ea, tb, eb)
        tv, ov = _openness(list(tap.mouth))
        rv = mouth_rois([f for _, _, f in video], box)
        rt = np.array([arr for _, arr, _ in video])
        face = _lag_ms(tv, ov, rt, mouth_openness(rv, np.zeros(len(rv), bool)))
        results |= {"glass_to_glass_voice_ms": voice, "glass_to_glass_video_ms": face}
        print(
            "glass-to-glass over SRT (loopback, latency=120 ms setting): "
            f"voice {_ms(voice)}, video {_ms(face)}"
        )

        # ---- recovery after the ingest returns -------------------------------------------
        receiver.keep_frames = False
        recoveries = []
        for _ in range(args.trials):
            receiver.stop()
            time.sleep(args.down)
            receiver.start()
            back = time.monotonic()
            if receiver.wait_frames(1, timeout=20):
                recoveries.append(receiver.got.video[-1][1] - back)
        running.end()
        receiver.stop()
        rec = float(np.median(recoveries)) if recoveries else math.nan
        results |= {"recovery_s": recoveries, "first_connect_s": first_connect}
        print(
            f"recovery after a {args.down:.0f} s outage: median {rec:.2f} s over {len(recoveries)} "
            f"trial(s) ({rec / first_connect:.1f}x the first connection's {first_connect:.2f} s)"
        )
    finally:
        source.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


async def _say(engine: Any, text: str) -> int:
    return int(engine.say(text))


async def _speaking(engine: Any) -> bool:
    return bool(engine.speaking)


async def _interrupt(engine: Any) -> float:
    return float(engine.interrupt())


if __name__ == "__main__":
    sys.exit(main())
