"""The avatar store: names, atomic writes, cache reuse by hash, load/list, default avatar, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from inference.avatar import (
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
        "na me",
        "név",
        "a" * 65,
        "a:b",
    ],
)
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)
    with pytest.raises(InvalidName):
        AvatarStore(tmp_path).prepare(tmp_path / "x.png", name)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["alice", "Bob_2", "agent.v1-blue", "a" * 64, "7"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


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
