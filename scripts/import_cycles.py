"""Count the import circles among gankit's modules (tests/test_architecture.py asserts on the same graph).

    python scripts/import_cycles.py            # the gankit/ package next to this script
    python scripts/import_cycles.py PATH       # another checkout's package folder

How a circle is counted: every ``.py`` file under the package is a module (a package's ``__init__.py``
is the package's own module, e.g. ``gankit.metrics``). Every ``import`` / ``from ... import`` of a gankit
module anywhere in a file, at module level or inside a function, is an edge; only imports under
``if TYPE_CHECKING:`` are skipped, since they never run. ``from gankit.pkg import x`` is an edge to
``gankit.pkg.x`` when ``x`` is a submodule, else to ``gankit.pkg``; the parent packages that Python
imports on the way are not edges (every submodule would otherwise close a circle with its package's
``__init__``). A circle is a strongly connected component of two or more modules (or one that imports
itself); its members are reported sorted, and the count is the number of such components.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` file under ``package`` (``__init__`` names the package)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (the rules are in this file's docstring)."""
    names = module_names(package)
    edges: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, name, path.name == "__init__.py")
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base
                           for alias in node.names]
            edges[name].update(t for t in targets if t in names)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components that are circles (Tarjan's algorithm), each sorted, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                found.append(tuple(sorted(component)))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))  # depth is bounded by the module count
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def main(argv: list[str]) -> int:
    package = Path(argv[0]) if argv else ROOT / "gankit"
    found = cycles(import_edges(package))
    print(f"{len(found)} import cycle(s) in {package}")
    for component in found:
        print(f"  {len(component)} modules: {', '.join(component)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
