"""The per-layer update size |dw|/|w| (`TrainingConfig.update_sizes`) against the weights
themselves: copied before one real step and compared by hand after it."""

import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.files.loading import open_document
from freezestudio.core.training.config import COMPLETED, Reporter, TrainingConfig
from freezestudio.core.training.trainer import Trainer

LAYERS = ("dense", "dense_1", "dense_2")


class _Steps(Reporter):
    def __init__(self):
        self.reports = []

    def step_finished(self, report):
        self.reports.append(report)


@pytest.fixture
def saved_mlp(tmp_path):
    path = tmp_path / "mlp.keras"
    mb.mlp().save(path)
    return path


def _one_step(path, optimizer, multipliers=(), trainable=(), update_sizes=True):
    document = open_document(path)
    apply_plan(document, Plan.from_dict({
        "freezestudio_plan": 1, "trainable": [{"match": m, "value": v} for m, v in trainable],
        "lr_multipliers": [{"match": m, "value": v} for m, v in multipliers]}))
    before = {w.id: w.variable.numpy().copy() for w in document.weights}
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    config = TrainingConfig(epochs=1, batch_size=16, learning_rate=0.05, optimizer=optimizer,
                            momentum=0.0, shuffle=False, metrics=False, cache_features="off",
                            loss="mean_squared_error", update_sizes=update_sizes)
    steps = _Steps()
    result = Trainer(document, TrainingData("arrays", Split([x], [y])), config).run(steps)
    assert result.status == COMPLETED, result.message
    after = {w.id: w.variable.numpy() for w in document.weights}
    return before, after, steps.reports[0]


def _by_hand(before, after, layer):
    keys = [k for k in before if k.startswith(layer + ":")]
    moved = np.sqrt(sum(np.sum((after[k].astype(np.float64) - before[k]) ** 2) for k in keys))
    return moved / np.sqrt(sum(np.sum(before[k].astype(np.float64) ** 2) for k in keys))


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_update_sizes_equal_the_weights_moved_by_hand(saved_mlp, optimizer):
    """Two optimizer groups (x0.5 and x3) and a frozen layer, which reports None."""
    before, after, report = _one_step(saved_mlp, optimizer,
                                      multipliers=[("dense_1", 0.5), ("dense_2", 3.0)],
                                      trainable=[("dense", False)])
    assert report.update_sizes["dense"] is None
    for layer in ("dense_1", "dense_2"):
        expected = _by_hand(before, after, layer)
        assert expected > 0
        assert report.update_sizes[layer] == pytest.approx(expected, rel=1e-4)
    assert report.grad_norms["dense"] is None and report.grad_norms["dense_1"] > 0


def test_a_multiplier_of_half_halves_the_update_size_under_sgd(saved_mlp):
    _, _, one = _one_step(saved_mlp, "sgd")
    _, _, half = _one_step(saved_mlp, "sgd", multipliers=[("dense_1", 0.5)])
    assert half.update_sizes["dense_1"] == pytest.approx(one.update_sizes["dense_1"] / 2,
                                                         rel=1e-5)
    for layer in ("dense", "dense_2"):
        assert half.update_sizes[layer] == pytest.approx(one.update_sizes[layer], rel=1e-6)


def test_update_sizes_are_only_computed_when_asked(saved_mlp):
    _, _, report = _one_step(saved_mlp, "sgd", update_sizes=False)
    assert report.update_sizes is None
    assert set(report.grad_norms) == set(LAYERS)


def test_a_step_the_loss_scale_skips_reports_zero_update_sizes(saved_mlp):
    """mixed_float16 on CPU (forced), targets so large that the scaled float16 gradients
    overflow: the loss-scale optimizer skips the step, the weights stay, and the report says
    0 for every layer (finite: the run goes on)."""
    document = open_document(saved_mlp)
    before = {w.id: w.variable.numpy().copy() for w in document.weights}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = np.full((16, 2), 3e4, dtype="float32")
    config = TrainingConfig(epochs=1, batch_size=16, optimizer="sgd", shuffle=False,
                            metrics=False, cache_features="off", loss="mean_squared_error",
                            mixed_precision="mixed_float16", update_sizes=True)
    steps = _Steps()
    result = Trainer(document, TrainingData("arrays", Split([x], [y])), config).run(steps)
    assert result.status == COMPLETED, result.message
    [report] = steps.reports
    assert not all(np.isfinite(v) for v in report.grad_norms.values())  # overflowed
    assert report.update_sizes == dict.fromkeys(LAYERS, 0.0)
    for w in document.weights:
        np.testing.assert_array_equal(w.variable.numpy(), before[w.id])
