"""The first window: sized to the screen when nothing is stored, every tree column in view
(Freeze, Stop gradient and Gradient included) at 1366x768, the details pane kept narrow."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect

from freezestudio.gui.editor.tree_model import COLUMNS
from freezestudio.gui.editor.tree_view import squeeze_to_width
from freezestudio.gui.window.main_window import DETAILS_WIDTH, MainWindow
from freezestudio.gui.window.settings import FRAME, first_run_geometry
from freezestudio.resources import DEMO_DIR

SCREENS = [QRect(0, 0, 1366, 768), QRect(0, 0, 1366, 728), QRect(0, 0, 1280, 800),
           QRect(0, 0, 1600, 1000), QRect(0, 0, 1920, 1080), QRect(0, 0, 3840, 2160),
           QRect(1920, 0, 1366, 768), QRect(0, 0, 800, 600)]


@pytest.mark.parametrize("available", SCREENS, ids=lambda r: f"{r.width()}x{r.height()}"
                         f"+{r.x()}")
def test_first_run_geometry_fits_the_available_screen(available):
    geometry = first_run_geometry(available)
    assert available.contains(geometry.marginsAdded(FRAME)), "the frame fits too"
    if available.width() < 1500:
        assert geometry.width() == available.width() - FRAME.left() - FRAME.right()
    else:
        assert 1440 <= geometry.width() <= 1800
    if available.height() >= 900:
        assert geometry.height() >= 860
    centre = geometry.marginsAdded(FRAME).center() - available.center()
    assert abs(centre.x()) <= 1 and abs(centre.y()) <= 1


def test_first_run_geometry_of_the_reported_screen_is_not_tiny():
    """The window opened at about 915x495 on a 1600x1000 screen."""
    geometry = first_run_geometry(QRect(0, 0, 1600, 1000))
    assert geometry.width() >= 1440 and geometry.height() >= 860


def test_squeeze_narrows_only_the_squeezable_columns_to_fit():
    widths = {0: 400, 1: 240, 2: 260, 3: 60, 4: 70, 5: 83, 6: 98, 7: 120}
    squeeze_to_width(widths, {0: 140, 1: 60, 2: 110}, 1000)
    assert sum(widths.values()) <= 1000
    assert widths[0] >= 140 and widths[1] >= 60 and widths[2] >= 110
    assert (widths[3], widths[5], widths[6], widths[7]) == (60, 83, 98, 120)
    unchanged = {0: 200, 1: 100, 2: 100}
    squeeze_to_width(unchanged, {0: 140, 1: 60, 2: 60}, 1000)
    assert unchanged == {0: 200, 1: 100, 2: 100}


def test_a_window_without_settings_fits_the_offscreen_screen(window, settings):
    assert settings.value("window/geometry") is None
    available = window.screen().availableGeometry()
    assert window.geometry() == first_run_geometry(available)
    assert available.contains(window.frameGeometry())
    assert window.minimumSizeHint().width() <= window.width()


def _right_edges_inside(window) -> list[tuple[str, int, int]]:
    header, room = window.tree.header(), window.tree.viewport().width()
    return [(COLUMNS[c], header.sectionViewportPosition(c) + header.sectionSize(c), room)
            for c in range(len(COLUMNS))
            if header.sectionViewportPosition(c) + header.sectionSize(c) > room]


@pytest.mark.parametrize("demo", ["cnn_transfer.keras", "text_classifier.keras"])
def test_all_columns_are_in_view_at_1366x768(qtbot, window, open_and_wait, demo):
    window.setGeometry(first_run_geometry(QRect(0, 0, 1366, 768)))
    qtbot.waitUntil(lambda: window.width() == 1366 - FRAME.left() - FRAME.right())
    assert open_and_wait(qtbot, window, DEMO_DIR / demo)
    window.tree.expandAll()
    qtbot.wait(10)
    assert _right_edges_inside(window) == []
    assert window.tree.horizontalScrollBar().maximum() == 0, "no horizontal scrolling"
    assert window.splitter.sizes()[1] == DETAILS_WIDTH, "the details pane stays narrow"


def test_long_names_are_squeezed_not_scrolled(qtbot, window, open_and_wait):
    """A narrower window (1024 wide) still shows Freeze, Stop gradient and Gradient."""
    window.setGeometry(first_run_geometry(QRect(0, 0, 1024, 768)))
    qtbot.waitUntil(lambda: window.width() == 1024 - FRAME.left() - FRAME.right())
    assert open_and_wait(qtbot, window, DEMO_DIR / "cnn_transfer.keras")
    assert _right_edges_inside(window) == []


def test_stored_geometry_wins_over_the_first_run_one(qtbot, keras, settings, answers):
    first = MainWindow(settings=settings, import_tf=False)
    qtbot.addWidget(first)
    first.setGeometry(QRect(30, 60, 770, 600))  # inside the 800x800 offscreen screen
    first.close()
    second = MainWindow(settings=settings, import_tf=False)
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == (770, 600)
    second.close()
