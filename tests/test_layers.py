"""The road through the package stays straight: no import cycle among eqchem modules (imports inside
functions included), and no lower layer importing a higher one.

Layers, low to high: conventions (the top-level modules: basis, keys, units, errors, orbitals, cpu,
version, metrics, plots) -> io -> data -> dft -> model -> training -> inference -> cli, and the package's
public API (``eqchem/__init__.py``) above them all. Imports under ``if TYPE_CHECKING:`` never run and are
not counted. The exceptions, each with its reason, are :data:`ALLOWED`.
"""
from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "eqchem"
LAYERS = ("conventions", "io", "data", "dft", "model", "training", "inference", "cli", "api")

ALLOWED: dict[tuple[str, str], str] = {
}
"""(importing module, imported module) -> why this upward import is right. At most three."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").exists():
        return "conventions"
    return parts[1]


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> dict[str, int]:
    """eqchem modules imported by the file at ``path`` (anywhere but under TYPE_CHECKING) -> first line."""
    name = module_name(path) if PACKAGE in path.parents else "eqchem.planted"
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in targets:
            while t and t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in modules and t != name:
                found.setdefault(t, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imports_of(p, set(files)) for m, p in files.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, {})):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for m, deps in sorted(graph.items()):
        for d, line in sorted(deps.items()):
            if m == "eqchem" or layer(m) == layer(d):
                continue
            if LAYERS.index(layer(d)) > LAYERS.index(layer(m)) and (m, d) not in ALLOWED:
                out.append(f"{m} (line {line}) imports {d}: {layer(m)} below {layer(d)}")
    return out


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_lower_layer_imports_a_higher_one():
    assert len(ALLOWED) <= 3
    assert upward_imports(import_graph()) == []


def test_no_module_over_400_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_checks_can_fail(tmp_path):
    """The graph code finds a planted cycle and a planted upward import."""
    graph = {"eqchem.io.a": {"eqchem.io.b": 1}, "eqchem.io.b": {"eqchem.io.a": 3}}
    assert find_cycle(graph) == ["eqchem.io.a", "eqchem.io.b", "eqchem.io.a"]
    assert upward_imports({"eqchem.data.x": {"eqchem.inference.y": 7}}) == [
        "eqchem.data.x (line 7) imports eqchem.inference.y: data below inference"]
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import eqchem.cli\n"
                   "def f():\n    from eqchem.inference import predict\n")
    assert set(imports_of(src, {"eqchem.cli", "eqchem.inference.predict"})) == {"eqchem.inference.predict"}


if __name__ == "__main__":  # print the graph's problems without pytest
    g = import_graph()
    print("cycle:", find_cycle(g))
    print("\n".join(upward_imports(g)))
