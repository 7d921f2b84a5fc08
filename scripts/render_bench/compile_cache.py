"""torch.compile's artifacts between processes: saved and loaded (``--cache-out``,
``--cache-in``), and whether the on-disk inductor cache is already warm."""

from __future__ import annotations

import getpass
import lzma
import os
import tempfile
from pathlib import Path

import torch


def load_compile_cache(folder: Path | None) -> str:
    """Load torch.compile artifacts saved by an earlier run (``save_compile_cache``)."""
    if folder is None:
        return ""
    parts = sorted(folder.glob("compile_cache.*"))
    if not parts:
        return f"no compile cache in {folder}"
    blob = lzma.decompress(b"".join(p.read_bytes() for p in parts))
    torch.compiler.load_cache_artifacts(blob)
    return f"compile cache loaded ({len(blob) / 2**20:.0f} MiB)"


def save_compile_cache(folder: Path | None, limit_mib: float = 56.0) -> str:
    """Save this process's torch.compile artifacts, compressed, in pieces of 15 MiB."""
    if folder is None:
        return ""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return "no compile artifacts to save"
    blob = lzma.compress(saved[0], preset=1)
    size = len(blob) / 2**20
    if size > limit_mib:
        return f"compile cache {size:.0f} MiB compressed: not saved (over {limit_mib:.0f})"
    folder.mkdir(parents=True, exist_ok=True)
    piece = 15 * 2**20
    for k in range(0, len(blob), piece):
        (folder / f"compile_cache.{k // piece:03d}").write_bytes(blob[k : k + piece])
    return f"compile cache saved: {len(saved[0]) / 2**20:.0f} MiB, {size:.0f} MiB compressed"


def inductor_cache_warm() -> bool:
    """Whether torch.compile's on-disk cache already holds entries (an earlier process)."""
    user = getpass.getuser()
    default = Path(tempfile.gettempdir()) / f"torchinductor_{user}"
    root = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", default))
    return root.is_dir() and any(root.iterdir())
