"""Layout checks over the product packages (media, signaling, inference, scripts).

Each check takes the checkout's root and returns findings, one ``file:line: what`` line
each; :func:`main` runs the checks named on the command line (all by default), prints the
findings and exits 1 if there are any. A new check is one function added to ``CHECKS``.

- ``private-deps``: only ``media/aiortc_hooks.py`` may touch aiortc's or aioice's private
  names (attributes, methods, name-mangled slots), so an aiortc upgrade breaks one module
  and its test, not a call in the middle of a congestion controller.
- ``layers``: imports go one way: ``signaling.server`` -> ``signaling.call`` ->
  ``signaling.stages`` -> ``inference``/``media``; nothing in the server, the call runtime or
  the stages imports ``signaling.client``; ``media`` and ``inference`` never import
  ``signaling``; ``inference`` never imports aiortc or aiohttp (it is transport-free).
- ``import-cycles``: no import cycles among media, inference and signaling (imports inside
  functions count; those under ``if TYPE_CHECKING:`` do not); the finder is
  ``scripts/check_imports.py``.

Usage: ``python scripts/check_layout.py [CHECK ...]`` (with the project's venv: the
``private-deps`` check reads the installed aiortc and aioice).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path

__all__ = [
    "CHECKS",
    "HOOKS_MODULE",
    "PACKAGES",
    "check_import_cycles",
    "check_layers",
    "check_private_deps",
    "dependency_private_names",
    "main",
    "private_accesses",
]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("media", "signaling", "inference", "scripts")  # the product code
HOOKS_MODULE = Path("media/aiortc_hooks.py")  # the one module allowed to reach in
PRIVATE_DEPENDENCIES = ("aiortc", "aioice")
MANGLED = re.compile(r"\b_RTC[A-Za-z0-9]+__\w+")  # (not AVATAR_RTC_X__Y settings)
_OWN = frozenset({"self", "cls"})
_ATTR_FUNCS = frozenset({"getattr", "setattr", "hasattr", "delattr"})

Check = Callable[[Path], list[str]]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _mangle(name: str, cls: str | None) -> str:
    """``name`` as Python stores it when written inside class ``cls``."""
    if cls is None or not name.startswith("__") or name.endswith("__"):
        return name
    return f"_{cls.lstrip('_')}{name}"


class _Definitions(ast.NodeVisitor):
    """Private names one dependency module defines: functions and methods, attributes it
    assigns (on ``self`` or on any other object) and class or module level names."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._classes: list[str] = []
        self._depth = 0  # functions entered (a name bound inside one is a local)

    def _add(self, name: str) -> None:
        if _is_private(name):
            self.names.add(_mangle(name, self._classes[-1] if self._classes else None))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._add(node.name)
        self._classes.append(node.name)
        depth, self._depth = self._depth, 0
        self.generic_visit(node)
        self._classes.pop()
        self._depth = depth

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._add(node.name)
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Store):
            self._add(node.attr)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and self._depth == 0:
            self._add(node.id)


