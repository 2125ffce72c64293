"""An InputLock drops clicks and keys to the widget it locks (and its children), and
repaints nothing; unlocked, the same input acts."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QVBoxLayout, QWidget

from freezestudio.gui.common.input_lock import InputLock


def test_a_locked_widget_ignores_clicks_and_keys_and_acts_again_when_unlocked(qtbot):
    page = QWidget()
    box = QCheckBox("frozen", page)
    QVBoxLayout(page).addWidget(box)
    outside = QCheckBox("outside")
    qtbot.addWidget(page)
    qtbot.addWidget(outside)
    page.show()
    outside.show()
    lock = InputLock(page)
    lock.set_active(True)
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_Space)
    qtbot.mouseClick(outside, Qt.MouseButton.LeftButton)
    assert lock.active and page.isEnabled() and not box.isChecked() and outside.isChecked()
    lock.set_active(False)
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert box.isChecked()
