"""Avatar latents, GPU-style blend (run on the CPU here) and the batched engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from musetalk_helpers import engine, make_avatar, tiny_models

from inference.render.musetalk import EngineOptions, FrameJob, MuseTalkEngine
from inference.render.musetalk.blend import blend_faces
from inference.render.musetalk.latents import crop_faces


def _jobs(n: int, name: str = "synthetic", size: tuple[int, int] | None = None) -> list[FrameJob]:
    torch.manual_seed(n)
    return [FrameJob(name, i % 3, torch.randn(50, 32), size) for i in range(n)]


def test_avatar_latents_cached_once() -> None:
    eng = engine()
    lat = eng.avatar("synthetic")
    assert lat.unet_ref.shape == (3, 8, 32, 32)
    assert lat.masks.shape == (3, 1, 256, 256) and lat.frames.dtype == torch.uint8
    assert lat.mask_box == (120, 48, 208)
    assert eng.add_avatar(make_avatar()) is lat
    with pytest.raises(KeyError, match="not added"):
        eng.avatar("nobody")


def test_bad_crop_box_is_rejected() -> None:
    av = make_avatar()
    av.crop_boxes[1] = [100, 10, 400, 300]
    with pytest.raises(ValueError, match="crop box 1"):
        crop_faces(av)


def test_blend_mask_extremes() -> None:
    frames = torch.randint(0, 256, (2, 64, 80, 3), dtype=torch.uint8)
    faces = torch.zeros(2, 3, 256, 256)
    faces[:, 0] = 1.0  # pure red face
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [20.0, 10.0, 60.0, 50.0]])
    ones, zeros = torch.ones(2, 1, 256, 256), torch.zeros(2, 1, 256, 256)
    keep = blend_faces(frames, faces, zeros, boxes)
    assert torch.equal(keep, frames)
    full = blend_faces(frames, faces, ones, boxes)
    inner = full[0, 10:38, 10:38]
    assert (inner[..., 0] == 255).all() and (inner[..., 1:] == 0).all()
    assert torch.equal(full[0, 45:], frames[0, 45:])  # outside the box: untouched
    small = blend_faces(frames, faces, ones, boxes, out_size=(40, 32))
    assert small.shape == (2, 32, 40, 3) and small.dtype == torch.uint8


def test_run_batch_shapes_and_untouched_background() -> None:
    eng = engine()
    av = make_avatar()
    out = eng.run_batch(_jobs(4))
    assert len(out) == 4
    for i, frame in enumerate(out):
        assert frame.shape == (128, 160, 3) and frame.dtype == np.uint8
        src = av.frames[i % 3]
        _x0, y0, x1, y1 = av.crop_boxes[i % 3]
        assert np.array_equal(frame[:y0], src[:y0])
        assert np.array_equal(frame[:, x1 + 1 :], src[:, x1 + 1 :])
        # the upper half of the face (mask zero) keeps the source pixels
        assert np.array_equal(frame[y0 : y0 + (y1 - y0) // 3], src[y0 : y0 + (y1 - y0) // 3])
        assert not np.array_equal(frame, src)
    resized = eng.run_batch(_jobs(2, size=(80, 64)))
    assert resized[0].shape == (64, 80, 3)


def test_mask_decode_only_changes_what_the_mask_sees() -> None:
    eng = engine()
    jobs = _jobs(3)
    assert eng.decode_window(jobs) == (13, 4, 28)
    with torch.inference_mode():
        lat = eng.predict_latents(jobs)
        full = eng.decode_faces(jobs, lat, "full")
        part = eng.decode_faces(jobs, lat, "mask")
    assert part.shape == full.shape
    crops = torch.stack([eng.avatar("synthetic").crops[j.index] for j in jobs])
    assert torch.equal(part[:, :, :120], crops[:, :, :120])  # above the mask: the reference
    inside = (part[:, :, 120:, 48:208] - full[:, :, 120:, 48:208]).abs()
    assert float(inside.mean()) < 0.25  # an approximation of the full decode, not noise


def test_engine_options_validation() -> None:
    with pytest.raises(ValueError, match="decode"):
        EngineOptions(decode="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CUDA"):
        EngineOptions(half=True)
    eng = MuseTalkEngine(tiny_models(), EngineOptions(max_batch=7))
    assert eng.max_batch_size() == 7
    with pytest.raises(RuntimeError, match="add an avatar"):
        eng.warmup()


def test_audio_window_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="audio windows"):
        engine().run_batch([FrameJob("synthetic", 0, torch.randn(40, 32))])
