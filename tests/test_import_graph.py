"""No import cycle among bnsym's modules, not even through an import inside a function.

STYLE.md, item 2: dependencies point one way, and a test holds them there.  Every module's
imports are read with ``ast`` -- at the top, inside functions and methods, and
``importlib.import_module("bnsym....")`` with a literal name -- except those under
``if TYPE_CHECKING:``, which never run.  ``from bnsym.pkg import name`` is an edge to the
submodule ``bnsym.pkg.name`` when there is one, else to ``bnsym.pkg`` (its ``__init__``).
Importing a submodule also runs its parents' ``__init__``; that is not counted as an edge,
since a package's ``__init__`` re-exporting its modules is the one-way dependency wanted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bnsym

#: Edges (importer, imported) allowed to close a cycle: none. (The redesign of the family on
#: one core removed the last ones: symbolic's lazy imports of _proofs, render and notes.) An
#: edge listed here that no longer exists fails the test, so the list cannot go stale.
KNOWN_CYCLES_BEING_REMOVED: frozenset[tuple[str, str]] = frozenset()

PACKAGE_DIR = Path(bnsym.__file__).parent


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``root`` (the package dir)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every name of a module that the code that can run imports."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.add(sub if sub in modules else base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring for the rules)."""
    files = module_files(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = _imported_names(tree, module, path.name == "__init__.py", set(files))
        graph[module] = {name for name in names if name in files} - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None if the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_import_cycle_in_bnsym():
    graph = import_graph(PACKAGE_DIR, "bnsym")
    stale = sorted(e for e in KNOWN_CYCLES_BEING_REMOVED if e[1] not in graph.get(e[0], ()))
    assert not stale, f"remove these edges from KNOWN_CYCLES_BEING_REMOVED, they are gone: {stale}"
    pruned = {
        m: {t for t in ts if (m, t) not in KNOWN_CYCLES_BEING_REMOVED} for m, ts in graph.items()
    }
    cycle = find_cycle(pruned)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_in_bnsym_reference_without_exemptions():
    graph = import_graph(PACKAGE_DIR, "bnsym")
    inside = {m: {t for t in ts if t.startswith("bnsym.reference")} for m, ts in graph.items()
              if m.startswith("bnsym.reference")}  # fmt: skip
    assert "bnsym.reference.family" in inside and inside["bnsym.reference"]
    assert find_cycle(inside) is None
    # the package's modules never import its __init__
    importers = [m for m, ts in inside.items() if "bnsym.reference" in ts]
    assert importers == [], importers


def test_the_graph_sees_imports_in_functions_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.c import f\n")
    (pkg / "a.py").write_text("import pkg.b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import pkg.d\n"
        "def g():\n    from pkg.sub import c\n"
        "class K:\n    def m(self):\n        import importlib\n"
        "        return importlib.import_module('pkg.a')\n"
    )
    (pkg / "sub" / "c.py").write_text("def f():\n    from . import e\n")
    (pkg / "sub" / "e.py").write_text("from pkg.sub import c\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c", "pkg.a"},
        "pkg.d": {"pkg.a"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.sub.e"},
        "pkg.sub.e": {"pkg.sub.c"},
    }
    cycle = find_cycle(graph)
    assert cycle in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": set()}) is None


# --- the direction of the design ------------------------------------------------------------

#: Each part of the package (a subpackage, or a top-level module) and the parts it may import
#: (its own modules always). The direction of the design (STYLE.md item 2, issue 16): the
#: declarations need nothing; the symbolic core needs the declarations only; the proofs sit on
#: the core; the renderers read derivations without knowing how they are made; the one
#: Derivation type sits above its renderers; codegen and the cross-check join the symbolic
#: side with NumPy; the NumPy references and the gradient checker need neither SymPy nor the
#: core; nothing but ``__main__`` imports the command line.
ALLOWED: dict[str, set[str]] = {
    "bnsym.errors": set(),
    "bnsym.family": {"bnsym.errors"},
    "bnsym.output": {"bnsym.errors"},
    "bnsym.limits": {"bnsym.errors"},
    "bnsym.reference": {"bnsym.errors", "bnsym.family"},
    "bnsym.gradcheck": {"bnsym.errors", "bnsym.family", "bnsym.reference"},
    "bnsym.core": {"bnsym.errors", "bnsym.family", "bnsym.limits"},
    "bnsym.proofs": {"bnsym.errors", "bnsym.family", "bnsym.core", "bnsym.limits"},
    "bnsym.notes": {
        "bnsym.errors",
        "bnsym.family",
        "bnsym.core",
        "bnsym.proofs",
        "bnsym.output",
        "bnsym.limits",
    },
    "bnsym.derivation": {
        "bnsym.errors",
        "bnsym.family",
        "bnsym.core",
        "bnsym.proofs",
        "bnsym.notes",
        "bnsym.limits",
    },
    "bnsym.codegen": {
        "bnsym",  # __version__ for the header
        "bnsym.errors",
        "bnsym.family",
        "bnsym.core",
        "bnsym.proofs",
        "bnsym.derivation",
        "bnsym.notes",  # escaping the command line for a comment
        "bnsym.output",
        "bnsym.limits",
    },
    "bnsym.crosscheck": {
        "bnsym.errors",
        "bnsym.family",
        "bnsym.core",
        "bnsym.proofs",
        "bnsym.derivation",
        "bnsym.codegen",
        "bnsym.reference",
        "bnsym.gradcheck",
        "bnsym.limits",
    },
    "bnsym.cli": {"*"},
    "bnsym.__main__": {"bnsym.cli"},
    "bnsym": set(),  # its public names are imported lazily, by name, when first used
}

#: Parts that must not import SymPy (nor PyTorch at import time): NumPy only.
NUMPY_ONLY = ("bnsym.errors", "bnsym.family", "bnsym.reference", "bnsym.gradcheck")


def part_of(module: str) -> str:
    """The part of the design a module belongs to: ``bnsym.core.graph`` -> ``bnsym.core``."""
    parts = module.split(".")
    return ".".join(parts[:2])


#: Edges against the direction that are being removed (an edge listed here that no longer
#: exists fails the test, so the list cannot go stale).
KNOWN_AGAINST_DIRECTION: frozenset[tuple[str, str]] = frozenset()


def test_every_part_imports_only_what_the_design_allows():
    graph = import_graph(PACKAGE_DIR, "bnsym")
    stale = sorted(e for e in KNOWN_AGAINST_DIRECTION if e[1] not in graph.get(e[0], ()))
    assert not stale, f"remove from KNOWN_AGAINST_DIRECTION, gone: {stale}"
    for importer, imported in KNOWN_AGAINST_DIRECTION:
        graph[importer] = graph[importer] - {imported}
    parts = {part_of(m) for m in graph}
    assert parts <= set(ALLOWED), f"a new part needs its row in ALLOWED: {parts - set(ALLOWED)}"
    wrong = []
    for module, targets in sorted(graph.items()):
        mine = part_of(module)
        allowed = ALLOWED[mine]
        for target in sorted(targets):
            theirs = part_of(target)
            if theirs != mine and "*" not in allowed and theirs not in allowed:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the design's direction: " + "; ".join(wrong)


def test_nothing_imports_the_command_line():
    graph = import_graph(PACKAGE_DIR, "bnsym")
    importers = sorted(m for m, ts in graph.items() if "bnsym.cli" in ts)
    assert importers == ["bnsym.__main__"], importers


def _third_party(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_numpy_only_parts_never_import_sympy():
    files = module_files(PACKAGE_DIR, "bnsym")
    offenders = []
    for module, path in files.items():
        if part_of(module) in NUMPY_ONLY:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if "sympy" in _third_party(tree):
                offenders.append(module)
    assert offenders == []


def test_the_direction_test_sees_a_wrong_edge(tmp_path):
    """The test above fails for a core module that imports a renderer (a tampered tree)."""
    pkg = tmp_path / "bnsym"
    for part in ("core", "notes"):
        (pkg / part).mkdir(parents=True)
        (pkg / part / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "graph.py").write_text("def f():\n    from bnsym.notes import text\n")
    (pkg / "notes" / "text.py").write_text("import bnsym.core.graph\n")
    graph = import_graph(pkg, "bnsym")
    bad = [
        (m, t)
        for m, ts in graph.items()
        for t in ts
        if part_of(t) != part_of(m) and part_of(t) not in ALLOWED[part_of(m)]
    ]
    assert bad == [("bnsym.core.graph", "bnsym.notes.text")]
