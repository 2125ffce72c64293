"""Shared test setup: quiet TensorFlow, and make the helper modules in tests/ importable."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Ends the test process with pytest's own exit status once every plugin is done.

    The interpreter's own finalization, after a suite that has loaded TensorFlow, Qt,
    onnxruntime and LiteRT into one process, can abort in a C extension's garbage
    collection ("Fatal Python error: bool_dealloc ... finalizing"), turning a green run
    into exit 134. Nothing is tested after this point, so the finalization is skipped.
    """
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
