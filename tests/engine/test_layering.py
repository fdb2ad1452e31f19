"""The import graph of the project's packages, read from the source with `ast`: no cycles, and
the layering of docs/ARCHITECTURE.md (api and db without the engine or torch, mpt without the
service, contracts on the standard library alone)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "contracts", "db", "mpt", "worker")


def module_name(path: Path) -> str:
    """'mpt/reproduce/__init__.py' -> 'mpt.reproduce', 'mpt/cli.py' -> 'mpt.cli'."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module an import statement of the file names, at any depth (lazy imports too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            # `from package import module` imports the submodule.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    files = {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    return {
        module: {name for name in imported_names(path) if name in files and name != module}
        for module, path in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def forbidden_imports(package: str, forbidden: set[str]) -> list[str]:
    """'module imports name' for every import in `package` whose top-level name is forbidden."""
    return [
        f"{module_name(path)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_names(path))
        if name.partition(".")[0] in forbidden
    ]


def test_the_import_graph_is_read():
    graph = import_graph()
    assert "mpt.update" in graph["mpt.cli"] and "mpt.reproduce.command" in graph["mpt.cli"]
    assert "db.settings" in graph["worker.runtime"] and "worker.runtime" in graph["worker.jobs"]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycle_detection():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_api_and_db_use_neither_the_engine_nor_torch():
    forbidden = {"mpt", "worker", "torch", "torchvision"}
    assert forbidden_imports("api", forbidden) == []
    assert forbidden_imports("db", forbidden) == []


def test_the_engine_knows_nothing_of_the_service():
    assert forbidden_imports("mpt", {"api", "db", "worker"}) == []


def test_contracts_import_only_the_standard_library():
    imports = {name for path in (ROOT / "contracts").rglob("*.py") for name in imported_names(path)}
    assert {name for name in imports if name.partition(".")[0] not in {*sys.stdlib_module_names, "contracts"}} == set()


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{module_name(path)} imports {node.module}.{alias.name}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.partition(".")[0] in PACKAGES
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []


def test_no_source_file_outside_tests_grows_past_400_lines():
    # docs/ARCHITECTURE.md: a file that outgrows this does more than one job; split it.
    folders = (*PACKAGES, "scripts", "bench")
    long_files = {
        str(path.relative_to(ROOT)): lines
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert long_files == {}
