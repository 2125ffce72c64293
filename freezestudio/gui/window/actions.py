"""The main window's actions, menus, toolbar and the tree's context menu."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QMenu, QStyle, QToolBar

from freezestudio.core.model.tree import LayerNode, WeightNode
from freezestudio.gui.common import style
from freezestudio.gui.window import help_menu


def _std_icon(window, name: str, theme: str) -> QIcon:
    fallback = window.style().standardIcon(getattr(QStyle.StandardPixmap, name))
    return QIcon.fromTheme(theme, fallback)


class Actions:
    """Creates and holds every QAction of `window` (a `MainWindow`) and wires them to it."""

    def __init__(self, window):
        self.window = window
        w = window
        stack = w.editor.stack
        self.open = self._action("&Open…", w.choose_and_open, QKeySequence.StandardKey.Open,
                                 _std_icon(w, "SP_DialogOpenButton", "document-open"),
                                 tip="Open a .keras/.h5 model (Ctrl+O)")
        self.open_folder = self._action("Open SavedModel &Folder…", w.choose_folder_and_open)
        self.save = self._action("&Save", w.save, QKeySequence.StandardKey.Save,
                                 _std_icon(w, "SP_DialogSaveButton", "document-save"),
                                 tip="Save the model with its freeze state (Ctrl+S)")
        self.save_as = self._action("Save &As…", w.save_as, QKeySequence("Ctrl+Shift+S"))
        self.save_portable = self._action(
            "Save Portable &Copy…", w.save_portable_copy,
            tip="Save a copy without the stop-gradient layers, loadable by plain Keras")
        self.save_plan = self._action("Save &Plan…", w.save_plan_file,
                                      tip="Save the current edit as a replayable plan (JSON)")
        self.apply_plan = self._action("Appl&y Plan…", w.apply_plan_file,
                                       tip="Apply a plan file to this model")
        self.close_model = self._action("&Close Model", w.close_model,
                                        QKeySequence.StandardKey.Close)
        self.quit = self._action("&Quit", w.close, QKeySequence.StandardKey.Quit)
        self.undo = stack.createUndoAction(w, "&Undo")
        self.undo.setShortcut(QKeySequence.StandardKey.Undo)
        self.undo.setIcon(QIcon.fromTheme("edit-undo", style.icon("undo")))
        self.undo.setIconText("Undo")  # the toolbar keeps a short label; menus say what
        self.redo = stack.createRedoAction(w, "&Redo")
        self.redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.redo.setIcon(QIcon.fromTheme("edit-redo", style.icon("redo")))
        self.redo.setIconText("Redo")
        self.freeze = self._action("&Freeze Selected", partial(w.set_selected_trainable, False),
                                   QKeySequence("F"), style.icon(style.FROZEN), tree=True,
                                   tip="Freeze the selected layers/weights (F)")
        self.unfreeze = self._action("&Unfreeze Selected", partial(w.set_selected_trainable, True),
                                     QKeySequence("U"), style.icon(style.TRAINABLE), tree=True,
                                     tip="Unfreeze the selected layers/weights (U)")
        self.toggle = self._action("&Toggle Freeze", w.toggle_selected, QKeySequence("Space"),
                                   tree=True)
        self.toggle.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)  # the view handles it
        self.freeze_up_to = self._action("Freeze Everything &Up To Here", w.freeze_up_to_current,
                                         tip="Freeze every layer before the selected one, and it")
        self.stop = self._action("Toggle &Stop-Gradient After", w.toggle_stop_selected,
                                 QKeySequence("G"), style.icon(style.STOP), tree=True,
                                 tip="Insert/remove a stop-gradient after the selected layer (G)")
        self.freeze_upstream = self._action("Freeze Everything Upstream of Its Stop-Gradient",
                                            w.freeze_upstream_selected)
        self.freeze.setIconText("Freeze")
        self.unfreeze.setIconText("Unfreeze")
        self.stop.setIconText("Stop Gradient")
        self.find = self._action("&Filter…", w.filter_bar.focus, QKeySequence.StandardKey.Find)
        self.expand_all = self._action("E&xpand All", w.tree.expandAll)
        self.collapse_all = self._action("Co&llapse All", w.collapse_tree)
        self.show_details = self._action("&Details Pane", None, checkable=True)
        self.show_details.setChecked(True)
        self.show_details.toggled.connect(w.details.setVisible)
        self.show_legend = self._action("&Legend", None, checkable=True)
        self.show_legend.setChecked(True)
        self.show_legend.toggled.connect(w.legend.setVisible)
        self.about = self._action("&About FreezeStudio", partial(help_menu.show_about, w))
        self.open_log_folder = self._action(
            "Open &Log Folder", help_menu.open_log_folder,
            tip="Show the folder of the log file where unexpected errors are written")
        self.class_freeze_menu = QMenu("Freeze All of &Class", w)
        self.class_unfreeze_menu = QMenu("Unfreeze All of C&lass", w)
        self.recent_menu = QMenu("Open &Recent", w)
        self.document_actions = [self.save, self.save_as, self.save_portable, self.save_plan,
                                 self.apply_plan, self.close_model, self.find, self.expand_all,
                                 self.collapse_all]
        self.selection_actions = [self.freeze, self.unfreeze, self.toggle, self.freeze_up_to,
                                  self.stop, self.freeze_upstream]
        self._menus()
        self._toolbar()

    def _action(self, text, slot, shortcut=None, icon=None, tip=None, tree=False,
                checkable=False) -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            action.setShortcut(shortcut)
        if icon is not None:
            action.setIcon(icon)
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.setCheckable(checkable)
        if slot is not None:
            action.triggered.connect(lambda _checked=False: slot())
        if tree:  # single-key shortcuts only while the tree has focus (typing stays typing)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.window.tree.addAction(action)
        return action

    def _menus(self) -> None:
        bar = self.window.menuBar()
        file = self.file_menu = self._menu(bar, "&File", "file_menu")
        for item in (self.open, self.open_folder, self.recent_menu, None, self.save,
                     self.save_as, self.save_portable, None, self.save_plan, self.apply_plan, None,
                     self.close_model, self.quit):
            self._add(file, item)
        edit = self.edit_menu = self._menu(bar, "&Edit", "edit_menu")
        for item in (self.undo, self.redo, None, self.freeze, self.unfreeze, self.toggle,
                     self.freeze_up_to, self.class_freeze_menu, self.class_unfreeze_menu, None,
                     self.stop, self.freeze_upstream, None, self.find):
            self._add(edit, item)
        view = self.view_menu = self._menu(bar, "&View", "view_menu")
        for item in (self.expand_all, self.collapse_all, None, self.show_details,
                     self.show_legend):
            self._add(view, item)
        self.help_menu = self._menu(bar, "&Help", "help_menu")
        self.help_menu.addAction(self.open_log_folder)
        self.help_menu.addSeparator()
        self.help_menu.addAction(self.about)

    @staticmethod
    def _menu(bar, title: str, name: str) -> QMenu:
        """A menu found by its object name (features insert theirs relative to it)."""
        menu = bar.addMenu(title)
        menu.setObjectName(name)
        return menu

    @staticmethod
    def _add(menu: QMenu, item) -> None:
        if item is None:
            menu.addSeparator()
        elif isinstance(item, QMenu):
            menu.addMenu(item)
        else:
            menu.addAction(item)

    def _toolbar(self) -> None:
        toolbar = QToolBar("Main", self.window)
        toolbar.setObjectName("main_toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for item in (self.open, self.save, None, self.undo, self.redo, None, self.freeze,
                     self.unfreeze, self.stop, None, self.apply_plan):
            if item is None:
                toolbar.addSeparator()
            else:
                toolbar.addAction(item)
        self.window.addToolBar(toolbar)
        self.toolbar = toolbar

    # --- dynamic menus ------------------------------------------------------------------
    def set_recent(self, paths: list[str]) -> None:
        menu = self.recent_menu
        menu.clear()
        for path in paths:
            action = menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(partial(self.window.open_path, path))
        if paths:
            menu.addSeparator()
            menu.addAction("Clear Menu").triggered.connect(self.window.clear_recent)
        menu.setEnabled(bool(paths))

    def set_classes(self, document) -> None:
        """Fills the by-class menus with the classes present (most frequent first)."""
        counts = Counter(n.class_name for n in document.root.walk() if n.parent is not None) \
            if document is not None else Counter()
        for menu, value in ((self.class_freeze_menu, False), (self.class_unfreeze_menu, True)):
            menu.clear()
            for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                action = menu.addAction(f"{name} ({count})")
                action.triggered.connect(partial(self.window.editor.set_class_trainable, name,
                                                 value))
            menu.setEnabled(bool(counts))

    def update_enabled(self, has_document: bool, nodes: list, points: list, active: list) -> None:
        for action in self.document_actions:
            action.setEnabled(has_document)
        for action in (self.freeze, self.unfreeze, self.toggle):
            action.setEnabled(bool(nodes))
        layer = len(nodes) == 1 and isinstance(nodes[0], LayerNode)
        self.freeze_up_to.setEnabled(layer and nodes[0].parent is not None)
        self.stop.setEnabled(bool(points))
        self.freeze_upstream.setEnabled(bool(active))
        self.class_freeze_menu.setEnabled(has_document)
        self.class_unfreeze_menu.setEnabled(has_document)

    # --- context menu -------------------------------------------------------------------
    def context_menu(self, node, points: list[str], stops: set[str]) -> QMenu:
        w = self.window
        menu = QMenu(w)
        for action in (self.freeze, self.unfreeze, self.toggle):
            menu.addAction(action)
        if isinstance(node, LayerNode) and node.parent is not None:
            menu.addAction(self.freeze_up_to)
            menu.addAction(f"Freeze All {node.class_name}").triggered.connect(
                partial(w.editor.set_class_trainable, node.class_name, False))
            menu.addAction(f"Unfreeze All {node.class_name}").triggered.connect(
                partial(w.editor.set_class_trainable, node.class_name, True))
        if points:
            menu.addSeparator()
            if len(points) == 1:
                action = menu.addAction(style.icon(style.STOP), "Stop Gradient After This Layer")
                action.setCheckable(True)
                action.setChecked(points[0] in stops)
                action.triggered.connect(partial(w.editor.toggle_stop_point, points[0]))
            else:
                sub = menu.addMenu(style.icon(style.STOP), "Stop Gradient After")
                for point in points:
                    action = sub.addAction(point)
                    action.setCheckable(True)
                    action.setChecked(point in stops)
                    action.triggered.connect(partial(w.editor.toggle_stop_point, point))
            if any(p in stops for p in points):
                menu.addAction(self.freeze_upstream)
        self._lora_actions(menu, node)
        if not isinstance(node, WeightNode):
            menu.addSeparator()
            menu.addAction("Expand Subtree").triggered.connect(w.expand_current)
        menu.addAction("Copy Address").triggered.connect(w.copy_current_address)
        return menu

    def _lora_actions(self, menu: QMenu, node) -> None:
        """LoRA entries: adapters on a container's attention projections; merge or
        discard the adapters at or below the node."""
        from freezestudio.core.edits import lora

        editor = self.window.editor
        document = editor.document
        if isinstance(node, LayerNode) and lora.attention_kernels(node):
            menu.addSeparator()
            menu.addAction(ATTENTION_ACTION).triggered.connect(
                partial(editor.add_attention_adapters, node))
        if document is not None and lora.sites([node]) and any(
                id(a.layer) in {id(s.layer) for s in lora.sites([node])}
                for a in document.adapters()):
            menu.addAction("Merge LoRA Adapters Into Kernels").triggered.connect(
                partial(editor.remove_adapters, [node], True))
            menu.addAction("Discard LoRA Adapters").triggered.connect(
                partial(editor.remove_adapters, [node], False))


ATTENTION_ACTION = "Add LoRA adapters to attention projections (query, value)"
