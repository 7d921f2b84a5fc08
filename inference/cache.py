"""A two-level byte cache for synthesized speech and rendered clips.

- L1: an in-memory LRU bounded in bytes.
- L2: files on disk bounded in bytes (least recently used evicted), written atomically
  (temporary file + ``os.replace``), so it survives restarts and a crash never leaves a
  half-written entry under a real name. Every file carries a header with a magic, the
  payload length and its SHA-256: a corrupt or truncated entry is detected on read, deleted
  and counted as a miss.

Keys are built with :func:`cache_key` from every part that changes the value (text, voice,
avatar, renderer and model versions, output size); the cache itself stores opaque bytes.
All methods are thread-safe; disk work belongs off the event loop (:meth:`TieredCache.aget`,
:meth:`TieredCache.aput`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from inference.work import run_blocking

__all__ = ["CacheOptions", "CacheStats", "TieredCache", "cache_key"]

log = logging.getLogger(__name__)

_MAGIC = b"ARTC\x00\x01\x00\x00"
_HEADER = struct.Struct("<8sQ32s")  # magic, payload length, sha256(payload)
_SUFFIX = ".bin"


def cache_key(*parts: object) -> str:
    """A stable hex key from the parts (order matters; each part's ``str`` is used)."""
    h = hashlib.sha256()
    for part in parts:
        data = str(part).encode("utf-8")
        h.update(struct.pack("<Q", len(data)))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheOptions:
    """``directory`` None keeps the cache in memory only (no L2)."""

    directory: Path | None = None
    l1_bytes: int = 256 * 1024 * 1024
    l2_bytes: int = 2 * 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.l1_bytes < 0 or self.l2_bytes < 0:
            raise ValueError("l1_bytes and l2_bytes must be >= 0")


@dataclass(slots=True)
class CacheStats:
    """Counters since the cache was opened."""

    l1_hits: int = 0
    l2_hits: int = 0
    misses: int = 0
    puts: int = 0
    corrupt: int = 0
    l1_evictions: int = 0
    l2_evictions: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [hits, misses]

    @property
    def hits(self) -> int:
        return self.l1_hits + self.l2_hits

    def as_dict(self) -> dict[str, object]:
        return {
            "l1_hits": self.l1_hits,
            "l2_hits": self.l2_hits,
            "misses": self.misses,
            "puts": self.puts,
            "corrupt": self.corrupt,
            "l1_evictions": self.l1_evictions,
            "l2_evictions": self.l2_evictions,
            "by_kind": {k: {"hits": v[0], "misses": v[1]} for k, v in self.by_kind.items()},
        }


class TieredCache:
    """L1 memory LRU over an L2 directory, both bounded in bytes; see the module docstring."""

    def __init__(self, options: CacheOptions | None = None) -> None:
        self.options = options or CacheOptions()
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._l1: OrderedDict[str, bytes] = OrderedDict()
        self._l1_size = 0
        self._l2: OrderedDict[str, int] = OrderedDict()  # key -> file size, LRU order
        self._l2_size = 0
        self._dir = self.options.directory
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._scan()

    @property
    def l1_size(self) -> int:
        return self._l1_size

    @property
    def l2_size(self) -> int:
        return self._l2_size

    def _path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / key[:2] / (key + _SUFFIX)

    def _scan(self) -> None:
        """Index the files already on disk (oldest access first); drop leftover temp files."""
        assert self._dir is not None
        found: list[tuple[float, str, int]] = []
        for path in self._dir.glob("*/*"):
            if path.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if path.suffix != _SUFFIX:
                continue
            with contextlib.suppress(OSError):
                st = path.stat()
                found.append((max(st.st_atime, st.st_mtime), path.stem, st.st_size))
        for _, key, size in sorted(found):
            self._l2[key] = size
            self._l2_size += size
        self._evict_l2()

    # ---- reads ---------------------------------------------------------------------------
    def get(self, key: str, kind: str = "") -> bytes | None:
        """The value under ``key`` or None (blocking: may read a file)."""
        with self._lock:
            value = self._l1.get(key)
            if value is not None:
                self._l1.move_to_end(key)
                self.stats.l1_hits += 1
                self._count(kind, hit=True)
                return value
            on_disk = self._dir is not None and key in self._l2
        value = self._read_l2(key) if on_disk else None
        with self._lock:
            if value is None:
                self.stats.misses += 1
                self._count(kind, hit=False)
                return None
            self.stats.l2_hits += 1
            self._count(kind, hit=True)
            if key in self._l2:
                self._l2.move_to_end(key)
            self._put_l1(key, value)
        return value

    def peek_l1(self, key: str) -> bytes | None:
        """The L1 value without touching disk or counters (safe on the event loop)."""
        with self._lock:
            return self._l1.get(key)

    def contains(self, key: str) -> bool:
        """Whether either level holds ``key`` (no read, no counters)."""
        with self._lock:
            return key in self._l1 or key in self._l2

    def _read_l2(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            self._forget_l2(key)
            return None
        payload = _decode(blob)
        if payload is None:
            log.warning("cache: dropping corrupt entry %s", path)
            with self._lock:
                self.stats.corrupt += 1
            with contextlib.suppress(OSError):
                path.unlink()
            self._forget_l2(key)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # remember the access across restarts
        return payload

    def _forget_l2(self, key: str) -> None:
        with self._lock:
            size = self._l2.pop(key, None)
            if size is not None:
                self._l2_size -= size

    def _count(self, kind: str, *, hit: bool) -> None:
        if kind:
            counts = self.stats.by_kind.setdefault(kind, [0, 0])
            counts[0 if hit else 1] += 1

    # ---- writes --------------------------------------------------------------------------
    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` in both levels (blocking: may write a file)."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"cache values are bytes, got {type(value).__name__}")
        value = bytes(value)
        with self._lock:
            self.stats.puts += 1
            self._put_l1(key, value)
        if self._dir is None or len(value) + _HEADER.size > self.options.l2_bytes:
            return
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        blob = _encode(value)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=key[:16], suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self._lock:
            old = self._l2.pop(key, None)
            self._l2_size += len(blob) - (old or 0)
            self._l2[key] = len(blob)
            self._evict_l2()

    def _put_l1(self, key: str, value: bytes) -> None:
        if len(value) > self.options.l1_bytes:
            return
        old = self._l1.pop(key, None)
        if old is not None:
            self._l1_size -= len(old)
        self._l1[key] = value
        self._l1_size += len(value)
        while self._l1_size > self.options.l1_bytes:
            _, dropped = self._l1.popitem(last=False)
            self._l1_size -= len(dropped)
            self.stats.l1_evictions += 1

    def _evict_l2(self) -> None:
        while self._l2_size > self.options.l2_bytes and self._l2:
            key, size = self._l2.popitem(last=False)
            self._l2_size -= size
            self.stats.l2_evictions += 1
            with contextlib.suppress(OSError):
                self._path(key).unlink()

    def clear_l1(self) -> None:
        """Empty the memory level (tests, memory pressure)."""
        with self._lock:
            self._l1.clear()
            self._l1_size = 0

    # ---- async helpers ----------------------------------------------------------------------
    async def aget(self, key: str, kind: str = "") -> bytes | None:
        """:meth:`get` that reads the disk in a worker thread (L1 hits stay on the loop)."""
        if self.peek_l1(key) is not None:
            return self.get(key, kind)
        return await run_blocking(self.get, key, kind)

    async def aput(self, key: str, value: bytes) -> None:
        await run_blocking(self.put, key, value)


def _encode(payload: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def _decode(blob: bytes) -> bytes | None:
    if len(blob) < _HEADER.size:
        return None
    magic, length, digest = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size :]
    if magic != _MAGIC or length != len(payload):
        return None
    if hashlib.sha256(payload).digest() != digest:
        return None
    return payload
