"""Head retraining for a whole λ sweep: the paper's SGD (reference) against the batched solver, side by side.

    python benchmarks/heads.py [--world-size tiny] [--model world-resnet-s]
                               [--classes 1000] [--dim 2048] [--ref-fraction 1.0] [--device cpu]

A sweep is 5 λ (core.fix.experiments.LAMBDAS) × {ours, random} = 10 heads, each minimising L(orig) + λ·L(generated)
+ weight decay. The reference trains them one after another with torch.optim.SGD (1000 full-batch epochs); the
fast path trains all of them in one batched computation (``HeadConfig(solver="batched")``). Two cases:

- the offline world: one world model's head-training features, its failure modes' generated images (ours) and
  the Random_debugging images;
- an ImageNet-shaped synthetic case: per class 30 training images, 15 generated ones (ours: the class's rare
  background, random: its common ones) and 2048-d features made of a class mean, a background vector and noise,
  rectified like a CNN's pooled features. Default 1000 classes (the paper's ImageNet setting); ``--classes``
  shrinks it for a CPU.

``--ref-fraction f`` times the reference on f × its epochs and scales the time by 1/f (said in the output); the
reference's objective and accuracies are then those of a shortened run, so quality is compared only at f = 1.
It prints, per head, the training objective of both (eq. 1 + (wd/2)·||θ||²), test accuracy, and the heldout
accuracy difference (fast − reference) with its paired-bootstrap 95% confidence interval; then the speed-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BACKDROP_CACHE", tempfile.mkdtemp(prefix="backdrop-bench-heads-"))

BOOTSTRAP = 2000


def imagenet_shaped(classes: int, dim: int, seed: int = 0, backgrounds: int = 8) -> dict:
    """Learnable synthetic features: class mean + background vector + noise, rectified. Each class has two common
    backgrounds (training, test, random generated) and one rare one (heldout failures, ours generated); generated
    images carry a small shared shift, as a generator's images do."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 0.1, (classes, dim)).astype(np.float32)
    bg = rng.normal(0, 0.5, (backgrounds, dim)).astype(np.float32)
    shift = rng.normal(0, 0.2, dim).astype(np.float32)
    common = rng.integers(0, backgrounds, (classes, 2))
    rare = rng.integers(0, backgrounds, classes)

    def draw(per_class: int, background: str, generated: bool = False):
        y = np.repeat(np.arange(classes), per_class)
        b = rare[y] if background == "rare" else common[y, rng.integers(0, 2, len(y))]
        X = mu[y] + bg[b] + rng.normal(0, 1, (len(y), dim)).astype(np.float32) + (shift if generated else 0)
        return np.maximum(X, 0, dtype=np.float32), y

    return {
        "train": draw(30, "common"),
        "ours": draw(15, "rare", True),
        "random": draw(15, "common", True),
        "test": draw(50, "common"),  # ImageNet's validation set has 50 per class
        "heldout": draw(10, "rare"),
    }


