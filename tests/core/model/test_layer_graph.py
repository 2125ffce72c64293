"""Graph reading for the details pane: calls and neighbours ignore stop-gradient layers."""

import model_builders as mb

from freezestudio.core.edits import stop_gradient
from freezestudio.core.files.loading import open_document
from freezestudio.core.model import layer_graph


def test_shared_layer_calls_and_neighbours_ignore_points(tmp_path):
    model = mb.shared_two_outputs()
    path = tmp_path / "shared.keras"
    model.save(path)
    document = open_document(path)
    shared = next(p for p, pts in stop_gradient.point_table(document).items() if len(pts) > 1)
    node = document.layer(shared)
    before = layer_graph.neighbours(document, node)
    assert len(layer_graph.layer_calls(document, node)) == 2
    stop_gradient.add_stop_gradient_points(document, [shared])
    assert layer_graph.neighbours(document, node) == before
    assert not any("stop_gradient" in name for names in before for name in names)
    keras_layer = model.get_layer(shared)
    expected_in = {t._keras_history.operation.name
                   for n in keras_layer._inbound_nodes for t in n.input_tensors}
    assert set(before[0]) == expected_in
    assert len(layer_graph.layer_calls(document, node)) == 2
