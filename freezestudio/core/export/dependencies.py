"""Optional dependencies: imported on demand, explained with the install command if missing."""

from __future__ import annotations

import importlib

from freezestudio.core.errors import UserError

ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
ONNX_INSTALL = "pip install 'freezestudio[onnx]' (or: pip install tf2onnx onnx onnxruntime)"


class MissingDependencyError(UserError):
    """An optional package a feature needs is not installed.

    Attributes:
        packages: the missing import names.
        install: the command that installs them.
    """

    def __init__(self, feature: str, packages, install: str, detail: str = ""):
        self.packages = list(packages)
        self.install = install
        super().__init__(f"{feature} needs {', '.join(self.packages)}, which "
                         f"{'is' if len(self.packages) == 1 else 'are'} not installed{detail}: "
                         f"{install}")


def require(feature: str, names, install: str) -> dict:
    """Imports the modules `names`.

    Returns:
        `{name: module}`.

    Raises:
        MissingDependencyError: one or more cannot be imported (naming `install`).
    """
    modules, missing, broken = {}, [], []
    for name in names:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            missing.append(name)
        except Exception as exc:  # noqa: BLE001 - a broken install fails in many ways
            missing.append(name)
            broken.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    if missing:
        detail = f" or cannot be imported ({'; '.join(broken)})" if broken else ""
        raise MissingDependencyError(feature, missing, install, detail)
    return modules


def require_onnx(runtime: bool = True) -> dict:
    """tf2onnx and onnx for the conversion, onnxruntime to verify the result."""
    from freezestudio.core.tf_import import import_tensorflow_quietly

    import_tensorflow_quietly()  # tf2onnx imports TensorFlow: without its native chatter
    names = ONNX_PACKAGES if runtime else ONNX_PACKAGES[:2]
    return require("ONNX export", names, ONNX_INSTALL)
