"""Finds code-carrying objects (Lambda layers, serialized Python functions) in stored
model configurations, before any loader gets a chance to run them.

Keras 3's safe mode guards `.keras` files, but the legacy paths (`.h5` through Keras 3,
SavedModels through tf_keras) deserialize Python bytecode without asking, so every path
is scanned here first.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from freezestudio.core.errors import ModelFileError, first_line
from freezestudio.core.files import formats, limits
from freezestudio.core.files.archive_member import open_member

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
    """The JSON configurations stored in a model file, read without deserializing objects,
    after the file passes the bounds of `limits` (size, nesting, zip bombs, HDF5 shapes).

    Raises:
        ModelFileError: the file is corrupt, breaks a bound or holds no model configuration.
    """
    if fmt == formats.KERAS:
        return [_keras_archive_config(path)]
    if fmt == formats.H5:
        return [_h5_config(path)]
    if fmt == formats.TF_KERAS_SAVEDMODEL:
        return _keras_metadata_configs(path)
    return []


_WEIGHTS_MEMBER = "model.weights.h5"


def _keras_archive_config(path: Path):
    """The archive's config.json, after the archive and its weights pass `limits`."""
    try:
        with zipfile.ZipFile(path) as archive:
            limits.check_archive(archive, path)
            try:
                member = archive.getinfo("config.json")
            except KeyError:
                raise ModelFileError(
                    f"{path}: not a Keras model archive (no config.json)") from None
            limits.check_member_size(member, path)
            raw = archive.read(member)
            if _WEIGHTS_MEMBER in archive.namelist():
                _check_archive_weights(path, archive)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError, KeyError) as exc:
        # NotImplementedError: an unsupported compression method; RuntimeError: encrypted
        raise ModelFileError(f"{path}: corrupt or truncated .keras archive "
                             f"({first_line(exc)})") from None
    return limits.parse_config(raw, path)


def _check_archive_weights(path: Path, archive: zipfile.ZipFile) -> None:
    """`limits.check_h5` on the weights inside the archive (read in place)."""
    import h5py

    try:
        with open_member(path, archive, _WEIGHTS_MEMBER) as member, \
                h5py.File(member, "r") as handle:
            limits.check_h5(handle, path)
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError,
            zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: the weights ({_WEIGHTS_MEMBER}) are corrupt or "
                             f"truncated ({first_line(exc)})") from None


def _h5_config(path: Path):
    import h5py

    limits.check_h5_file(path)
    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated HDF5 file "
                             f"({first_line(exc)})") from None
    if raw is None:
        raise ModelFileError(
            f"{path}: holds weights only, no model architecture (saved with save_weights?)"
        )
    if not isinstance(raw, bytes | str):
        raise ModelFileError(f"{path}: the stored model config is not a JSON string")
    return limits.parse_config(raw, path)


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
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt file
        raise ModelFileError(f"{path}: corrupt keras_metadata.pb ({first_line(exc)})") from None
    return [limits.parse_config(node.metadata, path, "a layer's metadata in keras_metadata.pb")
            for node in proto.nodes]
