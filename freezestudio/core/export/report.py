"""The result of an export: what was written and how well it matches the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from freezestudio.core.errors import UserError

LAYER_LINES = 10
"""Ops of the per-layer report shown in the text report (the JSON has every one)."""


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


@dataclass
class Written:
    """What a format's writer reports back to the pipeline.

    Attributes:
        notes: things the user should know.
        float_bytes: a quantised export: the size of the same export unquantised (the
            writer has it, or writes it from what it already made).
        layer_report: with `ExportOptions.layer_report`: `layer_report.LayerError`s,
            worst first.
    """

    notes: list = field(default_factory=list)
    float_bytes: int | None = None
    layer_report: list | None = None


@dataclass(frozen=True)
class OutputCheck:
    """One output compared between the model and its export.

    Attributes:
        output: the output's name.
        max_abs_diff: the largest absolute difference over all elements.
        limit: the largest accepted difference, or None when only reported.
        top1_agreement: classifier outputs: the fraction of rows whose arg-max class
            is the model's (None: not a classifier).
        min_agreement: the least accepted agreement, or None when only reported.
        accuracy: with labels: the export's top-1 accuracy; `model_accuracy` the model's.
    """

    output: str
    max_abs_diff: float
    limit: float | None
    top1_agreement: float | None = None
    min_agreement: float | None = None
    accuracy: float | None = None
    model_accuracy: float | None = None

    @property
    def ok(self) -> bool:
        close = self.limit is None or self.max_abs_diff <= self.limit
        agrees = self.min_agreement is None or (self.top1_agreement or 0) >= self.min_agreement
        return close and agrees

    def line(self) -> str:
        verdict = "(reported only)" if self.limit is None else f"(limit {self.limit:.1e})"
        text = f"{self.output}: max |diff| {self.max_abs_diff:.2e} {verdict}"
        if self.top1_agreement is not None:
            floor = "" if self.min_agreement is None else f" (at least {self.min_agreement:g})"
            text += f", top-1 agreement {self.top1_agreement:.4f}{floor}"
        if self.accuracy is not None:
            text += f", accuracy {self.accuracy:.4f} (model {self.model_accuracy:.4f})"
        if self.limit is not None or self.min_agreement is not None:
            text += f" {'ok' if self.ok else 'FAILED'}"
        return text

    def failure(self) -> str:
        """Why this check failed, in a few words."""
        if self.limit is not None and self.max_abs_diff > self.limit:
            return f"'{self.output}' differs by {self.max_abs_diff:.3g} (limit {self.limit:.1e})"
        return (f"'{self.output}' agrees on the top-1 class for {self.top1_agreement:.4f} of "
                f"the samples (at least {self.min_agreement:g} required, --min-agreement)")

    def to_json(self) -> dict:
        return {"output": self.output, "max_abs_diff": self.max_abs_diff, "limit": self.limit,
                "top1_agreement": self.top1_agreement, "min_agreement": self.min_agreement,
                "accuracy": self.accuracy, "model_accuracy": self.model_accuracy}


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
        samples_source: where they came from ("random" or the user's data).
        quantization: the quantisation mode, or None.
        float_bytes: quantised exports: the size of the same export unquantised.
        layer_report: int8 TFLite with `layer_report` asked for: each quantised op's
            own error (`layer_report.LayerError`), worst first; else None.
    """

    format: str
    paths: list[Path] = field(default_factory=list)
    runtime: str = ""
    checks: list[OutputCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0
    samples_source: str = ""
    quantization: str | None = None
    float_bytes: int | None = None
    layer_report: list | None = None

    @property
    def verified(self) -> bool:
        return bool(self.checks)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def max_abs_diff(self) -> float | None:
        return max((c.max_abs_diff for c in self.checks), default=None)

    @property
    def bytes(self) -> int:
        """The size of what was written (every file of a folder)."""
        total = 0
        for path in self.paths:
            path = Path(path)
            if path.is_dir():
                total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            elif path.exists():
                total += path.stat().st_size
        return total

    def _summary(self, name: str) -> float | None:
        values = [getattr(c, name) for c in self.checks if getattr(c, name) is not None]
        return min(values) if values else None

    def to_json(self) -> dict:
        """The `export --json` object (docs/architecture.md, JSON output)."""
        return {
            "format": str(self.format),
            "output": str(self.paths[0]) if self.paths else None,
            "paths": [str(p) for p in self.paths],
            "bytes": self.bytes,
            "verified": self.verified,
            "runtime": self.runtime or None,
            "samples": self.samples,
            "samples_source": self.samples_source or None,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self._summary("top1_agreement"),
            "accuracy": self._summary("accuracy"),
            "model_accuracy": self._summary("model_accuracy"),
            "quantization": self.quantization,
            "float_bytes": self.float_bytes,
            "outputs": [c.to_json() for c in self.checks],
            "notes": list(self.notes),
            "seconds": self.seconds,
            "layer_report": (None if self.layer_report is None
                             else [entry.to_json() for entry in self.layer_report]),
        }

    def lines(self) -> list[str]:
        """The report as text lines, for the CLI and the GUI."""
        main = self.paths[0] if self.paths else "(nothing)"
        lines = [f"exported {main} ({self.format}) in {self.seconds:.1f} s"]
        lines += [f"also wrote {path}" for path in self.paths[1:]]
        if self.checks:
            source = f" ({self.samples_source})" if self.samples_source else ""
            lines.append(f"verified with {self.runtime} on {self.samples} input row(s)"
                         f"{source}:")
            lines += [f"  {check.line()}" for check in self.checks]
        else:
            lines.append("not verified")
        if self.float_bytes:
            lines.append(f"size {self.bytes} bytes, {self.bytes / self.float_bytes:.2f}x the "
                         f"unquantised export ({self.float_bytes} bytes)")
        if self.layer_report:
            lines.append("per-layer quantisation error (each op's own, worst first):")
            lines += [f"  {entry.line()}" for entry in self.layer_report[:LAYER_LINES]]
            if len(self.layer_report) > LAYER_LINES:
                lines.append(f"  ... and {len(self.layer_report) - LAYER_LINES} more (--json "
                             "lists every op)")
        lines += [f"note: {note}" for note in self.notes]
        return lines
