"""Training with LoRA adapters: only the adapters (and the biases left trainable) move,
base kernels stay bit-identical, and the integrity report checks it in merged terms."""

import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.model.document import Document
from freezestudio.core.model.tree import build_keras_tree
from freezestudio.core.training.config import COMPLETED, TrainingConfig
from freezestudio.core.training.integrity import WeightSnapshot, check_integrity
from freezestudio.core.training.trainer import Trainer

LORA_MLP = {"freezestudio_plan": 1,
            "trainable": [{"match": "*", "value": False}, {"match": "*:bias", "value": True}],
            "lora": [{"match": "dense", "rank": 2}, {"match": "dense_1", "rank": 2,
                                                      "alpha": 4}]}


def mlp_document():
    model = mb.mlp()
    document = Document(build_keras_tree(model), model, "memory.keras", "keras")
    apply_plan(document, Plan.from_dict(LORA_MLP))
    return document


def classes(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def moved(document, before):
    return sorted(w.id for w in document.weights
                  if not np.array_equal(before[w.id], w.variable.numpy()))


def test_only_adapters_and_biases_move_and_the_report_names_the_adapters():
    document = mlp_document()
    before = {w.id: w.variable.numpy().copy() for w in document.weights}
    x, y = classes()
    result = Trainer(document, TrainingData("arrays", Split([x], [y])),
                     TrainingConfig(epochs=2, batch_size=8, cache_features="off")).run()
    assert result.status == COMPLETED
    assert moved(document, before) == sorted([
        "dense:bias", "dense:lora_kernel_a", "dense:lora_kernel_b", "dense_1:bias",
        "dense_1:lora_kernel_a", "dense_1:lora_kernel_b", "dense_2:bias"])
    report = result.integrity
    assert report.ok and not report.frozen_changed
    assert [(c.id, c.moved, c.rank_bound) for c in report.adapters] == [
        ("dense:kernel", True, 2), ("dense_1:kernel", True, 2)]
    assert all(1 <= c.change_rank <= 2 for c in report.adapters)
    assert "LoRA: 2 of 2 adapters moved (dense:kernel, dense_1:kernel)" in \
        "\n".join(report.summary_lines())


def test_a_base_kernel_that_moves_is_a_violation_in_merged_terms():
    document = mlp_document()
    before = WeightSnapshot.take(document)
    kernel = document.weight("dense:kernel").variable
    kernel.assign(kernel.numpy() + np.random.default_rng(1).normal(size=kernel.shape) * 1e-3)
    report = check_integrity(document, before, received=set())
    assert not report.ok and "dense:kernel" in report.frozen_changed
    check = report.adapters[0]
    assert (check.id, check.moved, check.rank_bound) == ("dense:kernel", False, 2)
    assert check.change_rank == 4  # full rank: not a product of rank-2 factors
    assert "VIOLATION: kernel changes not explained by their adapters: dense:kernel " \
        "(rank 4 > 2)" in "\n".join(report.summary_lines())


def test_bert_lora_run_moves_only_the_adapters_and_the_head():
    pytest.importorskip("keras_hub", reason="keras_hub (a test-only dependency) is absent")
    model = mb.tiny_bert_classifier()
    document = Document(build_keras_tree(model), model, "memory.keras", "keras")
    apply_plan(document, Plan.from_dict({
        "freezestudio_plan": 1, "trainable": [{"match": "bert", "value": False}],
        "lora": [{"match": "bert/*:*/query/kernel", "rank": 2},
                 {"match": "bert/*:*/value/kernel", "rank": 2}]}))
    before = {w.id: w.variable.numpy().copy() for w in document.weights}
    x = mb.bert_inputs(batch=8)
    y = np.arange(8) % 3
    result = Trainer(document, TrainingData("arrays", Split(
        [x["padding_mask"], x["segment_ids"], x["token_ids"]], [y])),
        TrainingConfig(epochs=2, batch_size=4, cache_features="off")).run()
    assert result.status == COMPLETED and result.integrity.ok
    adapters = {row.id for a in document.adapters() for row in (a.a, a.b)}
    assert len(adapters) == 8
    assert set(moved(document, before)) == adapters | {"head:kernel", "head:bias"}
    assert all(c.moved and c.change_rank <= c.rank_bound for c in result.integrity.adapters)
