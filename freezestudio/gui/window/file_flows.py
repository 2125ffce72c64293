"""Opening, saving and plans: the main window's file workflows (a mixin of `MainWindow`).

Loading and saving run as tasks on the window's background thread (`threads.TaskHost`,
`window.runner`); their handlers run on the GUI thread. A `.keras` file is also read from
its config on a second thread (`window.reader`, no TensorFlow: docs/architecture.md,
"Config-first opening"), so its tree shows at once, behind a "Loading weights…" banner
while the model loads: edits, training and export wait for the model (`model_ready`).
Until that tree has painted, the window's import gate (`background.import_gate`) is
closed: the TensorFlow import stops between two modules and the load has not started,
so the read and the paint do not share the interpreter with them.
Questions (trust, custom classes,
unsaved changes) and errors go through `dialogs`, so tests can answer them.

The bundled demos (`freezestudio.resources.DEMO_DIR`) open as read-only templates: Save
asks where to put a copy (suggesting the user's documents folder, with the demo's name),
nothing is ever written into the package, and the package's folder is never remembered as
the last folder (so the Open, Save and Export dialogs do not start there).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from freezestudio.core.errors import MissingCustomObjectError, UntrustedCodeError, UserError
from freezestudio.core.model.source import SourceFormat
from freezestudio.gui.common import dialogs
from freezestudio.gui.common.dialogs import user_folder
from freezestudio.resources import is_bundled_demo

DEMO_READ_ONLY = ("The bundled demos are read-only templates: save your copy outside "
                  "FreezeStudio's installation")

LOADING_MESSAGE = "The weights are still loading: edits and saving wait for them"
LOADING_BANNER = ("Loading weights… The tree is read from the file; editing, weight values, "
                  "training and export start when the model has loaded.")

_SAVED_IN_PLACE = (SourceFormat.KERAS, SourceFormat.H5, SourceFormat.SAVEDMODEL)
"""Formats a document is saved back to as it is (others are saved as .keras)."""


def _load(path: str, trust: bool, modules: tuple, gate, job):
    """Opens the document and precomputes what the tree shows first (in the worker),
    once `gate` is open (the config's tree has painted)."""
    from freezestudio.core.files.loading import open_document
    from freezestudio.gui.editor.node_info import prepare

    gate.wait(cancelled=lambda: job.cancelled)
    if job.cancelled:  # abandoned while it waited: another file, cancel or close
        return None
    return prepare(open_document(path, trust=trust, custom_object_modules=modules))


def _describe(path: str, trust: bool, job):
    """The document read from the file's config, its tree prepared (in the reader's
    worker), or None where only the full load can tell the model."""
    from freezestudio.core.files.loading import open_described_document
    from freezestudio.gui.editor.node_info import prepare

    document = open_described_document(path, trust=trust)
    return prepare(document) if document is not None else None


def import_reader_modules(job) -> None:
    """Imports what the config-first read and the tree need (h5py, the reader), at
    start-up on the window's worker before its TensorFlow import: a module one thread is
    importing makes another wait for the whole import, and the import gate must never
    hold a module the reader needs."""
    import h5py  # noqa: F401

    import freezestudio.core.edits.fine_tuning  # noqa: F401 - the tree's LR column
    import freezestudio.core.edits.lora  # noqa: F401 - restoring the file's state
    import freezestudio.core.edits.stop_gradient  # noqa: F401 - the document's points
    import freezestudio.core.files.config_reader  # noqa: F401
    import freezestudio.core.files.loading  # noqa: F401
    import freezestudio.gui.editor.node_info  # noqa: F401


def _save(document, target: str, portable: bool, merge_lora: bool, job):
    from freezestudio.core.files.saving import save_document

    return save_document(document, target, portable=portable, copy=merge_lora,
                         merge_lora=merge_lora)


def beside(source: Path, name: str) -> Path:
    """`name` in the folder of `source`, or in `user_folder()` when that is a demo's."""
    return (user_folder() if is_bundled_demo(source) else source.parent) / name


def display_name(path) -> str:
    path = Path(path)
    return path.name or str(path)


class FileFlowsMixin:
    """Open/save/plan workflows; expects the attributes `MainWindow` sets up."""

    # --- open -----------------------------------------------------------------------------
    @property
    def loaded_document(self):
        """The document once its model has loaded (None before): what training and
        export work on."""
        return self.document if self.model_ready else None

    def _allows_edits(self) -> bool:
        """The editor's guard: edits wait for the model."""
        if not self.model_ready:
            self.statusBar().showMessage(LOADING_MESSAGE, 5000)
        return self.model_ready

    def choose_and_open(self) -> None:
        path = dialogs.get_open_path(self, self.settings.last_directory())
        if path:
            self.open_path(path)

    def choose_folder_and_open(self) -> None:
        path = dialogs.get_open_directory(self, self.settings.last_directory())
        if path:
            self.open_path(path)

    def open_path(self, path, trust: bool = False, modules: tuple = ()) -> None:
        """Opens a model in the background (asks about unsaved changes first)."""
        path = str(path)
        if not self.confirm_discard(then=partial(self.open_path, path, trust, modules)):
            return
        for job in (self._load_job, self._describe_job):
            if job is not None:
                job.abandon()
        if not is_bundled_demo(path):
            self.settings.set_last_directory(path)
        if not modules:
            self.import_gate.close()
        self._load_job = self.runner.submit(
            partial(_load, path, trust, tuple(modules), self.import_gate),
            on_done=partial(self._loaded, path),
            on_error=partial(self._load_failed, path, trust, tuple(modules)))
        self._describe_job = None if modules else self.reader.submit(
            partial(_describe, path, trust), on_error=self._describe_failed,
            on_done=partial(self._described, path, self._load_job))
        self._page_before_busy = self.pages.currentWidget() if \
            self.pages.currentWidget() is not self.busy else self._page_before_busy
        self.busy.start(f"Opening {display_name(path)}…", self._tf_detail())
        self.pages.setCurrentWidget(self.busy)
        self.statusBar().showMessage(f"Opening {display_name(path)}…")

    def cancel_loading(self) -> None:
        for job in (self._load_job, self._describe_job):
            if job is not None:
                job.abandon()
        self._load_job = self._describe_job = None
        self.import_gate.open()
        if not self.model_ready:
            self.set_document(None)
            self._page_before_busy = None
        self.pages.setCurrentWidget(self._page_before_busy or self.start_page)
        self.statusBar().showMessage("Opening cancelled", 5000)
        self.load_finished.emit(False)

    def _described(self, path: str, load_job, document) -> None:
        """The tree from the config: shown until the full load (`load_job`) ends; the
        import gate opens once it has painted."""
        self._describe_job = None
        if document is None or load_job is not self._load_job:
            self.import_gate.open()
            return
        self.set_document(document, model_ready=False)
        self.statusBar().showMessage(f"Loading the weights of {display_name(path)}…")
        self.tree_painted.then(partial(self._tree_painted, load_job))

    def _tree_painted(self, load_job) -> None:
        if load_job is self._load_job:  # else that load ended or another open took over
            self.import_gate.open()

    def _describe_failed(self, job) -> None:
        """A config read that failed: the full load reports what is wrong with the file."""
        self._describe_job = None
        self.import_gate.open()

    def _loaded(self, path: str, document) -> None:
        self._load_job = None
        if self._describe_job is not None:
            self._describe_job.abandon()
            self._describe_job = None
        self.import_gate.open()
        self.settings.add_recent(path)
        self.refresh_recent()
        view = self.tree.view_state() if not self.model_ready else None
        self.set_document(document)
        if view is not None:
            self.tree.restore_view_state(view)
        self.statusBar().showMessage(f"Opened {display_name(path)}", 5000)
        self.load_finished.emit(True)

    def _load_failed(self, path: str, trust: bool, modules: tuple, job) -> None:
        self._load_job = None
        self.import_gate.open()
        if not self.model_ready:  # the config's tree of this file is not the model
            self.set_document(None)
            self._page_before_busy = None
        self.pages.setCurrentWidget(self._page_before_busy or self.start_page)
        self.statusBar().clearMessage()
        error = job.error
        if isinstance(error, UntrustedCodeError) and not trust:
            if dialogs.ask_trust(self, str(error)):
                self.open_path(path, True, modules)
                return
        elif isinstance(error, MissingCustomObjectError):
            module = dialogs.ask_custom_module(self, error.class_name, str(error))
            if module and module not in modules:
                self.open_path(path, trust, (*modules, module))
                return
        elif isinstance(error, UserError):
            dialogs.show_error(self, "Cannot open model", str(error))
            if not Path(path).exists():
                self.settings.remove_recent(str(Path(path).resolve()))
                self.refresh_recent()
        else:
            dialogs.show_error(self, "Cannot open model",
                               f"Unexpected failure while opening {path}: "
                               f"{type(error).__name__}: {error}", job.details)
        self.load_finished.emit(False)

    # --- unsaved changes -------------------------------------------------------------------
    def is_modified(self) -> bool:
        return self.document is not None and not self.editor.stack.isClean()

    def confirm_discard(self, then=None) -> bool:
        """True if the current document may be replaced now; may start a save then `then()`."""
        if not all(task.may_replace_document() for task in self.background_tasks):
            return False
        if not self.is_modified():
            return True
        answer = dialogs.ask_unsaved(self, display_name(self.document.source_path))
        if answer == dialogs.DISCARD:
            self.editor.stack.setClean()
            return True
        if answer == dialogs.SAVE:
            self.save(then=then)
        return False

    def close_model(self) -> None:
        if self.confirm_discard(then=self.close_model):
            self.set_document(None)

    # --- save ---------------------------------------------------------------------------------
    def save(self, then=None) -> bool:
        document = self.document
        if document is None:
            return False
        if document.source_format in _SAVED_IN_PLACE and \
                not is_bundled_demo(document.source_path):
            self.save_to(str(document.source_path), then)
            return True
        return self.save_as(then)

    def save_as(self, then=None) -> bool:
        """Asks for a target and saves there. A document with LoRA adapters is asked
        whether to write them merged (a copy), unless the save is the one that lets
        `then` go on (unsaved changes before closing or replacing the document): a copy
        would leave the document unsaved, so the adapters are kept."""
        document = self.document
        if document is None:
            return False
        generic = document.source_format == SourceFormat.SAVEDMODEL
        source = Path(document.source_path)
        name = source.name if document.source_format in _SAVED_IN_PLACE \
            else source.name.rstrip("/") + ".keras"
        path = dialogs.get_save_path(self, str(beside(source, name)), directory_only=generic)
        if not path:
            return False
        merge = False
        adapters = document.adapters() if self.model_ready and not generic and then is None \
            else []
        if adapters:
            merge = dialogs.ask_merge_lora(self, len(adapters))
            if merge is None:
                return False
        return self.save_to(path, then, merge_lora=merge)

    def save_portable_copy(self) -> bool:
        """Saves a copy without the stop-gradient layers (plain Keras loads it); the
        document keeps its points and its own file."""
        document = self.document
        if document is None or document.source_format == "savedmodel":
            return False
        source = Path(document.source_path)
        suggested = str(beside(source, f"{source.stem}_portable.keras"))
        path = dialogs.get_save_path(self, suggested, directory_only=False)
        if not path:
            return False
        return self.save_to(path, portable=True)

    def save_to(self, target: str, then=None, portable: bool = False,
                merge_lora: bool = False) -> bool:
        """Saves in the background; the editor is read-only until it is done.

        A portable or `merge_lora` save (LoRA adapters merged into their kernels, the
        core's `save_document(merge_lora=True)`, as `--merge-lora`) writes a copy: the
        document keeps its file, its adapters and its modified flag.

        Returns:
            False if refused: a run is going, or `target` is inside the bundled demos.
        """
        if is_bundled_demo(target):
            dialogs.show_error(self, "Cannot save into the demos", f"{DEMO_READ_ONLY}.")
            return False
        if not self.model_ready:
            self.statusBar().showMessage(LOADING_MESSAGE, 5000)
            return False
        if not all(task.may_save() for task in self.background_tasks):
            return False
        self._saving = True
        self.set_editing_enabled(False)
        self.statusBar().showMessage(f"Saving {target}…")
        self.runner.submit(partial(_save, self.document, target, portable, merge_lora),
                           on_done=partial(self._saved, then, portable or merge_lora),
                           on_error=self._save_failed)
        return True

    def _saved(self, then, copy: bool, report) -> None:
        self._saving = False
        self.set_editing_enabled(True)
        if not copy:
            self.editor.stack.setClean()
        self.settings.add_recent(report.path)
        self.refresh_recent()
        self.update_title()
        message = f"Saved {report.path} ({report.format})"
        if report.notes:
            message += " — note: " + "; ".join(report.notes)
        self.statusBar().showMessage(message, 15000)
        self.saved.emit(str(report.path))
        if then is not None:
            then()

    def _save_failed(self, job) -> None:
        self._saving = False
        self.set_editing_enabled(True)
        self.statusBar().clearMessage()
        message = str(job.error) if isinstance(job.error, UserError) else \
            f"Unexpected failure while saving: {type(job.error).__name__}: {job.error}"
        dialogs.show_error(self, "Cannot save model", message, job.details)

    # --- plans ----------------------------------------------------------------------------------
    def save_plan_file(self) -> None:
        from freezestudio.core.edits.plans import derive_plan, save_plan

        if self.document is None:
            return
        source = Path(self.document.source_path)
        suggested = str(beside(source, f"{source.stem}_plan.json"))
        path = dialogs.get_plan_path(self, suggested, save=True)
        if not path:
            return
        if is_bundled_demo(path):
            dialogs.show_error(self, "Cannot save into the demos", f"{DEMO_READ_ONLY}.")
            return
        try:
            save_plan(derive_plan(self.document), path)
        except OSError as exc:
            dialogs.show_error(self, "Cannot save plan", f"{path}: {exc.strerror or exc}")
            return
        self.statusBar().showMessage(f"Plan saved to {path}", 8000)

    def apply_plan_file(self, path: str | None = None) -> bool:
        from freezestudio.core.edits.plans import load_plan

        if self.document is None:
            return False
        path = path or dialogs.get_plan_path(self, self.settings.last_directory(), save=False)
        if not path:
            return False
        try:
            plan = load_plan(path)
        except UserError as exc:
            dialogs.show_error(self, "Cannot apply plan", str(exc))
            return False
        return self.editor.apply_plan(plan, display_name(path))

    # --- recent files ---------------------------------------------------------------------
    def refresh_recent(self) -> None:
        recent = self.settings.recent_files()
        self.actions.set_recent(recent)
        self.start_page.set_recent(recent)

    def clear_recent(self) -> None:
        self.settings.clear_recent()
        self.refresh_recent()
