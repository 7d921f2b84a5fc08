"""CPU cost of the media plane of one call: the clocked tracks, idle, optionally encoded.

Runs ``--calls`` calls in one event loop, each an AvPlayer with a ClockedAudioTrack and a
ClockedVideoTrack pulled the way aiortc's RTP sender pulls them (recv in a loop, encoding in
the default executor when ``--encode`` is given), for ``--seconds``. Prints frames/s achieved,
dropped/skipped frames, CPU seconds per call-second, and the per-frame cost of the
numpy → av.VideoFrame conversion (and of VP8 encoding) at ``--size``.

    .venv/bin/python scripts/bench_media.py --calls 4 --seconds 5 --encode
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import time

import av
import numpy as np
from aiortc.codecs import CODECS, get_encoder

from media.clock import MediaClock
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack

_VIDEO_TB = fractions.Fraction(1, 90000)


def _idle_frames(size: int, n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return [np.roll(base, i, axis=0) for i in range(n)]


def bench_conversion(size: int, n: int = 200) -> tuple[float, float]:
    """ms per frame: rgb24 ndarray → av.VideoFrame, and VP8 encode of that frame."""
    frames = _idle_frames(size)
    t0 = time.perf_counter()
    for i in range(n):
        av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
    convert = (time.perf_counter() - t0) / n * 1000
    encoder = get_encoder(CODECS["video"][0])
    vf = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in frames]
    t0 = time.perf_counter()
    for i in range(n):
        f = vf[i % len(vf)]
        f.pts = i * 3600
        f.time_base = _VIDEO_TB
        encoder.encode(f)
    encode = (time.perf_counter() - t0) / n * 1000
    return convert, encode


async def _pull(track: ClockedAudioTrack | ClockedVideoTrack, kind: str, encode: bool) -> None:
    encoder = get_encoder(CODECS[kind][0]) if encode else None
    loop = asyncio.get_running_loop()
    while True:
        frame = await track.recv()
        if encoder is not None:
            await loop.run_in_executor(None, encoder.encode, frame, False)


async def bench_calls(calls: int, seconds: float, size: int, fps: int, encode: bool) -> None:
    idle = IdleLoop(_idle_frames(size), fps=fps)
    tracks: list[tuple[ClockedAudioTrack, ClockedVideoTrack]] = []
    tasks = []
    for _ in range(calls):
        clock = MediaClock()
        player = AvPlayer(clock=clock, fps=fps)
        a = ClockedAudioTrack(player, clock)
        v = ClockedVideoTrack(player, clock, idle, fps=fps)
        tracks.append((a, v))
        tasks += [asyncio.create_task(_pull(a, "audio", encode))]
        tasks += [asyncio.create_task(_pull(v, "video", encode))]
    await asyncio.sleep(0.5)  # warm up
    c0, w0 = time.process_time(), time.perf_counter()
    n0 = [(a.frames_sent, v.frames_sent) for a, v in tracks]
    d0 = sum(v.frames_dropped for _, v in tracks), sum(a.frames_skipped for a, _ in tracks)
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    afps = [(a.frames_sent - n[0]) / wall for (a, _), n in zip(tracks, n0, strict=True)]
    vfps = [(v.frames_sent - n[1]) / wall for (_, v), n in zip(tracks, n0, strict=True)]
    what = "tracks + Opus/VP8 encoding" if encode else "tracks only (no encoding)"
    print(f"{calls} idle call(s), {size}x{size} @ {fps} fps, {what}, {wall:.1f} s:")
    print(f"  video frames/s per call: min {min(vfps):.1f}  mean {np.mean(vfps):.1f}")
    print(f"  audio frames/s per call: min {min(afps):.1f}  mean {np.mean(afps):.1f} (50 due)")
    dropped = sum(v.frames_dropped for _, v in tracks) - d0[0]
    skipped = sum(a.frames_skipped for a, _ in tracks) - d0[1]
    print(f"  video frames dropped: {dropped}, audio frames skipped: {skipped}")
    print(
        f"  CPU: {cpu / wall * 100:.1f} % of one core in total, "
        f"{cpu / wall / calls * 100:.2f} % per call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1, help="concurrent calls (default 1)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement time")
    parser.add_argument("--size", type=int, default=512, help="square frame size in px")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--encode", action="store_true", help="also encode Opus + VP8")
    args = parser.parse_args()
    if args.calls < 1 or args.seconds <= 0 or args.size < 16:
        parser.error("need --calls >= 1, --seconds > 0, --size >= 16")
    convert, vp8 = bench_conversion(args.size)
    print(f"ndarray -> av.VideoFrame (rgb24) at {args.size}x{args.size}: {convert:.3f} ms/frame")
    print(f"VP8 encode at {args.size}x{args.size} (rgb24 in): {vp8:.2f} ms/frame")
    asyncio.run(bench_calls(args.calls, args.seconds, args.size, args.fps, args.encode))


if __name__ == "__main__":
    main()
