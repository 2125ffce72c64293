"""Edits as undoable commands: every change to a document goes through `Editor`.

An edit runs the core operation once, records the document's snapshot before and after
(`Document.snapshot` covers freeze state, stop-gradient points and the fine-tuning
strategy; where LoRA adapters are involved, `lora.AdapterState` adds the adapters and
their values), and pushes a
`SnapshotCommand`; undo and redo restore those snapshots, so they give back the exact
state whatever the edit was (a plan, a bulk freeze, a stop-gradient rebuild, adapters
added, merged or discarded).

A stop-gradient edit rebuilds the model's graph (0.1-0.4 s on 500-800-layer models): that
part runs on the editor's own thread (`stop_gradient.prepare_graph`) while a local event
loop keeps the GUI responsive; the editor refuses edits meanwhile and says so
(`rebuilding_changed`, the window locks its editing widgets), and the edit itself then
installs the built graph on the GUI thread. Undo and redo find their graphs kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from functools import partial

from PySide6.QtCore import QEventLoop, QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication, QUndoCommand, QUndoStack

from freezestudio.core.errors import UserError
from freezestudio.core.model.tree import LayerNode, WeightNode
from freezestudio.gui.background.gil_handover import quick_handover
from freezestudio.gui.background.threads import TaskHost


class SnapshotCommand(QUndoCommand):
    """An edit that already ran: redo/undo restore the snapshots around it."""

    def __init__(self, document, text: str, before, after, adapters=None):
        super().__init__(text)
        self._document = document
        self._before = before
        self._after = after
        self._adapters = adapters  # (before, after) AdapterStates, or None
        self._first = True

    def redo(self) -> None:
        if self._first:  # the edit itself already ran before the push
            self._first = False
            return
        if self._adapters is not None:
            self._adapters[1].restore(self._document)  # the rows first: snapshots match them
        self._document.restore(self._after)

    def undo(self) -> None:
        if self._adapters is not None:
            self._adapters[0].restore(self._document)
        self._document.restore(self._before)


@contextmanager
def busy_cursor():
    """A wait cursor around GUI-thread work that can take a moment (graph rebuilds)."""
    QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        yield
    finally:
        QGuiApplication.restoreOverrideCursor()


def _prepare_graph(document, points: list[str], _state):
    """The rebuild thread's task: `stop_gradient.prepare_graph`, handing the GIL over
    quickly (its Keras calls would keep the GUI thread waiting for it)."""
    from freezestudio.core.edits import stop_gradient

    with quick_handover():
        return stop_gradient.prepare_graph(document, points)


def _describe(nodes: list) -> str:
    if len(nodes) == 1:
        node = nodes[0]
        return node.id if isinstance(node, WeightNode) else (node.path or node.name)
    return f"{len(nodes)} items"


class Editor(QObject):
    """Runs edits on the current document and records them on the undo stack.

    Signals:
        failed(str): an edit was refused by the core (message for the user); the document
            is left as it was.
        rebuilding_changed(bool): a stop-gradient edit's graph rebuild started (True) or
            ended on the rebuild thread; edits are refused meanwhile.
    """

    failed = Signal(str)
    rebuilding_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.stack = QUndoStack(self)
        self.document = None
        self._guards: list[Callable[[], bool]] = []
        self._rebuilder: TaskHost | None = None
        self._waiting: QEventLoop | None = None
        self.rebuilding = False

    def dispose(self) -> None:
        """Silences the undo stack before it is destroyed.

        `~QUndoStack` calls `clear()`, which emits `indexChanged`; if the receivers (the
        tree model, the window) are being torn down at the same time that crashes. Call
        this when the editor's owner shuts down.
        """
        self.stack.blockSignals(True)
        self.document = None
        if self._waiting is not None:
            self._waiting.quit()
        if self._rebuilder is not None:
            self._rebuilder.shutdown()

    def add_guard(self, allows_edits: Callable[[], bool]) -> None:
        """Registers a check run before every edit; it returns False (after telling the
        user why) while edits must wait, e.g. during a training run."""
        self._guards.append(allows_edits)

    def set_document(self, document) -> None:
        self.document = document
        self.stack.clear()
        self.stack.setClean()

    # --- the one way to edit ------------------------------------------------------
    def run(self, text: str, action: Callable[[], None], slow: bool = False) -> bool:
        """Runs `action()` on the document as one undoable edit named `text`.

        Returns:
            True if it changed something; False if refused (UserError, reported through
            `failed`) or if it changed nothing (then nothing is pushed).
        """
        document = self.document
        if not self._allows_edits():
            return False
        from freezestudio.core.edits.lora import AdapterState

        before = document.snapshot()
        adapters = AdapterState.take(document) if document.adapters() else None
        try:
            if slow:  # stop-gradient edits rebuild the graph: ~0.4 s on NASNetMobile
                with busy_cursor():
                    action()
            else:
                action()
        except UserError as exc:
            if adapters is not None or document.adapters():
                (adapters or AdapterState((), {})).restore(document)
            if document.snapshot() != before:
                document.restore(before)
            self.failed.emit(str(exc))
            return False
        after = document.snapshot()
        pair = None
        if adapters is not None or document.adapters():
            old = adapters or AdapterState((), {})
            new = AdapterState.take(document, kernels=old.kernel_ids)
            for key in new.kernel_ids:  # adding an adapter leaves its kernel as it was
                old.values.setdefault(key, new.values[key])
            pair = (old, new) if new.adapters != old.adapters or after != before else None
        if after == before and pair is None:
            return False
        self.stack.push(SnapshotCommand(document, text, before, after, pair))
        return True

    def _allows_edits(self) -> bool:
        return self.document is not None and not self.rebuilding and \
            all(allows() for allows in self._guards)

    def _prepare_points(self, points: list[str]) -> bool:
        """Builds the graph for `points` on the rebuild thread, the GUI's event loop
        running meanwhile (a no-op when it is kept). Returns False if the document was
        replaced or the editor disposed meanwhile."""
        from freezestudio.core.edits import stop_gradient

        document = self.document
        if stop_gradient.graph_ready(document, points):
            return True
        if self._rebuilder is None:
            self._rebuilder = TaskHost("freezestudio-rebuild", self)
        self._waiting = waiting = QEventLoop()
        self.rebuilding = True
        self.rebuilding_changed.emit(True)
        job = self._rebuilder.submit(
            partial(_prepare_graph, document, points),
            on_done=lambda _result: waiting.quit(), on_error=lambda _job: waiting.quit())
        try:
            with busy_cursor():
                waiting.exec()
        finally:
            self._waiting = None
            self.rebuilding = False
            self.rebuilding_changed.emit(False)
        if self.document is not document or not job.wait(0):
            return False
        if job.error is not None:
            raise job.error
        stop_gradient.keep_graph(document, job.result)
        return True

    def _points_edit(self, text: str, action: Callable[[], None], points) -> bool:
        """`run` for an edit that makes `points` the stop-gradient points (a callable
        that computes them; its UserError is the edit's own, reported by `run`)."""
        if not self._allows_edits():
            return False
        try:
            target = points()
        except UserError:
            target = None
        if target is not None and not self._prepare_points(target):
            return False
        return self.run(text, action, slow=True)

    # --- freeze edits -------------------------------------------------------------
    def set_trainable(self, nodes: Iterable, value: bool, text: str | None = None) -> bool:
        nodes = list(nodes)
        if not nodes:
            return False
        text = text or f"{'Unfreeze' if value else 'Freeze'} {_describe(nodes)}"
        return self.run(text, lambda: self.document.set_trainable(nodes, value))

    def toggle(self, nodes: Iterable) -> bool:
        """Freezes all if any is (partly) trainable, else unfreezes all."""
        nodes = [n for n in nodes if _editable(n)]
        if not nodes:
            return False
        value = all(self.document.trainable_state(n) is False for n in nodes)
        return self.set_trainable(nodes, value)

    def freeze_up_to(self, node: LayerNode) -> bool:
        """Freezes every layer before `node` in model order, and `node` itself."""
        ancestors = {id(a) for a in node.ancestors()}
        chosen = []
        for candidate in self.document.root.walk():
            if id(candidate) not in ancestors:
                chosen.append(candidate)
            if candidate is node:
                break
        return self.set_trainable(chosen, False, f"Freeze everything up to {node.path}")

    def set_class_trainable(self, class_name: str, value: bool) -> bool:
        nodes = [n for n in self.document.root.walk()
                 if n.class_name == class_name and n.parent is not None]
        verb = "Unfreeze" if value else "Freeze"
        return self.set_trainable(nodes, value, f"{verb} all {class_name} ({len(nodes)})")

    # --- stop-gradient edits ----------------------------------------------------------
    def set_stop_points(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> bool:
        from freezestudio.core.edits import stop_gradient

        add, remove = list(add), list(remove)
        if not add and not remove:
            return False
        parts = ([f"add stop-gradient after {', '.join(add)}"] if add else []) + (
            [f"remove stop-gradient after {', '.join(remove)}"] if remove else [])
        text = "; ".join(parts)
        text = text[0].upper() + text[1:]

        def action():
            if remove:
                stop_gradient.remove_stop_gradient_points(self.document, remove)
            if add:
                stop_gradient.add_stop_gradient_points(self.document, add)

        return self._points_edit(text, action, lambda: stop_gradient.points_after(
            self.document, add=add, remove=remove))

    def toggle_stop_point(self, address: str) -> bool:
        if address in self.document.stop_points:
            return self.set_stop_points(remove=[address])
        return self.set_stop_points(add=[address])

    def freeze_upstream(self, addresses: Iterable[str]) -> bool:
        from freezestudio.core.edits import stop_gradient

        addresses = list(addresses)

        def action():
            for address in addresses:
                stop_gradient.freeze_upstream(self.document, address)

        return self.run(f"Freeze upstream of {', '.join(addresses)}", action, slow=True)

    # --- LoRA adapters ----------------------------------------------------------------
    def add_adapters(self, nodes: Iterable, rank: int, alpha: float | None = None,
                     text: str | None = None) -> bool:
        """Adds adapters of `rank` where the nodes reach a layer that takes one."""
        from freezestudio.core.edits import lora

        nodes = list(nodes)
        text = text or f"Add LoRA adapters (rank {rank}) to {_describe(nodes)}"
        return self.run(text, lambda: lora.add_adapters(self.document, nodes, rank, alpha))

    def remove_adapters(self, nodes: Iterable, merge: bool) -> bool:
        """Removes the adapters the nodes reach, merged into their kernels or discarded."""
        from freezestudio.core.edits import lora

        nodes = list(nodes)
        text = f"{'Merge' if merge else 'Discard'} LoRA adapters of {_describe(nodes)}"
        return self.run(text, lambda: lora.remove_adapters(self.document, nodes, merge))

    def set_adapter_rank(self, node, rank: int) -> bool:
        """The Adapter column's edit: 0 discards the node's adapters, another rank
        replaces them (discarded first) or adds them."""
        from freezestudio.core.edits import lora

        def action():
            lora.remove_adapters(self.document, [node], merge=False)
            if rank:
                lora.add_adapters(self.document, [node], rank)

        what = f"rank {rank}" if rank else "none"
        return self.run(f"Set LoRA adapter of {_describe([node])} to {what}", action)

    def add_attention_adapters(self, node: LayerNode, rank: int = 8) -> bool:
        """Adapters on every attention query and value projection inside `node`."""
        from freezestudio.core.edits import lora

        kernels = lora.attention_kernels(node)
        if not kernels:
            self.failed.emit(f"{node.path or node.name} holds no attention layer with "
                             "query/value projections")
            return False
        return self.add_adapters(kernels, rank, text=f"Add LoRA adapters (rank {rank}) to "
                                 f"the attention projections of {_describe([node])}")

    # --- fine-tuning strategy -----------------------------------------------------------
    def set_lr_multiplier(self, nodes: Iterable, value: float) -> bool:
        """Gives these layers/containers/weights the learning-rate multiplier `value`
        (a rule per node, after the others: it wins over a container's)."""
        from freezestudio.core.edits.plans import glob_escape

        nodes = list(nodes)
        if not nodes:
            return False
        if not value > 0:
            self.failed.emit(f"a learning-rate multiplier must be > 0, got {value:g}")
            return False
        rules = [(glob_escape(n.id if isinstance(n, WeightNode) else n.path), float(value))
                 for n in nodes]

        def action():
            strategy = self.document.fine_tuning.with_multipliers(rules)
            self.document.set_fine_tuning(strategy)

        return self.run(f"Set LR x{value:g} on {_describe(nodes)}", action)

    def set_schedule(self, stages: Iterable, text: str = "Edit schedule") -> bool:
        """Makes `stages` (core `Stage`s) the schedule; their globs must match."""
        from freezestudio.core.edits.plans import matching_nodes

        stages = list(stages)

        def action():
            for stage in stages:
                for pattern, _ in stage.trainable + stage.lr_multipliers:
                    matching_nodes(self.document, pattern)
            self.document.set_fine_tuning(self.document.fine_tuning.with_schedule(stages))

        return self.run(text, action)

    # --- plans ------------------------------------------------------------------------
    def apply_plan(self, plan, name: str) -> bool:
        from freezestudio.core.edits import stop_gradient
        from freezestudio.core.edits.plans import apply_plan

        points = (lambda: stop_gradient.points_after(self.document, add=plan.stop_gradient_after)
                  ) if plan.stop_gradient_after else (lambda: None)
        return self._points_edit(f"Apply plan {name}", lambda: apply_plan(self.document, plan),
                                 points)


def _editable(node) -> bool:
    if isinstance(node, WeightNode):
        return node.freezable
    return True
