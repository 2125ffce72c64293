"""The result of an export: what was written and how well it matches the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from freezestudio.core.errors import UserError


class ExportCancelled(Exception):
    """The caller's cancel flag was raised; nothing was written."""


class VerificationError(UserError):
    """The export, loaded back, does not compute what the model computes.

    Attributes:
        report: the report with the failing checks (nothing was written).
    """

    def __init__(self, message: str, report: ExportReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class OutputCheck:
    """One output compared between the model and its export.

    Attributes:
        output: the output's name.
        max_abs_diff: the largest absolute difference over all elements.
        limit: the largest accepted difference, or None when only reported.
    """

    output: str
    max_abs_diff: float
    limit: float | None

    @property
    def ok(self) -> bool:
        return self.limit is None or self.max_abs_diff <= self.limit

    def line(self) -> str:
        if self.limit is None:
            verdict = "(reported only)"
        else:
            verdict = f"(limit {self.limit:.1e}) {'ok' if self.ok else 'FAILED'}"
        return f"{self.output}: max |diff| {self.max_abs_diff:.2e} {verdict}"


@dataclass
class ExportReport:
    """What an export wrote and what its verification found.

    Attributes:
        format: one of `options.FORMATS`.
        paths: every file or directory written (the main one first).
        runtime: what the export was loaded back with for verification ("" if not verified).
        checks: one per output (empty if not verified).
        notes: things the user should know (unrolled layers, quantisation, ...).
        seconds: wall time of the whole export.
        samples: rows of input the verification ran.
    """

    format: str
    paths: list[Path] = field(default_factory=list)
    runtime: str = ""
    checks: list[OutputCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0

    @property
    def verified(self) -> bool:
        return bool(self.checks)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def max_abs_diff(self) -> float | None:
        return max((c.max_abs_diff for c in self.checks), default=None)

    def lines(self) -> list[str]:
        """The report as text lines, for the CLI and the GUI."""
        main = self.paths[0] if self.paths else "(nothing)"
        lines = [f"exported {main} ({self.format}) in {self.seconds:.1f} s"]
        lines += [f"also wrote {path}" for path in self.paths[1:]]
        if self.checks:
            lines.append(f"verified with {self.runtime} on {self.samples} input row(s):")
            lines += [f"  {check.line()}" for check in self.checks]
        else:
            lines.append("not verified")
        lines += [f"note: {note}" for note in self.notes]
        return lines
