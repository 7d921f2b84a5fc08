"""A wheel (``pip install .``, not editable) carries every package and the browser pages, and
the server finds the pages both in a checkout and in an installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from signaling.server.app import static_dir

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "media", "inference", "signaling", "static"]


def _setuptools() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"])


def _pages() -> set[str]:
    return {p.relative_to(ROOT / "static").as_posix() for p in (ROOT / "static").rglob("*.*")}


def test_every_package_is_listed_and_static_is_signaling_static() -> None:
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("media", "inference", "signaling")
        for init in (ROOT / top).rglob("__init__.py")
    }
    setuptools = _setuptools()
    packages = setuptools["packages"]
    assert isinstance(packages, list)
    assert set(packages) == found | {"signaling.static"}
    assert setuptools["package-dir"] == {"signaling.static": "static"}


def test_static_dir_in_a_checkout_and_in_an_installed_wheel(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "signaling").mkdir(parents=True)
    (checkout / "static").mkdir()
    assert static_dir(checkout / "signaling") == checkout / "static"

    site = tmp_path / "site-packages"
    (site / "signaling" / "static").mkdir(parents=True)
    (site / "static").mkdir()  # some other distribution's top-level folder: not ours
    assert static_dir(site / "signaling") == site / "signaling" / "static"

    bare = tmp_path / "bare"
    (bare / "signaling").mkdir(parents=True)
    assert static_dir(bare / "signaling") == bare / "signaling" / "static"  # named in errors


def test_this_checkout_serves_static() -> None:
    assert static_dir() == ROOT / "static"
    assert (static_dir() / "index.html").is_file()


def test_a_built_wheel_carries_the_pages_and_finds_them(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(origin, src / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    build = subprocess.run(
        [*pip, "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("avatar_rtc-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        site = tmp_path / "site-packages"
        zf.extractall(site)
    shipped = {
        n.removeprefix("signaling/static/") for n in names if n.startswith("signaling/static/")
    }
    assert _pages() <= shipped and "index.html" in shipped
    assert "signaling/server/app.py" in names and "inference/render/musetalk/__init__.py" in names
    # the Mandarin voice styles and their licence notice ship with the code that loads them
    assert {"inference/tts/voices/kokoro_zh_v1_0.npz", "inference/tts/voices/NOTICE"} <= names

    # The installed copy (first on the path, ahead of the editable checkout) finds its pages.
    probe = "import signaling.server.app as a; print(a.__file__); print(a.static_dir())"
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    module, pages = run.stdout.split()
    assert Path(module) == site / "signaling" / "server" / "app.py"
    assert Path(pages) == site / "signaling" / "static"
    assert (Path(pages) / "index.html").is_file()
