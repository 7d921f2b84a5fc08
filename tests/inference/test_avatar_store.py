"""The avatar store: names, atomic writes, cache reuse by hash, load/list, default avatar, CLI."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data

from inference.avatar import (
    NAME_PATTERN,
    AvatarNotFound,
    AvatarStore,
    CorruptAvatar,
    InvalidName,
    NoFaceFound,
    default_avatar,
    validate_name,
)
from inference.avatar import store as store_module
from inference.avatar.cli import main as cli_main


def _photo(path: Path, image: np.ndarray | None = None) -> Path:
    image = data.astronaut() if image is None else image
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))
    return path


def _quiet(done: int, total: int) -> None:
    pass


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../evil",
        "a/b",
        "a\\b",
        "x..y",
        ".hidden",
        "-dash",
        "-rf",
        "_x",
        "na me",
        "név",
        "café",
        "ｆｕｌｌ",  # full-width letters
        "Ａ1",
        "a\x00b",
        "a\nb",
        "a" * 65,
        "a:b",
    ],
)
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidName, match="avatar name"):
        validate_name(name)
    store = AvatarStore(tmp_path)
    with pytest.raises(InvalidName):
        store.prepare(tmp_path / "x.png", name)
    for use in (store.path, store.load, store.exists):
        with pytest.raises(InvalidName):
            use(name)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["alice", "Bob_2", "agent.v1-blue", "a" * 64, "7"])
def test_good_names(tmp_path: Path, name: str) -> None:
    assert validate_name(name) == name
    assert re.fullmatch(NAME_PATTERN, name)
    assert AvatarStore(tmp_path).path(name).parent == tmp_path  # never outside the root


def test_prepare_load_roundtrip_and_list(tmp_path: Path) -> None:
    store = AvatarStore(tmp_path / "avatars")
    prepared = store.prepare(_photo(tmp_path / "a.png"), "alice", progress=_quiet)
    loaded = store.load("alice")
    assert np.array_equal(loaded.frames, prepared.frames)  # PNG is lossless
    assert np.array_equal(loaded.crop_boxes, prepared.crop_boxes)
    assert np.allclose(loaded.landmarks, prepared.landmarks)
    assert np.abs(loaded.masks - prepared.masks).max() <= 0.5 / 255 + 1e-6
    assert loaded.source_hash == prepared.source_hash and len(loaded.source_hash) == 64
    meta = json.loads((tmp_path / "avatars" / "alice" / "meta.json").read_text())
    assert meta["version"] == 1 and meta["kind"] == "photo" and meta["frame_size"] == [512, 512]
    assert meta["source"]["filename"] == "a.png"
    [info] = store.list()
    assert (info.name, info.kind, info.num_frames, info.frame_size) == (
        "alice",
        "photo",
        1,
        (512, 512),
    )


def test_cache_reuse_by_hash(tmp_path: Path) -> None:
    store = AvatarStore(tmp_path / "avatars")
    photo = _photo(tmp_path / "a.png")
    calls: list[int] = []
    store.prepare(photo, "alice", progress=lambda d, t: calls.append(d))
    assert calls == [1]
    meta = tmp_path / "avatars" / "alice" / "meta.json"
    first = meta.read_text()
    again = AvatarStore(tmp_path / "avatars").prepare(
        photo, "alice", progress=lambda d, t: calls.append(d)
    )
    assert calls == [1], "the second preparation of the same file is a cache hit"
    assert meta.read_text() == first and again.num_frames == 1
    # Another input under the same name is prepared again and replaces the old one.
    _photo(photo, cv2.flip(data.astronaut(), 1))
    flipped = store.prepare(photo, "alice", progress=lambda d, t: calls.append(d))
    assert calls == [1, 1]
    assert flipped.landmarks[0, 1, 0] == pytest.approx(511 - again.landmarks[0, 1, 0], abs=4)
    assert sorted(p.name for p in (tmp_path / "avatars").iterdir()) == ["alice"]


def test_failed_write_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "avatars"
    store = AvatarStore(root)
    photo = _photo(tmp_path / "a.png")
    store.prepare(photo, "alice", progress=_quiet)
    before = (root / "alice" / "meta.json").read_text()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(store_module.np, "savez_compressed", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.prepare(photo, "bob", progress=_quiet)
    _photo(photo, cv2.flip(data.astronaut(), 1))
    with pytest.raises(OSError, match="No space"):
        store.prepare(photo, "alice", progress=_quiet)  # a failed re-preparation keeps the old one
    assert sorted(p.name for p in root.iterdir()) == ["alice"]
    assert (root / "alice" / "meta.json").read_text() == before


def test_no_face_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "avatars"
    blank = _photo(tmp_path / "blank.png", np.full((300, 300, 3), 90, np.uint8))
    with pytest.raises(NoFaceFound):
        AvatarStore(root).prepare(blank, "blank", progress=_quiet)
    assert not root.exists() or not any(root.iterdir())


def test_load_errors(tmp_path: Path) -> None:
    store = AvatarStore(tmp_path)
    with pytest.raises(AvatarNotFound, match="no prepared avatar 'ghost'"):
        store.load("ghost")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text("{not json")
    with pytest.raises(CorruptAvatar, match=r"meta\.json"):
        store.load("broken")
    assert store.list() == []


def test_default_avatar_prepared_once(tmp_path: Path) -> None:
    first = default_avatar(tmp_path, progress=_quiet)
    meta = tmp_path / "astronaut" / "meta.json"
    stamp = meta.stat().st_mtime_ns
    calls: list[int] = []
    second = default_avatar(tmp_path, progress=lambda d, t: calls.append(d))
    assert calls == [] and meta.stat().st_mtime_ns == stamp
    assert second.name == "astronaut" and np.array_equal(second.frames, first.frames)
    assert np.allclose(second.landmarks, first.landmarks)


def test_cli_prepare_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = _photo(tmp_path / "a.jpg")
    root = tmp_path / "avatars"
    assert cli_main(["prepare", str(photo), "--name", "carol", "--root", str(root), "--quiet"]) == 0
    assert (root / "carol" / "meta.json").is_file()
    assert "prepared avatar 'carol'" in capsys.readouterr().out
    assert cli_main(["prepare", str(photo), "--name", "../x", "--root", str(root)]) == 2
    assert "path separators" in capsys.readouterr().err
    assert cli_main(["list", "--root", str(root)]) == 0
    assert capsys.readouterr().out.startswith("carol\tphoto")


def test_stale_temporary_folders_are_cleaned(tmp_path: Path) -> None:
    import os

    root = tmp_path / "avatars"
    stale = root / ".alice.tmp-crashed"
    stale.mkdir(parents=True)
    (stale / "meta.json").write_text("{}")
    os.utime(stale, (0, 0))
    fresh = root / ".alice.tmp-running"
    fresh.mkdir()
    AvatarStore(root).prepare(_photo(tmp_path / "a.png"), "alice", progress=_quiet)
    assert not stale.exists() and fresh.exists()  # another preparation may still be writing
    assert [i.name for i in AvatarStore(root).list()] == ["alice"]


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the astronaut avatar (copied per test before it is damaged)."""
    root = tmp_path_factory.mktemp("prepared")
    default_avatar(root, progress=_quiet)
    return root


