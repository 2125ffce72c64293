"""The filter box: glob or regex over paths, names and classes; highlights and acts on matches."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from freezestudio.core.model.tree import WeightNode

GLOB, REGEX = "Glob", "Regex"


def matcher(text: str, mode: str):
    """A predicate over nodes, or None for an empty filter.

    Glob without wildcards is a case-insensitive substring search; otherwise the pattern
    must match a whole path/weight id, name or class name (case-insensitively). Regex
    searches anywhere in them.

    Raises:
        re.error: invalid regex.
    """
    text = text.strip()
    if not text:
        return None
    if mode == REGEX:
        pattern = re.compile(text, re.IGNORECASE)
        return lambda node: any(pattern.search(s) for s in _keys(node))
    needle = text.lower()
    if not any(c in needle for c in "*?["):
        return lambda node: any(needle in s.lower() for s in _keys(node))
    return lambda node: any(fnmatchcase(s.lower(), needle) for s in _keys(node))


def _keys(node) -> tuple[str, ...]:
    if isinstance(node, WeightNode):
        return (node.id, node.key)
    return (node.path, node.name, node.class_name)


class FilterBar(QWidget):
    """Filter input with match count and actions on the matches.

    Signals:
        changed(list): the matching nodes (empty list: no filter or no match).
        select_requested / freeze_requested / unfreeze_requested: act on the matches.
        only_matches_changed(bool).
    """

    changed = Signal(list)
    select_requested = Signal()
    freeze_requested = Signal()
    unfreeze_requested = Signal()
    only_matches_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._nodes_source = lambda: []
        self.matches: list = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("Filter: conv, block_1?_*, *:bias, BatchNormalization …")
        self.edit.setClearButtonEnabled(True)
        self.edit.setToolTip("Glob (* ? [..]) over layer paths, names, classes and weight ids; "
                             "plain text finds substrings. Matches are highlighted.")
        self.mode = QComboBox()
        self.mode.addItems([GLOB, REGEX])
        self.count = QLabel()
        self.count.setMinimumWidth(80)
        self.only = QCheckBox("Only matches")
        self.select = QPushButton("Select")
        self.freeze = QPushButton("Freeze")
        self.unfreeze = QPushButton("Unfreeze")
        for button, tip in ((self.select, "Select the matching rows"),
                            (self.freeze, "Freeze every match"),
                            (self.unfreeze, "Unfreeze every match")):
            button.setToolTip(tip)
            button.setEnabled(False)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.mode)
        layout.addWidget(self.count)
        layout.addWidget(self.only)
        layout.addWidget(self.select)
        layout.addWidget(self.freeze)
        layout.addWidget(self.unfreeze)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self.apply)
        self.edit.textChanged.connect(self._timer.start)
        self.mode.currentIndexChanged.connect(self.apply)
        self.select.clicked.connect(self.select_requested)
        self.freeze.clicked.connect(self.freeze_requested)
        self.unfreeze.clicked.connect(self.unfreeze_requested)
        self.only.toggled.connect(self.only_matches_changed)

    def set_nodes_source(self, source) -> None:
        """`source()` returns every node to match against."""
        self._nodes_source = source

    def set_text(self, text: str, mode: str = GLOB) -> None:
        self.mode.setCurrentText(mode)
        self.edit.setText(text)
        self.apply()

    def active(self) -> bool:
        return bool(self.edit.text().strip())

    def apply(self) -> None:
        self._timer.stop()
        try:
            predicate = matcher(self.edit.text(), self.mode.currentText())
        except re.error as exc:
            self.edit.setStyleSheet("QLineEdit { border: 1px solid #d03030; }")
            self.count.setText("invalid")
            self.count.setToolTip(str(exc))
            predicate, error = None, True
        else:
            self.edit.setStyleSheet("")
            self.count.setToolTip("")
            error = False
        self.matches = [n for n in self._nodes_source() if predicate(n)] if predicate else []
        if not error:
            self.count.setText(f"{len(self.matches)} match{'es' * (len(self.matches) != 1)}"
                               if predicate else "")
            self.count.setToolTip(self._closest_hint() if predicate and not self.matches
                                  else "")
        for button in (self.select, self.freeze, self.unfreeze):
            button.setEnabled(bool(self.matches))
        self.changed.emit(self.matches)

    def _closest_hint(self) -> str:
        """For a filter that matches nothing: the closest layer paths and weight ids."""
        from freezestudio.core.edits.plans import closest_addresses

        addresses = [_keys(node)[0] for node in self._nodes_source() if _keys(node)[0]]
        close = closest_addresses(self.edit.text().strip(), addresses)
        return "No match. Closest: " + ", ".join(close) if close else "No match"

    def focus(self) -> None:
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()
