"""Runs the real `python -m freezestudio` in subprocesses, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass
class Run:
    args: tuple
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_stderr_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def cli_env() -> dict:
    """The user's environment: TensorFlow's log level is NOT preset, the app must cope."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return env


def run_cli(*args, cwd=None, timeout=180) -> Run:
    command = [sys.executable, "-m", "freezestudio", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=cli_env(),
                          timeout=timeout)
    return Run(tuple(map(str, args)), done.returncode, done.stdout, done.stderr)


def run_many(arg_lists, workers=2, cwd=None) -> list[Run]:
    """Runs several CLI invocations, two at a time (each one imports TensorFlow)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda args: run_cli(*args, cwd=cwd), arg_lists))


def assert_user_error(run: Run, *fragments: str) -> None:
    """Exit 2, one `freezestudio: error:` line as the last stderr line, no traceback."""
    assert run.returncode == 2, (run.args, run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    last = run.last_stderr_line
    assert last.startswith("freezestudio: error: "), run.stderr[-2000:]
    assert run.stderr.count("freezestudio: error:") == 1, run.stderr[-2000:]
    assert run.stderr.rstrip("\n").endswith(last)
    for fragment in fragments:
        assert fragment in last, (fragment, last)
