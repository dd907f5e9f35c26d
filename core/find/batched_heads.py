"""Many linear heads minimised at once: batched L-BFGS on the L2-regularised multinomial logistic loss.

Every head h minimises f_h(θ) = Σ_rows w_{h,row} · CE(θ z_row, y_row) + (wd/2)·||θ||², θ = [weight | bias], the
objective the paper's SGD descends (its weight decay is the gradient of the same L2 term). The rows come in
shared *blocks* (a model's original training set, one generated set...): a block's logits for all the heads that
use it are one matmul, (rows, D+1) @ (D+1, heads·C), and so is its gradient. Each head keeps its own L-BFGS
history and backtracking (Armijo) step, and drops out of the computation once its objective has decreased by less
than ``tol`` relative to its value on ``PATIENCE`` steps in a row (one short step, e.g. after a poor curvature pair,
does not stop a head that is still far from its optimum). The objective is strictly convex (wd > 0), so every step's curvature
pair is valid and the heads converge to the same optimum whichever start they get.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from core.config import HeadConfig
from core.find.head_problem import problem_key
from core.progress import ProgressFn, StopFn, check_stop
from core.threads import threads_for

if TYPE_CHECKING:
    from core.find.head_problem import HeadProblem, PreparedProblem

HISTORY = 10  # L-BFGS curvature pairs kept per head
ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
MAX_BACKTRACKS = 30
PATIENCE = 2  # consecutive steps with a relative decrease below tol that stop a head
CHUNK_FLOATS = 1 << 23  # logits computed this many floats at a time (32 MiB in float32)


@dataclass
class Block:
    """Rows shared by several heads: standardised features with a ones column, labels, and per head its row weight."""

    Z: torch.Tensor  # (N, D+1)
    y: torch.Tensor  # (N,)
    heads: torch.Tensor  # (k,) long: indices of the heads that use these rows
    weight: torch.Tensor  # (k,) each head's weight on every row of the block (1/N, or λ/M for a generated set)


def objective_and_grad(
    theta: torch.Tensor, blocks: list[Block], heads: torch.Tensor, weight_decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """f and ∇f for the heads ``heads`` (sorted indices) at ``theta`` (len(heads), C, D+1)."""
    C, D1 = theta.shape[1:]
    size = 1 + max(int(heads.max()), *(int(b.heads.max()) for b in blocks))
    pos = torch.full((size,), -1, dtype=torch.long, device=theta.device)
    pos[heads] = torch.arange(len(heads), device=theta.device)
    f = torch.zeros(len(heads), dtype=theta.dtype, device=theta.device)
    g = torch.zeros_like(theta)
    for b in blocks:
        keep = pos[b.heads] >= 0
        if not keep.any():
            continue
        p, w = pos[b.heads[keep]], b.weight[keep]
        k = len(p)
        W = theta[p].reshape(k * C, D1)
        gb = torch.zeros(k * C, D1, dtype=theta.dtype, device=theta.device)
        fb = torch.zeros(k, dtype=theta.dtype, device=theta.device)
        step = max(1, CHUNK_FLOATS // (k * C))
        for start in range(0, len(b.y), step):
            Zc, yc = b.Z[start : start + step], b.y[start : start + step]
            n = len(yc)
            P = (Zc @ W.T).view(n, k, C)
            lse = torch.logsumexp(P, 2)  # (n, k)
            picked = P.gather(2, yc.view(n, 1, 1).expand(n, k, 1)).squeeze(2)
            fb += (lse - picked).sum(0) * w
            P.sub_(lse.unsqueeze(2)).exp_()  # softmax, in place
            P.scatter_add_(2, yc.view(n, 1, 1).expand(n, k, 1), P.new_full((n, k, 1), -1.0))
            P.mul_(w.view(1, k, 1))
            gb.addmm_(P.view(n, k * C).T, Zc)
        f.index_add_(0, p, fb)
        g.index_add_(0, p, gb.view(k, C, D1))
    flat = theta.reshape(len(heads), -1)
    f += 0.5 * weight_decay * (flat * flat).sum(1)
    g += weight_decay * theta
    return f, g


def descend(
    theta: torch.Tensor, blocks: list[Block], cfg: HeadConfig, *, progress: ProgressFn, should_stop: StopFn | None
) -> Solution:
    """The paper's SGD (``solver="fused"``) on every head at once: ``cfg.epochs`` full-batch steps of
    torch.optim.SGD's update (momentum, no dampening, weight decay added to the gradient) from ``theta``, with
    the gradient of eq. 1 written out (d loss / d logits = row weight · (softmax − one-hot)). Each head takes
    exactly the steps it would take alone. A block shared by several heads (a model's original training set) is
    multiplied with all of them in one matmul; the blocks of one head each (its generated set) are padded into
    one batch and multiplied in one batched matmul, so a step costs a few operations however many heads train."""
    H, C, D1 = theta.shape
    dev, dtype = theta.device, theta.dtype
    # logits are laid out (heads, classes, rows): the softmax over classes and both matmuls run fastest so
    shared = [(b, b.Z.T.contiguous(), F.one_hot(b.y, C).to(dtype).T.unsqueeze(0)) for b in blocks if len(b.heads) > 1]
    single = [b for b in blocks if len(b.heads) == 1]
    if single:
        M = max(len(b.y) for b in single)
        Zs = torch.zeros(len(single), M, D1, dtype=dtype, device=dev)
        Ws = torch.zeros(len(single), 1, M, dtype=dtype, device=dev)  # 0 on padding rows: they add nothing
        ys = torch.zeros(len(single), M, dtype=torch.long, device=dev)
        for i, b in enumerate(single):
            Zs[i, : len(b.y)], ys[i, : len(b.y)], Ws[i, :, : len(b.y)] = b.Z, b.y, b.weight[0]
        Zst = Zs.transpose(1, 2).contiguous()
        hs = torch.cat([b.heads for b in single])
        onehot_s = F.one_hot(ys, C).to(dtype).transpose(1, 2).contiguous()
    theta = theta.clone()
    buf = None
    for epoch in range(cfg.epochs):
        d = cfg.weight_decay * theta
        for b, Zt, onehot in shared:
            k = len(b.heads)
            P = torch.softmax((theta[b.heads].reshape(k * C, D1) @ Zt).view(k, C, len(b.y)), 1)
            P.sub_(onehot).mul_(b.weight.view(k, 1, 1))
            d.index_add_(0, b.heads, (P.view(k * C, len(b.y)) @ b.Z).view(k, C, D1))
        if single:
            P = torch.softmax(torch.bmm(theta[hs], Zst), 1).sub_(onehot_s).mul_(Ws)
            d.index_add_(0, hs, torch.bmm(P, Zs))
        buf = d if buf is None else buf.mul_(cfg.momentum).add_(d)
        theta -= cfg.lr * buf
        if epoch % 50 == 0 or epoch == cfg.epochs - 1:
            check_stop(should_stop)
            progress(epoch + 1, cfg.epochs, "training heads (fused SGD)")
    f, _ = objective_and_grad(theta, blocks, torch.arange(H, device=dev), cfg.weight_decay)
    return Solution(theta, f, torch.full((H,), cfg.epochs, dtype=torch.long), H * (cfg.epochs + 1))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.flatten(1) * b.flatten(1)).sum(1)  # per head; flatten, unlike reshape(-1), takes 0 heads


@dataclass
class Solution:
    theta: torch.Tensor  # (H, C, D+1)
    objective: torch.Tensor  # (H,)
    iterations: torch.Tensor  # (H,) accepted L-BFGS steps per head
    passes: int  # evaluations of f and ∇f, counted per head, summed over heads


def minimise(
    theta: torch.Tensor,
    blocks: list[Block],
    weight_decay: float,
    *,
    tol: float,
    max_iter: int,
    progress: ProgressFn,
    should_stop: StopFn | None,
    label: str = "training heads (batched L-BFGS)",
) -> Solution:
    """Batched L-BFGS from ``theta`` (H, C, D+1); each head stops on its own relative decrease below ``tol``."""
    H = theta.shape[0]
    dev = theta.device
    everyone = torch.arange(H, device=dev)
    theta = theta.clone()
    f, g = objective_and_grad(theta, blocks, everyone, weight_decay)
    passes = H
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    R: list[torch.Tensor] = []  # 1 / (sᵀy) per head; 0 where a head made no step that iteration
    gamma = torch.zeros(H, dtype=theta.dtype, device=dev)  # initial inverse-Hessian scale, sᵀy / yᵀy
    iters = torch.zeros(H, dtype=torch.long, device=dev)
    short = torch.zeros(H, dtype=torch.long, device=dev)  # consecutive steps below tol, per head
    active = everyone.clone()
    for it in range(max_iter):
        check_stop(should_stop)
        progress(it, max_iter, label)
        a = active
        # two-loop recursion over each active head's own history
        q = g[a].clone()
        alphas = []
        for s, yv, r in zip(reversed(S), reversed(Y), reversed(R)):
            al = r[a] * _dot(s[a], q)
            q -= al.view(-1, 1, 1) * yv[a]
            alphas.append(al)
        ga = gamma[a]
        first = ga == 0  # no curvature pair yet: a steepest-descent step of unit length
        ga = torch.where(first, 1.0 / _dot(q, q).sqrt().clamp_min(1e-12), ga)
        q *= ga.view(-1, 1, 1)
        for (s, yv, r), al in zip(zip(S, Y, R), reversed(alphas)):
            be = r[a] * _dot(yv[a], q)
            q += (al - be).view(-1, 1, 1) * s[a]
        d = -q
        slope = _dot(g[a], d)
        bad = slope >= 0  # not a descent direction (numerical breakdown): fall back to steepest descent
        if bad.any():
            d[bad] = -g[a][bad] / _dot(g[a][bad], g[a][bad]).sqrt().clamp_min(1e-12).view(-1, 1, 1)
            slope = _dot(g[a], d)
        # backtracking line search, every head with its own step, all unsettled heads evaluated together
        t = torch.ones(len(a), dtype=theta.dtype, device=dev)
        f_new = torch.empty_like(t)
        g_new = torch.empty_like(g[a])
        todo = torch.ones(len(a), dtype=torch.bool, device=dev)
        for _ in range(MAX_BACKTRACKS):
            idx = todo.nonzero().squeeze(1)
            trial = theta[a[idx]] + t[idx].view(-1, 1, 1) * d[idx]
            ft, gt = objective_and_grad(trial, blocks, a[idx], weight_decay)
            passes += len(idx)
            ok = ft <= f[a[idx]] + ARMIJO * t[idx] * slope[idx]
            f_new[idx[ok]], g_new[idx[ok]] = ft[ok], gt[ok]
            todo[idx[ok]] = False
            if not todo.any():
                break
            nf = ~ok
            i2 = idx[nf]
            # minimiser of the quadratic through f(0), f'(0) and f(t), kept within [0.1 t, 0.5 t]
            tq = -slope[i2] * t[i2] ** 2 / (2 * (ft[nf] - f[a[i2]] - slope[i2] * t[i2]))
            t[i2] = torch.minimum(torch.maximum(tq, 0.1 * t[i2]), 0.5 * t[i2])
        moved = ~todo
        s_new = torch.zeros_like(theta)
        y_new = torch.zeros_like(theta)
        r_new = torch.zeros(H, dtype=theta.dtype, device=dev)
        am = a[moved]
        s_new[am] = t[moved].view(-1, 1, 1) * d[moved]
        y_new[am] = g_new[moved] - g[am]
        sy = _dot(s_new[am], y_new[am])
        okc = sy > 1e-12 * _dot(s_new[am], s_new[am]).sqrt() * _dot(y_new[am], y_new[am]).sqrt()
        r_new[am[okc]] = 1.0 / sy[okc]
        gamma[am[okc]] = sy[okc] / _dot(y_new[am[okc]], y_new[am[okc]])
        S.append(s_new)
        Y.append(y_new)
        R.append(r_new)
        if len(S) > HISTORY:
            S.pop(0), Y.pop(0), R.pop(0)
        decrease = f[am] - f_new[moved]
        theta[am] += s_new[am]
        f[am], g[am] = f_new[moved], g_new[moved]
        iters[am] += 1
        # a head is done when its steps have no longer lowered the objective by more than tol (relative) PATIENCE
        # times in a row, or it could not find a lower point at all
        small = decrease <= tol * f[am].abs().clamp_min(1e-12)
        short[am] = torch.where(small, short[am] + 1, torch.zeros_like(short[am]))
        done = torch.ones(len(a), dtype=torch.bool, device=dev)
        done[moved] = short[am] >= PATIENCE
        active = a[~done]
        if len(active) == 0:
            break
    progress(max_iter, max_iter, label)
    return Solution(theta, f, iters, passes)


def train_batched(
    problems: list[HeadProblem],
    prepared: list[PreparedProblem],
    cfg: HeadConfig,
    *,
    device=None,
    progress: ProgressFn,
    should_stop: StopFn | None,
) -> list[tuple[torch.Tensor, float, int]]:
    """(θ = [weight | bias] on the CPU, objective, steps) per problem, in order.

    Problems are grouped by (classes, feature width): one group is one batched computation. Inside a group,
    problems with the same original training set share its rows (and its standardisation), and identical
    problems are solved once. ``cfg.solver == "batched"``: batched L-BFGS (:func:`minimise`); heads with a
    generated set start from the optimum of their original set alone (solved first, one head per training set):
    a warm start that the whole λ sweep shares. ``cfg.solver == "fused"``: the paper's SGD steps from zero
    (:func:`descend`), every head of the group at once."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cache: dict = {}
    keys = []
    for p in problems:
        keys.append(problem_key(p, cache))
    out: list = [None] * len(problems)
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k[:2], []).append(i)
    for members in groups.values():
        solved = _solve_group(
            [keys[i] for i in members], [prepared[i] for i in members], cfg, dev, progress, should_stop
        )
        for i, sol in zip(members, solved):
            out[i] = sol
    return out


