"""Opens any supported model file as a Document.

Every path is scanned for code-carrying objects before a loader sees it (see
`code_scan`), custom classes are reported by name, and every failure becomes a one-line
`UserError` instead of a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

from freezestudio.core.errors import (
    MissingCustomObjectError,
    ModelFileError,
    UntrustedCodeError,
    UserError,
    first_line,
)
from freezestudio.core.files import formats, limits, tf_keras_compat
from freezestudio.core.files.code_scan import find_code_objects, stored_configs
from freezestudio.core.files.custom_objects import import_custom_objects
from freezestudio.core.files.lora_store import read_adapters
from freezestudio.core.files.state_store import read_state
from freezestudio.core.model.document import Document
from freezestudio.core.model.tree import build_keras_tree
from freezestudio.core.tf_import import import_tensorflow_quietly

# Layers Keras 3 cannot read back from .h5 ("too many positional arguments").
_H5_UNREADABLE = {"MultiHeadAttention"}
_MISSING_CLASS_PATTERNS = (
    re.compile(r"Could not locate (?:class|function) '([^']+)'"),
    re.compile(r"Unknown (?:layer|object|class|loss|metric|activation)[\w ]*: '?([\w.>]+)'?"),
)


def open_document(path, *, trust: bool = False, custom_object_modules=(),
                  custom_objects: dict | None = None) -> Document:
    """Opens a `.keras`, `.h5` or SavedModel path for editing.

    Args:
        path: the file or SavedModel directory.
        trust: allow Lambda layers and other objects that carry Python code.
        custom_object_modules: paths of Python files defining custom classes.
        custom_objects: extra `{name: class}` for Keras deserialization.

    Returns:
        The document, with any FreezeStudio state stored in the file re-applied.

    Raises:
        UserError: (and subclasses) for anything wrong with the file or the options.
    """
    path = Path(path)
    fmt = formats.detect_format(path)
    import_tensorflow_quietly()
    if path.name in ("saved_model.pb", "saved_model.pbtxt"):
        path = path.parent
    custom = {**import_custom_objects(custom_object_modules), **(custom_objects or {})}
    configs = _checked_configs(path, fmt, trust)
    if fmt == formats.SAVEDMODEL:
        from freezestudio.core.files.generic_savedmodel import open_generic_savedmodel

        document = open_generic_savedmodel(path)
    else:
        notes: list[str] = []
        model = _load_keras_model(path, fmt, trust, custom, notes, configs)
        compile_config = _compile_config(configs, fmt) if fmt != formats.H5 \
            else _h5_compile_config(path, notes)
        document = _keras_document(model, path, fmt, compile_config, notes)
    _restore_state(document, path, fmt)
    return document


def open_described_document(path, *, trust: bool = False) -> Document | None:
    """Opens a `.keras` file from its config and weight shapes alone, without importing
    TensorFlow (docs/architecture.md, "Config-first opening"): the document equals the
    one `open_document` gives in everything but the model, which is a description
    (`core/graph/description.py`) that can be inspected and edited but not run or saved.

    Returns:
        The document, or None where only a full load can tell the model exactly (another
        format, a custom or unknown layer: see `config_reader`).

    Raises:
        UserError: as `open_document`, for what is wrong with the file or the options.
    """
    from freezestudio.core.files.config_reader import NotDescribable, read_description

    path = Path(path)
    fmt = formats.detect_format(path)
    if fmt != formats.KERAS:
        return None
    configs = _checked_configs(path, fmt, trust)
    try:
        base, cut = read_description(path, configs[0])
    except NotDescribable:
        return None
    document = _document_over(base, cut, path, fmt, _compile_config(configs, fmt), [])
    _restore_state(document, path, fmt)
    return document


def _checked_configs(path: Path, fmt: str, trust: bool) -> list:
    """The file's stored configs, once they pass `limits` and, without `trust`, hold no
    code-carrying objects."""
    configs = stored_configs(path, fmt)
    code = list(dict.fromkeys(item for config in configs for item in find_code_objects(config)))
    if code and not trust:
        raise UntrustedCodeError(path, code)
    return configs


def _keras_document(model, path: Path, fmt: str, compile_config: dict | None,
                    notes: list[str]) -> Document:
    """A document over the model without its stop-gradient layers, the points re-applied."""
    from freezestudio.core.edits import stop_gradient

    base, cut = stop_gradient.strip_stop_gradients(model)
    return _document_over(base, cut, path, fmt, compile_config, notes)


def _document_over(base, cut: set, path: Path, fmt: str, compile_config: dict | None,
                   notes: list[str]) -> Document:
    """A document over a model (or description) without stop-gradient layers, with the
    points at `cut` ((id(call), output index) of `base`'s graph) set again."""
    from freezestudio.core.edits import stop_gradient

    document = Document(build_keras_tree(base), base, path, fmt,
                        point_writer=stop_gradient.set_stop_gradient_points,
                        compile_config=compile_config, notes=notes)
    if cut:
        document.set_stop_points(stop_gradient.addresses_of(document, cut))
    document.mark_unmodified()
    return document


def _load_keras_model(path: Path, fmt: str, trust: bool, custom: dict, notes: list,
                      configs: list):
    """Runs the loader for `fmt`; any failure of it on the file is a `UserError`.

    The file has passed `limits` already, but a hostile config can still make Keras's
    deserialisation recurse out, run out of memory or overflow, and h5py/zipfile raise
    their own errors: all of these are the file's fault, so all become one line.
    """
    import keras

    import freezestudio.core.graph.stop_gradient_layer  # noqa: F401 - registers StopGradient

    try:
        if fmt == formats.TF_KERAS_SAVEDMODEL:
            return tf_keras_compat.load_savedmodel(path, trust, custom, notes)
        if fmt == formats.H5 and tf_keras_compat.written_by_tf_keras(path):
            return tf_keras_compat.load_h5(path, trust, custom, notes)
        return keras.saving.load_model(path, custom_objects=custom, compile=False,
                                       safe_mode=not trust)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure is reported to the user
        # (Exception covers RecursionError, MemoryError, OverflowError and TF's own errors)
        raise _as_user_error(exc, path, fmt, configs) from None


def _as_user_error(exc: Exception, path: Path, fmt: str, configs: list = ()) -> UserError:
    message = str(exc)
    if fmt == formats.H5 and "positional argument" in message:
        attention = _layers_of_class(configs, _H5_UNREADABLE)
        if attention:
            return ModelFileError(
                f"{path}: Keras 3 cannot read {attention[0]} from .h5 (a Keras limitation, "
                "even for files Keras 3 wrote itself); save the model as .keras instead")
    if isinstance(exc, RecursionError):
        return ModelFileError(f"{path}: the stored model config nests too deeply to load")
    if isinstance(exc, MemoryError):
        return ModelFileError(f"{path}: loading it needs more memory than is available "
                              "(the file may declare implausibly large weights)")
    for pattern in _MISSING_CLASS_PATTERNS:
        match = pattern.search(message)
        if match:
            return MissingCustomObjectError(match.group(1).split(">")[-1], path)
    if isinstance(exc, PermissionError):
        return ModelFileError(f"{path}: permission denied")
    return ModelFileError(f"{path}: cannot be loaded as a {fmt} model: {first_line(exc)}")


def _compile_config(configs: list, fmt: str) -> dict | None:
    """The training configuration stored with the model (loss, metrics), if any."""
    if fmt == formats.KERAS and configs and isinstance(configs[0], dict):
        config = configs[0].get("compile_config")
        return config if isinstance(config, dict) else None
    return None


_H5_COMPILE_KEYS = ("loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
                    "steps_per_execution", "jit_compile")
"""The compile arguments an `.h5` `training_config` stores as given (names or configs)."""


def _h5_compile_config(path: Path, notes: list[str]) -> dict | None:
    """The `.h5` file's `training_config`, in the form of Keras 3's compile config (what
    `model.get_compile_config()` gives), or None; one that cannot be read is a note."""
    import h5py
    import keras

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("training_config")
        if raw is None:
            return None
        config = limits.parse_config(raw.encode() if isinstance(raw, str) else raw, path)
        compile_config = {key: config.get(key) for key in _H5_COMPILE_KEYS}
        optimizer = keras.optimizers.deserialize(config["optimizer_config"])
        compile_config["optimizer"] = keras.saving.serialize_keras_object(optimizer)
        return compile_config
    except Exception as exc:  # noqa: BLE001 - an unreadable training config is not a bad model
        notes.append(f"the file's training config (loss, metrics) could not be read "
                     f"({first_line(exc, 160)}): training chooses a loss itself")
        return None


def _layers_of_class(configs: list, classes: set[str]) -> list[str]:
    """"the CLASS layer 'NAME'" for every layer of one of `classes` in the configs."""
    found = []
    stack = list(configs)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            config = node.get("config")
            if node.get("class_name") in classes:
                name = config.get("name") if isinstance(config, dict) else None
                found.append(f"the {node['class_name']} layer '{name}'")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _restore_state(document: Document, path: Path, fmt: str) -> None:
    """Re-applies FreezeStudio's stored state: the stored plan (its `lora` rules keep the
    adapters Keras rebuilt, zeroed, and re-add those Keras's config cannot hold, inside
    composite layers), then the adapters' own values; adapters still zero start afresh."""
    from freezestudio.core.edits import lora

    state = read_state(path, fmt)
    if state and "plan" in state:
        from freezestudio.core.edits.plans import Plan, apply_plan
        from freezestudio.core.errors import PlanError

        try:
            apply_plan(document, Plan.from_dict(state["plan"]))
        except PlanError as exc:  # the file was changed by another tool since we saved it
            document.add_note(f"FreezeStudio's stored edit state was not applied: {exc}")
    entries = read_adapters(path, fmt) if document.adapters() else []
    missed = lora.restore_adapter_values(document, entries)
    if missed:
        document.add_note(f"the stored values of {len(missed)} LoRA adapter(s) fit no "
                          f"adapter of the model (e.g. {missed[0]}): not restored")
    revived = lora.revive_dead_adapters(document)
    if revived:
        document.add_note(
            f"{len(revived)} LoRA adapter(s) were loaded with both matrices zero, as Keras "
            f"reloads them (e.g. {revived[0].id}), and would never learn: re-initialised as "
            "enable_lora does (A random, B zero), the outputs unchanged")
    document.mark_unmodified()
