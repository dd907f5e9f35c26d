"""What a linear head is fitted to (one problem of eq. 1), shared by the per-head solvers (core.find.heads) and
the batched one (core.find.batched_heads)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class HeadProblem:
    """One head to fit: the original training set (X, y), optionally an extra (generated) set weighted by λ."""

    X: np.ndarray | torch.Tensor
    y: np.ndarray | torch.Tensor
    classes: list[str]
    X_extra: np.ndarray | torch.Tensor | None = None
    y_extra: np.ndarray | torch.Tensor | None = None
    lam: float = 0.0
    meta: dict | None = None


@dataclass
class PreparedProblem:
    X: torch.Tensor
    y: torch.Tensor
    Xe: torch.Tensor | None
    ye: torch.Tensor | None
    lam: float  # 0 when there is no extra set
    mean: torch.Tensor
    std: torch.Tensor


def digest(a, cache: dict) -> str:
    """Content key of an array, cached by object so a shared training set is hashed once."""
    if id(a) not in cache:
        arr = np.ascontiguousarray(np.asarray(a))
        cache[id(a)] = (a, hashlib.blake2b(arr.tobytes(), digest_size=16).hexdigest() + str(arr.shape))
    return cache[id(a)][1]


def problem_key(p: HeadProblem, cache: dict) -> tuple:
    """(classes, feature width, original set, extra set, λ) by content: problems with equal keys have the same
    head. The extra set counts only when it weighs anything (λ > 0 and rows), as in the solvers."""
    has_extra = p.X_extra is not None and len(p.X_extra) > 0 and p.lam > 0
    orig = digest(p.X, cache) + digest(p.y, cache)
    extra = digest(p.X_extra, cache) + digest(p.y_extra, cache) if has_extra else None
    return (len(p.classes), int(np.shape(p.X)[1]), orig, extra, float(p.lam) if has_extra else 0.0)
