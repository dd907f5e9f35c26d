"""What a linear head is fitted to (one problem of eq. 1), shared by the per-head solvers (core.find.heads) and
the batched one (core.find.batched_heads)."""

from __future__ import annotations

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
