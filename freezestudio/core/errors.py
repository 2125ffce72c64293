"""Errors the user can act on, and how a foreign exception becomes one line.

Every `UserError` carries a one-line message meant to be shown as is (the CLI prints
`freezestudio: error: <message>` and exits 2; the GUI shows it in a dialog).
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300, default: str | None = None) -> str:
    """The first non-blank line of an exception's message, stripped and cut to `limit`
    characters: what a one-line error quotes of a library's (often multi-line) message.

    Args:
        default: for a blank message; None means the exception's class name.
    """
    line = next((text.strip() for text in str(exc).splitlines() if text.strip()), None)
    if line is None:
        return type(exc).__name__ if default is None else default
    return line[:limit]


class UserError(Exception):
    """A problem with the user's input: a file, an argument, a plan, data."""


class ModelFileError(UserError):
    """The file cannot be read as a model (missing, corrupt, unsupported, unreadable)."""


class UntrustedCodeError(UserError):
    """The file carries code (e.g. a Lambda layer) and the user has not trusted it.

    Attributes:
        objects: descriptions of the code-carrying objects found.
    """

    def __init__(self, path, objects):
        self.objects = list(objects)
        shown = ", ".join(self.objects[:3]) + (" ..." if len(self.objects) > 3 else "")
        super().__init__(
            f"{path} contains code that would run when loaded ({shown}); "
            "open it only if you trust its author (CLI: --trust)"
        )


class MissingCustomObjectError(UserError):
    """The model uses a class that is not importable."""

    def __init__(self, class_name, path):
        self.class_name = class_name
        super().__init__(
            f"{path} uses the custom class '{class_name}', which is not available: "
            "provide the module that defines and registers it (CLI: --custom-objects MODULE.py)"
        )


class PlanError(UserError):
    """A plan is malformed or one of its patterns matches nothing."""
