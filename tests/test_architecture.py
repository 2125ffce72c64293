"""`freezestudio.core` never imports Qt, pyqtgraph or `freezestudio.gui` (docs/architecture.md)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import freezestudio.core

CORE = Path(freezestudio.core.__file__).parent
FORBIDDEN = ("PySide6", "PySide2", "PyQt5", "PyQt6", "shiboken6", "qtpy", "pyqtgraph",
             "freezestudio.gui")


def _forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def _imported_modules(path: Path, root: Path = CORE):
    """Absolute names of every module an import statement in `path` names (`root` is the
    folder of the `freezestudio.core` package)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    package = ".".join(("freezestudio", *parts[:-1]))
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                node.func, "id", None)) in ("import_module", "__import__")
                and node.args and isinstance(node.args[0], ast.Constant)):
            yield node.lineno, str(node.args[0].value)


def test_scan_sees_relative_and_dynamic_imports(tmp_path):
    # The scanner itself must catch each form, or the real scan below proves nothing.
    probe = tmp_path / "core" / "sub" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from ...gui import app\nimport PySide6.QtCore\n"
                     "from pyqtgraph import PlotWidget\nimport numpy\n"
                     "importlib.import_module('freezestudio.gui.window.main_window')\n")
    found = [m for _, m in _imported_modules(probe, tmp_path / "core") if _forbidden(m)]
    assert "freezestudio.gui" in found
    assert "PySide6.QtCore" in found
    assert "pyqtgraph" in found
    assert "freezestudio.gui.window.main_window" in found
    assert not any(m.startswith("numpy") for m in found)


def test_core_sources_import_no_qt():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 10
    offending = [f"{path.relative_to(CORE)}:{line}: {module}"
                 for path in files for line, module in _imported_modules(path)
                 if _forbidden(module)]
    assert offending == []


def test_importing_every_core_module_loads_no_qt():
    script = """
import importlib, json, pkgutil, sys
import freezestudio.core as core
names = sorted(m.name for m in pkgutil.walk_packages(core.__path__, "freezestudio.core."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert "freezestudio.core.files.loading" in data["imported"]
    assert "freezestudio.core.model.document" in data["imported"]
    assert "tensorflow" in data["modules"]  # it did import the real thing
    leaked = [m for m in data["modules"] if _forbidden(m)]
    assert leaked == []


REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "freezestudio"


def test_layering_contracts_hold():
    """The import-linter contracts of pyproject.toml (docs/architecture.md, Architecture)."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "0 broken" in done.stdout


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter[0]
                    counter[0] += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph.get(successor, ()))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_circles_between_modules():
    """Counting imports inside functions (annotation-only imports under TYPE_CHECKING do
    not count: they never run)."""
    import grimp

    graph = grimp.build_graph("freezestudio", exclude_type_checking_imports=True,
                              cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert _strongly_connected(edges) == []


def test_the_circle_finder_finds_a_circle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == \
        [["a", "b", "c"]]


def test_core_and_gui_are_made_of_sub_packages():
    for package, most in (("core", 3), ("gui", 2)):
        modules = [p.name for p in (PACKAGE / package).glob("*.py") if p.name != "__init__.py"]
        folders = [p for p in (PACKAGE / package).iterdir() if (p / "__init__.py").exists()]
        assert len(modules) <= most, (package, modules)
        assert len(folders) >= 5, package


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}


def test_test_module_names_are_unique():
    """pytest imports test modules by basename (no __init__.py under tests/): two files with one
    name in different folders make the whole run fail at collection."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(REPO)} and {path.relative_to(REPO)}")
        seen.setdefault(path.name, path)
    assert not clashes, "same test module name twice: " + "; ".join(clashes)
