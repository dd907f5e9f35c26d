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
# A head of λ_j on a chain (one original and one extra set) starts from its neighbour λ_{j-1}'s optimum, moved this
# share of the way the chain moved from λ_{j-2} to λ_{j-1} (scaled to the λ step). Measured on 5-λ sweeps of
# benchmarks/batched_solver.py's synthetic features, in passes over the features against starting every head from
# λ = 0: 0.5 took 29-33% fewer, the neighbour alone (0) 20-29% fewer, the full secant (1) 17-24% fewer.
EXTRAPOLATE = 0.5
TINY = 1e-30  # a true-class probability below this is recomputed from the logits (float32 underflow)


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
    """f and ∇f for the heads ``heads`` (sorted indices) at ``theta`` (len(heads), C, D+1).

    Per chunk of rows: one matmul for the logits of every head of the block, one fused softmax, one matmul for the
    gradient; each head's row weight scales its summed loss and gradient once per block, not every logit."""
    C, D1 = theta.shape[1:]
    size = 1 + max(int(heads.max()), *(int(b.heads.max()) for b in blocks))
    pos = torch.full((size,), -1, dtype=torch.long, device=theta.device)
    pos[heads] = torch.arange(len(heads), device=theta.device)
    f = 0.5 * weight_decay * (theta * theta).flatten(1).sum(1)
    g = weight_decay * theta
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
            at = yc.view(n, 1, 1).expand(n, k, 1)
            S = torch.softmax(P, 2)
            py = S.gather(2, at).squeeze(2)  # (n, k) probability of the true class
            if bool((py < TINY).any()):  # underflow: -log p from the logits instead
                nll = torch.logsumexp(P, 2) - P.gather(2, at).squeeze(2)
            else:
                nll = -py.log()
            fb += nll.sum(0)
            S.scatter_add_(2, at, S.new_full((n, k, 1), -1.0))  # softmax − one-hot: d loss / d logits
            gb.addmm_(S.view(n, k * C).T, Zc)
        f.index_add_(0, p, fb * w)
        g.index_add_(0, p, gb.view(k, C, D1).mul_(w.view(k, 1, 1)))
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
    """Per head (first dimension) dot product, as one batched BLAS call; takes 0 heads."""
    return torch.bmm(a.flatten(1).unsqueeze(1), b.flatten(1).unsqueeze(2)).view(len(a))


def _rows(a: torch.Tensor, every: bool, x: torch.Tensor) -> torch.Tensor:
    """The heads ``a`` of ``x``: ``x`` itself when ``a`` is every head (no copy)."""
    return x if every else x[a]


@dataclass
class Solution:
    theta: torch.Tensor  # (H, C, D+1)
    objective: torch.Tensor  # (H,)
    iterations: torch.Tensor  # (H,) accepted L-BFGS steps per head
    passes: int  # evaluations of f and ∇f, counted per head, summed over heads
    gamma: torch.Tensor | None = None  # (H,) each head's last inverse-Hessian scale sᵀy / yᵀy (0: none)


