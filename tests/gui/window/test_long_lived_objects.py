"""The garbage collector's view in the GUI process (`gc_guard`): what lives as long as the
document is frozen, so a full collection on the GUI thread walks only what came after it,
and a document closed or replaced is freed (cycles included) without any help."""

from __future__ import annotations

import gc
import weakref

from gui_training import CNN, open_session, run

from freezestudio.resources import DEMO_DIR


def _settle(qtbot) -> None:
    qtbot.wait(50)  # the freeze or release runs one event-loop turn after the change


def test_a_full_collection_after_load_and_a_run_walks_a_small_part_of_the_heap(
        qtbot, window, open_and_wait):
    session = next(open_session(qtbot, window, open_and_wait))
    _settle(qtbot)
    frozen = gc.get_freeze_count()
    assert frozen > 100_000  # TensorFlow, Keras, Qt's wrappers and the document
    assert len(gc.get_objects()) < frozen / 10
    outcome = run(qtbot, session, epochs=1, cache="off")
    assert outcome.result.status == "completed"
    _settle(qtbot)
    # what the run left is in view; everything alive when it started is not
    assert len(gc.get_objects()) < gc.get_freeze_count() / 4


def test_a_replaced_document_is_freed_cycles_and_all(qtbot, window, open_and_wait):
    session = next(open_session(qtbot, window, open_and_wait))
    outcome = run(qtbot, session, epochs=1, cache="off")
    assert outcome.result.status == "completed"
    _settle(qtbot)
    document = weakref.ref(window.document)
    model = weakref.ref(window.document.model)
    assert gc.get_freeze_count() > 0 and model() is not None
    assert open_and_wait(qtbot, window, DEMO_DIR / CNN)  # the same file: a new document
    _settle(qtbot)
    assert window.document is not None and window.document is not document()
    # a Keras model is a web of cycles: only a collection that sees it frees it
    assert model() is None and document() is None
