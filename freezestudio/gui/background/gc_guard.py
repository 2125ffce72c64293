"""Python's garbage collection, confined to the GUI thread.

The cyclic collector runs in whichever thread happens to allocate when a threshold is
crossed. If that is a worker thread (loading a model, training) and the garbage holds Qt
objects that belong to the GUI thread, Qt crashes: seen here as a segfault in a loader
worker, "Garbage-collecting" in its stack. So automatic collection is switched off while
the GUI runs and a GUI-thread timer collects instead, by generation, as often as Python's
own thresholds would (cheap when there is little garbage).

A collection walks every object the collector tracks, and with TensorFlow, Qt and a large
model loaded that is most of a million: a full pass held the GIL for 0.3-1.4 s. Nearly
all of them live as long as the open document. So at the points where what is alive is
long-lived (TensorFlow imported, a document loaded, a training run started) they are
moved out of the collector's view (`freeze_survivors`, Python's `gc.freeze`), and a full
collection walks only what came after them. What is frozen is freed by reference
counting as usual; only garbage *cycles* among frozen objects wait, until the document is
closed or replaced: `LongLivedObjects` then puts everything back in view, collects once
(on the GUI thread, after the new document shows) and freezes the survivors again.
"""

from __future__ import annotations

import gc
import time
import weakref

from PySide6.QtCore import QObject, QTimer, Slot

FULL_COLLECTION_EVERY_S = 30.0


class MainThreadGarbageCollector(QObject):
    """Collects garbage only in the thread that creates it (the GUI thread).

    Args:
        interval_ms: how often the generation counts are checked.
    """

    def __init__(self, interval_ms: int = 200, parent: QObject | None = None):
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._last_full = time.monotonic()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    @Slot()
    def check(self) -> None:
        counts = gc.get_count()
        now = time.monotonic()
        if counts[2] > self._thresholds[2] and now - self._last_full >= FULL_COLLECTION_EVERY_S:
            # Python itself defers full collections on a large heap (TensorFlow's is); a full
            # pass can block the window for ~200 ms, so it runs at most this often.
            self._last_full = now
            gc.collect(2)
        elif counts[1] > self._thresholds[1]:
            gc.collect(1)
        elif counts[0] > self._thresholds[0]:
            gc.collect(0)

    def stop(self) -> None:
        """Puts frozen objects back in view, collects once more and gives collection back
        to Python."""
        self._timer.stop()
        gc.unfreeze()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def freeze_survivors() -> None:
    """Moves every object alive now out of the collector's view (any thread: it does not
    collect)."""
    gc.freeze()


def release_frozen() -> None:
    """Puts every frozen object back in view, collects them all and freezes the
    survivors again (GUI thread only: it collects)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class LongLivedObjects:
    """When a window's long-lived objects are frozen and released (see the module
    docstring): tell it about every document the window shows."""

    def __init__(self):
        self._document = None  # a weak reference to the loaded document last frozen

    def document_shown(self, document, loaded: bool) -> None:
        """`document` (None: none) now shows; `loaded` False while its model loads (the
        config-first stand-in is not frozen, nor does it release the one before)."""
        if document is not None and not loaded:
            return
        previous = self._document() if self._document is not None else None
        if document is not None and previous is document:
            return
        replaced = self._document is not None
        self._document = weakref.ref(document) if document is not None else None
        # after the event loop's turn: the objects that still point at the old document
        # (the editor's stack, the views) let it go in the slots of this same change
        QTimer.singleShot(0, release_frozen if replaced else freeze_survivors)
