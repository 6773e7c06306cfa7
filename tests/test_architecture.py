"""The package's layering, read from its sources (docs/architecture.md):

- no import circle among nasp's modules (every import statement counts, also those inside
  functions; the package's face ``nasp/__init__.py`` re-exports and is no arrow);
- nothing outside ``nasp/spaces/`` (and the package's face) names a particular space: no import
  of a space's folder, none of its class or constant names, no ``space == "..."`` tests.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

import nasp
from nasp.spaces import SPACES

ROOT = Path(nasp.__file__).resolve().parent
SPACES_DIR = ROOT / "spaces"

#: The floors of the house (docs/architecture.md), lowest first: a module may import modules of
#: its own package and of lower floors only. data and tasks stand beside core.
FLOORS: dict[str, float] = {
    "nasp.errors": 0, "nasp.registry": 0,
    "nasp.runtime": 1,
    "nasp.core": 2, "nasp.data": 2, "nasp.tasks": 2,
    "nasp.nn": 2.5,  # a user's choices: over core's mixed edge, under the spaces that search them
    "nasp.spaces": 3,
    "nasp.config": 4,
    "nasp.strategies": 5,
    "nasp.engine": 6,
    "nasp.apps": 7,
    "nasp": 8, "nasp.__main__": 8,  # the package face and `python -m nasp`
}


# --------------------------------------------------------------------------- import circles


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    mods = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (the package itself excluded: its face)."""
    package = ROOT.name

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for module, path in mods.items():
        edges[module] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".")
                    keep = len(parts) - node.level + (path.name == "__init__.py")
                    base = ".".join(parts[:keep] + ([base] if base else []))
                subs = [f"{base}.{alias.name}" for alias in node.names]
                targets = subs if all(t in mods for t in subs) else [*subs, base]
            else:
                continue
            for target in targets:
                found = resolve(target) if target.split(".")[0] == package else None
                if found and found not in (module, package):
                    edges[module].add(found)
    return edges


def import_circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_import_circle():
    edges = import_graph(package_modules())
    assert "nasp.spaces" in edges["nasp.engine.search"]  # the graph is read
    circles = import_circles(edges)
    assert not circles, "import circles: " + "; ".join(", ".join(sorted(c)) for c in circles)


def test_the_circle_finder_finds_a_circle():
    edges = {"nasp.a": {"nasp.b"}, "nasp.b": {"nasp.c"}, "nasp.c": {"nasp.a"}, "nasp.d": set()}
    assert import_circles(edges) == [{"nasp.a", "nasp.b", "nasp.c"}]
    # a new arrow that closes a loop through spaces and engine is caught
    edges = import_graph(package_modules())
    edges["nasp.spaces.base"].add("nasp.engine.search")
    assert any("nasp.spaces.base" in c for c in import_circles(edges))


def floor_of(module: str) -> int:
    """The floor of ``module``: that of its longest prefix in :data:`FLOORS`."""
    name = module
    while name not in FLOORS:
        if "." not in name:
            raise AssertionError(f"{module} is on no floor: add its package to FLOORS")
        name = name.rpartition(".")[0]
    return FLOORS[name]


def arrows_against_the_floors(edges: dict[str, set[str]]) -> list[str]:
    """Imports from a lower floor to a higher one, and between two packages of one floor."""
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])
    bad = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            up = floor_of(target) > floor_of(module)
            side = (floor_of(target) == floor_of(module) and package(target) != package(module)
                    and floor_of(module) > 0)
            if up or side:
                bad.append(f"{module} -> {target}")
    return bad


def test_imports_go_down_the_floors():
    """command line -> engine -> strategies -> config -> spaces -> core; data and tasks beside
    core; runtime helpers, errors and registries at the bottom."""
    edges = import_graph(package_modules())
    assert set(edges) and all(floor_of(m) >= 0 for m in edges)  # every module has a floor
    bad = arrows_against_the_floors(edges)
    assert not bad, "imports against the floors: " + "; ".join(bad)


@pytest.mark.parametrize("module, target", [
    ("nasp.core.mixed", "nasp.spaces.base"), ("nasp.spaces.base", "nasp.config.search"),
    ("nasp.strategies.base", "nasp.engine.session"), ("nasp.runtime.device", "nasp.core.ops"),
    ("nasp.data.base", "nasp.tasks.classification"), ("nasp.errors", "nasp.runtime.atomic"),
])
def test_the_floor_check_finds_an_upward_arrow(module, target):
    edges = import_graph(package_modules())
    edges[module].add(target)
    assert f"{module} -> {target}" in arrows_against_the_floors(edges)


# ------------------------------------------------------------------- space names outside spaces


@functools.cache
def space_folders() -> frozenset[str]:
    """The folders of the spaces (``darts_cnn``, ``nb201``, ...)."""
    return frozenset(p.parent.name for p in SPACES_DIR.glob("*/__init__.py"))