def minimise(
    theta: torch.Tensor,
    blocks: list[Block],
    weight_decay: float,
    *,
    tol: float,
    max_iter: int,
    progress: ProgressFn,
    should_stop: StopFn | None,
    gamma: torch.Tensor | None = None,
    label: str = "training heads (batched L-BFGS)",
) -> Solution:
    """Batched L-BFGS from ``theta`` (H, C, D+1); each head stops on its own relative decrease below ``tol``.

    ``gamma`` (H,): an initial inverse-Hessian scale per head (e.g. a warm start's last one), so that the first
    step is a scaled gradient step rather than one of unit length; 0 where there is none. The vector work between
    the passes (the two-loop recursion, the updates) runs on one thread when the heads' parameters are small: it is
    many short memory-bound operations, which gain little from more threads and, on cores busy with other work, lose
    much waiting for them (a 10-head sweep of 200 classes x 1024-d on a shared 2-core machine: 101 s vs 4 s)."""
    H = theta.shape[0]
    dev = theta.device
    everyone = torch.arange(H, device=dev)
    numel = theta.numel()

    def lean():
        return threads_for(numel)

    theta = theta.clone()
    f, g = objective_and_grad(theta, blocks, everyone, weight_decay)
    passes = H
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    R: list[torch.Tensor] = []  # 1 / (sᵀy) per head; 0 where a head made no step that iteration
    gamma = torch.zeros(H, dtype=theta.dtype, device=dev) if gamma is None else gamma.to(dev, theta.dtype).clone()
    iters = torch.zeros(H, dtype=torch.long, device=dev)
    short = torch.zeros(H, dtype=torch.long, device=dev)  # consecutive steps below tol, per head
    active = everyone.clone()
    for it in range(max_iter):
        check_stop(should_stop)
        progress(it, max_iter, label)
        a = active
        every = len(a) == H  # all heads still active: history and state are used whole, not gathered

        with lean():
            # two-loop recursion over each active head's own history
            ga_, q = _rows(a, every, g), _rows(a, every, g).clone()
            alphas = []
            for sv, yv, r in zip(reversed(S), reversed(Y), reversed(R)):
                sa, ya = _rows(a, every, sv), _rows(a, every, yv)
                al = r[a] * _dot(sa, q)
                q.sub_(al.view(-1, 1, 1) * ya)
                alphas.append((al, sa, ya, r))
            ga = gamma[a]
            first = ga == 0  # no curvature pair yet: a steepest-descent step of unit length
            ga = torch.where(first, 1.0 / _dot(q, q).sqrt().clamp_min(1e-12), ga)
            q.mul_(ga.view(-1, 1, 1))
            for al, sa, ya, r in reversed(alphas):
                be = r[a] * _dot(ya, q)
                q.add_((al - be).view(-1, 1, 1) * sa)
            d = q.neg_()
            slope = _dot(ga_, d)
            bad = slope >= 0  # not a descent direction (numerical breakdown): fall back to steepest descent
            if bad.any():
                d[bad] = -ga_[bad] / _dot(ga_[bad], ga_[bad]).sqrt().clamp_min(1e-12).view(-1, 1, 1)
                slope = _dot(ga_, d)
            theta_a, f_a = _rows(a, every, theta), f[a]
        # backtracking line search, every head with its own step, all unsettled heads evaluated together
        t = torch.ones(len(a), dtype=theta.dtype, device=dev)
        f_new = torch.empty_like(t)
        g_new = torch.empty_like(ga_)
        todo = torch.ones(len(a), dtype=torch.bool, device=dev)
        for _ in range(MAX_BACKTRACKS):
            idx = todo.nonzero().squeeze(1)
            trial = torch.addcmul(theta_a[idx], t[idx].view(-1, 1, 1), d[idx])
            ft, gt = objective_and_grad(trial, blocks, a[idx], weight_decay)
            passes += len(idx)
            ok = ft <= f_a[idx] + ARMIJO * t[idx] * slope[idx]
            if bool(ok.all()) and len(idx) == len(a):
                f_new, g_new = ft, gt
                todo[:] = False
                break
            f_new[idx[ok]], g_new[idx[ok]] = ft[ok], gt[ok]
            todo[idx[ok]] = False
            if not todo.any():
                break
            nf = ~ok
            i2 = idx[nf]
            # minimiser of the quadratic through f(0), f'(0) and f(t), kept within [0.1 t, 0.5 t]
            tq = -slope[i2] * t[i2] ** 2 / (2 * (ft[nf] - f_a[i2] - slope[i2] * t[i2]))
            t[i2] = torch.minimum(torch.maximum(tq, 0.1 * t[i2]), 0.5 * t[i2])
        with lean():
            moved = ~todo
            am = a[moved]
            # the new curvature pair, in the storage of the oldest one once the history is full
            s_new, y_new = (
                (S.pop(0), Y.pop(0)) if len(S) == HISTORY else (torch.empty_like(theta), torch.empty_like(theta))
            )
            r_new = R.pop(0).zero_() if len(R) == HISTORY else torch.zeros(H, dtype=theta.dtype, device=dev)
            if every and bool(moved.all()):
                torch.mul(d, t.view(-1, 1, 1), out=s_new)
                torch.sub(g_new, g, out=y_new)
                sm, ym = s_new, y_new
            else:
                s_new[am] = t[moved].view(-1, 1, 1) * d[moved]
                y_new[am] = g_new[moved] - g[am]
                sm, ym = s_new[am], y_new[am]
            sy = _dot(sm, ym)
            yy = _dot(ym, ym)
            okc = sy > 1e-12 * _dot(sm, sm).sqrt() * yy.sqrt()
            r_new[am[okc]] = 1.0 / sy[okc]
            gamma[am[okc]] = sy[okc] / yy[okc]
            S.append(s_new)
            Y.append(y_new)
            R.append(r_new)
            decrease = f[am] - f_new[moved]
            if every and bool(moved.all()):
                theta.add_(s_new)
                f, g = f_new.clone(), g_new
            else:
                theta[am] += sm
                f[am], g[am] = f_new[moved], g_new[moved]
            iters[am] += 1
            # a head is done when its steps have no longer lowered the objective by more than tol (relative)
            # PATIENCE times in a row, or it could not find a lower point at all
            small = decrease <= tol * f[am].abs().clamp_min(1e-12)
            short[am] = torch.where(small, short[am] + 1, torch.zeros_like(short[am]))
            done = torch.ones(len(a), dtype=torch.bool, device=dev)
            done[moved] = short[am] >= PATIENCE
            active = a[~done]
        if len(active) == 0:
            break
    progress(max_iter, max_iter, label)
    return Solution(theta, f, iters, passes, gamma)


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

    Problems are grouped by (classes, feature width): one group is solved in a few batched computations. Inside a
    group, problems with the same original training set share its rows (and its standardisation), and identical
    problems are solved once. ``cfg.solver == "batched"``: batched L-BFGS (:func:`minimise`), in phases: first the
    λ = 0 heads (one per original set), then along each *chain* (one original and one extra set, its λ in
    increasing order) the j-th λ of every chain at once, warm-started from the chain's previous optimum moved on
    by a damped extrapolation (:func:`_warm_start`). ``cfg.solver == "fused"``: the paper's SGD steps from zero
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


