"""The warp renderer: frame counts, the mouth, the seam, sizes, idle loop, video avatars."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.avatar import PreparedAvatar, default_avatar
from inference.avatar.geometry import LEFT_EYE, RIGHT_EYE
from inference.render.base import FrameRateFollower, Renderer, render_plan
from inference.render.warp import (
    BLINK_PROFILE,
    WarpAssets,
    WarpOptions,
    WarpRenderer,
    pingpong_index,
)

SR = 16000
NO_BLINKS = WarpOptions(seed=0, blink_interval_s=(60.0, 60.0))


@pytest.fixture(scope="module")
def avatar(tmp_path_factory: pytest.TempPathFactory) -> PreparedAvatar:
    return default_avatar(tmp_path_factory.mktemp("avatars"), progress=lambda d, t: None)


def _speechlike(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """An amplitude-modulated voiced sound and its per-frame envelope."""
    t = np.arange(int(seconds * SR)) / SR
    env = np.clip(np.sin(2 * np.pi * 1.7 * t), 0, None) * (0.4 + 0.6 * np.abs(np.sin(0.9 * t)))
    wave = np.sin(2 * np.pi * 160 * t) + 0.4 * np.sin(2 * np.pi * 800 * t)
    audio = (0.35 * env * wave * 32767).astype(np.int16)
    return audio, env.reshape(-1, SR // 25).mean(axis=1)


def _sobel(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def test_is_a_renderer(avatar: PreparedAvatar) -> None:
    renderer: Renderer = WarpRenderer(avatar)
    assert renderer.fps == 25 and renderer.frame_size == (512, 512)


@pytest.mark.parametrize(
    ("samples", "frames"), [(0, 0), (1, 1), (SR, 25), (SR + 1, 26), (7000, 11)]
)
async def test_frame_count_and_batches(avatar: PreparedAvatar, samples: int, frames: int) -> None:
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    batches = [b async for b in renderer.render(np.zeros(samples, np.int16))]
    assert sum(len(b) for b in batches) == frames
    assert all(1 <= len(b) <= 5 for b in batches)
    assert all(f.shape == (512, 512, 3) and f.dtype == np.uint8 for b in batches for f in b)


def test_mouth_moves_with_loud_audio_not_with_silence(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    still = renderer.draw(0.0)
    (x0, y0, x1, y1), _ = renderer.blend_support()
    for frame in renderer.render_all(np.zeros(SR, np.int16)):
        assert np.array_equal(frame, still)
    loud, _ = _speechlike(1.0)
    frames = renderer.render_all(loud)
    diffs = [np.abs(f[y0:y1, x0:x1].astype(int) - still[y0:y1, x0:x1]).mean() for f in frames]
    assert max(diffs) > 4.0
    outside = np.ones(still.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    for f in frames:
        assert np.array_equal(f[outside], still[outside]), "only the lower face changes"


def test_opening_correlates_with_the_envelope(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    audio, env = _speechlike(4.0)
    frames = renderer.render_all(audio)
    still = renderer.draw(0.0).astype(int)
    (x0, y0, x1, y1), _ = renderer.blend_support()
    opening = [np.abs(f[y0:y1, x0:x1].astype(int) - still[y0:y1, x0:x1]).mean() for f in frames]
    assert np.corrcoef(opening, env[: len(opening)])[0, 1] > 0.7


def test_inner_mouth_darkens_as_it_opens(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    x0, y0, x1, y1 = (avatar.mouth_boxes[0]).astype(int)
    brightness = [renderer.draw(o)[y0:y1, x0:x1].mean() for o in (0.0, 0.3, 0.6, 1.0)]
    assert brightness[0] > brightness[1] > brightness[2] > brightness[3]


def test_chin_follows_the_jaw(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    chin = avatar.landmarks[0, 152]
    x = int(chin[0])
    col_closed = renderer.draw(0.0)[:, x].astype(float)
    col_open = renderer.draw(1.0)[:, x].astype(float)
    y = int(chin[1])
    # The profile around the chin moves down: best vertical shift of the open column > 2 px.
    window = slice(y - 6, y + 6)
    errors = {
        s: np.abs(col_open[y - 6 + s : y + 6 + s] - col_closed[window]).mean() for s in range(8)
    }
    assert min(errors, key=errors.__getitem__) >= 2


def test_seamless_blend(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    still, talking = renderer.draw(0.0), renderer.draw(0.8, 0.5)
    # The avatar's lower-face mask, mapped into the frame, and its edge band.
    x0, y0, x1, y1 = avatar.crop_boxes[0]
    full = np.zeros(still.shape[:2], np.float32)
    full[y0:y1, x0:x1] = cv2.resize(avatar.masks[0], (int(x1 - x0), int(y1 - y0)))
    edges = [(full > 0.3) & (full < 0.7)]
    # ... and the edge of the region the warp can move.
    (bx0, by0, bx1, by1), support = renderer.blend_support()
    band = np.zeros_like(edges[0])
    band[by0:by1, bx0:bx1] = (support > 0.01) & (support < 0.25)
    edges.append(band)
    g_still, g_talk = _sobel(still), _sobel(talking)
    for edge in edges:
        assert edge.sum() > 100
        ratio = g_talk[edge].mean() / g_still[edge].mean()
        assert 0.85 < ratio < 1.2, ratio
    # The check can fail: pasting a darkened mouth region with a hard edge trips it.
    pasted = still.copy()
    hard = full >= 0.5
    pasted[hard] = (pasted[hard] * 0.7).astype(np.uint8)
    assert _sobel(pasted)[edges[0]].mean() / g_still[edges[0]].mean() > 1.3


async def test_output_size_changes_between_frames(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    audio, _ = _speechlike(1.0)
    sizes: list[tuple[int, ...]] = []
    async for batch in renderer.render(audio):
        sizes.extend(f.shape[:2] for f in batch)
        renderer.set_output_height(256)
    assert sizes[0] == (512, 512) and sizes[-1] == (256, 256) and len(sizes) == 25
    renderer.set_output_height(301)
    assert renderer.frame_size in {(300, 300), (302, 302)}  # even, for the video encoders
    renderer.set_output_height(10)
    assert renderer.frame_size == (64, 64)
    renderer.set_output_height(720)
    assert renderer.draw(0.7).shape == (720, 720, 3)


def _eye_box(avatar: PreparedAvatar) -> tuple[slice, slice]:
    pts = avatar.landmarks[0, list(RIGHT_EYE) + list(LEFT_EYE)]
    (x0, y0), (x1, y1) = pts.min(axis=0) - 4, pts.max(axis=0) + 4
    return slice(int(y0), int(y1)), slice(int(x0), int(x1))


def test_idle_frames_breathe_and_blink(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=WarpOptions(seed=3))
    idle = renderer.idle_frames()
    assert len(idle) == 80 and renderer.idle_frames() is idle  # cached per size
    assert all(f.shape == (512, 512, 3) for f in idle)
    assert any(not np.array_equal(idle[0], f) for f in idle[1:])
    rows, cols = _eye_box(avatar)
    # Frame-to-frame change of the eyes: breathing moves them a little, a blink a lot.
    step = np.array(
        [np.abs(b[rows, cols].astype(int) - a[rows, cols]).mean() for a, b in pairwise(idle)]
    )
    start = round(0.3 * 80)
    blink = step[start - 1 : start + len(BLINK_PROFILE)]
    calm = np.delete(step, range(start - 1, start + len(BLINK_PROFILE)))
    assert blink.max() > 4 * max(calm.max(), 0.5), "a blink closes the eyes"


def test_blinks_while_talking(avatar: PreparedAvatar) -> None:
    renderer = WarpRenderer(avatar, options=WarpOptions(seed=5, blink_interval_s=(1.0, 1.5)))
    frames = renderer.render_all(np.zeros(3 * SR, np.int16))
    rows, cols = _eye_box(avatar)
    still = renderer.draw(0.0)[rows, cols].astype(int)
    change = np.array([np.abs(f[rows, cols].astype(int) - still).mean() for f in frames])
    assert (change > 3).sum() >= 2 * 3, "at least two blinks in three seconds"
    assert (change == 0).sum() > len(frames) / 2


def _video_avatar(avatar: PreparedAvatar, n: int = 6) -> PreparedAvatar:
    shifts = [2 * i for i in range(n)]
    frames = np.stack([np.roll(avatar.frames[0], s, axis=1) for s in shifts])
    marks = np.stack([avatar.landmarks[0] + (s, 0) for s in shifts]).astype(np.float32)
    boxes = np.stack([avatar.crop_boxes[0] + (s, 0, s, 0) for s in shifts]).astype(np.int32)
    mouths = np.stack([avatar.mouth_boxes[0] + (s, 0, s, 0) for s in shifts]).astype(np.float32)
    return replace(
        avatar, frames=frames, landmarks=marks, crop_boxes=boxes, mouth_boxes=mouths,
        masks=np.repeat(avatar.masks, n, axis=0), kind="video",
    )  # fmt: skip


def test_video_avatar_plays_its_frames_ping_pong(avatar: PreparedAvatar) -> None:
    video = _video_avatar(avatar)
    renderer = WarpRenderer(video, options=NO_BLINKS)
    idle = renderer.idle_frames()
    assert len(idle) == 6 and all(
        np.array_equal(a, b) for a, b in zip(idle, video.frames, strict=True)
    )
    silent = renderer.render_all(np.zeros(12 * SR // 25, np.int16))
    expected = [pingpong_index(i, 6) for i in range(12)]
    assert expected == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1]
    for frame, index in zip(silent, expected, strict=True):
        assert np.array_equal(frame, video.frames[index])
    renderer.seek(3)  # the idle loop was at step 3: talking continues from source frame 3
    assert np.array_equal(renderer.render_all(np.zeros(640, np.int16))[0], video.frames[3])
    renderer.seek(12)
    talking = renderer.render_all(_speechlike(1.0)[0])
    assert any(
        not np.array_equal(f, video.frames[pingpong_index(12 + i, 6)])
        for i, f in enumerate(talking)
    )


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="fps"):
        WarpOptions(fps=0)
    with pytest.raises(ValueError, match="blink_interval"):
        WarpOptions(blink_interval_s=(3.0, 1.0))
    with pytest.raises(ValueError, match="output_long_side"):
        WarpOptions(output_long_side=10)


def test_default_avatar_root_is_reused(tmp_path: Path) -> None:
    assert default_avatar(tmp_path).name == "astronaut"


def test_renderers_share_per_avatar_assets(avatar: PreparedAvatar) -> None:
    assets = WarpAssets(avatar)
    one = WarpRenderer(avatar, options=NO_BLINKS, assets=assets)
    two = WarpRenderer(avatar, options=NO_BLINKS, assets=assets)
    assert np.array_equal(one.draw(0.6, 0.2), two.draw(0.6, 0.2))
    assert one.idle_frames() is two.idle_frames()
    other = replace(avatar, name="other")
    with pytest.raises(ValueError, match="another avatar"):
        WarpRenderer(other, assets=assets)


def test_render_plan_keeps_frames_near_their_sound() -> None:
    assert render_plan(7, 25, 25) == list(range(7)) == render_plan(7, 25, 30)
    for fps, rfps in ((25, 10), (25, 15), (25, 20), (30, 12)):
        plan = render_plan(250, fps, rfps)
        assert len(plan) == 250
        # within half a render tick of its own time, and one frame drawn per tick
        assert all(abs(j - i) <= fps / rfps / 2 + 1 for i, j in enumerate(plan))
        assert len(set(plan)) == pytest.approx(250 * rfps / fps, abs=1)
        assert plan == sorted(plan)
    with pytest.raises(ValueError):
        render_plan(3, 25, 0)


async def test_a_lower_render_fps_draws_fewer_frames(
    avatar: PreparedAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quality ladder's low rungs: same frame count and timing, a third of the work."""
    renderer = WarpRenderer(avatar, options=NO_BLINKS)
    assert isinstance(renderer, FrameRateFollower) and renderer.render_fps == 25
    drawn = [0]
    draw = renderer.draw

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        drawn[0] += 1
        return draw(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(renderer, "draw", counting)
    audio, _ = _speechlike(2.0)
    full_frames = []
    async for batch in renderer.render(audio):
        full_frames.extend(batch)
    assert drawn[0] == 50 and len({id(f) for f in full_frames}) == 50
    renderer.set_render_fps(10)
    drawn[0] = 0
    low = []
    async for batch in renderer.render(audio):
        low.extend(batch)
    assert len(low) == 50 and all(f.shape == full_frames[0].shape for f in low)
    assert 18 <= drawn[0] <= 24  # ~10 per second (batch edges add a few)
    assert len({id(f) for f in low}) == drawn[0]  # the rest repeat drawn frames
    with pytest.raises(ValueError):
        renderer.set_render_fps(0)
