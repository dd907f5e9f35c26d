"""Linear heads on frozen features, trained with the paper's weighted loss L(orig) + λ·L(extra) (its eq. 1).

The reference optimiser is the paper's (Table 4: full-batch SGD, lr 0.2, momentum 0.9, weight decay 5e-4,
1000 epochs) through torch.optim.SGD and autograd. ``solver="fused"`` takes exactly the same steps with the
cross-entropy gradient written out (no autograd graph), so it lands on the same head, and trains every head of one
:func:`train_heads` call at once (core.find.batched_heads.descend: each head its own steps, their matmuls shared);
``solver="lbfgs"`` minimises the same convex objective to its optimum, which the 1000 SGD steps do not quite
reach. ``solver="batched"`` (:func:`train_heads`) minimises many heads at once, e.g. a whole λ sweep, with batched
L-BFGS (core.find.batched_heads) to a lower objective than the 1000 SGD steps reach, in far fewer passes over the
features. ``benchmarks/heads.py`` compares a sweep's reference and batched heads side by side. Features are
standardised with the original training set's mean/std, stored in the head, so one learning rate suits every
backbone.
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
from core.find.head_problem import HeadProblem, PreparedProblem
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.threads import threads_for

HEAD_SCHEMA = 1
SOLVERS = ("sgd", "fused", "lbfgs", "batched")
BATCHED = ("fused", "batched")  # the solvers that train many heads in one computation (core.find.batched_heads)


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


def _prepare(p: HeadProblem, solver: str) -> PreparedProblem:
    if not 0.0 <= p.lam <= 1.0:
        raise InvalidInputError(f"λ must lie in [0, 1]; got {p.lam}.")
    if solver not in SOLVERS:
        raise InvalidInputError(
            f"Unknown head solver {solver!r}; use 'sgd' (the paper's), 'fused' (the same steps, faster), "
            "'lbfgs' (one head to its optimum) or 'batched' (many heads at once, to their optimum)."
        )
    C = len(p.classes)
    X, y = _check_inputs(p.X, p.y, C, "head training set")
    if len(y) == 0:
        raise InvalidInputError("The head training set is empty; check the split sizes.")
    has_extra = p.X_extra is not None and len(p.X_extra) > 0 and p.lam > 0
    Xe, ye = _check_inputs(p.X_extra, p.y_extra, C, "extra set") if has_extra else (None, None)
    if Xe is not None and Xe.shape[1] != X.shape[1]:
        raise InvalidInputError(f"The extra set has {Xe.shape[1]} features per row, the training set {X.shape[1]}.")
    mean, std = X.mean(0), X.std(0, unbiased=False).clamp_min(1e-6)
    return PreparedProblem(X, y, Xe, ye, p.lam if has_extra else 0.0, mean, std)


def l2_term(head: LinearHead, weight_decay: float) -> float:
    """(wd/2)·||[weight | bias]||²: the regulariser whose gradient is SGD's weight decay."""
    return 0.5 * weight_decay * float((head.weight * head.weight).sum() + (head.bias * head.bias).sum())


def problem_objective(head: LinearHead, problem: HeadProblem, weight_decay: float = HeadConfig().weight_decay) -> float:
    """The training objective every solver minimises, eq. 1 plus the weight-decay term, of ``head`` on ``problem``."""
    pr = _prepare(problem, "sgd")
    with torch.no_grad():
        lo = ((pr.X - head.mean) / head.std) @ head.weight.T + head.bias
        le = ((pr.Xe - head.mean) / head.std) @ head.weight.T + head.bias if pr.Xe is not None else None
        return float(weighted_loss(lo, pr.y, le, pr.ye, pr.lam)) + l2_term(head, weight_decay)


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
    problem = HeadProblem(X, y, classes, X_extra, y_extra, lam, meta)
    if cfg.solver in BATCHED:
        return train_heads([problem], cfg, progress=progress, should_stop=should_stop)[0]
    pr = _prepare(problem, cfg.solver)
    has_extra = pr.Xe is not None
    Z = (pr.X - pr.mean) / pr.std
    Ze = (pr.Xe - pr.mean) / pr.std if pr.Xe is not None else None
    torch.manual_seed(cfg.seed)
    lin = torch.nn.Linear(pr.X.shape[1], len(classes))
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    progress = progress or no_progress

    def objective() -> torch.Tensor:
        return weighted_loss(lin(Z), pr.y, lin(Ze) if has_extra else None, pr.ye, pr.lam)

    with threads_for(pr.X.shape[0] * pr.X.shape[1]):
        _fit(lin, objective, cfg, progress, should_stop)
    with torch.no_grad():
        final = float(objective())
    head = LinearHead(lin.weight.detach().clone(), lin.bias.detach().clone(), pr.mean, pr.std, list(classes))
    head.meta = _head_meta(meta, cfg, lam, pr, final, final + l2_term(head, cfg.weight_decay))
    return head


def _head_meta(
    meta: dict | None, cfg: HeadConfig, lam: float, pr: PreparedProblem, final: float, objective: float, **extra
) -> dict:
    return dict(
        meta or {},
        config=asdict(cfg),
        lam=lam,
        n_orig=len(pr.y),
        n_extra=int(len(pr.ye)) if pr.ye is not None else 0,
        final_loss=final,  # eq. 1 alone
        objective=objective,  # eq. 1 + (wd/2)·||θ||², what the solvers minimise
        schema=HEAD_SCHEMA,
        **extra,
    )


def train_heads(
    problems: list[HeadProblem],
    cfg: HeadConfig = HeadConfig(),
    *,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[LinearHead]:
    """Fit many heads, in the order given. With ``cfg.solver`` "batched" or "fused" every head whose features
    share a width and class count is trained together (core.find.batched_heads), on ``device`` (default CPU):
    batched L-BFGS, one batched computation per λ (each λ warm-started from the one before), or the paper's SGD
    steps in one (each head's own steps, all heads' matmuls together);
    identical problems (e.g. λ = 0 with different extra sets) are solved once. "sgd" and "lbfgs" train the heads
    one after another, exactly as :func:`train_head` does."""
    progress = progress or no_progress
    if cfg.solver not in BATCHED:
        heads = []
        for i, p in enumerate(problems):
            check_stop(should_stop)
            progress(i, len(problems), f"training head {i + 1} of {len(problems)}")
            heads.append(
                train_head(
                    p.X,
                    p.y,
                    p.classes,
                    cfg,
                    X_extra=p.X_extra,
                    y_extra=p.y_extra,
                    lam=p.lam,
                    meta=p.meta,
                    should_stop=should_stop,
                )
            )
        progress(len(problems), len(problems), "heads trained")
        return heads
    from core.find.batched_heads import train_batched

    prepared = [_prepare(p, cfg.solver) for p in problems]
    solved = train_batched(problems, prepared, cfg, device=device, progress=progress, should_stop=should_stop)
    heads = []
    for p, pr, (theta, objective, iterations) in zip(problems, prepared, solved):
        head = LinearHead(theta[:, :-1].contiguous(), theta[:, -1].contiguous(), pr.mean, pr.std, list(p.classes))
        l2 = l2_term(head, cfg.weight_decay)
        head.meta = _head_meta(p.meta, cfg, p.lam, pr, objective - l2, objective, iterations=iterations)
        heads.append(head)
    return heads


def _fit(lin: torch.nn.Linear, objective, cfg: HeadConfig, progress: ProgressFn, should_stop: StopFn | None) -> None:
    if cfg.solver == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            lin.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        for epoch in range(cfg.epochs):
            opt.zero_grad()
            loss = objective()
            loss.backward()
            opt.step()
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
