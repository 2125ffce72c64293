"""Exports of a document for deployment or editing, each verified numerically.

The package's entry points (the pipeline is `pipeline.py`; `options` and `report` are its
leaves; one module per format writes it, `verify` loads it back in its own runtime).
Formats and their contract: docs/architecture.md, "Files in and out".
"""

from freezestudio.core.export.dependencies import MissingDependencyError
from freezestudio.core.export.options import FORMATS, ExportOptions
from freezestudio.core.export.pipeline import (
    available_formats,
    check_request,
    default_suffix,
    export_document,
)
from freezestudio.core.export.report import (
    ExportCancelled,
    ExportReport,
    OutputCheck,
    VerificationError,
)

__all__ = [
    "FORMATS", "ExportCancelled", "ExportOptions", "ExportReport", "MissingDependencyError",
    "OutputCheck", "VerificationError", "available_formats", "check_request", "default_suffix",
    "export_document",
]
