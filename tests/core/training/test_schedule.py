"""Gradual unfreezing in one run, against TensorFlow: stage boundaries bit for bit, the
optimizer state of variables already training kept (a hand-written loop), the BatchNorm
policy, feature caching re-decided per stage, the stages reported."""

import json

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.files.loading import open_document
from freezestudio.core.training.config import COMPLETED, Reporter, TrainingConfig
from freezestudio.core.training.trainer import Trainer

LR = 0.01


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


class EpochValues(Reporter):
    """The weights after every epoch, and the stage reports."""

    def __init__(self, document):
        self.document, self.after, self.stages = document, [], []

    def stage_started(self, report):
        self.stages.append(report)

    def epoch_finished(self, report):
        self.after.append({w.id: w.variable.numpy().copy() for w in self.document.weights})


def _run(path, plan: dict, epochs=4, optimizer="adam", cache="off", batch_size=None):
    document = open_document(path)
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, **plan}))
    before = {w.id: w.variable.numpy().copy() for w in document.weights}
    x, y = _data()
    config = TrainingConfig(epochs=epochs, batch_size=batch_size or len(x), learning_rate=LR,
                            optimizer=optimizer, shuffle=False, metrics=False,
                            cache_features=cache, loss="mean_squared_error")
    recorder = EpochValues(document)
    result = Trainer(document, TrainingData("arrays", Split([x], [y])), config).run(recorder)
    assert result.status == COMPLETED, result.message
    return document, before, recorder, result


def _same(a, b) -> bool:
    return a.tobytes() == b.tobytes()


@pytest.fixture
def saved(tmp_path):
    def save(model):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        return path
    return save


def test_a_stage_unfreezes_at_its_epoch_and_keeps_the_optimizer_state(saved):
    path = saved(mb.mlp())
    plan = {"trainable": [{"match": "dense", "value": False},
                          {"match": "dense_1", "value": False}],
            "schedule": [{"from_epoch": 3, "trainable": [{"match": "dense_1", "value": True}],
                          "lr_multipliers": [{"match": "dense_2", "value": 0.5}]}]}
    document, before, recorder, result = _run(path, plan)
    after = recorder.after
    for epoch in (0, 1):  # before the stage: the layer it unfreezes is bit-identical
        assert _same(after[epoch]["dense_1:kernel"], before["dense_1:kernel"])
    assert not _same(after[2]["dense_1:kernel"], after[1]["dense_1:kernel"])
    for epoch in range(4):  # frozen in every stage
        assert _same(after[epoch]["dense:kernel"], before["dense:kernel"])
    assert result.integrity.ok and "dense_1:kernel" in result.received
    # the document keeps its own (epoch-1) state and Keras flags after the run
    assert document.trainable_state(document.layer("dense_1")) is False
    assert not document.layer("dense_1").layer.trainable
    stage = result.info.stages[1]
    assert stage["epoch"] == 3 and stage["unfrozen"] == ["dense_1"]
    assert stage["changes"] == "unfreeze dense_1, LR x0.5 on dense_2, BatchNorm frozen"
    assert [r.epoch for r in recorder.stages] == [3]
    assert result.to_dict()["stages"][1]["epoch"] == 3

    # by hand: dense_2's Adam goes on (its moments and iteration count kept, its rate
    # halved); dense_1 gets its own fresh Adam from epoch 3
    model = keras.models.load_model(path)
    head, middle = model.get_layer("dense_2"), model.get_layer("dense_1")
    head_opt, middle_opt = keras.optimizers.Adam(LR), keras.optimizers.Adam(LR)
    x, y = _data()
    for step in range(4):
        if step == 2:
            head_opt.learning_rate = LR * 0.5
        trained = head.trainable_weights + (middle.trainable_weights if step >= 2 else [])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x, training=True)))
        grads = tape.gradient(loss, trained)
        head_opt.apply(grads[:2], head.trainable_weights)
        if step >= 2:
            middle_opt.apply(grads[2:], middle.trainable_weights)
    for layer in (head, middle):
        for weight in layer.weights:
            np.testing.assert_allclose(after[3][f"{layer.name}:{weight.name}"], weight.numpy(),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["frozen", "train"])
def test_batchnorm_policy_of_a_stage(saved, policy):
    path = saved(mb.bn_block_model())
    plan = {"trainable": [{"match": "block_1_*", "value": False}],
            "schedule": [{"from_epoch": 2, "batchnorm": policy,
                          "trainable": [{"match": "block_1_*", "value": True}]}]}
    _, before, recorder, result = _run(path, plan, epochs=3, batch_size=8)
    bn = [k for k in before if k.startswith("block_1_bn:")]
    assert len(bn) == 4  # gamma, beta, moving mean and variance
    assert all(_same(recorder.after[0][k], before[k]) for k in bn)
    assert not _same(recorder.after[2]["block_1_dense:kernel"], before["block_1_dense:kernel"])
    assert result.integrity.ok, result.integrity.frozen_changed
    moved = {k for k in bn if not _same(recorder.after[2][k], before[k])}
    if policy == "frozen":
        assert not moved
        assert result.info.stages[1]["batchnorm_kept_frozen"] == ["block_1_bn"]
    else:
        assert moved == set(bn)
        why = result.integrity.statistics_why
        assert why["block_1_bn:moving_mean"] == "unfrozen from epoch 2 with batchnorm 'train'"
        assert why["block_2_bn:moving_mean"] == "trainable from epoch 1"
        assert any("unfrozen from epoch 2" in line for line in result.integrity.summary_lines())


def test_the_feature_cache_is_used_while_the_prefix_is_frozen_and_dropped_after(saved):
    path = saved(mb.bn_block_model())
    plan = {"trainable": [{"match": "block_*", "value": False}],
            "schedule": [{"from_epoch": 2, "trainable": [{"match": "block_2_*", "value": True}]},
                         {"from_epoch": 3, "trainable": [{"match": "block_1_*", "value": True}]}]}
    _, _, cached, result = _run(path, plan, epochs=3, cache="auto", batch_size=8)
    stages = result.info.stages
    assert "caching the outputs of block_2_bn" in stages[0]["feature_cache"]
    assert "caching the outputs of block_1_bn" in stages[1]["feature_cache"]
    assert "no cacheable prefix" in stages[2]["feature_cache"]
    _, _, plain, _ = _run(path, plan, epochs=3, cache="off", batch_size=8)
    for key, value in plain.after[2].items():
        np.testing.assert_allclose(cached.after[2][key], value, rtol=1e-5, atol=1e-6)


def test_train_cli_reports_stages(saved, tmp_path, capsys):
    from freezestudio.cli import main

    path = saved(mb.mlp())
    x, y = _data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "freezestudio_plan": 1, "trainable": [{"match": "dense", "value": False}],
        "schedule": [{"from_epoch": 2, "trainable": [{"match": "dense", "value": True}]},
                     {"from_epoch": 9}]}))
    out = tmp_path / "out.keras"
    common = [str(path), "--data", str(tmp_path / "d.npz"), "--plan", str(plan), "--epochs",
              "2", "--validation-split", "0", "--loss", "mean_squared_error"]
    assert main(["train", *common, "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["epoch"] for s in summary["stages"]] == [1, 2]
    assert summary["stages"][1]["unfrozen"] == ["dense"]
    assert main(["train", *common, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stage from epoch 2: unfreeze dense" in text
    assert "stage from epoch 9 does not start within the run's 2 epoch(s)" in text
    # the saved model replays the schedule
    assert open_document(out).fine_tuning.schedule[0].from_epoch == 2
