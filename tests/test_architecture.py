"""No import circles among gankit's modules (#29).

How circles are counted (scripts/import_cycles.py builds the graph; ``python scripts/import_cycles.py``
prints the count): every ``.py`` file under gankit/ is a module, a package's ``__init__.py`` being the
package's own module (``gankit``, ``gankit.metrics``, ...). Each ``import`` or ``from ... import`` of a
gankit module is an edge, at module level and inside functions alike; only those under
``if TYPE_CHECKING:`` are skipped. ``from gankit.pkg import x`` is an edge to ``gankit.pkg.x`` when x is a
submodule, else to ``gankit.pkg``; the parent packages Python imports on the way are not edges. A
circle is a strongly connected component of two or more modules (or a module importing itself); there
must be none.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from import_cycles import cycles, import_edges  # noqa: E402

def test_no_import_cycles():
    found = [sorted(c) for c in cycles(import_edges(ROOT / "gankit"))]
    assert not found, f"import circles: {found}"


def test_the_loop_imports_no_concrete_game():
    """A game registers itself (gankit.games.registry imports gankit's own lazily): the loop, the playground
    and the config know games only through the registry and the Game interface."""
    edges = import_edges(ROOT / "gankit")
    games = {m for m in edges if m.startswith("gankit.games.")} - {
        "gankit.games.base", "gankit.games.phases", "gankit.games.registry"}
    for module in ("gankit.train", "gankit.config", "gankit.games.base", "gankit.games.phases"):
        assert not edges[module] & games, (module, edges[module] & games)


def test_edges_follow_the_stated_rules(tmp_path: Path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n"
                              "def f():\n    from pkg.sub import c\n")
    (pkg / "b.py").write_text("import pkg.a\nfrom pkg import VERSION\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import b\nfrom . import d\n")
    (pkg / "sub" / "d.py").write_text("from pkg.sub.c import x\n")
    edges = import_edges(pkg)
    assert edges == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.c"}, "pkg.b": {"pkg.a", "pkg"},
                     "pkg.sub": set(), "pkg.sub.c": {"pkg.b", "pkg.sub.d"}, "pkg.sub.d": {"pkg.sub.c"}}
    # pkg.b -> pkg.a -> pkg.sub.c -> pkg.b, and pkg.sub.c <-> pkg.sub.d, are one component; pkg -> pkg.a
    # enters it and pkg.b -> pkg closes a bigger one through the package's __init__
    assert cycles(edges) == [("pkg", "pkg.a", "pkg.b", "pkg.sub.c", "pkg.sub.d")]
