"""The batched head solver against an earlier version of itself, side by side in one run, on a λ sweep.

    python benchmarks/batched_solver.py [--against 0693e0f] [--classes 200] [--dim 1024] [--seed 0] [--repeats 1]
                                        [--threads N]

The sweep is benchmarks/heads.py's ImageNet-shaped synthetic case (5 λ × ours/random = 10 heads, per class 30 original
and 15 generated images) trained with ``HeadConfig(solver="batched")`` through ``train_heads``; the earlier version is
``core/find/batched_heads.py`` as it was at the git revision ``--against``, loaded from git for this run only. Each
repeat runs the earlier version, then the current one. ``--threads`` sets torch's thread count for both (on a machine
other work keeps busy, one thread shows the solvers' own costs best). It prints per version the time, the time inside
the objective-and-gradient passes and outside them (the L-BFGS updates), the passes (evaluations of f and ∇f, counted
per head) and steps of each batched call, and per head the objective difference and the largest weight difference
between the two versions' heads.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def earlier_solver(rev: str) -> types.ModuleType:
    """``core.find.batched_heads`` at git revision ``rev``, as a separate module."""
    src = subprocess.check_output(["git", "-C", str(ROOT), "show", f"{rev}:core/find/batched_heads.py"], text=True)
    mod = types.ModuleType(f"batched_heads_{rev}")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, f"{rev}:core/find/batched_heads.py", "exec"), mod.__dict__)
    return mod


def run(mod, problems) -> tuple[float, float, list, list]:
    """Train the sweep with solver module ``mod``: (seconds, seconds inside objective_and_grad, [(heads, passes,
    steps per head) per batched call], heads)."""
    from core.config import HeadConfig
    from core.find import batched_heads
    from core.find.heads import train_heads

    inside = [0.0]
    calls: list = []
    og, mi, tb = mod.objective_and_grad, mod.minimise, batched_heads.train_batched

    def timed_og(*a, **k):
        t = time.perf_counter()
        out = og(*a, **k)
        inside[0] += time.perf_counter() - t
        return out

    def counted_mi(theta, *a, **k):
        sol = mi(theta, *a, **k)
        calls.append((theta.shape[0], sol.passes, sol.iterations.tolist()))
        return sol

    mod.objective_and_grad, mod.minimise, batched_heads.train_batched = timed_og, counted_mi, mod.train_batched
    try:
        t0 = time.perf_counter()
        heads = train_heads(problems, HeadConfig(solver="batched"))
        elapsed = time.perf_counter() - t0
    finally:
        mod.objective_and_grad, mod.minimise, batched_heads.train_batched = og, mi, tb
    return elapsed, inside[0], calls, heads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", default="0693e0f", help="git revision of the earlier solver")
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both versions (0: torch's default)")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)

    from benchmarks.heads import imagenet_shaped
    from core.find import batched_heads
    from core.find.heads import HeadProblem, problem_objective
    from core.fix.experiments import LAMBDAS

    d = imagenet_shaped(a.classes, a.dim, seed=a.seed)
    names = [f"class{i}" for i in range(a.classes)]
    points = [(lam, m) for lam in LAMBDAS for m in ("ours", "random")]
    problems = [HeadProblem(*d["train"], names, *d[m], lam) for lam, m in points]
    print(
        f"ImageNet-shaped sweep: {a.classes} classes, {a.dim}-d, {len(problems)} heads; earlier solver: "
        f"{a.against}, current: the working tree; {torch.get_num_threads()} torch threads"
    )
    versions = {f"earlier ({a.against})": earlier_solver(a.against), "current": batched_heads}
    times: dict = {k: [] for k in versions}
    heads: dict = {}
    for rep in range(a.repeats):
        for name, mod in versions.items():
            elapsed, inside, calls, heads[name] = run(mod, problems)
            times[name].append(elapsed)
            passes = sum(p for _, p, _ in calls)
            print(
                f"  [{rep}] {name:22} {elapsed:7.1f} s: passes {inside:6.1f} s, the rest {elapsed - inside:6.1f} s; "
                f"{passes} passes in all; per batched call (heads: passes, steps) "
                + ", ".join(f"{h}: {p}, {sum(s)}" for h, p, s in calls)
            )
    (old_name, old), (new_name, new) = heads.items()
    t_old, t_new = np.median(times[old_name]), np.median(times[new_name])
    print(f"  median time {t_old:.1f} s vs {t_new:.1f} s: {t_old / t_new:.2f}x")
    print(f"  {'λ':>5} {'method':7} {'objective earlier':>17} {'current':>11} {'current−earlier':>15} {'max |Δθ|':>9}")
    worst = 0.0
    for (lam, m), p, ho, hn in zip(points, problems, old, new):
        oo, on = problem_objective(ho, p), problem_objective(hn, p)
        dw = max(float((ho.weight - hn.weight).abs().max()), float((ho.bias - hn.bias).abs().max()))
        worst = max(worst, abs(on - oo) / abs(oo))
        print(f"  {lam:5.2f} {m:7} {oo:17.7f} {on:11.7f} {on - oo:+15.2e} {dw:9.2e}")
    print(f"  largest relative objective difference {worst:.2e}")


if __name__ == "__main__":
    main()