def paired_ci(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b − a (per-image correctness, in points) and its paired-bootstrap 95% interval."""
    d = b.astype(np.float64) - a.astype(np.float64)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return 100 * d.mean(), 100 * lo, 100 * hi


def compare(name: str, problems, labels, test, heldout, ref_fraction: float, device: str) -> float:
    """Train the sweep both ways, print the per-head table, return the speed-up."""
    from core.config import HeadConfig
    from core.find.heads import problem_objective, train_heads

    ref_cfg = HeadConfig()
    ref_cfg = replace(ref_cfg, epochs=max(1, round(ref_cfg.epochs * ref_fraction)))
    fast_cfg = HeadConfig(solver="batched")
    t0 = time.perf_counter()
    ref = train_heads(problems, ref_cfg)
    t_ref = (time.perf_counter() - t0) * HeadConfig().epochs / ref_cfg.epochs
    t0 = time.perf_counter()
    fast = train_heads(problems, fast_cfg, device=device)
    t_fast = time.perf_counter() - t0
    full = ref_cfg.epochs == HeadConfig().epochs
    print(
        f"\n[{name}] {len(problems)} heads; reference: SGD, {ref_cfg.epochs} of {HeadConfig().epochs} epochs"
        + ("" if full else f", time scaled ×{HeadConfig().epochs / ref_cfg.epochs:g} (quality not comparable)")
        + f"; fast: batched L-BFGS on {device}, tol {fast_cfg.tol:g}"
    )
    print(
        f"  {'λ':>5} {'method':7} {'objective ref':>13} {'fast':>11} {'steps':>5}  {'test ref':>8} {'fast':>7}"
        f"  {'heldout fast−ref, points [95% CI]':>34}"
    )
    worst_obj, worst_test, cis = -np.inf, 0.0, []
    for p, lab, r, f in zip(problems, labels, ref, fast):
        o_r, o_f = problem_objective(r, p), problem_objective(f, p)
        a_r, a_f = r.accuracy(*test), f.accuracy(*test)
        m, lo, hi = paired_ci(r.predict(heldout[0]) == heldout[1], f.predict(heldout[0]) == heldout[1])
        worst_obj, worst_test = max(worst_obj, o_f - o_r), max(worst_test, abs(a_f - a_r))
        cis.append((lo, hi))
        ref_cols = f"{o_r:13.6f}" if full else f"{'n/a':>13}"
        test_ref = f"{100 * a_r:8.2f}" if full else f"{'n/a':>8}"
        held = f"{m:+8.2f} [{lo:+6.2f}, {hi:+6.2f}]" if full else f"{'n/a':>8}"
        print(
            f"  {p.lam:5.2f} {lab:7} {ref_cols} {o_f:11.6f} {f.meta['iterations']:5d}  {test_ref} "
            f"{100 * a_f:7.2f}  {held}"
        )
    print(
        f"  time: reference {t_ref:.1f} s{'' if full else ' (scaled)'}, fast {t_fast:.1f} s, "
        f"speed-up {t_ref / t_fast:.1f}x"
    )
    if full:
        print(
            f"  fast − reference: objective at most {worst_obj:+.2e} (≤ 0: no higher), test accuracy at most "
            f"{100 * worst_test:.2f} points apart, {sum(lo <= 0 <= hi for lo, hi in cis)} of {len(cis)} heldout "
            "differences with 0 inside their 95% CI"
        )
    return t_ref / t_fast


def world_case(a) -> tuple:
    from core.config import DebugConfig
    from core.find.heads import HeadProblem
    from core.fix.experiments import LAMBDAS, Experiment
    from core.fix.mitigate import generated_features
    from core.workspace import open_dataset
    from core.world.backbones import train_world_backbone
    from core.world.clip import train_world_clip

    ds = open_dataset({"name": "scenes-mnist", "size": a.world_size})
    if a.model.startswith("world-"):
        train_world_backbone(a.model, ds)
    train_world_clip(ds)
    exp = Experiment(ds, DebugConfig())
    ctx = exp.context(a.model)
    ours, rand = exp.images(exp.textualization(a.model).modes)
    extra = {
        m: (generated_features(ctx.backbone, r), r["label"].to_numpy()) for m, r in (("ours", ours), ("random", rand))
    }
    problems, labels = [], []
    for lam in LAMBDAS:
        for m in ("ours", "random"):
            problems.append(HeadProblem(ctx.feats["head_train"], ctx.y_train, ds.classes, *extra[m], lam))
            labels.append(m)
    held = (ctx.run.table["split"] == "heldout").to_numpy()
    heldout = (ctx.feats["debug"][held], ctx.run.table["label"].to_numpy()[held])
    print(
        f"world {a.world_size}, model {a.model}: {len(ctx.y_train)} original + {len(extra['ours'][1])} generated "
        f"images per head, {len(ds.classes)} classes, feature dim {ctx.feats['head_train'].shape[1]}, "
        f"{len(heldout[1])} heldout failures"
    )
    return problems, labels, (ctx.feats["test"], ctx.y_test), heldout


def imagenet_case(a) -> tuple:
    from core.find.heads import HeadProblem
    from core.fix.experiments import LAMBDAS

    d = imagenet_shaped(a.classes, a.dim)
    classes = [f"class{i}" for i in range(a.classes)]
    problems, labels = [], []
    for lam in LAMBDAS:
        for m in ("ours", "random"):
            problems.append(HeadProblem(*d["train"], classes, *d[m], lam))
            labels.append(m)
    print(
        f"ImageNet-shaped synthetic: {a.classes} classes × (30 original + 15 generated) images, {a.dim}-d features, "
        f"{len(d['test'][1])} test and {len(d['heldout'][1])} heldout images"
        + ("" if a.classes == 1000 else f" (the paper's ImageNet has 1000 classes; {a.classes} here)")
    )
    return problems, labels, d["test"], d["heldout"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="world-resnet-s")
    ap.add_argument("--world-size", default="tiny")
    ap.add_argument("--classes", type=int, default=1000, help="ImageNet-shaped case: classes (ImageNet: 1000)")
    ap.add_argument("--dim", type=int, default=2048, help="ImageNet-shaped case: feature width")
    ap.add_argument("--ref-fraction", type=float, default=1.0, help="time the reference on this share of its epochs")
    ap.add_argument("--world-ref-fraction", type=float, default=1.0)
    ap.add_argument("--device", default="cpu", help="device of the batched solver (cpu, cuda)")
    ap.add_argument("--skip-world", action="store_true")
    ap.add_argument("--skip-imagenet", action="store_true")
    a = ap.parse_args()
    speedups = {}
    if not a.skip_world:
        speedups["world"] = compare("world sweep", *world_case(a), a.world_ref_fraction, a.device)
    if not a.skip_imagenet:
        speedups["imagenet-shaped"] = compare("ImageNet-shaped sweep", *imagenet_case(a), a.ref_fraction, a.device)
    print(
        "\nspeed-up of the batched solver over the paper's SGD: "
        + ", ".join(f"{k} {v:.1f}x" for k, v in speedups.items())
    )


if __name__ == "__main__":
    main()
