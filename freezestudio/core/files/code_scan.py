"""Finds code-carrying objects (Lambda layers, serialized Python functions) in stored
model configurations, before any loader gets a chance to run them.

Keras 3's safe mode guards `.keras` files, but the legacy paths (`.h5` through Keras 3,
SavedModels through tf_keras) deserialize Python bytecode without asking, so every path
is scanned here first.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from freezestudio.core.errors import ModelFileError
from freezestudio.core.files import formats

_CODE_LAYER_CLASSES = {"Lambda"}


def find_code_objects(config) -> list[str]:
    """Describes every code-carrying object in a (nested) Keras config structure."""
    found: list[str] = []

    def visit(node, owner):
        if isinstance(node, dict):
            class_name = node.get("class_name")
            config = node.get("config") if isinstance(node.get("config"), dict) else {}
            name = config.get("name", owner)
            if class_name in _CODE_LAYER_CLASSES:
                found.append(f"{class_name} layer '{name}'")
            elif class_name == "__lambda__" or node.get("function_type") == "lambda":
                found.append(f"a serialized Python function in '{owner}'")
            for value in node.values():
                visit(value, name)
        elif isinstance(node, list | tuple):
            for value in node:
                visit(value, owner)

    visit(config, "model")
    return list(dict.fromkeys(found))


def stored_configs(path: Path, fmt: str) -> list:
    """The JSON configurations stored in a model file, read without deserializing objects.

    Raises:
        ModelFileError: the file is corrupt or holds no model configuration.
    """
    if fmt == formats.KERAS:
        return [_keras_archive_config(path)]
    if fmt == formats.H5:
        return [_h5_config(path)]
    if fmt == formats.TF_KERAS_SAVEDMODEL:
        return _keras_metadata_configs(path)
    return []


def _keras_archive_config(path: Path):
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except KeyError:
        raise ModelFileError(f"{path}: not a Keras model archive (no config.json)") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated .keras archive ({exc})") from None


def _h5_config(path: Path):
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except OSError as exc:
        raise ModelFileError(f"{path}: corrupt or truncated HDF5 file ({exc})") from None
    if raw is None:
        raise ModelFileError(
            f"{path}: holds weights only, no model architecture (saved with save_weights?)"
        )
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError as exc:
        raise ModelFileError(f"{path}: the stored model config is not valid JSON ({exc})") from None


def _keras_metadata_configs(path: Path) -> list:
    """Each node's metadata from a tf.keras SavedModel's keras_metadata.pb."""
    try:
        from tf_keras.protobuf import saved_metadata_pb2
    except ImportError:
        raise ModelFileError(
            f"{path}: a tf.keras 2.x SavedModel needs the tf-keras package "
            "(pip install 'freezestudio[legacy]')"
        ) from None
    proto = saved_metadata_pb2.SavedMetadata()
    try:
        proto.ParseFromString((path / "keras_metadata.pb").read_bytes())
        return [json.loads(node.metadata) for node in proto.nodes]
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt file
        raise ModelFileError(f"{path}: corrupt keras_metadata.pb ({exc})") from None
