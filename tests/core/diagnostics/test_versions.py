"""The versions and devices Help > About lists, against the libraries themselves."""

from __future__ import annotations

import freezestudio
from freezestudio.core.diagnostics.versions import (
    distribution_version,
    library_versions,
    visible_devices,
)


def test_versions_are_the_installed_libraries():
    import keras
    import tensorflow as tf

    assert library_versions() == {"FreezeStudio": freezestudio.__version__,
                                  "TensorFlow": tf.__version__, "Keras": keras.__version__}
    assert distribution_version("no-such-distribution-freezestudio") == "not installed"


def test_devices_are_the_ones_tensorflow_sees():
    import tensorflow as tf

    expected = ["/" + d.name.split("device:")[-1] for d in tf.config.list_logical_devices()
                if d.device_type in ("CPU", "GPU")]
    assert visible_devices() == expected and "/CPU:0" in expected
