"""Errors the user can act on.

Every `UserError` carries a one-line message meant to be shown as is (the CLI prints
`freezestudio: error: <message>` and exits 2; the GUI shows it in a dialog).
"""


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
