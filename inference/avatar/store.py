"""The avatar store: prepared avatars on disk under ``ROOT/NAME/``, written atomically.

Format 1 of a prepared avatar folder::

    NAME/
      meta.json    {"format": "avatar-rtc/prepared-avatar", "version": 1, "name", "kind",
                    "cache_key", "source": {"filename", "sha256"}, "fps", "num_frames",
                    "frame_size": [w, h], "mask_size": 256, "frames": "png" | "jpeg",
                    "warnings": [...], "created_utc"}
      arrays.npz   crop_boxes int32 (N, 4); landmarks float32 (N, 468, 2);
                   masks uint8 (N, 256, 256) (mask * 255); mouth_boxes float32 (N, 4)
      frames/      000000.png (a photo, lossless) or 000000.jpg ... (a video, quality 95)

A folder is written under a hidden temporary name and renamed into place, so a failed or
interrupted preparation never leaves a half-written ``NAME/``. A preparation is reused when
the input's sha256 and the cache key (format version and options) match. Names match
``NAME_PATTERN`` (ASCII only), so ``ROOT/NAME`` is always a direct child of ``ROOT``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .checks import ARRAY_NAMES, check_arrays, check_meta
from .errors import AvatarError, AvatarNotFound, CorruptAvatar, InvalidName
from .image_header import image_size
from .landmarks import FaceAnalyzer
from .media_io import InputMedia, file_sha256, read_input, resize_long_side
from .model import PreparedAvatar
from .prepare import PrepareOptions, prepare_media

__all__ = ["FORMAT", "FORMAT_VERSION", "NAME_PATTERN", "AvatarInfo", "AvatarStore", "validate_name"]

FORMAT = "avatar-rtc/prepared-avatar"
FORMAT_VERSION = 1
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # the whole name; ASCII only
_NAME = re.compile(NAME_PATTERN)
# A damaged folder can hold a frame file that is not what meta.json says it is.
_UNREADABLE = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, cv2.error)
_log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid avatar name, else raise ``InvalidName``.

    ``NAME_PATTERN``: 1–64 ASCII letters, digits, ``_``, ``-`` and ``.``, starting with a
    letter or digit, and no ``..``; so never a path separator, an accented or full-width
    letter, or a name an option parser would take for a flag.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("avatar name must be a non-empty string")
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidName(f"avatar name {name!r} must not contain path separators or '..'")
    if not _NAME.fullmatch(name):
        raise InvalidName(
            f"avatar name {name!r} must be 1-64 characters of letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class AvatarInfo:
    """What ``AvatarStore.list`` tells about one prepared avatar (read from meta.json only)."""

    name: str
    kind: str
    num_frames: int
    fps: float
    frame_size: tuple[int, int]
    warnings: tuple[str, ...]


class AvatarStore:
    """Prepared avatars under ``root``; ``prepare`` writes one, ``load`` reads it back.

    The face analyser (mediapipe models) is created on first use and kept for the store's life.
    """

    def __init__(self, root: Path, *, options: PrepareOptions | None = None) -> None:
        self.root = Path(root)
        self.options = options or PrepareOptions()
        self._analyzer: FaceAnalyzer | None = None
        self._lock = threading.Lock()
        self._reported: set[tuple[str, str]] = set()  # bad folders already logged by list()

    def path(self, name: str) -> Path:
        """Folder of avatar ``name`` (validated)."""
        return self.root / validate_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / "meta.json").is_file()

    def list(self) -> list[AvatarInfo]:
        """Every readable prepared avatar, sorted by name. A folder that is not one (a name
        outside ``NAME_PATTERN``, no or a damaged meta.json) is skipped and logged once."""
        out: list[AvatarInfo] = []
        try:
            children = sorted(self.root.iterdir()) if self.root.is_dir() else []
        except OSError as exc:
            self._report_once(str(self.root), f"cannot list the avatar store: {exc}")
            return out
        for child in children:
            if child.name.startswith(".") or not child.is_dir():  # a preparation's temporary
                continue
            try:
                meta = self._read_meta(child.name)
            except AvatarError as exc:
                self._report_once(child.name, str(exc))
                continue
            out.append(_info(child.name, meta))
        return out

    def _report_once(self, what: str, problem: str) -> None:
        if (what, problem) not in self._reported:
            self._reported.add((what, problem))
            _log.warning("avatar store %s: skipping %s: %s", self.root, what, problem)

    def is_current(self, name: str, source_hash: str) -> bool:
        """True if ``name`` was prepared from this input hash with the current options."""
        try:
            meta = self._read_meta(name)
        except (AvatarNotFound, CorruptAvatar):
            return False
        return (
            meta["source"]["sha256"] == source_hash
            and meta.get("cache_key") == self.options.cache_key()
        )

    def prepare(
        self, input_path: Path, name: str, *, progress: Progress | None = None
    ) -> PreparedAvatar:
        """Prepare a photo or video into ``ROOT/NAME/`` (or reuse it) and return it.

        ``progress(done, total)`` is called as frames are analysed (``total`` = frame count);
        when it is None a tqdm bar on stderr shows decoding and analysis. Raises
        ``AvatarError`` subclasses on bad input.
        """
        validate_name(name)
        input_path = Path(input_path)
        digest = file_sha256(input_path) if input_path.is_file() else ""
        if digest and self.is_current(name, digest):
            return self.load(name)
        with _ProgressReporter(progress, name) as report:
            media = read_input(
                input_path,
                max_long_side=self.options.max_long_side,
                max_video_seconds=self.options.max_video_seconds,
                max_pixels=self.options.max_input_pixels,
                progress=report.decode,
            )
            return self._prepare_media(media, name, digest, input_path.name, report.faces)

    def prepare_image(
        self, image: np.ndarray, name: str, *, progress: Progress | None = None
    ) -> PreparedAvatar:
        """Prepare an in-memory RGB uint8 photo (hashed by its pixels) into ``ROOT/NAME/``."""
        validate_name(name)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("prepare_image needs an (H, W, 3) uint8 RGB array")
        digest = hashlib.sha256(
            np.ascontiguousarray(image).tobytes() + repr(image.shape).encode()
        ).hexdigest()
        if self.is_current(name, digest):
            return self.load(name)
        media = InputMedia(
            frames=resize_long_side(image, self.options.max_long_side)[None], fps=25.0, kind="photo"
        )
        with _ProgressReporter(progress, name) as report:
            return self._prepare_media(media, name, digest, "<array>", report.faces)

    def load(self, name: str) -> PreparedAvatar:
        """Read a prepared avatar; ``AvatarNotFound`` / ``CorruptAvatar`` when it can't be
        (``InvalidName`` for a name outside ``NAME_PATTERN``)."""
        meta = self._read_meta(name)
        folder = self.path(name)
        try:
            with np.load(folder / "arrays.npz") as npz:
                arrays = {key: npz[key] for key in ARRAY_NAMES}
            check_arrays(name, arrays, meta)
            ext = "png" if meta["frames"] == "png" else "jpg"
            size = (int(meta["frame_size"][0]), int(meta["frame_size"][1]))
            paths = [folder / "frames" / f"{i:06d}.{ext}" for i in range(int(meta["num_frames"]))]
            frames = np.stack([_read_frame(path, size) for path in paths])
        except _UNREADABLE as exc:
            raise CorruptAvatar(f"avatar {name!r} at {folder} is unreadable: {exc}") from exc
        return PreparedAvatar(
            name=name,
            frames=frames,
            fps=float(meta["fps"]),
            crop_boxes=arrays["crop_boxes"].astype(np.int32),
            landmarks=arrays["landmarks"].astype(np.float32),
            masks=arrays["masks"].astype(np.float32) / 255.0,
            mouth_boxes=arrays["mouth_boxes"].astype(np.float32),
            kind=str(meta["kind"]),
            source_hash=str(meta["source"]["sha256"]),
            warnings=tuple(meta.get("warnings", ())),
        )

    def _analyzer_once(self) -> FaceAnalyzer:
        with self._lock:
            if self._analyzer is None:
                self._analyzer = FaceAnalyzer(refine_landmarks=self.options.refine_landmarks)
            return self._analyzer

    def _prepare_media(
        self,
        media: InputMedia,
        name: str,
        digest: str,
        filename: str,
        progress: Progress | None,
    ) -> PreparedAvatar:
        avatar = prepare_media(
            media,
            name=name,
            source_hash=digest,
            analyzer=self._analyzer_once(),
            options=self.options,
            progress=progress,
        )
        self._write(avatar, filename)
        return avatar

    def _write(self, avatar: PreparedAvatar, filename: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(avatar.name)
        self._remove_stale(avatar.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{avatar.name}.tmp-", dir=self.root))
        tmp.chmod(0o755)
        old: Path | None = None
        try:
            is_photo = avatar.kind == "photo"
            (tmp / "frames").mkdir()
            for i, frame in enumerate(avatar.frames):
                target = tmp / "frames" / (f"{i:06d}.png" if is_photo else f"{i:06d}.jpg")
                params = [] if is_photo else [cv2.IMWRITE_JPEG_QUALITY, 95]
                ok, data = cv2.imencode(target.suffix, frame[:, :, ::-1], params)
                if not ok:
                    raise OSError(f"could not encode frame {i} of avatar {avatar.name!r}")
                target.write_bytes(data.tobytes())
            np.savez_compressed(
                tmp / "arrays.npz",
                crop_boxes=avatar.crop_boxes.astype(np.int32),
                landmarks=avatar.landmarks.astype(np.float32),
                masks=np.round(np.clip(avatar.masks, 0, 1) * 255).astype(np.uint8),
                mouth_boxes=avatar.mouth_boxes.astype(np.float32),
            )
            meta: dict[str, Any] = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "name": avatar.name,
                "kind": avatar.kind,
                "cache_key": self.options.cache_key(),
                "source": {"filename": filename, "sha256": avatar.source_hash},
                "fps": avatar.fps,
                "num_frames": avatar.num_frames,
                "frame_size": list(avatar.size),
                "mask_size": int(avatar.masks.shape[-1]),
                "frames": "png" if is_photo else "jpeg",
                "warnings": list(avatar.warnings),
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            if final.exists():
                old = self.root / f".{avatar.name}.old-{uuid.uuid4().hex[:8]}"
                final.rename(old)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _remove_stale(self, name: str, age_s: float = 600.0) -> None:
        """Remove temporary folders of ``name`` left by a crashed preparation (older than age_s)."""
        now = time.time()
        for pattern in (f".{name}.tmp-*", f".{name}.old-*"):
            for stale in self.root.glob(pattern):
                try:
                    if now - stale.stat().st_mtime > age_s:
                        shutil.rmtree(stale, ignore_errors=True)
                except OSError:
                    continue

    def _read_meta(self, name: str) -> dict[str, Any]:
        folder = self.path(name)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise AvatarNotFound(f"no prepared avatar {name!r} in {self.root}")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptAvatar(f"avatar {name!r}: unreadable meta.json: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CorruptAvatar(f"avatar {name!r}: meta.json is not a prepared-avatar file")
        if meta.get("version") != FORMAT_VERSION:
            raise CorruptAvatar(
                f"avatar {name!r} has format version {meta.get('version')}, this code reads "
                f"{FORMAT_VERSION}: prepare it again"
            )
        return check_meta(name, meta)


def _info(name: str, meta: dict[str, Any]) -> AvatarInfo:
    """What ``list`` tells of a folder whose meta.json passed ``check_meta``."""
    width, height = meta["frame_size"]
    return AvatarInfo(
        name=name,
        kind=str(meta["kind"]),
        num_frames=int(meta["num_frames"]),
        fps=float(meta["fps"]),
        frame_size=(int(width), int(height)),
        warnings=tuple(meta.get("warnings", ())),
    )


def _read_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Frame ``path`` as RGB; ``ValueError`` unless its header declares ``size`` (checked
    before decoding) and it decodes."""
    data = path.read_bytes()
    declared = image_size(data)
    if declared != size:
        raise ValueError(f"{path.name} is not a {size[0]}x{size[1]} image (header: {declared})")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (size[1], size[0]):
        raise ValueError(f"cannot decode {path.name}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class _ProgressReporter:
    """Forwards analysis progress to a callback, or shows tqdm bars when there is none."""

    def __init__(self, callback: Progress | None, name: str) -> None:
        self._callback = callback
        self._name = name
        self._bar: Any = None
        self._stage = ""

    def __enter__(self) -> _ProgressReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def decode(self, done: int, total: int) -> None:
        if self._callback is None:
            self._tqdm("decode", done, total)

    def faces(self, done: int, total: int) -> None:
        if self._callback is not None:
            self._callback(done, total)
        else:
            self._tqdm("faces", done, total)

    def _tqdm(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None or stage != self._stage:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total, desc=f"{self._name}: {stage}", unit="frame", leave=False)
            self._stage = stage
        if total > self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)
