"""Benchmark offline batch rendering: seconds of video per second of wall time.

Three measurements on this machine, each with the real pipeline of ``avatar-rtc render``
(``inference.offline``) and the default (astronaut) avatar:

1. ``audio``: one speech-like audio file of ``--seconds`` → one MP4 (decode, render, encode);
2. ``script``: ``--rows`` English sentences → one MP4 each, through piper TTS, resumable
   (the whole thing, as a user runs it; loading the voice, once per process, is excluded);
3. the split of (1): the renderer alone and the encoder alone, per frame.

    .venv/bin/python scripts/bench_offline.py [--renderer warp] [--height 512]
        [--seconds 30] [--rows 6] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.offline import (
    AvatarSource,
    BatchRenderer,
    Mp4Writer,
    Pcm,
    RenderJob,
    RenderOptions,
    WarpFrames,
)
from inference.render.base import render_input

SENTENCES = (
    "Hello, and welcome to our store. How can I help you today?",
    "Our opening hours are nine in the morning to eight in the evening, every day.",
    "You can return any item within thirty days, with the receipt.",
    "Delivery usually takes two to three working days.",
    "I'm sorry to hear that. Let me check your order for you.",
    "Thank you for calling. Have a wonderful day!",
)


def speech_like(seconds: float, rate: int = 22050, seed: int = 0) -> np.ndarray:
    """A voiced tone with a syllable-rate envelope and pauses: int16 mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.6 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.2 * rng.standard_normal(len(t))
    syll = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) * (np.sin(2 * np.pi * 0.2 * t) > -0.6)
    return np.clip(voiced * syll * 6000, -32768, 32767).astype(np.int16)


