"""Avatar latents, GPU-style blend (run on the CPU here) and the batched engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from musetalk_helpers import engine, make_avatar, tiny_models

from inference.render.batching import (
    AudioLaneEngine,
    AudioWarmingEngine,
    PaddedEngine,
    PipelinedEngine,
    ShrinkableEngine,
    TimedHandle,
)
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


def test_blend_region_path_matches_whole_frame_float() -> None:
    """Only the boxes' union is blended in floating point; the result is what blending
    the whole frame in floating point gives, and the input frames stay untouched."""
    torch.manual_seed(3)
    frames = torch.randint(0, 256, (3, 72, 96, 3), dtype=torch.uint8)
    before = frames.clone()
    faces, masks = torch.rand(3, 3, 256, 256), torch.rand(3, 1, 256, 256)
    boxes = torch.tensor(
        [[5.0, 4.0, 45.0, 44.0], [30.0, 20.0, 80.0, 70.0], [10.0, 8.0, 60.0, 50.0]]
    )
    got = blend_faces(frames, faces, masks, boxes)
    assert torch.equal(frames, before)
    base = frames.permute(0, 3, 1, 2).float() / 255.0
    xs, ys = torch.arange(96) + 0.5, torch.arange(72) + 0.5
    gx = (xs[None] - boxes[:, :1]) / (boxes[:, 2:3] - boxes[:, :1]) * 2 - 1
    gy = (ys[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) * 2 - 1
    grid = torch.stack([gx[:, None].expand(-1, 72, -1), gy[:, :, None].expand(-1, -1, 96)], -1)
    warped = torch.nn.functional.grid_sample(
        torch.cat([faces, masks], 1), grid, align_corners=False
    )
    want = base + warped[:, 3:] * (warped[:, :3] - base)
    want_u8 = (want * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert (got.int() - want_u8.int()).abs().max() <= 1
    same_size = blend_faces(frames, faces, masks, boxes, out_size=(96, 72))
    assert torch.equal(same_size, got)


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


def test_submitted_batches_finish_in_any_order_with_run_batch_frames() -> None:
    eng = engine()
    first, second = _jobs(3), _jobs(5)
    want_first, want_second = eng.run_batch(first), eng.run_batch(second)
    a = eng.submit_batch(first)
    b = eng.submit_batch(second)  # queued before the first is handed out
    a.wait_computed()
    got_second, got_first = eng.finish_batch(b), eng.finish_batch(a)
    assert len(got_first) == 3 and len(got_second) == 5
    for got, want in ((got_first, want_first), (got_second, want_second)):
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g, w)
    with eng.audio_lane():  # on the CPU: no stream, the work simply runs
        assert eng.audio.encode(torch.zeros(1, 1600)).shape[0] == 1


def test_the_engine_declares_every_ability_the_scheduler_uses() -> None:
    eng = engine()
    for ability in (
        PipelinedEngine,
        PaddedEngine,
        ShrinkableEngine,
        AudioWarmingEngine,
        AudioLaneEngine,
    ):
        assert isinstance(eng, ability), ability.__name__
    assert isinstance(eng.submit_batch(_jobs(1)), TimedHandle)


def test_mask_decode_only_changes_what_the_mask_sees() -> None:
    eng = engine()
    jobs = _jobs(3)
    assert eng.options.margin_rows == 4
    assert eng.decode_window(jobs) == (11, 2, 30)  # mask rows 120-239, cols 48-207, 4 margin
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


def test_batch_faces_match_the_step_by_step_path() -> None:
    """``faces`` (what a batch renders) equals UNet then decode, in both decode modes; on
    the CPU nothing is captured and ``cuda_graphs`` changes nothing."""
    eng = engine()
    jobs = _jobs(3)
    assert not eng.capture_graphs()
    for mode in ("full", "mask"):
        eng.configure(decode=mode)  # type: ignore[arg-type]
        with torch.inference_mode():
            want = eng.decode_faces(jobs, eng.predict_latents(jobs))
            got = eng.faces(jobs)
            eng.configure(cuda_graphs=False)
            plain = eng.faces(jobs)
            eng.configure(cuda_graphs=True)
        assert torch.equal(got, want) and torch.equal(plain, want)
    with pytest.raises(ValueError, match="decode mode"):
        eng.decode_faces(jobs, torch.zeros(3, 4, 32, 32), "half")
    with pytest.raises(ValueError, match="empty"):
        eng.faces([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_forward_replays_with_new_inputs() -> None:
    from inference.render.musetalk.graphs import CapturedForward

    w = torch.randn(64, 64, device="cuda")

    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ w) + y

    x, y = torch.randn(8, 64, device="cuda"), torch.randn(8, 64, device="cuda")
    graph = CapturedForward(fn, (x, y))
    for _ in range(2):  # the static output follows each call's inputs
        x, y = torch.randn(8, 64, device="cuda"), torch.randn(8, 64, device="cuda")
        assert torch.allclose(graph(x, y), fn(x, y))
    with pytest.raises(ValueError, match="shape"):
        graph(torch.zeros(4, 64, device="cuda"), y)
