"""Saving documents: round trips through FreezeStudio and plain Keras, and atomic writes."""

import json
import os
from pathlib import Path

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

import freezestudio.core.files.saving as saving
from freezestudio.core.errors import UserError
from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document

MODELS = ("mlp", "sequential_with_backbone", "nested_sequential", "custom_layer_model",
          "text_lstm", "shared_two_outputs")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saving_src")
    paths = {}
    for name in (*MODELS, "attention_model"):
        paths[name] = folder / f"{name}.keras"
        getattr(mb, name)().save(paths[name])
    return paths


def full_state(document):
    return (
        {w: document.is_weight_trainable(document.weight(w)) for w in document.weight_ids},
        {p: document.trainable_state(document.layer(p)) for p in document.layer_paths
         if any(w.freezable for w in document.layer(p).all_weights())},
        mb.trainable_indices(document.model),
    )


def values(document):
    return {w: np.array(document.weight(w).variable.numpy()) for w in document.weight_ids}


def edit(document, per_weight=True):
    """A container freeze, one layer unfrozen inside it, and (optionally) a lone bias."""
    containers = [n for n in document.root.walk() if n.is_container and n.path]
    if containers:
        container = containers[0]
        document.set_trainable([container], False)
        inner = next(c for c in container.walk() if c.weights)
        document.set_trainable([inner], True)
    else:
        first = next(n for n in document.root.walk() if n.weights and n.path)
        document.set_trainable([first], False)
    if per_weight:
        last = [n for n in document.root.walk() if n.path and len(n.weights) >= 2][-1]
        document.set_trainable([last.weights[-1]], False)
        return last.weights[-1].id
    return None


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("name", MODELS)
def test_round_trip_through_freezestudio(files, tmp_path, name, ext):
    document = open_document(files[name])
    lone = edit(document)
    before, weights = full_state(document), values(document)
    x = mb.sample_input(document.model)
    outputs = keras.tree.flatten(document.model(x))
    report = save_document(document, tmp_path / f"out.{ext}")
    assert report.path == tmp_path / f"out.{ext}" and report.format == ext
    assert full_state(document) == before  # saving does not change the open document
    assert document.modified is False and document.source_path == report.path
    assert listing(tmp_path) == [f"out.{ext}"]

    reopened = open_document(tmp_path / f"out.{ext}")
    assert full_state(reopened) == before
    assert reopened.is_weight_trainable(reopened.weight(lone)) is False
    assert reopened.modified is False
    for weight_id, value in weights.items():
        np.testing.assert_array_equal(reopened.weight(weight_id).variable.numpy(), value,
                                      err_msg=weight_id)
    for got, want in zip(keras.tree.flatten(reopened.model(x)), outputs, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("name", [n for n in MODELS if n != "custom_layer_model"])
def test_plain_keras_reload_sees_layer_level_edits(files, tmp_path, name, ext):
    document = open_document(files[name])
    edit(document, per_weight=False)
    report = save_document(document, tmp_path / f"out.{ext}")
    assert report.notes == []
    plain = keras.saving.load_model(tmp_path / f"out.{ext}", compile=False)
    assert mb.trainable_indices(plain) == mb.document_trainable_indices(document)
    assert mb.size(plain.trainable_weights) == document.counts().trainable
    assert plain.count_params() == document.counts().params


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_plain_keras_reload_of_frozen_custom_layer_or_note(files, tmp_path, ext):
    document = open_document(files["custom_layer_model"])
    document.set_trainable([document.layer("scaled")], False)
    report = save_document(document, tmp_path / f"out.{ext}")
    plain = keras.saving.load_model(tmp_path / f"out.{ext}", compile=False)
    same = mb.trainable_indices(plain) == mb.document_trainable_indices(document)
    # Either plain Keras trains exactly what the document trains, or the report says it won't.
    assert same or any("scaled" in note for note in report.notes), report.notes


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_per_weight_freeze_is_reported_in_notes(files, tmp_path, ext):
    document = open_document(files["mlp"])
    document.set_trainable([document.weight("dense_1:bias")], False)
    report = save_document(document, tmp_path / f"out.{ext}")
    assert len(report.notes) == 1
    assert "dense_1:bias" in report.notes[0]
    plain = keras.saving.load_model(tmp_path / f"out.{ext}", compile=False)
    bias = plain.get_layer("dense_1").bias
    # What the note warns about: plain Keras trains the bias again, nothing else differs.
    assert mb.trainable_indices(plain) == sorted(
        mb.document_trainable_indices(document) + mb.weight_indices(plain, [bias]))


def test_attention_model_h5_round_trips_or_refuses_cleanly(files, tmp_path):
    document = open_document(files["attention_model"])
    document.set_trainable([document.weight("mha:query/bias")], False)
    weights = values(document)
    target = tmp_path / "mha.h5"
    try:
        save_document(document, target)
    except UserError as exc:
        assert "\n" not in str(exc)
        assert listing(tmp_path) == []
        return
    reopened = open_document(target)
    assert full_state(reopened) == full_state(document)
    for weight_id, value in weights.items():
        np.testing.assert_array_equal(reopened.weight(weight_id).variable.numpy(), value)


def _break_model_save(document, monkeypatch):
    def broken_save(path, *args, **kwargs):
        Path(path).write_bytes(b"partial garbage")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(document.model, "save", broken_save)


def _break_write_state(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("state store exploded")

    monkeypatch.setattr(saving, "write_state", broken)


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("failure", ["model_save", "write_state"])
def test_failed_save_leaves_original_untouched(files, tmp_path, monkeypatch, ext, failure):
    target = tmp_path / f"model.{ext}"
    document = open_document(files["mlp"])
    save_document(document, target)
    original = target.read_bytes()
    stamp = os.stat(target).st_mtime_ns
    document.set_trainable([document.layer("dense")], False)
    if failure == "model_save":
        _break_model_save(document, monkeypatch)
    else:
        _break_write_state(monkeypatch)
    with pytest.raises(UserError) as info:
        save_document(document, target)
    assert "\n" not in str(info.value)
    assert target.read_bytes() == original
    assert os.stat(target).st_mtime_ns == stamp
    assert listing(tmp_path) == [target.name]  # no temporary file left behind
    assert document.modified is True
    # And the original still opens, unedited.
    assert open_document(target).counts().trainable == document.counts().params


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_failed_save_to_new_target_creates_nothing(files, tmp_path, monkeypatch, ext):
    document = open_document(files["mlp"])
    _break_model_save(document, monkeypatch)
    with pytest.raises(UserError):
        save_document(document, tmp_path / f"new.{ext}")
    assert listing(tmp_path) == []


def test_save_over_the_opened_file_itself(files, tmp_path):
    path = tmp_path / "self.keras"
    path.write_bytes(files["mlp"].read_bytes())
    document = open_document(path)
    document.set_trainable([document.layer("dense_2")], False)
    save_document(document, path)
    assert listing(tmp_path) == ["self.keras"]
    reopened = open_document(path)
    assert reopened.trainable_state(reopened.layer("dense_2")) is False
    assert reopened.counts().trainable == document.counts().trainable


@pytest.mark.parametrize("target", ["model.txt", "model", "model.onnx"])
def test_unsupported_target_is_user_error(files, tmp_path, target):
    document = open_document(files["mlp"])
    with pytest.raises(UserError):
        save_document(document, tmp_path / target)
    assert listing(tmp_path) == []


def test_missing_target_folder_is_user_error(files, tmp_path):
    document = open_document(files["mlp"])
    with pytest.raises(UserError, match="does not exist"):
        save_document(document, tmp_path / "no" / "such" / "model.keras")


def tree_bytes(folder):
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_failed_savedmodel_save_keeps_old_directory(tmp_path, monkeypatch):
    source = tmp_path / "source"
    module = mb.TinyModule()
    tf.saved_model.save(module, str(source), signatures={"serving_default": module.__call__})
    document = open_document(source)
    out = tmp_path / "out"
    save_document(document, out)
    old = tree_bytes(out)
    assert "saved_model.pb" in old
    names = listing(tmp_path)

    document.set_trainable([document.layer("block")], False)

    def broken_save(path, *args, **kwargs):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "saved_model.pb").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(document.model, "save", broken_save)
    with pytest.raises(UserError):
        save_document(document, out)
    assert tree_bytes(out) == old
    assert listing(tmp_path) == names  # no temporary or backup directory left
    monkeypatch.undo()

    # A successful save replaces the directory, leaving nothing else behind.
    save_document(document, out)
    assert listing(tmp_path) == names
    reopened = open_document(out)
    assert reopened.trainable_state(reopened.layer("block")) is False


@pytest.mark.parametrize("frozen", [
    "backbone/bn",
    "backbone/conv"])
def test_h5_save_of_frozen_layer_inside_container(files, tmp_path, frozen):
    # Plain Keras handles this edit in .h5 (the control the bug is measured against).
    plain = mb.sequential_with_backbone()
    plain.get_layer("backbone").get_layer(frozen.split("/")[1]).trainable = False
    plain.save(tmp_path / "plain.h5")
    reloaded = keras.saving.load_model(tmp_path / "plain.h5", compile=False)
    assert mb.trainable_indices(reloaded) == mb.trainable_indices(plain)

    document = open_document(files["sequential_with_backbone"])
    document.set_trainable([document.layer(frozen)], False)
    weights = values(document)
    save_document(document, tmp_path / "out.h5")
    reopened = open_document(tmp_path / "out.h5")
    assert full_state(reopened) == full_state(document)
    for weight_id, value in weights.items():
        np.testing.assert_array_equal(reopened.weight(weight_id).variable.numpy(), value)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_frozen_weightless_layer_survives_save(files, tmp_path, ext):
    document = open_document(files["sequential_with_backbone"])
    document.set_trainable([document.layer("drop")], False)
    save_document(document, tmp_path / f"out.{ext}")
    plain = keras.saving.load_model(tmp_path / f"out.{ext}", compile=False)
    assert plain.get_layer("drop").trainable is False
    reopened = open_document(tmp_path / f"out.{ext}")
    assert reopened.trainable_state(reopened.layer("drop")) is False


def _random_edits(document, rng, count):
    layers = [p for p in document.layer_paths if p]
    containers = [p for p in layers if document.layer(p).is_container] or layers
    for _ in range(count):
        kind = rng.choice(("weight", "layer", "container"))
        if kind == "weight":
            node = document.weight(rng.choice(document.weight_ids))
        else:
            node = document.layer(rng.choice(containers if kind == "container" else layers))
        document.set_trainable([node], rng.random() < 0.5)


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("name", ["sequential_with_backbone", "nested_sequential",
                                  "custom_layer_model", "text_lstm", "shared_two_outputs"])
def test_random_edits_survive_save_and_reopen(files, tmp_path, name, ext):
    import random

    rng = random.Random(f"save-{name}-{ext}")
    for trial in range(4):
        document = open_document(files[name])
        _random_edits(document, rng, rng.randint(2, 8))
        before = full_state(document)
        flags = {p: document.trainable_state(document.layer(p)) for p in document.layer_paths}
        weights = values(document)
        target = tmp_path / f"{trial}.{ext}"
        report = save_document(document, target)
        assert full_state(document) == before
        if not report.notes:  # no warning given: plain Keras must train exactly the same
            plain = keras.saving.load_model(target, compile=False)
            assert mb.trainable_indices(plain) == mb.document_trainable_indices(document)
        reopened = open_document(target)
        assert full_state(reopened) == before, trial
        assert {p: reopened.trainable_state(reopened.layer(p))
                for p in reopened.layer_paths} == flags
        for weight_id, value in weights.items():
            np.testing.assert_array_equal(reopened.weight(weight_id).variable.numpy(), value,
                                          err_msg=weight_id)


def _rewrite_member(path, member, text):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        items = {name: archive.read(name) for name in archive.namelist()}
    items[member] = text.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in items.items():
            archive.writestr(name, data)


def test_unreadable_stored_state_falls_back_to_keras_flags(files, tmp_path):
    document = open_document(files["mlp"])
    document.set_trainable([document.layer("dense")], False)
    document.set_trainable([document.weight("dense_2:bias")], False)
    save_document(document, tmp_path / "m.keras")
    _rewrite_member(tmp_path / "m.keras", "freezestudio.json", "{not json")
    reopened = open_document(tmp_path / "m.keras")
    # Keras's own layer flags still apply; only the lone bias freeze is gone.
    assert reopened.trainable_state(reopened.layer("dense")) is False
    assert reopened.is_weight_trainable(reopened.weight("dense_2:bias")) is True


def test_stored_state_naming_a_missing_weight_opens_with_a_note(files, tmp_path):
    document = open_document(files["mlp"])
    document.set_trainable([document.layer("dense")], False)
    save_document(document, tmp_path / "m.keras")
    _rewrite_member(tmp_path / "m.keras", "freezestudio.json", json.dumps({
        "freezestudio_state": 1,
        "plan": {"freezestudio_plan": 1, "trainable": [{"match": "gone:bias", "value": False}],
                 "stop_gradient_after": []}}))
    reopened = open_document(tmp_path / "m.keras")
    assert reopened.trainable_state(reopened.layer("dense")) is False
    assert any("gone:bias" in note for note in reopened.notes), reopened.notes