def _copy(prepared_root: Path, root: Path, name: str) -> Path:
    shutil.copytree(prepared_root / "astronaut", root / name)
    return root / name


def _edit_meta(folder: Path, **fields: Any) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(fields)
    (folder / "meta.json").write_text(json.dumps(meta))


def _edit_arrays(folder: Path, **arrays: np.ndarray) -> None:
    with np.load(folder / "arrays.npz") as npz:
        data = {key: npz[key] for key in npz.files}
    data.update(arrays)
    np.savez_compressed(folder / "arrays.npz", **data)


def _huge_png() -> bytes:
    """A PNG header declaring 100000x100000 pixels (no image data)."""
    ihdr = (100000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0" * 4


def _nan_landmarks(folder: Path) -> None:
    _edit_arrays(folder, landmarks=np.full((1, 468, 2), np.nan, np.float32))


# name -> (damage, whether list() still shows it: it reads meta.json only)
DAMAGE: dict[str, tuple[Callable[[Path], object], bool]] = {
    "num_frames_text": (lambda f: _edit_meta(f, num_frames="many"), False),
    "num_frames_huge": (lambda f: _edit_meta(f, num_frames=10**9), True),
    "fps_null": (lambda f: _edit_meta(f, fps=None), False),
    "frame_size_short": (lambda f: _edit_meta(f, frame_size=[512]), False),
    "source_text": (lambda f: _edit_meta(f, source="photo.png"), False),
    "kind_other": (lambda f: _edit_meta(f, kind="hologram"), False),
    "warnings_number": (lambda f: _edit_meta(f, warnings=3), False),
    "meta_list": (lambda f: (f / "meta.json").write_text("[1, 2]"), False),
    "arrays_garbage": (lambda f: (f / "arrays.npz").write_bytes(b"PK\x03\x04 no zip"), True),
    "arrays_text": (lambda f: (f / "arrays.npz").write_bytes(b"hello"), True),
    "arrays_missing": (lambda f: (f / "arrays.npz").unlink(), True),
    "landmarks_shape": (
        lambda f: _edit_arrays(f, landmarks=np.zeros((1, 10, 2), np.float32)),
        True,
    ),
    "landmarks_nan": (_nan_landmarks, True),
    "box_outside": (
        lambda f: _edit_arrays(f, crop_boxes=np.array([[0, 0, 9000, 9000]], np.int32)),
        True,
    ),
    "masks_text": (lambda f: _edit_arrays(f, masks=np.array(["x"])), True),
    "frame_garbage": (lambda f: (f / "frames" / "000000.png").write_bytes(b"not a png"), True),
    "frame_bomb": (lambda f: (f / "frames" / "000000.png").write_bytes(_huge_png()), True),
    "frame_missing": (lambda f: shutil.rmtree(f / "frames"), True),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_folder_is_corrupt_and_skipped_by_list(
    prepared_root: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    _copy(prepared_root, tmp_path, "good")
    spoil, listed = DAMAGE[damage]
    spoil(_copy(prepared_root, tmp_path, "bad"))
    store = AvatarStore(tmp_path)
    with pytest.raises(CorruptAvatar, match="'bad'"):
        store.load("bad")
    assert store.load("good").num_frames == 1
    with caplog.at_level(logging.WARNING, logger="inference.avatar.store"):
        names = [info.name for info in store.list()]
    assert names == (["bad", "good"] if listed else ["good"])
    assert ("skipping bad" in caplog.text) != listed


def test_list_skips_bad_names_and_logs_each_folder_once(
    prepared_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _copy(prepared_root, tmp_path, "good")
    _copy(prepared_root, tmp_path, "_x")
    _copy(prepared_root, tmp_path, "café")
    _edit_meta(_copy(prepared_root, tmp_path, "broken"), frame_size="big")
    (tmp_path / "no_meta").mkdir()
    (tmp_path / ".good.tmp-running").mkdir()  # a preparation in progress: not reported
    (tmp_path / "README.txt").write_text("not an avatar")
    store = AvatarStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="inference.avatar.store"):
        assert [info.name for info in store.list()] == ["good"]
        first = caplog.text
        assert [info.name for info in store.list()] == ["good"]
    for name in ("_x", "café", "broken", "no_meta"):
        assert first.count(f"skipping {name}:") == 1, first
    assert "tmp-running" not in first and "README" not in first
    assert caplog.text == first  # the second listing logs nothing new


def test_damaged_avatar_is_prepared_again(prepared_root: Path, tmp_path: Path) -> None:
    _edit_meta(_copy(prepared_root, tmp_path, "astronaut"), source=None)
    avatar = default_avatar(tmp_path, progress=_quiet)
    assert AvatarStore(tmp_path).load("astronaut").source_hash == avatar.source_hash
