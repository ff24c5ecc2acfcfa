"""The package's structure: no import cycle in detector/, counting imports inside functions, and
every relative import names a module that exists (a module moved without its imports fails here).

Imports are read with `ast` (nothing is imported), relative imports resolved against the importing
module's package, and `from package import name` counted as importing the submodule `name` when
there is one. Importing a module is not counted as importing its parent packages: their
__init__ files run first, but a package that imports its own submodules is no cycle in the design.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_files(root: Path, package: str) -> dict:
    """{dotted module name: path} for every .py file of `package` under `root`."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict) -> set:
    """The modules of `modules` that module `name` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()

    def add(target: str) -> None:
        while target and target not in modules:  # `import a.b.c` of a name inside a.b: the module a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
                if not base or source not in modules:  # a relative import names a module of the tree
                    raise ImportError(f"{path}:{node.lineno}: relative import of {source or 'nothing'}, "
                                      "which is no module of the tree")
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source)
    return found


def import_graph(root: Path, package: str) -> dict:
    modules = module_files(root, package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict) -> list | None:
    """One import cycle as [a, b, ..., a], or None."""
    state = {}  # module -> "open" while on the DFS path, "done" after

    def visit(module: str, path: list):
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("package", ["detector", "robot_client"])
def test_no_import_cycle(package):
    graph = import_graph(ROOT, package)
    assert len(graph) > 5 and any(graph.values())  # the graph was really read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_model_imports_nothing_from_daemon_or_train():
    """Imports flow one way: model/ is the base the daemon and the trainer build on."""
    graph = import_graph(ROOT, "detector")
    wrong = {(module, target) for module, targets in graph.items() if module.startswith("detector.model")
             for target in targets if target.startswith(("detector.daemon", "detector.train", "detector.sim"))}
    assert not wrong, sorted(wrong)


def test_the_checker_finds_cycles_through_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("import os\nfrom ..c import thing\n")
    (package / "c.py").write_text("thing = 1\n\ndef later():\n    from pkg import a\n    return a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("thing = 1\n")  # the function-level import was the cycle's last link
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
    (package / "c.py").write_text("from ..outside import thing\n")  # a module moved without its imports
    with pytest.raises(ImportError, match="relative import of outside"):
        import_graph(tmp_path, "pkg")
    (package / "c.py").write_text("from .gone import thing\n")
    with pytest.raises(ImportError, match="relative import of pkg.gone"):
        import_graph(tmp_path, "pkg")