def _warm_start(key, chains, anchors, theta) -> tuple:
    """(the solved problem that warm-starts head ``key``, or None for a start from zero; the start θ). λ = 0 heads
    start from zero; the first λ of a chain from its original set's λ = 0 optimum; later ones by damped
    extrapolation along the chain (:data:`EXTRAPOLATE`)."""
    orig, extra, lam = key
    if extra is None:
        return None, None
    lams = chains[(orig, extra)]
    j = lams.index(lam)
    if j == 0:
        return anchors[orig], theta[anchors[orig]]
    prev = (orig, extra, lams[j - 1])
    before, lam2 = ((orig, extra, lams[j - 2]), lams[j - 2]) if j > 1 else (anchors[orig], 0.0)
    r = EXTRAPOLATE * (lam - lams[j - 1]) / (lams[j - 1] - lam2)
    return prev, theta[prev] + r * (theta[prev] - theta[before])


def _solve_group(keys, prepared, cfg, dev, progress, should_stop):
    C, D = keys[0][:2]
    slots: dict = {}  # distinct problem (original set, extra set, λ) -> its prepared tensors
    for k, pr in zip(keys, prepared):
        slots.setdefault(k[2:], pr)
    sgd = cfg.solver == "fused"
    anchors: dict = {}  # original training set -> its λ = 0 problem, the start of each chain's first λ
    for (orig, _, _), pr in [] if sgd else list(slots.items()):
        anchors.setdefault(orig, (orig, None, 0.0))
        slots.setdefault((orig, None, 0.0), pr)
    first = list(slots) if sgd else [k for k in slots if k[1] is None]  # SGD: one pass from zero, no warm start
    chains: dict = {}  # (original set, extra set) -> its λ, increasing
    for k in [] if sgd else sorted(k for k in slots if k[1] is not None):
        chains.setdefault(k[:2], []).append(k[2])
    # phase 0 solves the λ = 0 heads, phase j the j-th λ of every chain at once, each head warm-started from its
    # chain's previous ones (_warm_start)
    length = max(map(len, chains.values()), default=0)
    phases = [first] + [[(*c, lams[j]) for c, lams in chains.items() if len(lams) > j] for j in range(length)]
    theta: dict = {}
    result: dict = {}
    gammas: dict = {}  # solved problem -> its last inverse-Hessian scale, handed on to the heads it warm-starts
    zs: dict = {}  # standardised rows with a ones column, per (original set, block)

    def rows(orig, which, pr):
        key = (orig, which)
        if key not in zs:
            X, y = (pr.X, pr.y) if which is None else (pr.Xe, pr.ye)
            Z = torch.cat([(X - pr.mean) / pr.std, torch.ones(len(X), 1)], 1)
            zs[key] = (Z.to(dev), y.to(dev))
        return zs[key]

    for phase, todo in enumerate(phases):
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
        starts = [(None, None) if sgd else _warm_start(k, chains, anchors, theta) for k in todo]
        init = torch.stack([torch.zeros(C, D + 1) if k is None else t for k, t in starts]).to(dev)
        gamma = torch.tensor([0.0 if k is None else gammas[k] for k, _ in starts])
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
                    gamma=gamma,
                    label=f"training heads (batched L-BFGS, phase {phase + 1} of {len(phases)})",
                )
        for h, k in enumerate(todo):
            theta[k] = sol.theta[h].cpu()
            gammas[k] = 0.0 if sol.gamma is None else float(sol.gamma[h])
            result[k] = (theta[k], float(sol.objective[h]), int(sol.iterations[h]))
    return [result[k[2:]] for k in keys]
