"""Holding a background import back while the GUI reads and paints a model's tree.

The window imports TensorFlow on its worker thread from start-up, and the config-first
tree of a file opened meanwhile is read on another thread and painted on the GUI thread
(docs/architecture.md, "Config-first opening"). All three run Python code, so they share
one GIL: the import (thousands of modules) and the read (h5py over the archive, very many
short file reads, each of which hands the GIL over and waits to get it back) slowed each
other down several times over. While the gate is closed, the importing thread stops
before its next module (a `sys.meta_path` finder on that thread only, see `_GateFinder`),
and the read and the paint run alone.

A held import keeps the locks of the modules it is in the middle of importing, so a
thread that needs one of those waits for the gate too: the reader's and the tree's
modules are imported before the gate is ever closed (`file_flows.import_reader_modules`),
and every closing holds the import back at most `hold_limit_s` from the moment it closed,
whatever happens.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

HOLD_LIMIT_S = 5.0


class ImportGate:
    """A gate the GUI thread closes and opens; the importing thread waits at it.

    Args:
        hold_limit_s: the longest one closing holds an import (or a `wait`).
    """

    def __init__(self, hold_limit_s: float = HOLD_LIMIT_S):
        self.hold_limit_s = hold_limit_s
        self._open = threading.Event()
        self._open.set()
        self._closed_at = 0.0

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        """Holds the imports under `holding` before their next module (again: restarts
        the hold limit)."""
        self._closed_at = time.monotonic()
        self._open.clear()

    def open(self) -> None:
        """Lets them go on (idempotent)."""
        self._open.set()

    def wait(self, cancelled: Callable[[], bool] | None = None, poll_s: float = 0.05) -> bool:
        """Blocks until the gate is open, the hold limit of its closing has passed, or
        `cancelled()` is true.

        Returns:
            True if the gate is open.
        """
        while not self._open.is_set():
            remaining = self._closed_at + self.hold_limit_s - time.monotonic()
            if remaining <= 0 or (cancelled is not None and cancelled()):
                break
            self._open.wait(min(remaining, poll_s))
        return self._open.is_set()

    @contextmanager
    def holding(self):
        """In the importing thread: its imports stop at the gate while it is closed."""
        finder = _GateFinder(self, threading.get_ident())
        sys.meta_path.insert(0, finder)
        try:
            yield
        finally:
            sys.meta_path.remove(finder)


class _GateFinder:
    """A meta path finder for one thread: while the gate is closed, it finds the spec as
    the finders after it would and has the module's creation wait at the gate. There no
    global import lock is held (finders run under it: waiting in `find_spec` would stop
    every other thread's imports), only the locks of the modules being imported; the
    module gets its own loader back before anything sees it."""

    def __init__(self, gate: ImportGate, thread_id: int):
        self._gate, self._thread_id = gate, thread_id

    def find_spec(self, name, path=None, target=None):
        if threading.get_ident() != self._thread_id or self._gate.is_open:
            return None
        later = sys.meta_path[sys.meta_path.index(self) + 1:] if self in sys.meta_path else []
        for finder in later:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HeldLoader(spec.loader, self._gate)
        return spec


class _HeldLoader:
    """Waits at the gate, then hands the spec back to its loader and lets it work."""

    def __init__(self, loader, gate: ImportGate):
        self._loader, self._gate = loader, gate

    def create_module(self, spec):
        self._gate.wait()
        spec.loader = self._loader
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
