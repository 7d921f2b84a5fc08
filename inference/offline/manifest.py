"""Resume support: a sidecar ``ID.mp4.json`` records what a finished MP4 was rendered from.

The key is a hash of everything that changes the output (text, language, avatar, audio
file, renderer and encoder settings). An MP4 counts as done only when its sidecar holds the
same key and the file's size and sha256 match, so a changed row, an interrupted write or a
truncated file is rendered again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_VERSION", "Manifest", "file_sha256", "job_key", "manifest_path"]

MANIFEST_VERSION = 1


def job_key(fields: Mapping[str, Any]) -> str:
    """sha256 of ``fields`` as canonical JSON (values must be JSON-able or have a repr)."""
    blob = json.dumps(
        {"version": MANIFEST_VERSION, **fields}, sort_keys=True, default=repr, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def file_sha256(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(mp4: Path) -> Path:
    """The sidecar of ``mp4``: ``NAME.mp4.json`` beside it."""
    return mp4.with_name(mp4.name + ".json")


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What the sidecar holds."""

    key: str
    size: int
    sha256: str
    frames: int
    duration_s: float

    @classmethod
    def for_file(cls, mp4: Path, *, key: str, frames: int, duration_s: float) -> Manifest:
        return cls(
            key=key,
            size=mp4.stat().st_size,
            sha256=file_sha256(mp4),
            frames=frames,
            duration_s=round(duration_s, 6),
        )

    def write(self, mp4: Path) -> None:
        """Write the sidecar atomically (temporary file, then rename)."""
        target = manifest_path(mp4)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def read(cls, mp4: Path) -> Manifest | None:
        """The sidecar of ``mp4``, or None when it is missing or unreadable."""
        try:
            data = json.loads(manifest_path(mp4).read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in ("key", "size", "sha256", "frames", "duration_s")})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def is_done(cls, mp4: Path, key: str) -> bool:
        """True when ``mp4`` exists, its sidecar has ``key`` and size and hash match."""
        found = cls.read(mp4)
        if found is None or found.key != key or not mp4.is_file():
            return False
        return mp4.stat().st_size == found.size and file_sha256(mp4) == found.sha256
