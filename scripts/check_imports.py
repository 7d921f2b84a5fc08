"""Find import cycles among the product packages (media, inference, signaling).

Every module is parsed with ``ast``; an import counts wherever it is written (module level or
inside a function), except under ``if TYPE_CHECKING:`` unless ``--type-checking`` asks for
those too. Relative imports are resolved. The
strongly connected components of the module graph with more than one module are the cycles;
each is printed with one concrete loop of imports. Exit status 1 when there is any.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cycle", "find_import_cycles", "findings", "import_graph", "main", "module_files"]

PACKAGES = ("media", "inference", "signaling")
ROOT = Path(__file__).resolve().parent.parent

# module -> {imported module: line of its first import}
Graph = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Cycle:
    """A strongly connected component of the import graph and one loop through it."""

    modules: tuple[str, ...]  # sorted
    loop: tuple[tuple[str, int], ...]  # (module, line of its import of the next), closing

    def finding(self, files: dict[str, Path], base: Path = ROOT) -> str:
        """``file:line: import cycle: a -> b (file:line) -> a``: each import that closes the
        loop, and every module of the component when it holds more than the loop."""
        first, line = self.loop[0]
        steps = [first, *(f"{m} ({_rel(files[m], base)}:{n})" for m, n in self.loop[1:]), first]
        text = f"{_rel(files[first], base)}:{line}: import cycle: {' -> '.join(steps)}"
        if len(self.modules) > len(self.loop):
            text += f" (all {len(self.modules)} modules: {', '.join(self.modules)})"
        return text


def _rel(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def module_files(roots: Sequence[Path]) -> dict[str, Path]:
    """Each module of the packages at ``roots`` by dotted name (a root's folder name is its
    package name)."""
    files: dict[str, Path] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(node: ast.AST, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node``; the bodies of ``if TYPE_CHECKING:`` only if
    ``type_checking``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif not type_checking and isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports(ast.Module(body=[other], type_ignores=[]), type_checking)
        else:
            yield from _imports(child, type_checking)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules``."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            found = _known(alias.name, modules)
            if found is not None:
                yield found
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    for alias in node.names:
        found = _known(f"{base}.{alias.name}", modules) if alias.name != "*" else None
        found = found or _known(base, modules)
        if found is not None:
            yield found


def import_graph(files: dict[str, Path], *, type_checking: bool = False) -> Graph:
    """Which module imports which (only modules among ``files``; no self-imports);
    ``type_checking`` counts the imports under ``if TYPE_CHECKING:`` too."""
    graph: Graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.setdefault(module, {})
        is_package = path.name == "__init__.py"
        for node in _imports(tree, type_checking):
            for target in _targets(module, is_package, node, files):
                if target != module:
                    edges.setdefault(target, node.lineno)
    return graph


def _components(graph: Graph) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp: list[str] = []
                    while not comp or comp[-1] != node:
                        comp.append(stack.pop())
                        on_stack.discard(comp[-1])
                    out.append(comp)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def _loop(graph: Graph, members: set[str]) -> tuple[tuple[str, int], ...]:
    """A shortest loop through the component's first module (breadth first)."""
    start = min(members)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    path.reverse()
                    return tuple(
                        (m, graph[m][path[i + 1] if i + 1 < len(path) else start])
                        for i, m in enumerate(path)
                    )
                if child in members and child not in came_from:
                    came_from[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError("a strongly connected component without a loop")


def find_import_cycles(roots: Sequence[Path], *, type_checking: bool = False) -> list[Cycle]:
    """The import cycles among the packages at ``roots`` (folders with Python modules);
    ``type_checking`` counts the imports under ``if TYPE_CHECKING:`` too."""
    graph = import_graph(module_files(roots), type_checking=type_checking)
    cycles = [
        Cycle(tuple(sorted(comp)), _loop(graph, set(comp)))
        for comp in _components(graph)
        if len(comp) > 1
    ]
    return sorted(cycles, key=lambda c: c.modules)


def findings(roots: Sequence[Path], *, type_checking: bool = False, base: Path = ROOT) -> list[str]:
    """One ``file:line: import cycle: ...`` line per cycle among the packages at ``roots``
    (paths relative to ``base``)."""
    files = module_files(roots)
    cycles = find_import_cycles(roots, type_checking=type_checking)
    return [c.finding(files, base) for c in cycles]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "packages",
        nargs="*",
        type=Path,
        help=f"package folders to check (default: {', '.join(PACKAGES)} of the repository)",
    )
    parser.add_argument(
        "--type-checking",
        action="store_true",
        help="count the imports under `if TYPE_CHECKING:` too",
    )
    args = parser.parse_args(argv)
    roots = args.packages or [ROOT / p for p in PACKAGES]
    lines = findings(roots, type_checking=args.type_checking)
    for line in lines:
        print(line)
    print(f"{len(lines)} import cycle(s) among {len(module_files(roots))} modules", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
