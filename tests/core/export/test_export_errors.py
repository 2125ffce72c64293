"""Export failures: clear one-line UserErrors, and nothing partial left behind.

Covers unwritable destinations, failed verification and failed writers (an earlier file at
the destination survives untouched), missing optional dependencies (named with the pip
command), cancellation, progress reporting, bad options, and recurrent layers TFLite
cannot take.
"""

import os
import sys

import model_builders as mb
import numpy as np
import pytest

from freezestudio.core.errors import UserError
from freezestudio.core.export import (
    ExportCancelled,
    ExportOptions,
    MissingDependencyError,
    VerificationError,
    export_document,
    keras_file,
    pipeline,
    verify,
)
from freezestudio.core.files.loading import open_document

SUFFIX = {"keras": ".keras", "h5": ".h5", "savedmodel": "", "tflite": ".tflite",
          "onnx": ".onnx", "frozen-graph": ".pb"}
FILE_FORMATS = ["keras", "h5", "tflite", "onnx", "frozen-graph"]


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mlp.keras"
    mb.mlp().save(path)
    return open_document(path)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def snapshot(folder):
    """{relative path: bytes} of every file below `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_destination_below_a_regular_file(document, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="notes.txt is a file, not a folder"):
        export_document(document, "tflite", tmp_path / "notes.txt" / "model.tflite")
    assert snapshot(tmp_path) == {"notes.txt": b"keep me"}


def test_destination_folder_missing(document, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        export_document(document, "onnx", tmp_path / "nowhere" / "model.onnx")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("fmt, name", [("tflite", "model.keras"), ("onnx", "model.h5"),
                                       ("frozen-graph", "model.tflite"),
                                       ("savedmodel", "model.onnx")])
def test_a_name_of_another_format_is_refused_and_the_file_kept(document, tmp_path, fmt, name):
    """`export m.keras --format tflite -o m.keras` must not turn the model into a
    flatbuffer."""
    (tmp_path / name).write_bytes(b"the user's model")
    with pytest.raises(UserError, match=f"the name says .*, but this is a {fmt} export"):
        export_document(document, fmt, tmp_path / name)
    assert snapshot(tmp_path) == {name: b"the user's model"}


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders: the permission case cannot occur")
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "frozen-graph"])
def test_read_only_folder(document, tmp_path, fmt):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="no permission"):
            export_document(document, fmt, folder / f"model{SUFFIX[fmt]}")
        assert listing(folder) == []
    finally:
        folder.chmod(0o755)


def _existing(tmp_path, fmt):
    """A destination that already holds an older export."""
    out = tmp_path / f"model{SUFFIX[fmt]}"
    if fmt == "savedmodel":
        out.mkdir()
        (out / "saved_model.pb").write_bytes(b"old")
    else:
        out.write_bytes(b"old")
        if fmt == "frozen-graph":
            (tmp_path / "model.io.txt").write_text("old")
    return out


@pytest.mark.parametrize("fmt", ["savedmodel", *FILE_FORMATS])
def test_failed_verification_writes_nothing(document, tmp_path, monkeypatch, fmt):
    real_run, real_keras = verify.run_export, keras_file.run_keras_file
    monkeypatch.setattr(verify, "run_export",
                        lambda *a: [o + 1.0 for o in real_run(*a)])
    monkeypatch.setattr(keras_file, "run_keras_file",
                        lambda *a: ([o + 1.0 for o in real_keras(*a)[0]], real_keras(*a)[1]))
    out = _existing(tmp_path, fmt)
    before = snapshot(tmp_path)
    with pytest.raises(VerificationError, match="does not compute what the model computes") as info:
        export_document(document, fmt, out)
    assert "nothing was written" in str(info.value)
    assert info.value.report.checks and not info.value.report.ok
    assert snapshot(tmp_path) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "frozen-graph"])
def test_failing_writer_leaves_nothing_behind(document, tmp_path, monkeypatch, fmt):
    def half_then_crash(inference, path, options, step):
        (path.mkdir() if fmt == "savedmodel" else path.write_bytes(b"partial"))
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(pipeline._WRITERS, fmt, half_then_crash)
    out = _existing(tmp_path, fmt)
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_document(document, fmt, out)
    assert snapshot(tmp_path) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_successful_export_replaces_an_older_one(document, tmp_path, fmt):
    out = _existing(tmp_path, fmt)
    report = export_document(document, fmt, out)
    assert report.ok and out.read_bytes() != b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_savedmodel_replaces_a_savedmodel_but_no_other_folder(document, tmp_path):
    out = _existing(tmp_path, "savedmodel")
    assert export_document(document, "savedmodel", out).ok
    assert (out / "saved_model.pb").read_bytes() != b"old"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"cat")
    with pytest.raises(UserError, match="holds no SavedModel"):
        export_document(document, "savedmodel", other)
    assert snapshot(other) == {"cat.jpg": b"cat"}


def test_file_format_onto_a_folder_is_refused(document, tmp_path):
    (tmp_path / "model.tflite").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        export_document(document, "tflite", tmp_path / "model.tflite")


@pytest.mark.parametrize("missing", ["tf2onnx", "onnx", "onnxruntime"])
def test_missing_onnx_dependency_names_the_pip_command(document, tmp_path, monkeypatch,
                                                       missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now fails
    with pytest.raises(MissingDependencyError) as info:
        export_document(document, "onnx", tmp_path / "model.onnx")
    message = str(info.value)
    assert missing in message and "pip install" in message and "freezestudio[onnx]" in message
    assert "\n" not in message
    assert listing(tmp_path) == []


def test_missing_dependency_through_a_failing_import_hook(document, tmp_path, monkeypatch):
    import builtins
    import importlib

    real_import, real_import_module = builtins.__import__, importlib.import_module

    def refuse(name, *args, **kwargs):
        if name.split(".")[0] == "tf2onnx":
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    def refuse_module(name, package=None):
        if name.split(".")[0] == "tf2onnx":
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real_import_module(name, package)

    monkeypatch.setattr(builtins, "__import__", refuse)
    monkeypatch.setattr(importlib, "import_module", refuse_module)
    with pytest.raises(MissingDependencyError, match=r"tf2onnx.*pip install"):
        export_document(document, "onnx", tmp_path / "model.onnx")


def test_onnx_without_onnxruntime_exports_unverified(document, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    report = export_document(document, "onnx", tmp_path / "model.onnx",
                             ExportOptions(verify=False))
    assert not report.verified and (tmp_path / "model.onnx").stat().st_size > 0
    assert "not verified" in report.lines()


def test_cancel_before_anything(document, tmp_path):
    with pytest.raises(ExportCancelled):
        export_document(document, "tflite", tmp_path / "m.tflite", cancelled=lambda: True)
    assert listing(tmp_path) == []


def test_cancel_while_verifying_removes_the_temporary_file(document, tmp_path):
    seen = []

    def progress(fraction, message):
        seen.append(fraction)

    with pytest.raises(ExportCancelled):
        export_document(document, "tflite", tmp_path / "m.tflite", progress=progress,
                        cancelled=lambda: bool(seen) and seen[-1] >= 0.7)
    assert listing(tmp_path) == []


def test_progress_is_reported_in_order(document, tmp_path):
    calls = []
    export_document(document, "frozen-graph", tmp_path / "m.pb",
                    progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 4
    assert all(isinstance(m, str) and m for _, m in calls)


@pytest.mark.parametrize("fmt, options, match", [
    ("onnx", ExportOptions(quantize="float16"), "onnx cannot be quantised as float16"),
    ("savedmodel", ExportOptions(quantize=True), "savedmodel cannot be quantised as dynamic"),
    ("tflite", ExportOptions(quantize="dynamic", io_type="int8"), "--quantize int8 only"),
    ("tflite", ExportOptions(quantize="int8"), "needs calibration data"),
    ("tflite", ExportOptions(quantize="float16", min_agreement=2), "between 0 and 1"),
    ("tflite", ExportOptions(opset=13), "onnx format only"),
    ("onnx", ExportOptions(opset=99), "opset 99 is not supported"),
    ("savedmodel", ExportOptions(portable=True), "keras/h5 only"),
    ("tflite", ExportOptions(tolerance=0), "tolerance"),
    ("pickle", ExportOptions(), "unknown export format 'pickle'"),
])
def test_bad_options(document, tmp_path, fmt, options, match):
    with pytest.raises(UserError, match=match):
        export_document(document, fmt, tmp_path / "out.x", options)
    assert listing(tmp_path) == []


def test_editable_format_needs_its_suffix(document, tmp_path):
    with pytest.raises(UserError, match=r"ending in \.keras"):
        export_document(document, "keras", tmp_path / "model.h5")


def test_tflite_refuses_a_variable_length_lstm_with_the_reason(tmp_path):
    path = tmp_path / "rnn.keras"
    mb.lstm_tokens(None).save(path)
    with pytest.raises(UserError) as info:
        export_document(open_document(path), "tflite", tmp_path / "rnn.tflite")
    message = str(info.value)
    assert "'lstm'" in message and "variable length" in message and "Flex" in message
    assert listing(tmp_path) == ["rnn.keras"]


def test_tflite_unrolls_an_lstm_inside_a_nested_model(tmp_path):
    path = tmp_path / "rnn.keras"
    model = mb.lstm_tokens(7, nested=True)
    model.save(path)
    document = open_document(path)
    report = export_document(document, "tflite", tmp_path / "rnn.tflite")
    assert report.ok and report.verified
    assert any("block/lstm" in note for note in report.notes)
    tokens = np.random.default_rng(0).integers(0, 20, (3, 7)).astype("int32")
    from freezestudio.core.export.tflite import interpreter

    runner = interpreter(tmp_path / "rnn.tflite").get_signature_runner("serving_default")
    np.testing.assert_allclose(runner(tokens=tokens)["out"], model(tokens).numpy(), atol=1e-5)
