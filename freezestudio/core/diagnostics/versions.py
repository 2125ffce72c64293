"""The versions FreezeStudio runs with and the devices TensorFlow sees (Help > About).

`library_versions` reads the installed distributions' metadata: it imports nothing, so it
is cheap at any time. `visible_devices` imports TensorFlow: call it off the GUI thread.
"""

from __future__ import annotations

from importlib import metadata

from freezestudio import __version__

LIBRARIES = {"TensorFlow": "tensorflow", "Keras": "keras"}
"""Display name -> distribution name of the libraries the About box lists."""


def distribution_version(distribution: str) -> str:
    """The installed version of `distribution`, or "not installed"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def library_versions() -> dict[str, str]:
    """`{"FreezeStudio": ..., "TensorFlow": ..., "Keras": ...}` (installed versions)."""
    return {"FreezeStudio": __version__,
            **{name: distribution_version(dist) for name, dist in LIBRARIES.items()}}


def visible_devices() -> list[str]:
    """The logical devices TensorFlow can run on, e.g. `["/CPU:0", "/GPU:0"]`."""
    from freezestudio.core.tf_import import import_tensorflow_quietly
    from freezestudio.core.training.devices import list_devices

    import_tensorflow_quietly()
    return [device.name for device in list_devices()]
