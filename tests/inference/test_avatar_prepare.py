"""Preparation of photos and videos: landmarks, crop boxes, masks and the bad-input errors."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data

from inference.avatar import (
    AvatarStore,
    FaceTooSmall,
    InputNotFound,
    InputTooLarge,
    NoFaceFound,
    PreparedAvatar,
    PrepareOptions,
    UnsupportedInput,
)
from inference.avatar.cli import main as cli_main
from inference.avatar.geometry import CHIN, MOUTH_LEFT, MOUTH_RIGHT, NOSE_MID


def _write_rgb(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> AvatarStore:
    return AvatarStore(tmp_path_factory.mktemp("avatars"))


@pytest.fixture(scope="module")
def astronaut(store: AvatarStore, tmp_path_factory: pytest.TempPathFactory) -> PreparedAvatar:
    photo = _write_rgb(tmp_path_factory.mktemp("in") / "astronaut.png", data.astronaut())
    return store.prepare(photo, "astronaut", progress=lambda done, total: None)


def test_astronaut_landmarks_and_boxes(astronaut: PreparedAvatar) -> None:
    assert astronaut.kind == "photo" and astronaut.num_frames == 1 and astronaut.fps == 25.0
    assert astronaut.frames.shape == (1, 512, 512, 3)
    marks = astronaut.landmarks[0]
    assert marks.shape == (468, 2) and marks.dtype == np.float32
    # The astronaut's face is in the upper middle of the photo (roughly x 170..290, y 60..190).
    assert 150 < marks[:, 0].min() and marks[:, 0].max() < 310
    assert 50 < marks[:, 1].min() and marks[:, 1].max() < 200
    assert marks[MOUTH_RIGHT, 0] < marks[MOUTH_LEFT, 0]  # the subject's right is image left
    assert marks[NOSE_MID, 1] < marks[MOUTH_RIGHT, 1] < marks[CHIN, 1]
    x0, y0, x1, y1 = astronaut.crop_boxes[0]
    assert x1 - x0 == y1 - y0, "crop box must be square"
    assert 90 <= x1 - x0 <= 220
    assert 0 <= x0 and 0 <= y0 and x1 <= 512 and y1 <= 512
    mx0, my0, mx1, my1 = astronaut.mouth_boxes[0]
    assert x0 <= mx0 < mx1 <= x1 and y0 <= my0 < my1 <= y1
    assert marks[CHIN, 1] <= y1  # the chin (and its margin) is inside the crop


def test_mouth_box_is_normalized_around_the_lips(astronaut: PreparedAvatar) -> None:
    tight = astronaut.mouth_box(margin=0.0)
    assert tight == pytest.approx(tuple(astronaut.mouth_boxes[0] / 512))
    x0, y0, x1, y1 = astronaut.mouth_box()
    assert x0 < tight[0] and y0 < tight[1] and tight[2] < x1 and tight[3] < y1


def test_mask_is_a_feathered_lower_face(astronaut: PreparedAvatar) -> None:
    mask = astronaut.masks[0]
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask.max() > 0.99 and mask.min() == 0.0
    assert mask[:64].max() < 0.05, "the upper face is not masked"
    x0, y0, x1, _ = astronaut.crop_boxes[0]
    scale = 256 / (x1 - x0)
    mouth = (astronaut.landmarks[0, [MOUTH_LEFT, MOUTH_RIGHT]].mean(axis=0) - (x0, y0)) * scale
    assert mask[int(mouth[1]), int(mouth[0])] > 0.95
    edge = (mask > 0.05) & (mask < 0.95)
    assert edge.sum() > 500, "the edge must be a soft ramp, not a hard step"
    assert np.abs(np.diff(mask, axis=0)).max() < 0.2 and np.abs(np.diff(mask, axis=1)).max() < 0.2


def test_no_face_found(store: AvatarStore, tmp_path: Path) -> None:
    y, x = np.mgrid[0:480, 0:640]
    image = np.stack([x * 255 // 640, y * 255 // 480, (x + y) * 255 // 1120], -1).astype(np.uint8)
    cv2.circle(image, (320, 240), 90, (200, 40, 40), -1)
    path = _write_rgb(tmp_path / "landscape.jpg", image)
    with pytest.raises(NoFaceFound, match="no face"):
        store.prepare(path, "noface", progress=lambda d, t: None)
    assert not store.exists("noface")


def test_tiny_face_is_refused(store: AvatarStore, tmp_path: Path) -> None:
    small = cv2.resize(data.astronaut(), None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512, 3), 128, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    with pytest.raises(FaceTooSmall, match="under the 64 px"):
        store.prepare(_write_rgb(tmp_path / "tiny.png", canvas), "tiny", progress=lambda d, t: None)
    assert not store.exists("tiny")


def test_several_faces_use_the_largest(store: AvatarStore, tmp_path: Path) -> None:
    photo = data.astronaut()
    canvas = np.full((512, 1024, 3), 200, np.uint8)
    canvas[:, 512:] = photo
    smaller = cv2.resize(photo, (410, 410), interpolation=cv2.INTER_AREA)
    canvas[50:460, 50:460] = smaller
    avatar = store.prepare(_write_rgb(tmp_path / "two.png", canvas), "two", progress=None)
    assert any("faces found" in w for w in avatar.warnings), avatar.warnings
    assert avatar.landmarks[0, :, 0].min() > 512, "the larger face (right half) is animated"


@pytest.mark.parametrize(
    ("filename", "payload", "error"),
    [
        ("broken.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg", UnsupportedInput),
        ("broken.png", b"\x89PNG\r\n\x1a\n truncated", UnsupportedInput),
        ("broken.mp4", b"\x00\x00\x00\x18ftypmp42 garbage garbage", UnsupportedInput),
        ("notes.txt", b"hello", UnsupportedInput),
        ("empty.webp", b"", UnsupportedInput),
    ],
)
def test_corrupt_or_unsupported_input(
    store: AvatarStore, tmp_path: Path, filename: str, payload: bytes, error: type[Exception]
) -> None:
    path = tmp_path / filename
    path.write_bytes(payload)
    with pytest.raises(error, match=r"broken|notes|empty|unsupported|decode"):
        store.prepare(path, "bad", progress=lambda d, t: None)
    assert not store.exists("bad")


def test_missing_input(store: AvatarStore, tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="not found"):
        store.prepare(tmp_path / "nope.png", "nope")


def _write_video(path: Path, frames: int, size: int = 384, codec: str = "libx264") -> None:
    import av

    photo = cv2.resize(data.astronaut(), (size, size))
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            m = np.array([[1, 0, 6 * math.sin(i / 4)], [0, 1, 4 * math.cos(i / 5)]], np.float32)
            frame = np.asarray(
                cv2.warpAffine(photo, m, (size, size), borderMode=cv2.BORDER_REFLECT), np.uint8
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_avatar(store: AvatarStore, tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, 30)
    calls: list[tuple[int, int]] = []
    avatar = store.prepare(path, "clip", progress=lambda d, t: calls.append((d, t)))
    assert avatar.kind == "video" and avatar.num_frames == 30 and avatar.fps == pytest.approx(25)
    assert calls[-1] == (30, 30)
    boxes = avatar.crop_boxes.astype(float)
    assert np.all(boxes[:, 2] - boxes[:, 0] == boxes[:, 3] - boxes[:, 1])
    assert np.abs(np.diff(boxes, axis=0)).max() <= 4, "smoothed boxes move a few px per frame"
    # Landmarks follow the head's motion (6 px sideways sine in the source).
    nose_x = avatar.landmarks[:, NOSE_MID, 0]
    expected = 6 * np.sin(np.arange(30) / 4)
    assert np.corrcoef(nose_x, expected)[0, 1] > 0.9
    loaded = store.load("clip")
    assert loaded.num_frames == 30 and loaded.kind == "video"
    assert np.abs(loaded.frames.astype(int) - avatar.frames.astype(int)).mean() < 3  # JPEG


@pytest.mark.parametrize(("filename", "codec"), [("clip.webm", "libvpx"), ("clip.mov", "libx264")])
def test_other_video_containers(
    store: AvatarStore, tmp_path: Path, filename: str, codec: str
) -> None:
    path = tmp_path / filename
    _write_video(path, 6, size=352, codec=codec)
    avatar = store.prepare(path, "other", progress=lambda d, t: None)
    assert avatar.kind == "video" and avatar.num_frames == 6


def test_webp_photo(store: AvatarStore, tmp_path: Path) -> None:
    path = tmp_path / "astronaut.webp"
    assert cv2.imwrite(str(path), data.astronaut()[:, :, ::-1], [cv2.IMWRITE_WEBP_QUALITY, 90])
    avatar = store.prepare(path, "webp", progress=lambda d, t: None)
    assert avatar.kind == "photo" and avatar.frames.shape == (1, 512, 512, 3)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` RGB pixels (a few rows of data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 3000)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, then a baseline frame header declaring ``width`` x ``height``."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def _webp_declaring(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP header declaring a ``width`` x ``height`` canvas."""
    body = b"VP8X" + struct.pack("<I", 10) + bytes(4)
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.mark.parametrize(
    ("filename", "payload", "size"),
    [
        ("bomb.png", _png_declaring(100000, 100000), "100000x100000"),
        ("wide.png", _png_declaring(30000, 30000), "30000x30000"),
        ("bomb.jpg", _jpeg_declaring(60000, 60000), "60000x60000"),
        ("bomb.webp", _webp_declaring(16000, 16000), "16000x16000"),
        ("renamed.jpg", _png_declaring(100000, 100000), "100000x100000"),  # sniffed, not named
    ],
)
def test_pixel_cap_is_checked_from_the_header(
    store: AvatarStore, tmp_path: Path, filename: str, payload: bytes, size: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(payload)
    assert len(payload) < 4096
    with pytest.raises(InputTooLarge, match=rf"{size} pixels .* cap of 50000000 pixels"):
        store.prepare(path, "bomb", progress=lambda d, t: None)
    assert not store.exists("bomb")


def test_pixel_cap_option_and_other_formats(tmp_path: Path) -> None:
    capped = AvatarStore(tmp_path / "avatars", options=PrepareOptions(max_input_pixels=100_000))
    photo = _write_rgb(tmp_path / "astronaut.jpg", data.astronaut())
    with pytest.raises(InputTooLarge, match=r"512x512 pixels .* cap of 100000 pixels"):
        capped.prepare(photo, "capped", progress=lambda d, t: None)
    bmp = tmp_path / "bitmap.png"
    assert cv2.imwrite(str(tmp_path / "bitmap.bmp"), data.astronaut())
    bmp.write_bytes((tmp_path / "bitmap.bmp").read_bytes())
    with pytest.raises(UnsupportedInput, match="not a JPEG, PNG or WebP"):
        capped.prepare(bmp, "bitmap", progress=lambda d, t: None)
    with pytest.raises(ValueError, match="max_input_pixels"):
        PrepareOptions(max_input_pixels=0)


def test_video_pixel_cap_from_the_stream_header(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, 3, size=352)
    capped = AvatarStore(tmp_path / "avatars", options=PrepareOptions(max_input_pixels=100_000))
    with pytest.raises(InputTooLarge, match=r"352x352 pixels .* cap of 100000 pixels"):
        capped.prepare(path, "clip", progress=lambda d, t: None)
    assert not capped.exists("clip")


def test_cli_refuses_a_huge_image_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring(100000, 100000))
    root = tmp_path / "avatars"
    assert cli_main(["prepare", str(bomb), "--name", "bomb", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'bomb.png' is 100000x100000 pixels") and "Traceback" not in err
    photo = _write_rgb(tmp_path / "a.jpg", data.astronaut())
    args = ["prepare", str(photo), "--name", "a", "--root", str(root), "--max-pixels", "1000"]
    assert cli_main(args) == 2
    assert "cap of 1000 pixels" in capsys.readouterr().err
    assert not root.exists() or not any(root.iterdir())
