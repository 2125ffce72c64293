"""The main window: start page, busy page and the editor (tree, filter, details, summary)."""

from __future__ import annotations

from enum import Enum
from functools import partial

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from freezestudio.core.model.tree import LayerNode
from freezestudio.gui.background.gc_guard import LongLivedObjects, freeze_survivors
from freezestudio.gui.background.import_gate import ImportGate
from freezestudio.gui.background.tasks import BackgroundTask
from freezestudio.gui.background.threads import TaskHost, import_tensorflow_task
from freezestudio.gui.common import dialogs, style
from freezestudio.gui.common.input_lock import InputLock
from freezestudio.gui.editor.details import DetailsPane
from freezestudio.gui.editor.filter_bar import FilterBar
from freezestudio.gui.editor.tree_model import LayerTreeModel
from freezestudio.gui.editor.tree_view import LayerTreeView
from freezestudio.gui.editor.undo import Editor
from freezestudio.gui.export.feature import install_export
from freezestudio.gui.training.session import install_training
from freezestudio.gui.window.actions import Actions
from freezestudio.gui.window.busy_page import BusyPage
from freezestudio.gui.window.file_drops import FileDropMixin
from freezestudio.gui.window.file_flows import (
    LOADING_BANNER,
    FileFlowsMixin,
    display_name,
    import_reader_modules,
)
from freezestudio.gui.window.first_paint import AfterPaint
from freezestudio.gui.window.settings import Settings, first_run_geometry
from freezestudio.gui.window.start_page import StartPage
from freezestudio.gui.window.summary import Legend, SummaryBar

APP_NAME = "FreezeStudio"
DETAILS_WIDTH = 300  # the details pane's on opening (its text wraps); the tree gets the rest
MIN_DETAILS_WIDTH = 200

