"""The heatmap's "update size" view (|dw|/|w| per layer and step) after a real run."""

from __future__ import annotations

import numpy as np
import pytest
from gui_training import open_session, run

from freezestudio.gui.plots.grad_plots import GRADIENT, UPDATE


@pytest.fixture
def session(qtbot, window, open_and_wait):
    yield from open_session(qtbot, window, open_and_wait)


def test_the_heatmap_switches_to_update_sizes_after_a_short_run(qtbot, window, session):
    document = window.document
    window.editor.set_lr_multiplier([document.layer("head_dense")], 0.5)
    outcome = run(qtbot, session, epochs=1)
    assert outcome.result.status == "completed"
    plots = session.panel.plots
    heatmap = plots.heatmap
    gradient_empty = heatmap.empty_rows()
    plots.heatmap_view.setCurrentText(UPDATE)
    assert heatmap.view_name == UPDATE and "Update size" in heatmap.item.titleLabel.text
    image = heatmap.shown_image
    assert image is not None and image.shape[0] == plots.metrics.update_heatmap.image().shape[0]
    assert heatmap.empty_rows() == gradient_empty  # no update where no gradient
    receiving = [heatmap.layers.index(p) for p in plots.metrics.info.receiving_layers]
    assert receiving and np.isfinite(image[:, receiving]).all()
    assert (image[:, receiving] < 0).all()  # log10 of |dw|/|w|: a step moves < 100 %
    plots.heatmap_view.setCurrentText(GRADIENT)
    assert "Gradient norm" in heatmap.item.titleLabel.text
    assert not np.array_equal(heatmap.shown_image, image, equal_nan=True)
    # without the form's "Update sizes", the view says it was not recorded
    session.panel.form.update_sizes.setChecked(False)
    run(qtbot, session, epochs=1)
    plots.heatmap_view.setCurrentText(UPDATE)
    assert "not recorded" in heatmap.item.titleLabel.text and heatmap.shown_image is None
    # the tree's selection stays outlined: back on the gradients, its row is marked again
    plots.heatmap_view.setCurrentText(GRADIENT)
    plots.highlight([plots.metrics.info.receiving_layers[0]])
    assert len(heatmap.marks) == 1
    plots.heatmap_view.setCurrentText(UPDATE)
    assert heatmap.shown_image is None
    plots.heatmap_view.setCurrentText(GRADIENT)
    assert heatmap.shown_image is not None and len(heatmap.marks) == 1
