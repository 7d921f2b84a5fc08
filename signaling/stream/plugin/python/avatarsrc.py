"""``avatarsrc`` for ``gst-launch-1.0`` and ``gst-inspect-1.0``.

GStreamer's Python plugin loader (Debian: ``gstreamer1.0-python3-plugin-loader``) imports
every ``python/*.py`` under ``GST_PLUGIN_PATH``; point it at the folder above this one::

    export GST_PLUGIN_PATH=/path/to/avatar-rtc/signaling/stream/plugin

The loader embeds Debian's Python 3.11, not the project's virtual environment, so this file
puts the environment's ``site-packages`` on ``sys.path`` (ahead of Debian's own packages,
behind the standard library): ``$AVATAR_RTC_VENV`` if set, else the checkout's ``.venv``
(or, installed from a wheel, the environment this file is in).
Both must be CPython of the same minor version (their compiled wheels share an ABI).
The stages load only when a pipeline starts, so inspecting the element stays quick.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[4]


def _use_venv() -> None:
    venv = Path(os.environ.get("AVATAR_RTC_VENV") or _ROOT / ".venv")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = venv / "lib" / version / "site-packages"
    if "AVATAR_RTC_VENV" not in os.environ and _ROOT.name == "site-packages":
        packages = _ROOT  # installed from a wheel: this file sits in the environment itself
    if not packages.is_dir():
        found = sorted(p.name for p in (venv / "lib").glob("python*")) or ["nothing"]
        raise ImportError(
            f"avatarsrc: the GStreamer plugin loader runs {version}, but {venv}/lib holds "
            f"{', '.join(found)}: set AVATAR_RTC_VENV to a {version} environment with "
            "avatar-rtc installed"
        )
    before = list(sys.path)
    site.addsitedir(str(packages))  # also runs its .pth files (the editable checkout)
    added = [p for p in sys.path if p not in before]
    rest = [p for p in before if p not in added]
    stdlib = [p for p in rest if "dist-packages" not in p and "site-packages" not in p]
    sys.path[:] = stdlib + added + [p for p in rest if p not in stdlib]
    if str(_ROOT) not in sys.path:
        sys.path.insert(len(stdlib), str(_ROOT))


_use_venv()

from gi.repository import Gst  # noqa: E402

from media.gst.element import AvatarSrc  # noqa: E402
from media.gst.source import AvSource, SourceRequest  # noqa: E402


def _open(request: SourceRequest) -> AvSource:
    from signaling.stream.source import open_source

    return open_source(request)


AvatarSrc.factory = _open
__gstelementfactory__ = ("avatarsrc", Gst.Rank.NONE, AvatarSrc)
