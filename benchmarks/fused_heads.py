"""The paper's SGD, one head after another (``solver="sgd"``), against the same steps for every head at once
(``solver="fused"``, core.find.batched_heads.descend), on one model's heads of a fidelity seed.

    python benchmarks/fused_heads.py [--heads 22] [--dim 128] [--classes 10] [--rows 300] [--ref-heads 4]

The problems are shaped like one world model's heads in ``benchmarks/fidelity.py``: one original training set
(``--rows`` rows, ``--dim`` features; rectified class means plus noise) shared by every head, each head with its own
generated set (50 to 250 rows) at λ in {0.25, 0.5, 0.75, 1}. The reference trains ``--ref-heads`` of them (its
time is scaled to all heads); fused trains all of them in one call. It prints both times, their ratio, and for
the heads both trained the largest |θ_fused − θ_ref| and the share of held-out rows both heads predict alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def problems(n_heads: int, classes: int, dim: int, rows: int, seed: int = 0):
    from core.find.head_problem import HeadProblem

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim))

    def draw(n):
        y = rng.integers(0, classes, n)
        return np.maximum(means[y] + 1.5 * rng.normal(size=(n, dim)), 0).astype(np.float32), y

    X, y = draw(rows)
    names = [str(c) for c in range(classes)]
    out = []
    for h in range(n_heads):
        Xe, ye = draw(int(rng.integers(50, 251)))
        out.append(HeadProblem(X, y, names, Xe, ye, lam=(0.25, 0.5, 0.75, 1.0)[h % 4]))
    return out, draw(2000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heads", type=int, default=22, help="one model's heads in a fidelity seed (λ = 0 ones dedupe)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--ref-heads", type=int, default=4, help="heads the reference trains (its time is scaled)")
    a = ap.parse_args()

    from core.config import HeadConfig
    from core.find.heads import train_heads
    from core.threads import single_thread

    probs, (Xt, _) = problems(a.heads, a.classes, a.dim, a.rows)
    n_ref = min(a.ref_heads, a.heads)
    with single_thread():
        t = time.perf_counter()
        ref = train_heads(probs[:n_ref], HeadConfig(solver="sgd"))
        t_ref = (time.perf_counter() - t) * a.heads / n_ref
        t = time.perf_counter()
        fused = train_heads(probs, HeadConfig(solver="fused"))
        t_fused = time.perf_counter() - t
    gap = max(
        float(torch.cat([(f.weight - r.weight).flatten(), f.bias - r.bias]).abs().max()) for f, r in zip(fused, ref)
    )
    same = min(float((f.predict(Xt) == r.predict(Xt)).mean()) for f, r in zip(fused, ref))
    print(f"{a.heads} heads, {a.classes} classes × {a.dim}-d, {a.rows} shared rows; one thread")
    print(f"sgd, one head after another: {t_ref:.1f} s (measured on {n_ref} heads, scaled)")
    print(f"fused, all heads at once:    {t_fused:.1f} s  → {t_ref / t_fused:.1f}× faster")
    print(f"largest |θ fused − θ sgd| over {n_ref} heads: {gap:.2e}; predictions alike on 2000 rows: ≥ {same:.4f}")


if __name__ == "__main__":
    main()
