"""Linear heads on frozen features, trained with the paper's weighted loss L(orig) + λ·L(extra) (its eq. 1).

The reference optimiser is the paper's (Table 4: full-batch SGD, lr 0.2, momentum 0.9, weight decay 5e-4,
1000 epochs) through torch.optim.SGD and autograd. ``solver="fused"`` takes exactly the same steps with the
cross-entropy gradient written out (two matmuls a step, no autograd graph), so it lands on the same head;
``solver="lbfgs"`` minimises the same convex objective to its optimum, which the 1000 SGD steps do not quite
reach. ``benchmarks/heads.py`` measures all three side by side. Features are standardised with the
original training set's mean/std, stored in the head, so one learning rate suits every backbone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from core import store
from core.config import HeadConfig
from core.errors import InvalidInputError
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.threads import threads_for

HEAD_SCHEMA = 1
SOLVERS = ("sgd", "fused", "lbfgs")


@dataclass
class LinearHead:
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    mean: torch.Tensor  # (D,) feature standardisation from the original training set
    std: torch.Tensor  # (D,)
    classes: list[str]
    meta: dict = field(default_factory=dict)  # backbone, weights id, feature key, training config, losses

    def logits(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(np.array(X, dtype=np.float32))
        return ((X - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, X) -> np.ndarray:
        return self.logits(X).argmax(1).numpy()

    def accuracy(self, X, y) -> float:
        y = np.asarray(y)
        return float((self.predict(X) == y).mean()) if len(y) else float("nan")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tensors = {
            "weight": self.weight.contiguous(),
            "bias": self.bias.contiguous(),
            "mean": self.mean.contiguous(),
            "std": self.std.contiguous(),
        }
        meta = {
            "classes": json.dumps(self.classes),
            "meta": json.dumps(self.meta, default=str),
            "schema": str(HEAD_SCHEMA),
        }
        with store.atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearHead:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
        t = load_file(str(path))
        return cls(t["weight"], t["bias"], t["mean"], t["std"], json.loads(md["classes"]), json.loads(md["meta"]))


def _check_inputs(X, y, n_classes: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.as_tensor(np.array(X, dtype=np.float32))
    y = torch.as_tensor(np.array(y, dtype=np.int64))
    if X.ndim != 2 or len(X) != len(y):
        raise InvalidInputError(f"{what}: expected features (N, D) and N labels, got {tuple(X.shape)} and {len(y)}.")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise InvalidInputError(f"{what}: labels must lie in 0..{n_classes - 1}.")
    return X, y


def weighted_loss(logits_orig, y_orig, logits_extra=None, y_extra=None, lam: float = 0.0) -> torch.Tensor:
    """Eq. 1: mean cross-entropy on the original set plus λ times mean cross-entropy on the extra set."""
    loss = F.cross_entropy(logits_orig, y_orig)
    if lam > 0 and logits_extra is not None and len(y_extra):
        loss = loss + lam * F.cross_entropy(logits_extra, y_extra)
    return loss


def train_head(
    X,
    y,
    classes: list[str],
    cfg: HeadConfig = HeadConfig(),
    *,
    X_extra=None,
    y_extra=None,
    lam: float = 0.0,
    meta: dict | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> LinearHead:
    """Fit a linear head on (X, y) plus, weighted by ``lam``, an extra (generated) set."""
    if not 0.0 <= lam <= 1.0:
        raise InvalidInputError(f"λ must lie in [0, 1]; got {lam}.")
    if cfg.solver not in SOLVERS:
        raise InvalidInputError(
            f"Unknown head solver {cfg.solver!r}; use 'sgd' (the paper's), 'fused' (the same steps, faster) or 'lbfgs'."
        )
    C = len(classes)
    X, y = _check_inputs(X, y, C, "head training set")
    if len(y) == 0:
        raise InvalidInputError("The head training set is empty; check the split sizes.")
    has_extra = X_extra is not None and len(X_extra) > 0 and lam > 0
    Xe, ye = _check_inputs(X_extra, y_extra, C, "extra set") if has_extra else (None, None)

    mean, std = X.mean(0), X.std(0, unbiased=False).clamp_min(1e-6)
    Z = (X - mean) / std
    Ze = (Xe - mean) / std if has_extra else None
    torch.manual_seed(cfg.seed)
    lin = torch.nn.Linear(X.shape[1], C)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    progress = progress or no_progress

    def objective() -> torch.Tensor:
        return weighted_loss(lin(Z), y, lin(Ze) if has_extra else None, ye, lam if has_extra else 0.0)

    with threads_for(X.shape[0] * X.shape[1]):
        if cfg.solver == "fused":
            _fit_fused(lin, Z, y, Ze, ye, lam if has_extra else 0.0, cfg, progress, should_stop)
        else:
            _fit(lin, objective, cfg, progress, should_stop)
    with torch.no_grad():
        final = float(objective())
    info = dict(
        meta or {},
        config=asdict(cfg),
        lam=lam,
        n_orig=len(y),
        n_extra=len(ye) if ye is not None else 0,
        final_loss=final,
        schema=HEAD_SCHEMA,
    )
    return LinearHead(lin.weight.detach().clone(), lin.bias.detach().clone(), mean, std, list(classes), info)


def _fit(lin: torch.nn.Linear, objective, cfg: HeadConfig, progress: ProgressFn, should_stop: StopFn | None) -> None:
    if cfg.solver == "sgd":
        sgd = torch.optim.SGD(lin.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for epoch in range(cfg.epochs):
            sgd.zero_grad()
            loss = objective()
            loss.backward()
            sgd.step()
            if epoch % 50 == 0 or epoch == cfg.epochs - 1:
                check_stop(should_stop)
                progress(epoch + 1, cfg.epochs, "training head (SGD)")
    else:
        # Same objective as SGD with weight decay: the decay term is (wd/2)·||θ||² over weight and bias.
        opt = torch.optim.LBFGS(
            lin.parameters(),
            lr=1.0,
            max_iter=500,
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            loss = objective() + 0.5 * cfg.weight_decay * sum((p * p).sum() for p in lin.parameters())
            loss.backward()
            return loss

        check_stop(should_stop)
        opt.step(closure)
        progress(1, 1, "training head (L-BFGS)")


@torch.no_grad()
def _fit_fused(
    lin: torch.nn.Linear, Z, y, Ze, ye, lam: float, cfg: HeadConfig, progress: ProgressFn, should_stop: StopFn | None
) -> None:
    """torch.optim.SGD's update (momentum, no dampening, weight decay added to the gradient) with the gradient
    of eq. 1 written out: d loss / d logits = row weight · (softmax − one-hot)."""
    X = Z if Ze is None or lam == 0 else torch.cat([Z, Ze])
    labels = y if Ze is None or lam == 0 else torch.cat([y, ye])
    w = torch.full((len(X), 1), 1.0 / len(y))
    if len(X) > len(y):
        w[len(y) :] = lam / (len(X) - len(y))
    onehot = torch.nn.functional.one_hot(labels, lin.out_features).to(X.dtype)
    Xa = torch.cat([X, torch.ones(len(X), 1)], 1)  # bias as a last input column
    theta = torch.cat([lin.weight, lin.bias[:, None]], 1).clone()  # (C, D+1)
    buf = None
    for epoch in range(cfg.epochs):
        G = (torch.softmax(Xa @ theta.T, 1) - onehot) * w  # (N, C)
        d = G.T @ Xa + cfg.weight_decay * theta
        buf = d if buf is None else buf.mul_(cfg.momentum).add_(d)
        theta -= cfg.lr * buf
        if epoch % 50 == 0 or epoch == cfg.epochs - 1:
            check_stop(should_stop)
            progress(epoch + 1, cfg.epochs, "training head (fused SGD)")
    lin.weight.copy_(theta[:, :-1])
    lin.bias.copy_(theta[:, -1])
