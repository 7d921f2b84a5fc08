"""GStreamer through PyGObject: one import guard, and what this machine's GStreamer has.

Every module of :mod:`media.gst` gets ``Gst`` from :func:`gst`, which names what to install
when the bindings or GStreamer itself are missing, instead of an ``ImportError`` deep in a
stack. :func:`have` answers whether an element factory exists (encoders, sinks), which is
how the pipeline builders pick NVENC over x264.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["APT_PACKAGES", "GstMissing", "gst", "have", "missing"]

# what scripts/setup.sh installs for the streaming outputs (Debian 12)
APT_PACKAGES = (
    "gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp "
    "gstreamer1.0-python3-plugin-loader python3-gst-1.0 gir1.2-gstreamer-1.0 "
    "gir1.2-gst-plugins-base-1.0"
)


class GstMissing(RuntimeError):
    """GStreamer, its Python bindings or one of its elements is not installed."""


def gst() -> ModuleType:
    """The initialised ``Gst`` module (GStreamer 1.x through PyGObject)."""
    _unwinder_first()
    try:
        import gi

        _add_gst_overrides()
        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError, GstMissing) as exc:
        raise GstMissing(
            f"GStreamer's Python bindings are missing ({exc}): install the apt packages "
            f"{APT_PACKAGES} and the pip package PyGObject (scripts/setup.sh does both)"
        ) from exc
    if not Gst.is_initialized():
        Gst.init(None)
    return Gst


def _unwinder_first() -> None:
    """Load GCC's unwinder into the global symbol scope before GStreamer.

    Debian's libgstreamer links libunwind, which exports the ``_Unwind_*`` symbols too; a
    C++ library loaded later (matplotlib's ``ft2font``, which mediapipe imports while an
    avatar is prepared) would then throw its exceptions through libunwind and abort.
    """
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)


def _add_gst_overrides() -> None:
    """Let a pip-installed PyGObject find gst-python's overrides (``Gst.py`` and the
    ``_gi_gst`` module that registers Python elements' pad templates and metadata), which
    Debian ships in ``python3-gst-1.0`` for its own Python of the same minor version.

    PyGObject's ``gi.overrides`` package extends its search path like a namespace
    package; its own overrides come first, so only the GStreamer ones are taken from here.
    """
    import gi.overrides

    if any(Path(p, "Gst.py").is_file() for p in gi.overrides.__path__):
        return
    tag = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for folder in (
        Path("/usr/lib/python3/dist-packages/gi/overrides"),
        Path(f"/usr/lib/python{tag}/site-packages/gi/overrides"),
        Path(f"/usr/lib64/python{tag}/site-packages/gi/overrides"),
    ):
        if (folder / "Gst.py").is_file():
            gi.overrides.__path__.append(str(folder))
            return
    raise GstMissing("gst-python's overrides are missing: install the apt package python3-gst-1.0")


def have(factory: str) -> bool:
    """True when an element factory called ``factory`` is registered."""
    return gst().ElementFactory.find(factory) is not None


def missing(factories: list[str] | tuple[str, ...]) -> list[str]:
    """The element factories of ``factories`` this machine does not have."""
    return [name for name in factories if not have(name)]
