"""The command line's exit codes (docs/architecture.md, Contracts: Exit codes)."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What `freezestudio` returns to the shell."""

    OK = 0
    FAILURE = 1  # an unexpected failure: short message, traceback in a log file
    USER_ERROR = 2  # bad arguments, file, plan or data: one line `freezestudio: error: ...`
    INTEGRITY = 3  # train: a weight that must not change did; the model was saved anyway
    INTERRUPTED = 130  # Ctrl+C, or a run cancelled before it finished (128 + SIGINT)