class TensorFlowState(Enum):
    """Where the background import of TensorFlow is (the status bar says it)."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class MainWindow(FileFlowsMixin, FileDropMixin, QMainWindow):
    """The editor window.

    Args:
        settings: where recent files and geometry live (default: the user's QSettings).
        import_tf: start importing TensorFlow in the background right away.

    Signals:
        load_finished(bool): a load ended (True: a document is shown).
        saved(str): a save finished (the path).
        tf_ready(bool): the background TensorFlow import ended (True: it worked).
    """

    load_finished = Signal(bool)
    saved = Signal(str)
    tf_ready = Signal(bool)

    def __init__(self, settings: Settings | None = None, import_tf: bool = True):
        super().__init__()
        self.settings = settings or Settings()
        self.document = None
        self._load_job = self._describe_job = None
        self.model_ready = True  # False while the tree is the config's, the model loading
        self._page_before_busy = None
        self._saving = False
        self.background_tasks: list[BackgroundTask] = []  # training runs, exports
        self._hiding = False
        self._tf_state = TensorFlowState.LOADING
        self.setWindowIcon(style.app_icon())
        self.setAcceptDrops(True)
        self.runner = TaskHost("freezestudio-worker", self)  # imports, opens, saves
        self.reader = TaskHost("freezestudio-reader", self)  # config-first opening
        self.import_gate = ImportGate()  # closed while the config's tree is read, painted
        self.editor = Editor(self)
        self.editor.add_guard(self._allows_edits)
        self.long_lived = LongLivedObjects()
        self._build()
        self.actions = Actions(self)
        self._connect()
        if not self.settings.restore_window(self):
            self.setGeometry(first_run_geometry(self.screen().availableGeometry()))
        self.refresh_recent()
        self.set_document(None)
        self.runner.submit(import_reader_modules)
        if import_tf:
            self.runner.submit(partial(import_tensorflow_task, gate=self.import_gate),
                               on_done=self._tf_loaded, on_error=self._tf_failed)
        else:
            self._tf_state = TensorFlowState.READY
        self._update_tf_label()
        self.training = install_training(self)  # the Training dock, menu and toolbar button
        self.export = install_export(self)  # File > Export…

    # --- construction ---------------------------------------------------------------------
    def _build(self) -> None:
        self.start_page = StartPage()
        self.busy = BusyPage()
        self.model = LayerTreeModel(self.editor, self)
        self.tree = LayerTreeView()
        self.tree.setModel(self.model)
        self.tree_painted = AfterPaint(self.tree.viewport(), self)
        self.model.set_ranges_provider(self.tree.visible_ranges)
        self.model.row_notifier.pace_by(self.tree.viewport())
        self.filter_bar = FilterBar()
        self.filter_bar.edit.setAcceptDrops(False)
        self.filter_bar.set_nodes_source(lambda: list(self.model.iter_nodes()))
        self.legend = Legend()
        self.summary = SummaryBar()
        self.details = DetailsPane()
        left = QWidget()
        layout = QVBoxLayout(left)
        layout.setContentsMargins(4, 4, 0, 4)
        layout.addWidget(self.filter_bar)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.legend)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 1)  # a wider window widens the tree, not the details
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.details.setMinimumWidth(MIN_DETAILS_WIDTH)
        self.splitter.setSizes([4000, DETAILS_WIDTH])
        self.editor_page = QWidget()
        self.editor_lock = InputLock(self.editor_page)
        editor_layout = QVBoxLayout(self.editor_page)
        editor_layout.setContentsMargins(0, 0, 0, 0)
        editor_layout.setSpacing(2)
        self.loading_banner = QLabel(LOADING_BANNER)
        self.loading_banner.setWordWrap(True)
        self.loading_banner.setContentsMargins(8, 4, 8, 4)
        self.loading_banner.hide()
        editor_layout.addWidget(self.loading_banner)
        editor_layout.addWidget(self.splitter, 1)
        editor_layout.addWidget(self.summary)
        self.pages = QStackedWidget()
        for page in (self.start_page, self.busy, self.editor_page):
            self.pages.addWidget(page)
        self.setCentralWidget(self.pages)
        self.tf_label = QLabel()
        self.statusBar().addPermanentWidget(self.tf_label)

    def _connect(self) -> None:
        self.start_page.open_requested.connect(self.choose_and_open)
        self.start_page.open_folder_requested.connect(self.choose_folder_and_open)
        self.start_page.path_chosen.connect(self.open_path)
        self.busy.cancel_requested.connect(self.cancel_loading)
        self.editor.stack.indexChanged.connect(self._on_stack_changed)
        self.editor.stack.cleanChanged.connect(self.update_title)
        self.editor.stack.cleanChanged.connect(self.update_summary)
        self.editor.failed.connect(self._edit_failed)
        self.editor.rebuilding_changed.connect(self._on_rebuilding)
        self.model.values_changed.connect(self.details.forget_values)
        self.model.refreshed.connect(self._on_refreshed)
        self.tree.selectionModel().selectionChanged.connect(self._update_actions)
        self.tree.selectionModel().currentChanged.connect(self._on_current)
        self.tree.toggle_requested.connect(self.toggle_selected)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.stop_delegate.point_toggled.connect(self.editor.toggle_stop_point)
        self.details.freeze_upstream_requested.connect(self.editor.freeze_upstream)
        self.filter_bar.changed.connect(self._on_filter)
        self.filter_bar.select_requested.connect(
            lambda: self.tree.select_nodes(self.filter_bar.matches))
        self.filter_bar.freeze_requested.connect(
            lambda: self.editor.set_trainable(self.filter_bar.matches, False,
                                              f"Freeze {len(self.filter_bar.matches)} matches"))
        self.filter_bar.unfreeze_requested.connect(
            lambda: self.editor.set_trainable(self.filter_bar.matches, True,
                                              f"Unfreeze {len(self.filter_bar.matches)} matches"))
        self.filter_bar.only_matches_changed.connect(lambda _on: self._on_filter(
            self.filter_bar.matches))

    # --- document ----------------------------------------------------------------------------
    def set_document(self, document, model_ready: bool = True) -> None:
        """Shows `document` in the editor (None: the start page); `model_ready=False` for
        a document read from the file's config while its model loads (edits wait)."""
        self.document = document
        self.model_ready = model_ready or document is None
        self.loading_banner.setVisible(not self.model_ready)
        self._hiding = False
        self.editor.set_document(document)
        self.model.set_document(document)
        self.actions.set_classes(document)
        if document is not None:
            self.tree.expand(self.model.index(0, 0))
            self.tree.setCurrentIndex(self.model.index(0, 0))
            if self.filter_bar.active():
                self.filter_bar.apply()
            self.pages.setCurrentWidget(self.editor_page)
            self.tree.fit_columns()  # after the page shows: fits the viewport it has
            self.tree.setFocus()
        else:
            self.details.show_node(None, None)
            self.pages.setCurrentWidget(self.start_page)
        self.update_title()
        self._update_actions()
        self.long_lived.document_shown(document, self.model_ready)

    def update_title(self, *_args) -> None:
        if self.document is None:
            self.setWindowTitle(APP_NAME)
            self.setWindowModified(False)
            return
        self.setWindowTitle(f"{display_name(self.document.source_path)}[*] — {APP_NAME}")
        self.setWindowModified(not self.editor.stack.isClean())

    @Slot()
    def _on_stack_changed(self, *_args) -> None:
        self.model.flush()
        self.update_summary()  # a run pushed without a tree refresh still clears the marker

    def update_summary(self, *_args) -> None:
        """The summary bar: totals, and the recompile marker while edits are unsaved."""
        self.summary.update_from(self.document, edited=self.is_modified())

    @Slot()
    def _on_refreshed(self) -> None:
        self.update_summary()
        self._show_current()
        self._update_actions()

    @Slot(bool)
    def _on_rebuilding(self, rebuilding: bool) -> None:
        """The editor is locked while a stop-gradient edit rebuilds the graph."""
        self.set_editing_enabled(not rebuilding, greyed=False)
        if rebuilding:
            self.statusBar().showMessage("Rebuilding the graph for the stop-gradient points…")
        else:
            self.statusBar().clearMessage()

    @Slot(str)
    def _edit_failed(self, message: str) -> None:
        dialogs.show_error(self, "Edit not possible", message)

    # --- selection, details and actions ---------------------------------------------------
    def _on_current(self, *_args) -> None:
        self._show_current()

    def _show_current(self) -> None:
        node = self.tree.current_node()
        points = self.model.stop_points(node) if node is not None else []
        self.details.show_node(self.document, node, points)

    def _selected_points(self) -> tuple[list[str], list[str]]:
        points = [p for n in self.tree.selected_nodes() if isinstance(n, LayerNode)
                  for p in self.model.stop_points(n)]
        stops = set(self.document.stop_points) if self.document is not None else set()
        return points, [p for p in points if p in stops]

    def _update_actions(self, *_args) -> None:
        nodes = self.tree.selected_nodes() if self.document is not None else []
        points, active = self._selected_points() if nodes else ([], [])
        self.actions.update_enabled(self.loaded_document is not None and not self._saving, nodes,
                                    points, active)

    def set_editing_enabled(self, enabled: bool, greyed: bool = True) -> None:
        """Unlocks or locks the editor, menus and toolbar; `greyed=False` refuses the
        editor's input instead of greying it out (which repaints the whole tree twice)."""
        if greyed:
            self.editor_page.setEnabled(enabled)
        else:
            self.editor_lock.set_active(not enabled)
        self.menuBar().setEnabled(enabled)
        self.actions.toolbar.setEnabled(enabled)

    def _context_menu(self, pos) -> None:
        index = self.tree.indexAt(pos)
        node = self.model.node(index)
        if node is None:
            return
        if node not in self.tree.selected_nodes():
            self.tree.select_nodes([node])
        points = self.model.stop_points(node)
        menu = self.actions.context_menu(node, points, set(self.document.stop_points))
        menu.exec(self.tree.viewport().mapToGlobal(pos))

    # --- edits ------------------------------------------------------------------------------
    def set_selected_trainable(self, value: bool) -> None:
        self.editor.set_trainable(self.tree.selected_nodes(), value)

    def toggle_selected(self) -> None:
        self.editor.toggle(self.tree.selected_nodes())

    def freeze_up_to_current(self) -> None:
        node = self.tree.current_node()
        if isinstance(node, LayerNode) and node.parent is not None:
            self.editor.freeze_up_to(node)

    def toggle_stop_selected(self) -> None:
        points, active = self._selected_points()
        if not points:
            return
        if len(active) == len(points):
            self.editor.set_stop_points(remove=points)
        else:
            self.editor.set_stop_points(add=[p for p in points if p not in active])

    def freeze_upstream_selected(self) -> None:
        _points, active = self._selected_points()
        if active:
            self.editor.freeze_upstream(active)

    def _on_filter(self, matches: list) -> None:
        self.model.set_matches(matches)
        only = self.filter_bar.only.isChecked() and self.filter_bar.active()
        if only or self._hiding:
            self.tree.show_only({id(n) for n in matches} if only else None)
            self._hiding = only
        if matches and not only:
            self.tree.reveal(self.model.index_of(matches[0]))

    def collapse_tree(self) -> None:
        self.tree.collapseAll()
        self.tree.expand(self.model.index(0, 0))

    def expand_current(self) -> None:
        self.tree.expandRecursively(self.tree.currentIndex())

    def copy_current_address(self) -> None:
        node = self.tree.current_node()
        if node is not None:
            address = getattr(node, "id", None) if not isinstance(node, LayerNode) else node.path
            QGuiApplication.clipboard().setText(address or "")

    # --- TensorFlow in the background -----------------------------------------------------
    def _tf_loaded(self, seconds: float) -> None:
        self._tf_state = TensorFlowState.READY
        self._tf_seconds = seconds
        freeze_survivors()  # TensorFlow's and Keras's modules live as long as the process
        self._update_tf_label()
        self.busy.set_detail("")
        self.tf_ready.emit(True)

    def _tf_failed(self, job) -> None:
        self._tf_state = TensorFlowState.FAILED
        self._tf_error = f"{type(job.error).__name__}: {job.error}"
        self._update_tf_label()
        self.tf_ready.emit(False)

    def _tf_detail(self) -> str:
        loading = self._tf_state == TensorFlowState.LOADING
        return "TensorFlow is still loading in the background…" if loading else ""

    def _update_tf_label(self) -> None:
        if self._tf_state == TensorFlowState.LOADING:
            self.tf_label.setText("Loading TensorFlow in the background…")
        elif self._tf_state == TensorFlowState.READY:
            seconds = getattr(self, "_tf_seconds", None)
            self.tf_label.setText("TensorFlow ready" + (f" ({seconds:.1f} s)" if seconds else ""))
        else:
            self.tf_label.setText("TensorFlow failed to load")
            self.tf_label.setToolTip(getattr(self, "_tf_error", ""))

    # --- closing -------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        if self._saving:
            event.ignore()
            return
        if not self.confirm_discard(then=self.close):
            event.ignore()
            return
        self.settings.save_window(self)
        self.settings.sync()
        self.hide()  # gone at once; a running task may take a moment to reach a stop point
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stops the background work (abandons queued jobs, waits for a running one):
        every host is asked first, then each is waited for, so their stops overlap."""
        for task in self.background_tasks:
            task.request_shutdown()
        self.import_gate.open()
        for host in (self.runner, self.reader):
            host.shutdown(timeout_s=0)
        for task in self.background_tasks:
            task.shutdown()
        self.runner.shutdown()
        self.reader.shutdown()
        self.editor.dispose()