def _top_level_names(path: Path, constants_only: bool) -> set[str]:
    """Classes and UPPER_CASE constants (or every name, without ``constants_only``) defined at the
    top of a module."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if isinstance(node, ast.ClassDef) or not constants_only:
                names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and (not constants_only or target.id.isupper()):
                    names.add(target.id)
    return {n for n in names if not n.startswith("_")}


@functools.cache
def space_owned_names() -> frozenset[str]:
    """Classes and constants defined in the spaces' folders and nowhere else in the package
    (``Genotype`` is also the protocol of spaces/base.py, so it is not one)."""
    owned, elsewhere = set(), set()
    for path in ROOT.rglob("*.py"):
        inside = path.parent != SPACES_DIR and SPACES_DIR in path.parents
        if inside:
            owned |= _top_level_names(path, constants_only=True)
        else:
            elsewhere |= _top_level_names(path, constants_only=False)
    return frozenset(owned - elsewhere)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _mentions_space(node: ast.AST) -> bool:
    """A name or attribute about a space: ``space``, ``config.space``, ``SPACES``..."""
    if isinstance(node, ast.Name):
        return "space" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "space" in node.attr.lower()
    return False


def space_references(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` names a particular space, as ``line: what`` entries."""
    folders = space_folders()
    names = set(SPACES)
    owned = space_owned_names()
    tree = ast.parse(source, filename)
    docstrings = _docstrings(tree)
    found = []

    def hit(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    def is_name(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and node.value in names

    def about_folder(text: str) -> bool:
        return any(folder in text.lower() for folder in folders)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["nasp", "spaces"] and len(parts) > 2 and parts[2] in folders:
                hit(node, f"imports {node.module}")
            elif parts == ["nasp", "spaces"]:
                for alias in node.names:
                    if alias.name in folders or alias.name in owned:
                        hit(node, f"imports {alias.name} from nasp.spaces")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["nasp", "spaces"] and len(parts) > 2 and parts[2] in folders:
                    hit(node, f"imports {alias.name}")
        elif isinstance(node, (ast.Name, ast.Attribute)):
            ident = node.id if isinstance(node, ast.Name) else node.attr
            if ident in owned or about_folder(ident):
                hit(node, f"names {ident}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if about_folder(node.name):
                hit(node, f"defines {node.name}")
            if not isinstance(node, ast.ClassDef):
                args = node.args
                positional = [*args.posonlyargs, *args.args]
                pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                         *zip(args.kwonlyargs, args.kw_defaults)]
                for arg, default in pairs:
                    if "space" in arg.arg.lower() and is_name(default):
                        hit(node, f"defaults {arg.arg} to the space {default.value!r}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings
              and (about_folder(node.value) or node.value in owned)):
            hit(node, f"the text {node.value[:40]!r}")
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            constants = [c for o in operands
                         for c in (o.elts if isinstance(o, (ast.Tuple, ast.List, ast.Set))
                                   else [o]) if is_name(c)]
            if constants and any(_mentions_space(o) for o in operands):
                hit(node, f"compares a space with {constants[0].value!r}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if is_name(node.value) and any(_mentions_space(t) for t in targets):
                hit(node, f"sets a space to {node.value.value!r}")
        elif isinstance(node, ast.keyword):
            if node.arg and "space" in node.arg.lower() and is_name(node.value):
                hit(node.value, f"passes {node.arg}={node.value.value!r}")
        elif isinstance(node, ast.Call):
            if _mentions_space(node.func) and node.args and is_name(node.args[0]):
                hit(node, f"builds the space {node.args[0].value!r}")
        elif (isinstance(node, ast.Subscript) and _mentions_space(node.value)
              and is_name(node.slice)):
            hit(node, f"looks up the space {node.slice.value!r}")
    return found


def outside_spaces() -> list[Path]:
    """The package's modules that may not name a space: all but spaces/ and the package's face."""
    return [p for p in sorted(ROOT.rglob("*.py"))
            if SPACES_DIR not in p.parents and p != ROOT / "__init__.py"]


def test_the_spaces_are_known_to_the_check():
    assert space_folders() >= {"darts_cnn", "nb201"}
    assert {"DartsCNNSpace", "NB201Space", "NB201Genotype", "ChildNetwork", "NB201ChildNetwork",
            "Supernet", "BenchmarkTable", "EDGES", "NB201_PRIMITIVES"} <= space_owned_names()
    assert "Genotype" not in space_owned_names()  # also the protocol in spaces/base.py


def test_nothing_outside_spaces_names_a_space():
    found = []
    for path in outside_spaces():
        found += space_references(path.read_text(encoding="utf-8"),
                                  str(path.relative_to(ROOT.parent)))
    assert not found, "space named outside nasp/spaces/:\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "from nasp.spaces.nb201.genotype import EDGES",
    "from nasp.spaces.darts_cnn.space import DartsCNNSpace",
    "import nasp.spaces.nb201.benchmark_table",
    "from nasp.spaces import NB201Genotype",
    "ok = isinstance(genotype, NB201Genotype)",
    "net = spaces.ChildNetwork(g, 3, 10, 8, 16)",
    "if config.space == 'nb201':\n    pass",
    "if 'darts' != self.space:\n    pass",
    "if config.space in ('darts', 'other'):\n    pass",
    "space: str = 'darts'",
    "config = SearchConfig(space='nb201')",
    "space = build_space('darts', 'darts-7')",
    "cls = SPACES['nb201']",
    "def f(space='nb201'):\n    pass",
    "def _check_nb201(self):\n    pass",
    "help = '--space nb201: the NAS-Bench-201 cell'",
])
def test_the_check_finds_a_re_added_reference(line):
    assert space_references(line), line


@pytest.mark.parametrize("line", [
    "strategy = build_strategy('darts', space, net, config)",   # the DARTS strategy
    "if config.strategy == 'darts':\n    pass",
    "primitives = 'darts-7'",
    "space = build_space(config.space, config.primitives)",
    "from nasp.spaces import Genotype, build_space, space_of",
    "def f():\n    '''NAS-Bench-201 and nb201 in a docstring are prose.'''",
])
def test_the_check_leaves_other_darts_alone(line):
    assert not space_references(line), line
