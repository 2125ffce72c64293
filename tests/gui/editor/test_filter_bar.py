"""The filter box says what is closest when a filter matches nothing."""

from __future__ import annotations


def test_a_filter_matching_nothing_names_the_closest_paths(qtbot, opened):
    bar = opened.filter_bar
    bar.set_text("backbone/con_*")
    assert bar.matches == []
    assert bar.count.text() == "0 matches"
    assert bar.count.toolTip().startswith("No match. Closest: ")
    assert "backbone/conv" in bar.count.toolTip()
    bar.set_text("head_*")
    assert bar.matches and bar.count.toolTip() == ""
