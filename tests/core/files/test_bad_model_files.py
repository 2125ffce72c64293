"""Every kind of bad input to `open_document` is a one-line `UserError`, never a crash."""

import os

import model_builders as mb
import pytest

from freezestudio.core.errors import (
    MissingCustomObjectError,
    ModelFileError,
    UserError,
)
from freezestudio.core.files.loading import open_document

# case -> (exception class, words the message must contain, case-insensitively)
EXPECTED = {
    "missing": (ModelFileError, ["no such file"]),
    "empty": (ModelFileError, ["empty"]),
    "random_bytes": (ModelFileError, ["not a model file"]),
    "random_bytes_h5": (ModelFileError, ["not a model file"]),
    "truncated_keras": (ModelFileError, ["truncated"]),
    "truncated_h5": (ModelFileError, ["truncated"]),
    "h5_named_keras": (ModelFileError, [".h5", "rename"]),
    "dir_without_saved_model": (ModelFileError, ["saved_model.pb"]),
    "weights_only_h5": (ModelFileError, ["weights only"]),
    "zip_without_config": (ModelFileError, ["config.json"]),
    "nonsense_config": (UserError, []),
    "corrupt_saved_model_pb": (ModelFileError, []),
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return mb.make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def gizmo(tmp_path_factory):
    yield mb.make_missing_class_model(tmp_path_factory.mktemp("gizmo"))
    mb.forget_gizmo()


@pytest.mark.parametrize("case", list(EXPECTED))
def test_bad_input_is_one_line_user_error(bad, case):
    error_class, words = EXPECTED[case]
    path = bad[case]
    with pytest.raises(error_class) as info:
        open_document(path)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    assert "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower()


@pytest.mark.parametrize("index", [0, 1], ids=["keras", "h5"])
def test_missing_custom_class_is_named_then_loads_with_module(gizmo, index):
    path, module = gizmo[index], gizmo[2]
    with pytest.raises(MissingCustomObjectError) as info:
        open_document(path)
    assert info.value.class_name == "Gizmo"
    assert "'Gizmo'" in str(info.value) and "\n" not in str(info.value)
    try:
        document = open_document(path, custom_object_modules=[module])
    finally:
        mb.forget_gizmo()
    assert document.layer("giz").class_name == "Gizmo"
    assert document.weight_ids == ["giz:w"]
    assert document.counts().trainable == 6


def test_custom_objects_module_missing_or_broken(gizmo, tmp_path):
    with pytest.raises(UserError, match="nowhere.py"):
        open_document(gizmo[0], custom_object_modules=[tmp_path / "nowhere.py"])
    broken = tmp_path / "broken_module.py"
    broken.write_text("raise ValueError('boom')\n")
    with pytest.raises(UserError) as info:
        open_document(gizmo[0], custom_object_modules=[broken])
    assert "broken_module.py" in str(info.value) and "boom" in str(info.value)
    notes = tmp_path / "layers.txt"  # not a .py file: Python finds no loader for it
    notes.write_text("class Gizmo: pass\n")
    with pytest.raises(UserError, match="layers.txt: not a Python module"):
        open_document(gizmo[0], custom_object_modules=[notes])


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied(bad, tmp_path):
    path = tmp_path / "locked.keras"
    path.write_bytes((bad["truncated_keras"].parent / "good.keras").read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(ModelFileError, match="permission denied"):
            open_document(path)
    finally:
        path.chmod(0o600)


def test_good_file_beside_the_bad_ones_opens(bad):
    # The control: the same model, intact, opens (so the cases above fail for their flaw).
    folder = bad["empty"].parent
    assert open_document(folder / "good.keras").counts().params == 77
    assert open_document(folder / "good.h5").counts().params == 77


def test_multi_head_attention_h5_that_keras_cannot_read_says_save_as_keras(tmp_path,
                                                                          monkeypatch):
    # Keras 3 fails on some MultiHeadAttention .h5 files with its raw "too many positional
    # arguments" (docs/architecture.md, Known traps); the user is told to use .keras.
    import keras

    path = tmp_path / "attention.h5"
    mb.attention_model().save(path)

    def refuse(*args, **kwargs):
        raise TypeError("Layer.__call__() got too many positional arguments")

    monkeypatch.setattr(keras.saving, "load_model", refuse)
    with pytest.raises(ModelFileError) as info:
        open_document(path)
    message = str(info.value)
    assert "attention.h5" in message and "\n" not in message
    assert "MultiHeadAttention layer 'mha'" in message and "save the model as .keras" in message


def test_deeply_nested_config_is_a_user_error(tmp_path):
    import zipfile

    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match="deep.keras: .*nests 100000 levels deep"):
        open_document(path)
