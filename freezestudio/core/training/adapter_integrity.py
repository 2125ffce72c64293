"""After a run: did each LoRA adapter account for all of its layer's kernel change?

A merged save (Keras's own, or `--merge-lora`) stores the kernel a layer computes with,
`W + alpha/rank * A @ B`, and drops the factors. So the check is stated in those terms:
over the run, the computed kernel's change is `(W1 - W0) + s (A1 B1 - A0 B0)`; with the
base kernel fixed it is a difference of two rank-`rank` products, of rank at most
`2 * rank` (at most `rank` from a fresh adapter, whose B starts at zero). A larger
numerical rank means the base kernel itself moved. The rank is computed in float64 from
the stored factors, not from rounded float32 sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_RANK_TOLERANCE = 1e-6  # relative to the largest singular value, in float64


@dataclass(frozen=True)
class AdapterCheck:
    """One adapter's outcome: its address (the kernel's weight id), whether its factors
    moved, the numerical rank of the computed kernel's change and the bound."""

    id: str
    moved: bool
    change_rank: int
    rank_bound: int

    @property
    def ok(self) -> bool:
        return self.change_rank <= self.rank_bound

    def to_dict(self) -> dict:
        return {"id": self.id, "moved": self.moved, "change_rank": self.change_rank,
                "rank_bound": self.rank_bound}


def check_adapters(document, before: dict) -> list[AdapterCheck]:
    """Checks every live adapter against the values before the run.

    Args:
        document: after the run.
        before: weight id -> value before the run (`WeightSnapshot.values`); adapters
            added since have nothing to compare with and are skipped.
    """
    checks = []
    for adapter in document.adapters():
        ids = (adapter.kernel.id, adapter.a.id, adapter.b.id)
        if any(i not in before for i in ids):
            continue
        w0, a0, b0 = (np.asarray(before[i], np.float64) for i in ids)
        w1, a1, b1 = (np.asarray(r.variable.numpy(), np.float64)
                      for r in (adapter.kernel, adapter.a, adapter.b))
        scale = adapter.alpha / adapter.rank
        rows = int(np.prod(a1.shape[:-1]))  # A is (..., rank) and B (rank, ...) for every
        change = (w1 - w0).reshape(rows, -1) + scale * (  # layer kind
            _product(a1, b1) - _product(a0, b0)).reshape(rows, -1)
        moved = not (np.array_equal(a0, a1) and np.array_equal(b0, b1))
        fresh = not np.any(b0)
        checks.append(AdapterCheck(adapter.id, moved, _numerical_rank(change),
                                   adapter.rank * (1 if fresh else 2)))
    return checks


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.tensordot(a, b, axes=([-1], [0]))


def _numerical_rank(matrix: np.ndarray) -> int:
    if not np.any(matrix):
        return 0
    singular = np.linalg.svd(matrix, compute_uv=False)
    return int(np.sum(singular > singular[0] * _RANK_TOLERANCE))