def _package_sources(package: str) -> Iterator[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed: cannot list its private names")
    for location in spec.submodule_search_locations:
        yield from sorted(Path(location).rglob("*.py"))


@cache
def dependency_private_names(packages: Sequence[str] = PRIVATE_DEPENDENCIES) -> frozenset[str]:
    """Every private name the installed ``packages`` define (read from their sources)."""
    found = _Definitions()
    for package in packages:
        for path in _package_sources(package):
            found.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return frozenset(found.names)


def _attr_call(node: ast.Call) -> tuple[str, ast.expr, str] | None:
    """(function, object, name) of ``getattr(obj, "name", ...)`` and its kin with a literal
    name."""
    if not (isinstance(node.func, ast.Name) and node.func.id in _ATTR_FUNCS):
        return None
    if len(node.args) < 2 or not isinstance(node.args[1], ast.Constant):
        return None
    name = node.args[1].value
    return (node.func.id, node.args[0], name) if isinstance(name, str) else None


def _own(obj: ast.expr) -> bool:
    return isinstance(obj, ast.Name) and obj.id in _OWN


def _root(node: ast.expr) -> str | None:
    """The name an attribute chain starts from (``aioice`` for ``aioice.ice.x``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _attribute(node: ast.Attribute, private: frozenset[str]) -> str | None:
    if isinstance(node.ctx, ast.Store) and _root(node.value) in PRIVATE_DEPENDENCIES:
        return f"patches {ast.unparse(node)}"
    if _own(node.value) or not (node.attr in private or MANGLED.fullmatch(node.attr)):
        return None
    return f"attribute .{node.attr}"


def _call(node: ast.Call, private: frozenset[str]) -> str | None:
    if (found := _attr_call(node)) is None or _own(found[1]):
        return None
    func, obj, name = found
    if func in ("setattr", "delattr") and _root(obj) in PRIVATE_DEPENDENCIES:
        return f"patches {ast.unparse(obj)}.{name}"
    return f"{func}(..., {name!r})" if name in private else None


def private_accesses(source: str, private: frozenset[str]) -> list[tuple[int, str]]:
    """(line, what) for each reach into a dependency's private name in ``source``:
    ``obj._name`` and ``getattr(obj, "_name")`` where ``obj`` is not self or cls, any string
    holding a mangled ``_RTC...__...`` name, and an assignment into an aiortc/aioice module."""
    found: list[tuple[int, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            found.append((node.lineno, _attribute(node, private)))
        elif isinstance(node, ast.Call):
            found.append((node.lineno, _call(node, private)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(node.lineno, f"string {m.group()!r}") for m in MANGLED.finditer(node.value)]
    return sorted((line, what) for line, what in found if what is not None)


def _product_sources(root: Path) -> Iterable[Path]:
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


def check_private_deps(root: Path = ROOT) -> list[str]:
    """aiortc/aioice private names used outside ``media/aiortc_hooks.py``."""
    private = dependency_private_names()
    findings = []
    for path in _product_sources(root):
        rel = path.relative_to(root)
        if rel == HOOKS_MODULE:
            continue
        for line, what in private_accesses(path.read_text(encoding="utf-8"), private):
            findings.append(
                f"{rel}:{line}: {what}: aiortc/aioice internals go through {HOOKS_MODULE}"
            )
    return findings


# (importer prefix, forbidden import prefix): an import of the second from the first is a finding
LAYERS: tuple[tuple[str, str], ...] = (
    ("media", "signaling"),
    ("inference", "signaling"),
    ("inference", "aiortc"),
    ("inference", "aiohttp"),
    ("signaling.server", "signaling.client"),
    ("signaling.call", "signaling.client"),
    ("signaling.stages", "signaling.client"),
    ("signaling.call", "signaling.server"),
    ("signaling.stages", "signaling.server"),
    ("signaling.stages", "signaling.call"),
)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of each absolute import in ``tree`` (relative ones stay in-package)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def check_layers(root: Path = ROOT) -> list[str]:
    """Imports that go against the layers (server -> call -> stages -> inference/media)."""
    findings = []
    for package in ("media", "inference", "signaling"):
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, name in _imported(tree):
                for importer, forbidden in LAYERS:
                    if _within(module, importer) and _within(name, forbidden):
                        rel = path.relative_to(root)
                        findings.append(f"{rel}:{line}: {importer} must not import {name}")
    return findings


def check_import_cycles(root: Path = ROOT) -> list[str]:
    """Import cycles among media, inference and signaling."""
    path = Path(__file__).with_name("check_imports.py")
    spec = importlib.util.spec_from_file_location("check_imports", path)
    assert spec is not None and spec.loader is not None
    finder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = finder  # its dataclasses look their module up
    spec.loader.exec_module(finder)
    found: list[str] = finder.findings([root / p for p in finder.PACKAGES], base=root)
    return found


CHECKS: dict[str, Check] = {
    "private-deps": check_private_deps,
    "layers": check_layers,
    "import-cycles": check_import_cycles,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Layout checks over the product packages; prints findings, exits 1 on any.",
        epilog="checks: "
        + "; ".join(f"{name}: {(fn.__doc__ or '').strip()}" for name, fn in CHECKS.items()),
    )
    parser.add_argument("checks", nargs="*", metavar="CHECK", help="checks to run (default: all)")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if unknown := [name for name in args.checks if name not in CHECKS]:
        parser.error(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    findings = [line for name in args.checks or CHECKS for line in CHECKS[name](args.root)]
    for line in findings:
        print(line)
    print(f"{len(findings)} finding(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
