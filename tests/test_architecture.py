"""The layering contract: dependencies run one way, no cycles, no project import hidden in a function.

Layers, lowest first (``docs/architecture.md`` draws them): a module imports modules of its
own layer or below, never above. Exporters never verify and verification never exports.
Only heavy frameworks are imported inside functions (so ``transferjs --help`` stays instant);
a project module imported inside a function would be a cycle dodged, so it fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("converter", "retrain", "transferjs")

# (layer number, module prefixes); the longest matching prefix decides.
LAYERS = [
    (0, ["converter.model", "converter.errors", "converter.layout", "converter.atomic", "converter.logs", "converter.report",
         "converter.cache", "converter.passes"]),
    (1, ["converter.sources", "converter.graph", "converter.graph_ops", "converter.runtimes", "converter.images",
         "converter.samples", "converter.calibration", "converter.description", "converter.tfjs_initializer"]),
    (2, ["converter.export", "converter.verify"]),
    (3, ["retrain", "converter.pipeline", "converter.api"]),
    (4, ["transferjs"]),
]
# Never import each other: exporting and verifying are separate concerns.
APART = [("converter.export", "converter.verify")]
# ``converter/__init__.py`` names its API by string (lazily); nothing imports it for code.
ROOTS = {"converter": 3}

LIBRARY_FILE_LINES = 420
LIBRARY_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def layer_of(module: str) -> int:
    if module in ROOTS:
        return ROOTS[module]
    best = max((p for _, prefixes in LAYERS for p in prefixes if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"module {module} has no layer: add it to LAYERS in tests/test_architecture.py")
    return next(n for n, prefixes in LAYERS if best in prefixes)


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """``(imported project module, inside a function?, line)`` for every import in ``path``."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
            for name in names:
                if name.split(".")[0] in PACKAGES:
                    found.append((name, in_function, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


def resolve(name: str, known: set[str]) -> str | None:
    """The project module ``name`` refers to (``a.b.func`` -> ``a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in project_files()}
    edges = {}
    for module, path in files.items():
        edges[module] = {m for name, _, _ in imports(path) if (m := resolve(name, set(files))) and m != module}
    return edges


def test_dependencies_run_one_way():
    problems = []
    for module, deps in graph().items():
        for dep in deps:
            if layer_of(dep) > layer_of(module) and not (module == "converter" and dep.startswith("converter.")):
                problems.append(f"{module} (layer {layer_of(module)}) imports {dep} (layer {layer_of(dep)})")
            for a, b in APART:
                if (module.startswith(a) and dep.startswith(b)) or (module.startswith(b) and dep.startswith(a)):
                    problems.append(f"{module} imports {dep}: {a} and {b} stay apart")
    assert not problems, "\n".join(sorted(problems))


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_project_import_hidden_in_a_function():
    hidden = sorted({f"{p.relative_to(ROOT)}:{line}" for p in project_files() for _, inside, line in imports(p) if inside})
    assert not hidden, "import these at module top (a function-level import hides a cycle):\n" + "\n".join(hidden)


@pytest.mark.parametrize("package", ["converter", "retrain"])
def test_library_files_and_functions_stay_small(package):
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > LIBRARY_FILE_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > LIBRARY_FUNCTION_LINES:
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(): {_code_lines(node)} lines of code")
    assert not problems, "split by concept:\n" + "\n".join(problems)


def _code_lines(node) -> int:
    """A function's lines, not counting its docstring."""
    doc = node.body[0] if node.body and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant) else None
    return node.end_lineno - node.lineno + 1 - ((doc.end_lineno - doc.lineno + 1) if doc else 0)


def test_the_contract_catches_an_upward_import(tmp_path):
    """A test of the test: a library module that imports the application is caught."""
    bad = ROOT / "converter" / "_layering_probe.py"
    bad.write_text("from transferjs import cli\n")
    try:
        with pytest.raises(AssertionError, match="converter._layering_probe"):
            test_dependencies_run_one_way()
    finally:
        bad.unlink()
