"""The import graph of geomreg/: the library never imports the packages built on it (pipelines, the QGIS
plugin), and its modules form a DAG. Every import counts, including those inside functions (a late import
hides a cycle, it does not remove it); only `if TYPE_CHECKING:` blocks, which never run, are left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "geomreg"
FORBIDDEN = ("pipelines", "qgis_plugin")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Absolute names of everything a module imports (relative imports resolved against its package)."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, int]] = []  # (name, line); for `from a import b`, "a.b"

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(a.name, node.lineno) for a in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            pkg = self.package.split(".")
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        self.found += [(f"{base}.{a.name}", node.lineno) for a in node.names]

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("x") / __import__("x") with a literal name is an import too.
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self.found.append((node.args[0].value, node.lineno))
        self.generic_visit(node)


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    v = _Imports(module, path.name == "__init__.py")
    v.visit(ast.parse(path.read_text(), filename=str(path)))
    return v.found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The geomreg module a dotted name lands in (`a.b.func` -> `a.b`), None outside geomreg."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, p in modules.items():
        for name, _ in _imports(m, p):
            target = _resolve(name, modules)
            if target is not None and target != m:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sccs


def test_geomreg_never_imports_the_packages_built_on_it():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for m, p in _modules().items() for name, line in _imports(m, p)
           if name.split(".")[0] in FORBIDDEN]
    assert not bad, "\n".join(bad)


def test_geomreg_modules_form_a_dag():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles between geomreg modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_geo_planning_and_matching_know_nothing_of_later_stages():
    # The stages run plan -> tiles -> fuse -> write; fusion builds the Registration, which writes the outputs.
    g = _graph()
    later = {"geomreg.geo.plan": {"geomreg.geo.tiles", "geomreg.geo.fusion", "geomreg.geo.registration", "geomreg.geo.outputs"},
             "geomreg.geo.tiles": {"geomreg.geo.fusion", "geomreg.geo.registration", "geomreg.geo.outputs"}}
    for stage, forbidden in later.items():
        assert not g[stage] & forbidden, f"{stage} imports the later stage(s) {sorted(g[stage] & forbidden)}"


def test_the_walker_sees_late_and_relative_imports(tmp_path):
    src = "def f():\n    from . import b\n    import importlib\n    importlib.import_module('pipelines.x')\n"
    v = _Imports("geomreg.geo.a", is_package=False)
    v.visit(ast.parse(src))
    names = [n for n, _ in v.found]
    assert "geomreg.geo.b" in names and "pipelines.x" in names
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
