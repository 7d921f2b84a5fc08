"""scripts/check_imports.py (check_layout.py's ``import-cycles``): the product packages
import without cycles, and a cycle in a small package is found and named (module-level,
function-level and relative imports; not those under ``if TYPE_CHECKING:`` unless asked)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check_imports = _script("check_imports")


@pytest.mark.parametrize("type_checking", [False, True])
def test_the_product_packages_have_no_import_cycles(type_checking: bool) -> None:
    roots = [ROOT / p for p in check_imports.PACKAGES]
    found = check_imports.findings(roots, type_checking=type_checking)
    assert not found, "\n".join(found)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_through_a_function_level_import_is_found_and_named(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "a.py": "from pkg.sub import b\n",
            "sub/__init__.py": "",
            "sub/b.py": "def f():\n    from ..c import thing\n    return thing\n",
            "c.py": "import pkg.a\nthing = 1\n",
            "d.py": "from . import a\n",  # imports into the cycle, not part of it
        },
    )
    cycles = check_imports.find_import_cycles([root])
    assert [c.modules for c in cycles] == [("pkg.a", "pkg.c", "pkg.sub.b")]
    assert [m for m, _line in cycles[0].loop] == ["pkg.a", "pkg.sub.b", "pkg.c"]
    assert cycles[0].loop[1] == ("pkg.sub.b", 2)  # the line of the import


def test_imports_for_type_checking_only_count_when_asked(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "a.py": "from pkg.b import B\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.a import A\n"
                "class B: ...\n"
            ),
        },
    )
    assert check_imports.find_import_cycles([root]) == []
    cycles = check_imports.find_import_cycles([root], type_checking=True)
    assert [c.modules for c in cycles] == [("pkg.a", "pkg.b")]


def test_the_command_prints_each_cycle_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _package(tmp_path, {"a.py": "from . import b\n", "b.py": "from .a import x\n"})
    assert check_imports.main([str(root)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{root / 'a.py'}:1: import cycle: pkg.a -> pkg.b ({root / 'b.py'}:1)")
    assert out.rstrip().endswith("-> pkg.a")
    (root / "b.py").write_text("x = 1\n")
    assert check_imports.main([str(root)]) == 0


def test_check_layout_runs_the_cycle_check(tmp_path: Path) -> None:
    check_layout = _script("check_layout")
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.py").write_text("def f():\n    from media import b\n")
    (media / "b.py").write_text("import media.a\n")
    assert check_layout.CHECKS["import-cycles"](tmp_path) == [
        "media/a.py:2: import cycle: media.a -> media.b (media/b.py:1) -> media.a"
    ]
    assert check_layout.main(["import-cycles", "--root", str(ROOT)]) == 0


def test_layers_flag_imports_against_the_direction(tmp_path: Path) -> None:
    check_layout = _script("check_layout")
    files = {
        "media/loop.py": "from signaling.call.events import QualityChanged\n",
        "inference/tts.py": "import aiohttp\n",
        "signaling/call/session.py": "from signaling.server.app import STATE\n",
        "signaling/server/app.py": "from signaling.call.session import Session\n",
        "signaling/stages/services.py": "def f():\n    from signaling.client import bot\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert sorted(check_layout.check_layers(tmp_path)) == [
        "inference/tts.py:1: inference must not import aiohttp",
        "media/loop.py:1: media must not import signaling.call.events",
        "signaling/call/session.py:1: signaling.call must not import signaling.server.app",
        "signaling/stages/services.py:2: signaling.stages must not import signaling.client",
    ]
    assert check_layout.main(["layers", "--root", str(ROOT)]) == 0
