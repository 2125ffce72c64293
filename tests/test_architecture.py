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
