"""Every file FreezeStudio writes keeps a usable compile config (optimizer, loss, metrics).

Plain Keras is the oracle: `keras.saving.load_model(out)` then `fit` without `compile()`,
and the loss it reports is the one the original was compiled with (or the one a
FreezeStudio run trained with), computed here by hand from the predictions.
"""

import json
import warnings

import keras
import numpy as np
import pytest
from cli_runner import run_many

from freezestudio.core.files.loading import open_document
from freezestudio.core.files.saving import save_document

EXTS = ("keras", "h5")


def regression_model(loss="mae", metrics=("mae",)):
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss,
                  metrics=list(metrics) if metrics is not None else None)
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (3 * rng.normal(size=(32, 2))).astype("float32")  # far from the outputs: MAE != MSE
    return x, y


@pytest.fixture(scope="module")
def mae_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("compile_src") / "mae.keras"
    regression_model().save(path)
    return path


def plain_keras_fit(path, x, y):
    """Plain Keras loads and fits without compile(); returns the model (no warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(path)
        assert model.compiled, path
        history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not [str(w.message) for w in caught if "optimizer" in str(w.message)]
    return model


def evaluated_loss(model, x, y) -> float:
    result = model.evaluate(x, y, batch_size=len(x), verbose=0)
    return float(result[0] if isinstance(result, list) else result)


def assert_loss_is(model, x, y, kind):
    prediction = model.predict(x, verbose=0)
    expected = {"mae": np.mean(np.abs(prediction - y)),
                "huber": float(keras.losses.Huber()(y, prediction))}[kind]
    assert evaluated_loss(model, x, y) == pytest.approx(expected, rel=1e-4), kind


# --- the core save (the GUI's Save and Save As call it) ------------------------------
@pytest.mark.parametrize("ext", EXTS)
def test_save_document_keeps_the_originals_loss_and_metrics(mae_file, data, tmp_path, ext):
    x, y = data
    document = open_document(mae_file)
    out = tmp_path / f"saved.{ext}"
    report = save_document(document, out)
    assert any(n.startswith("compile config kept from the original file") and "mae" in n
               for n in report.notes), report.notes
    assert not document.model.compiled  # compiled for the write only
    assert getattr(document.model, "optimizer", None) is None
    model = plain_keras_fit(out, x, y)
    assert_loss_is(model, x, y, "mae")
    loss, metric = model.evaluate(x, y, batch_size=len(x), verbose=0)  # the metric is MAE
    assert metric == pytest.approx(loss, rel=1e-4)


def test_h5_saved_by_freezestudio_round_trips_its_training_config(mae_file, data, tmp_path):
    x, y = data
    first = tmp_path / "first.h5"
    save_document(open_document(mae_file), first)
    second = tmp_path / "second.h5"
    report = save_document(open_document(first), second)
    assert any("kept from the original file" in n for n in report.notes), report.notes
    assert_loss_is(plain_keras_fit(second, x, y), x, y, "mae")


def test_saving_twice_from_one_document_keeps_the_config(mae_file, data, tmp_path):
    x, y = data
    document = open_document(mae_file)
    for name in ("a.h5", "b.keras", "c.h5"):  # Keras's .h5 writer once ate the optimizer
        save_document(document, tmp_path / name, copy=True)
    model = plain_keras_fit(tmp_path / "b.keras", x, y)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert_loss_is(plain_keras_fit(tmp_path / "c.h5", x, y), x, y, "mae")


def test_a_model_without_compile_config_saves_without_notes(tmp_path):
    inputs = keras.Input((4,))
    path = tmp_path / "plain.keras"
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(path)
    report = save_document(open_document(path), tmp_path / "out.keras")
    assert report.notes == []


@pytest.mark.parametrize("ext", EXTS)
def test_a_loss_that_cannot_be_restored_is_a_note_not_a_crash(tmp_path, data, ext):
    path = tmp_path / "custom.keras"
    regression_model().save(path)
    document = open_document(path)
    broken = {**document.compile_config,
              "loss": {"module": "my_project.losses", "class_name": "NotRegistered",
                       "config": {}, "registered_name": "my_project>NotRegistered"}}
    document.set_compile_config(broken, origin="a test")
    out = tmp_path / f"out.{ext}"
    report = save_document(document, out)
    assert any("could not be restored" in n and "compile()" in n for n in report.notes), \
        report.notes
    model = keras.saving.load_model(out, compile=False)
    assert model.predict(data[0], verbose=0).shape == (32, 2)


@pytest.mark.parametrize("ext", EXTS)
def test_a_config_keras_cannot_serialise_is_a_note_not_a_crash(mae_file, tmp_path, monkeypatch,
                                                               data, ext):
    def refuse(*args, **kwargs):
        raise TypeError("cannot serialise <lambda>")

    def compile_config(model):  # as Keras does for a compiled model holding a lambda loss
        if model.compiled:
            refuse()
        return {}

    document = open_document(mae_file)
    monkeypatch.setattr(keras.Model, "get_compile_config", compile_config)
    monkeypatch.setattr("keras.src.legacy.saving.saving_utils._serialize_nested_config", refuse)
    out = tmp_path / f"out.{ext}"
    report = save_document(document, out)
    monkeypatch.undo()
    assert any("could not be saved" in n and "<lambda>" in n for n in report.notes), report.notes
    assert not any(n.startswith("compile config kept") for n in report.notes), report.notes
    assert not document.model.compiled
    model = keras.saving.load_model(out, compile=False)
    assert model.predict(data[0], verbose=0).shape == (32, 2)


# --- the commands ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, mae_file, data):
    """apply and train (both formats, the saved loss and --loss huber), run two at a time."""
    folder = tmp_path_factory.mktemp("compile_cli")
    npz = folder / "data.npz"
    np.savez(npz, x=data[0], y=data[1])
    common = ("--data", npz, "--epochs", "1", "--batch-size", "8", "--seed", "1", "--json")
    outputs = {f"apply.{e}": ("apply", mae_file, "-o", folder / f"apply.{e}") for e in EXTS}
    outputs |= {f"train.{e}": ("train", mae_file, *common, "-o", folder / f"train.{e}")
                for e in EXTS}
    outputs |= {f"huber.{e}": ("train", mae_file, *common, "--loss", "huber",
                               "-o", folder / f"huber.{e}") for e in EXTS}
    runs = dict(zip(outputs, run_many(outputs.values()), strict=True))
    for run in runs.values():
        assert run.returncode == 0, (run.args, run.stderr[-2000:])
    again = run_many([("train", folder / "train.keras", *common, "-o", folder / "again.keras")])
    runs["again"] = again[0]
    return folder, runs


def summary(run) -> dict:
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("ext", EXTS)
def test_apply_keeps_the_originals_loss(cli_runs, data, ext):
    folder, runs = cli_runs
    assert "note: compile config kept from the original file" in runs[f"apply.{ext}"].stdout
    assert_loss_is(plain_keras_fit(folder / f"apply.{ext}", *data), *data, "mae")


@pytest.mark.parametrize("ext", EXTS)
def test_train_saves_the_loss_it_trained_with(cli_runs, data, ext):
    folder, runs = cli_runs
    result = summary(runs[f"train.{ext}"])
    assert result["losses"][0].startswith("mean_absolute_error: the model's saved compile")
    assert any("FreezeStudio's training run" in n for n in result["notes"]), result["notes"]
    assert_loss_is(plain_keras_fit(folder / f"train.{ext}", *data), *data, "mae")


def test_a_second_train_reports_the_saved_loss_not_a_guess(cli_runs):
    folder, runs = cli_runs
    result = summary(runs["again"])
    assert result["status"] == "completed", result
    assert result["losses"][0].startswith("mean_absolute_error: the model's saved compile"), \
        result["losses"]


@pytest.mark.parametrize("ext", EXTS)
def test_train_with_loss_huber_saves_huber_and_says_so(cli_runs, data, ext):
    folder, runs = cli_runs
    result = summary(runs[f"huber.{ext}"])
    assert result["losses"][0].startswith("huber: chosen by the user")
    note = next(n for n in result["notes"] if "FreezeStudio's training run" in n)
    assert "huber" in note and "Adam" in note, note
    model = plain_keras_fit(folder / f"huber.{ext}", *data)
    assert_loss_is(model, *data, "huber")


def test_an_h5_opened_then_saved_as_keras_keeps_its_config_on_every_save(data, tmp_path):
    """The `.h5`'s training_config is read at opening, so the document holds it wherever
    it is saved next (it used to be re-read from the source file, lost after Save As)."""
    x, y = data
    source = tmp_path / "mae.h5"
    regression_model().save(source)
    document = open_document(source)
    loss = keras.saving.deserialize_keras_object(dict(document.compile_config))["loss"]
    assert keras.losses.get(loss).__name__ == "mean_absolute_error"
    save_document(document, tmp_path / "as.keras")  # Save As: the document is this file now
    report = save_document(document, tmp_path / "again.keras")
    assert any("kept from the original file" in n for n in report.notes), report.notes
    assert_loss_is(plain_keras_fit(tmp_path / "again.keras", x, y), x, y, "mae")
