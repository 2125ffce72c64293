"""The import gate on real imports in a real thread: a closed gate holds the importing
thread before its next module and lets every other thread import meanwhile; opening it,
or its hold limit, lets the import finish with modules as an ungated import leaves them."""

from __future__ import annotations

import sys
import threading
import uuid

import pytest

from freezestudio.gui.background.import_gate import ImportGate

WAIT_S = 10.0
HELD_S = 0.3  # how long a held import is watched not to go on


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fresh package: `first` signals that it runs, waits for `go`, then imports
    `second`; `other` is a module for another thread. Yields (name, sync module)."""
    name = f"gated_{uuid.uuid4().hex}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (tmp_path / f"{name}_sync.py").write_text(
        "import threading\nstarted = threading.Event()\ngo = threading.Event()\n")
    (root / "first.py").write_text(
        f"import {name}_sync as sync\nsync.started.set()\nsync.go.wait({WAIT_S})\n"
        "from . import second\n")
    (root / "second.py").write_text("VALUE = 2\n")
    (root / "other.py").write_text("VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sync = __import__(f"{name}_sync")
    yield name, sync
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def _import_in_thread(gate: ImportGate, module: str) -> threading.Thread:
    def run():
        with gate.holding():
            __import__(module)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_closed_gate_holds_the_import_before_its_next_module(package):
    name, sync = package
    gate = ImportGate(hold_limit_s=60)
    thread = _import_in_thread(gate, f"{name}.first")
    assert sync.started.wait(WAIT_S)  # the import runs `first`, the gate open
    gate.close()
    sync.go.set()
    thread.join(HELD_S)
    assert thread.is_alive() and f"{name}.second" not in sys.modules
    __import__(f"{name}.other")  # another thread (this one) imports while it is held
    assert sys.modules[f"{name}.other"].VALUE == 3
    gate.open()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    second = sys.modules[f"{name}.second"]
    assert second.VALUE == 2
    assert type(second.__loader__).__name__ == "SourceFileLoader"  # its own loader again
    assert second.__spec__.loader is second.__loader__
    assert sys.modules[f"{name}.first"].second is second
    assert not any(type(f).__name__ == "_GateFinder" for f in sys.meta_path)


def test_the_hold_limit_lets_a_forgotten_import_go_on(package):
    name, sync = package
    gate = ImportGate(hold_limit_s=0.5)
    gate.close()
    sync.go.set()
    thread = _import_in_thread(gate, f"{name}.first")
    thread.join(WAIT_S)
    assert not thread.is_alive() and sys.modules[f"{name}.second"].VALUE == 2
    assert not gate.is_open  # nobody opened it: the limit did


def test_wait_returns_when_opened_cancelled_or_past_the_limit():
    gate = ImportGate(hold_limit_s=60)
    assert gate.wait()  # open: at once
    gate.close()
    assert not gate.wait(cancelled=lambda: True)
    threading.Timer(0.1, gate.open).start()
    assert gate.wait()
    short = ImportGate(hold_limit_s=0.1)
    short.close()
    assert not short.wait()
