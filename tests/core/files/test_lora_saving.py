"""Saving LoRA adapters: a reopened model trains on with its adapters live; plain Keras
computes the same from the file; `merge_lora` writes a plain model."""

import json
import zipfile

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.data import Split, TrainingData
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document
from freezestudio.core.training.config import TrainingConfig
from freezestudio.core.training.trainer import Trainer

PLAN = {"freezestudio_plan": 1, "trainable": [{"match": "*", "value": False}],
        "lora": [{"match": "dense", "rank": 2, "alpha": 6}, {"match": "dense_1", "rank": 1}]}


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return TrainingData("arrays", Split([x], [(x[:, 0] > 0).astype("int32")]))


def train(document, epochs=2):
    return Trainer(document, data(), TrainingConfig(epochs=epochs, batch_size=8,
                                                    cache_features="off")).run()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    source = folder / "mlp.keras"
    mb.mlp().save(source)
    document = open_document(source)
    apply_plan(document, Plan.from_dict(PLAN))
    train(document)  # B has moved: the adapters are live
    return folder, document


def values(document):
    return {w.id: w.variable.numpy().copy() for w in document.weights}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_reopened_adapters_are_live_and_learn_on(trained, suffix):
    folder, document = trained
    x = data().train.x[0]
    expected = document.model(x).numpy()
    path = folder / f"adapted{suffix}"
    save_document(document, path, copy=True)
    plain = keras.saving.load_model(path, compile=False)  # Keras's own reload
    np.testing.assert_allclose(plain(x).numpy(), expected, atol=1e-5)
    assert not np.any(plain.get_layer("dense").lora_kernel_b.numpy())  # dead in Keras
    again = open_document(path)
    assert [(a.id, a.rank, a.alpha) for a in again.adapters()] == [
        ("dense:kernel", 2, 6), ("dense_1:kernel", 1, 1)]
    before = values(again)
    assert all(np.array_equal(before[k], v) for k, v in values(document).items())
    np.testing.assert_allclose(again.model(x).numpy(), expected, atol=1e-6)
    assert not again.modified and not any("LoRA" in note for note in again.notes)
    result = train(again)
    assert result.integrity.ok
    moved = {w.id for w in again.weights if not np.array_equal(before[w.id], w.variable.numpy())}
    assert moved == {"dense:lora_kernel_a", "dense:lora_kernel_b", "dense_1:lora_kernel_a",
                     "dense_1:lora_kernel_b"}


def test_merged_save_is_a_plain_model_with_keras_equal_outputs(trained):
    folder, document = trained
    x = data().train.x[0]
    expected = document.model(x).numpy()
    adapted = values(document)
    path = folder / "merged.keras"
    save_document(document, path, copy=True, merge_lora=True)
    plain = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(plain(x).numpy(), expected, atol=1e-5)
    assert "lora_rank" not in plain.get_layer("dense").get_config()
    assert len(plain.weights) == 6  # three kernels and biases, no adapter matrices
    with zipfile.ZipFile(path) as archive:
        assert "freezestudio_lora.npz" not in archive.namelist()
        stored = json.loads(archive.read("freezestudio.json"))["plan"]
        assert "lora" not in stored
    assert len(document.adapters()) == 2  # the document keeps its adapters, unchanged
    assert all(np.array_equal(adapted[k], v) for k, v in values(document).items())
    assert {id(w.variable) for w in document.weights} == {id(v) for v in document.model.weights}
    reopened = open_document(path)
    assert reopened.adapters() == []


def test_a_file_keras_saved_with_dead_adapters_opens_with_live_ones(tmp_path):
    model = mb.mlp()
    model.get_layer("dense").enable_lora(2)
    model.save(tmp_path / "keras_lora.keras")
    document = open_document(tmp_path / "keras_lora.keras")
    [adapter] = document.adapters()
    assert np.any(adapter.a.variable.numpy()) and not np.any(adapter.b.variable.numpy())
    assert any("re-initialised as enable_lora does" in note for note in document.notes)
    x = data().train.x[0]
    np.testing.assert_allclose(document.model(x).numpy(), model(x).numpy(), atol=1e-6)
    before = adapter.b.variable.numpy().copy()
    train(document, epochs=1)
    assert not np.array_equal(before, adapter.b.variable.numpy())


def test_adapters_inside_multi_head_attention_survive_a_save(tmp_path):
    model = mb.attention_model()
    model.save(tmp_path / "attention.keras")
    document = open_document(tmp_path / "attention.keras")
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, "lora": [
        {"match": "mha:query/kernel", "rank": 2, "alpha": 3}]}))
    [adapter] = document.adapters()
    b = adapter.layer.lora_kernel_b
    b.assign(np.random.default_rng(2).normal(size=b.shape).astype("float32"))
    x = mb.sample_input(model)
    expected = document.model(x).numpy()
    report = save_document(document, tmp_path / "adapted.keras")
    assert any("inside composite layers (e.g. mha:query/kernel)" in n for n in report.notes)
    plain = keras.saving.load_model(tmp_path / "adapted.keras", compile=False)
    assert not any("lora" in v.path for v in plain.weights)  # Keras's config cannot hold it
    np.testing.assert_allclose(plain(x).numpy(), expected, atol=1e-5)
    again = open_document(tmp_path / "adapted.keras")
    [restored] = again.adapters()
    assert (restored.id, restored.rank, restored.alpha) == ("mha:query/kernel", 2, 3)
    for old, new in zip((adapter.kernel, adapter.a, adapter.b),
                        (restored.kernel, restored.a, restored.b), strict=True):
        np.testing.assert_array_equal(old.variable.numpy(), new.variable.numpy())
    np.testing.assert_allclose(again.model(x).numpy(), expected, atol=1e-6)