def write_wav(path: Path, pcm: Pcm) -> None:
    import av

    with av.open(str(path), "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=pcm.rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = pcm.rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def make_frames(args: argparse.Namespace) -> object:
    if args.renderer == "warp":
        return WarpFrames()
    from inference.offline.musetalk import MuseTalkFrames, MuseTalkFramesOptions

    options = MuseTalkFramesOptions(device=args.device, compile=args.compile, decode=args.decode)
    return MuseTalkFrames.load(args.musetalk_dir, options)


async def split(frames: object, avatar: object, pcm: Pcm, height: int, tmp: Path) -> dict:
    """Renderer alone, then encoder alone over the same frames (ms per frame)."""
    audio_16k = render_input(pcm.as_chunk(), frames.fps)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    renderer = frames.renderer(avatar, height=height)  # type: ignore[attr-defined]
    batches = [b async for b in renderer.render(audio_16k)]
    render_s = time.perf_counter() - t0
    n = sum(len(b) for b in batches)
    h, w = batches[0][0].shape[:2]
    t0 = time.perf_counter()
    with Mp4Writer(tmp / "split.mp4", fps=25, size=(w, h), audio=pcm) as writer:
        for b in batches:
            writer.write(b)
        writer.commit()
    encode_s = time.perf_counter() - t0
    return {
        "frames": n,
        "render_ms_per_frame": 1000 * render_s / n,
        "encode_ms_per_frame": 1000 * encode_s / n,
        "size": [w, h],
    }


async def run(args: argparse.Namespace, tmp: Path) -> dict:
    avatars = AvatarSource(args.avatars_dir)
    frames = make_frames(args)
    opts = RenderOptions(height=args.height, progress=False)
    tts_load_s = 0.0

    def load_tts() -> object:
        nonlocal tts_load_s
        from inference.tts import TTS_BACKENDS, make_tts

        t0 = time.perf_counter()
        tts = make_tts(TTS_BACKENDS.default_section().options())
        tts_load_s = time.perf_counter() - t0
        return tts

    renderer = BatchRenderer(frames=frames, avatars=avatars.get, tts=load_tts, options=opts)  # type: ignore[arg-type]
    avatar = avatars.get(args.avatar)
    pcm = Pcm(speech_like(args.seconds), 22050)
    wav, warm_wav = tmp / "speech.wav", tmp / "warm.wav"
    write_wav(wav, pcm)
    write_wav(warm_wav, Pcm(speech_like(2.0, seed=1), 22050))
    # first-use costs (avatar assets, GPU warm-up, encoder) are excluded from the timings
    warm = RenderJob(id="warm", out=tmp / "warm.mp4", avatar=args.avatar, audio=warm_wav)
    await renderer.run([warm])

    audio_job = RenderJob(id="audio", out=tmp / "audio.mp4", avatar=args.avatar, audio=wav)
    t0 = time.perf_counter()
    [res] = await renderer.run([audio_job])
    audio_wall = time.perf_counter() - t0
    out: dict = {
        "renderer": args.renderer,
        "height": args.height,
        "audio": {
            "video_s": res.video_s,
            "wall_s": audio_wall,
            "speed_x": res.video_s / audio_wall,
        },
    }
    if args.rows > 0:
        rows = [SENTENCES[i % len(SENTENCES)] + f" Item {i}." for i in range(args.rows)]
        jobs = [
            RenderJob(
                id=f"row{i}",
                out=tmp / "script" / f"row{i}.mp4",
                avatar=args.avatar,
                text=text,
                resume=True,
            )
            for i, text in enumerate(rows)
        ]
        await renderer.run(jobs[:1])  # loads the voice (timed apart)
        (tmp / "script" / "row0.mp4").unlink()
        t0 = time.perf_counter()
        results = await renderer.run(jobs)
        script_wall = time.perf_counter() - t0
        script_video = sum(r.video_s for r in results)
        t0 = time.perf_counter()
        again = await renderer.run(jobs)
        out["script"] = {
            "rows": len(jobs),
            "video_s": script_video,
            "wall_s": script_wall,
            "speed_x": script_video / script_wall,
            "tts_load_s": tts_load_s,
        }
        out["resume"] = {
            "skipped": sum(r.status == "skipped" for r in again),
            "wall_s": time.perf_counter() - t0,
        }
    out["split"] = await split(frames, avatar, pcm, args.height, tmp)
    batches = getattr(frames, "batch_sizes", None)
    if batches:
        out["split"]["batch_sizes"] = sorted(set(batches))
    frames.close()  # type: ignore[attr-defined]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renderer", choices=["warp", "musetalk"], default="warp")
    parser.add_argument("--musetalk-dir", type=Path, help="MuseTalk weights (with musetalk)")
    parser.add_argument("--device", default="cuda:0", help="musetalk device")
    parser.add_argument("--compile", action="store_true", help="musetalk: torch.compile")
    parser.add_argument("--decode", choices=["full", "mask"], default="full", help="musetalk")
    parser.add_argument("--avatar", default="astronaut")
    parser.add_argument("--avatars-dir", type=Path, default=Path("avatars"))
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the audio job")
    parser.add_argument("--rows", type=int, default=6, help="rows of the TTS script (0: none)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.renderer == "musetalk" and args.musetalk_dir is None:
        parser.error("--renderer musetalk needs --musetalk-dir")
    with tempfile.TemporaryDirectory() as tmp:
        out = asyncio.run(run(args, Path(tmp)))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    a, p = out["audio"], out["split"]
    w, h = p["size"]
    extra = f" decode={args.decode} compile={args.compile}" if args.renderer == "musetalk" else ""
    print(f"offline render, {args.renderer}{extra}, {w}×{h} @ 25 fps, H.264 + AAC")
    print(
        f"  audio file: {a['video_s']:.1f} s of video in {a['wall_s']:.2f} s "
        f"= {a['speed_x']:.2f} s of video per second"
    )
    if "script" in out:
        s = out["script"]
        print(
            f"  TTS script: {s['rows']} rows, {s['video_s']:.1f} s of video in "
            f"{s['wall_s']:.2f} s = {s['speed_x']:.2f} s of video per second "
            f"(voice load {s['tts_load_s']:.2f} s once, not counted)"
        )
        print(
            f"  re-run of the script: {out['resume']['skipped']} rows skipped in "
            f"{out['resume']['wall_s']:.2f} s"
        )
    batches = f"; batch sizes {p['batch_sizes']}" if "batch_sizes" in p else ""
    print(
        f"  split: render {p['render_ms_per_frame']:.2f} ms/frame, "
        f"encode {p['encode_ms_per_frame']:.2f} ms/frame (one after the other){batches}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