def _solve_group(keys, prepared, cfg, dev, progress, should_stop):
    C, D = keys[0][:2]
    slots: dict = {}  # distinct problem (original set, extra set, λ) -> its prepared tensors
    for k, pr in zip(keys, prepared):
        slots.setdefault(k[2:], pr)
    sgd = cfg.solver == "fused"
    anchors: dict = {}  # original training set -> its λ = 0 problem, the warm start of every head on that set
    for (orig, _, _), pr in [] if sgd else list(slots.items()):
        anchors.setdefault(orig, (orig, None, 0.0))
        slots.setdefault((orig, None, 0.0), pr)
    first = list(slots) if sgd else [k for k in slots if k[1] is None]  # SGD: one pass from zero, no warm start
    second = [] if sgd else [k for k in slots if k[1] is not None]
    theta: dict = {}
    result: dict = {}
    zs: dict = {}  # standardised rows with a ones column, per (original set, block)

    def rows(orig, which, pr):
        key = (orig, which)
        if key not in zs:
            X, y = (pr.X, pr.y) if which is None else (pr.Xe, pr.ye)
            Z = torch.cat([(X - pr.mean) / pr.std, torch.ones(len(X), 1)], 1)
            zs[key] = (Z.to(dev), y.to(dev))
        return zs[key]

    for phase, todo in enumerate((first, second)):
        if not todo:
            continue
        blocks: dict = {}
        for h, (orig, extra, lam) in enumerate(todo):
            pr = slots[(orig, extra, lam)]
            for which, w in ((None, 1.0 / len(pr.y)),) + (((extra, lam / len(pr.ye)),) if extra else ()):
                Z, y = rows(orig, which, pr)
                b = blocks.setdefault((orig, which), (Z, y, [], []))
                b[2].append(h)
                b[3].append(w)
        blist = [
            Block(Z, y, torch.tensor(hs, device=dev), torch.tensor(ws, dtype=Z.dtype, device=dev))
            for Z, y, hs, ws in blocks.values()
        ]
        init = torch.stack([theta[anchors[k[0]]] if phase else torch.zeros(C, D + 1) for k in todo]).to(dev)
        with threads_for(sum(len(b.y) for b in blist) * D):
            if sgd:
                sol = descend(init, blist, cfg, progress=progress, should_stop=should_stop)
            else:
                sol = minimise(
                    init,
                    blist,
                    cfg.weight_decay,
                    tol=cfg.tol,
                    max_iter=cfg.max_iter,
                    progress=progress,
                    should_stop=should_stop,
                )
        for h, k in enumerate(todo):
            theta[k] = sol.theta[h].cpu()
            result[k] = (theta[k], float(sol.objective[h]), int(sol.iterations[h]))
    return [result[k[2:]] for k in keys]
