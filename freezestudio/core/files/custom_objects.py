"""Imports user modules that define custom Keras classes (`--custom-objects MODULE.py`)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from freezestudio.core.errors import UserError


def import_custom_objects(module_paths) -> dict[str, type]:
    """Imports each module file and returns the Keras classes it defines, by name.

    Importing also runs the module's `@keras.saving.register_keras_serializable` decorators,
    so registered classes resolve under their registered names too.

    Raises:
        UserError: a module file is missing or fails to import.
    """
    import keras

    found: dict[str, type] = {}
    for raw_path in module_paths:
        path = Path(raw_path)
        if not path.is_file():
            raise UserError(f"custom-objects module {path}: no such file")
        module_name = f"freezestudio_custom_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"custom-objects module {path}: not a Python module (give the .py "
                            "file that defines and registers the classes)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's module, any failure is theirs
            del sys.modules[module_name]
            raise UserError(
                f"custom-objects module {path} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == module_name
                    and issubclass(obj, keras.layers.Layer | keras.losses.Loss
                                   | keras.metrics.Metric | keras.initializers.Initializer
                                   | keras.regularizers.Regularizer)):
                found[name] = obj
    return found
