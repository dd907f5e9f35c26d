"""A whole λ sweep through the experiment code path: the paper's SGD (reference) against the batched solver.

    python benchmarks/heads.py [--world-size tiny] [--model world-resnet-s]
                               [--classes 1000] [--dim 2048] [--seed 0] [--ref-fraction 1.0] [--longer-ref 0]

A sweep is 5 λ (core.fix.experiments.LAMBDAS) × {ours, random} = 10 heads, each minimising L(orig) + λ·L(generated)
+ weight decay, retrained through ``ModelContext.retrain_many`` as ``core.fix.experiments.sweep`` does. The
reference retrains with ``HeadConfig()`` (the paper's SGD, 1000 full-batch epochs; one head after another); the
fast path with ``HeadConfig(solver="batched")`` (the whole sweep in one call, one batched computation per λ). Two
cases:

- the offline world: ``sweep(experiment, model, "lam")`` itself, timed end to end once the failure modes, the
  generated images and their features are cached (both experiments share the model's run, so "before" and the
  failures are the same); the heads it trains are recorded to score them;
- an ImageNet-shaped synthetic case: per class 30 training images, 15 generated ones (ours: the class's rare
  background, random: its common ones) and 2048-d features made of a class mean, a background vector and noise,
  rectified like a CNN's pooled features, retrained through a ModelContext on these features (there are no
  images to generate). Default 1000 classes (the paper's ImageNet setting); ``--classes`` shrinks it for a CPU.

``--ref-fraction f`` times the reference on f × its epochs and scales the time by 1/f (said in the output); the
reference's objective and accuracies are then those of a shortened run, so quality is compared only at f = 1.
It prints, per head, the training objective of both (eq. 1 + (wd/2)·||θ||²), test accuracy, and the test and
heldout accuracy differences (fast − reference) with their paired-bootstrap 95% confidence intervals; then the
speed-up. The batched solver stops at the objective's optimum, which 1000 SGD epochs approach but do not reach
(weight decay 5e-4 is the only curvature in some directions; SGD closes ≈ e^-1 of the gap there in 1000 steps);
``--longer-ref k`` retrains the head whose test accuracy differs most with k × the reference's epochs (solver
"fused": the same steps as the paper's SGD) to show whether the difference is the reference's unfinished descent
(the longer run moves toward the fast head) or a different optimum.
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


class Recorder:
    """Records the heads every ``ModelContext.retrain_many`` call trains (problems and evaluations), in order."""

    def __enter__(self):
        from core.fix.mitigate import ModelContext

        self.calls: list[tuple[list, list]] = []
        self._real = real = ModelContext.retrain_many

        def recording(ctx, problems, *args, **kwargs):
            evs = real(ctx, problems, *args, **kwargs)
            self.calls.append((list(problems), evs))
            return evs

        ModelContext.retrain_many = recording  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc):
        from core.fix.mitigate import ModelContext

        ModelContext.retrain_many = self._real  # type: ignore[method-assign]

    def heads(self) -> tuple[list, list]:
        problems = [p for ps, _ in self.calls for p in ps]
        return problems, [e for _, es in self.calls for e in es]


class WorkCounter:
    """Counts the batched solver's work: rows × heads per evaluation of the objective and its gradient, summed (one
    SGD epoch of one head costs its rows in the same units: a forward and a gradient matmul per row)."""

    def __enter__(self):
        from core.find import batched_heads

        self.rows = 0
        self._real = real = batched_heads.objective_and_grad

        def counting(theta, blocks, heads, weight_decay):
            wanted = set(heads.tolist())
            self.rows += sum(len(b.y) * sum(h in wanted for h in b.heads.tolist()) for b in blocks)
            return real(theta, blocks, heads, weight_decay)

        batched_heads.objective_and_grad = counting
        return self

    def __exit__(self, *exc):
        from core.find import batched_heads

        batched_heads.objective_and_grad = self._real


def timed_sweep(run_sweep, cfg) -> tuple[float, list, list, list[str], int]:
    """Run ``run_sweep(cfg)`` (which retrains through ModelContext); its time, problems, evaluations, the method
    of each head (ours / random, in the sweep's order) and the number of retrain_many calls."""
    with Recorder() as rec:
        t0 = time.perf_counter()
        labels = run_sweep(cfg)
        elapsed = time.perf_counter() - t0
    problems, evs = rec.heads()
    return elapsed, problems, evs, labels, len(rec.calls)


def compare(name: str, run_sweep, heldout, test, ref_fraction: float, longer_ref: int = 0) -> float:
    """Run the sweep both ways, print the per-head table, return the speed-up. ``heldout``: (mask over the debug
    rows, their labels); ``test``: the test features and labels."""
    from core.config import HeadConfig
    from core.find.heads import problem_objective, train_heads

    ref_cfg = HeadConfig()
    ref_cfg = replace(ref_cfg, epochs=max(1, round(ref_cfg.epochs * ref_fraction)))
    fast_cfg = HeadConfig(solver="batched")
    t_ref, problems, ref, labels, _ = timed_sweep(run_sweep, ref_cfg)
    t_ref *= HeadConfig().epochs / ref_cfg.epochs
    with WorkCounter() as work:
        t_fast, problems_fast, fast, _, calls = timed_sweep(run_sweep, fast_cfg)
    ref_work = HeadConfig().epochs * sum(
        len(p.y) + (len(p.y_extra) if p.lam > 0 and p.y_extra is not None else 0) for p in problems
    )
    assert [p.lam for p in problems] == [p.lam for p in problems_fast]
    full = ref_cfg.epochs == HeadConfig().epochs
    print(
        f"\n[{name}] {len(problems)} heads; reference: SGD, {ref_cfg.epochs} of {HeadConfig().epochs} epochs"
        + ("" if full else f", time scaled ×{HeadConfig().epochs / ref_cfg.epochs:g} (quality not comparable)")
        + f"; fast: batched L-BFGS, tol {fast_cfg.tol:g}, {calls} retrain call(s)"
    )
    print(
        f"  {'λ':>5} {'method':7} {'objective ref':>13} {'fast':>11} {'steps':>5}  {'test ref':>8} {'fast':>7}"
        f"  {'test fast−ref [95% CI]':>24}  {'heldout fast−ref [95% CI]':>25}"
    )
    mask, y_held = heldout
    X_test, y_test = test
    worst_obj, worst_test, worst, cis = -np.inf, 0.0, 0, []
    for i, (p, lab, r, f) in enumerate(zip(problems, labels, ref, fast)):
        o_r, o_f = problem_objective(r.head, p), problem_objective(f.head, p)
        a_r, a_f = r.scores["acc_test"], f.scores["acc_test"]
        t = paired_ci(r.pred_test == y_test, f.pred_test == y_test)
        m, lo, hi = paired_ci(r.pred_debug[mask] == y_held, f.pred_debug[mask] == y_held)
        worst_obj = max(worst_obj, o_f - o_r)
        if abs(a_f - a_r) > worst_test:
            worst_test, worst = abs(a_f - a_r), i
        cis.append((lo, hi))
        ref_cols = f"{o_r:13.6f}" if full else f"{'n/a':>13}"
        test_ref = f"{100 * a_r:8.2f}" if full else f"{'n/a':>8}"
        diffs = (
            f"{t[0]:+7.2f} [{t[1]:+6.2f}, {t[2]:+6.2f}]  {m:+8.2f} [{lo:+6.2f}, {hi:+6.2f}]" if full else f"{'n/a':>24}"
        )
        print(
            f"  {p.lam:5.2f} {lab:7} {ref_cols} {o_f:11.6f} {f.head.meta['iterations']:5d}  {test_ref} "
            f"{100 * a_f:7.2f}  {diffs}"
        )
    print(
        f"  time: reference {t_ref:.1f} s{'' if full else ' (scaled)'}, fast {t_fast:.1f} s, "
        f"speed-up {t_ref / t_fast:.1f}x; work (rows × heads × passes) reference {ref_work:.3g}, fast "
        f"{work.rows:.3g}: {ref_work / work.rows:.1f}x less"
    )
    if full:
        print(
            f"  fast − reference: objective at most {worst_obj:+.2e} (≤ 0: no higher), test accuracy at most "
            f"{100 * worst_test:.2f} points apart (goal ≤ 0.5), {sum(lo <= 0 <= hi for lo, hi in cis)} of "
            f"{len(cis)} heldout differences with 0 inside their 95% CI"
        )
    if full and longer_ref > 1:
        p, r, f = problems[worst], ref[worst], fast[worst]
        longer = train_heads([p], HeadConfig(solver="fused", epochs=longer_ref * ref_cfg.epochs))[0]
        print(
            f"  longest test gap (λ {p.lam:g} {labels[worst]}): objective / test accuracy, reference "
            f"{problem_objective(r.head, p):.6f} / {100 * r.scores['acc_test']:.2f}, the same SGD with "
            f"{longer_ref * ref_cfg.epochs} epochs {problem_objective(longer, p):.6f} / "
            f"{100 * longer.accuracy(X_test, y_test):.2f}, fast {problem_objective(f.head, p):.6f} / "
            f"{100 * f.scores['acc_test']:.2f}"
        )
    return t_ref / t_fast


def world_case(a) -> tuple:
    from core.config import DebugConfig, HeadConfig
    from core.fix.experiments import Experiment, sweep
    from core.workspace import open_dataset
    from core.world.backbones import train_world_backbone
    from core.world.clip import train_world_clip

    ds = open_dataset({"name": "scenes-mnist", "size": a.world_size})
    if a.model.startswith("world-"):
        train_world_backbone(a.model, ds)
    train_world_clip(ds)

    def experiment(cfg) -> Experiment:
        exp = Experiment(ds, DebugConfig(), retrain_cfg=cfg)
        ctx = exp.context(a.model)  # the model's run (the paper's head), shared by both experiments
        for imgs in exp.images(exp.textualization(a.model).modes):
            ctx.generated_problem(imgs, 0.0)  # the generated images' features, cached before timing
        return exp

    def run_sweep(cfg) -> list[str]:
        exp = experiments[cfg.solver]
        exp.retrain_cfg = exp.context(a.model).head_cfg = cfg  # the reference's epochs under --world-ref-fraction
        rows = sweep(exp, a.model, "lam")
        return list(rows["method"][rows["method"] != "before"])

    experiments = {s: experiment(HeadConfig(solver=s)) for s in ("sgd", "batched")}
    ctx = experiments["sgd"].context(a.model)
    held = (ctx.run.table["split"] == "heldout").to_numpy()
    ours, _ = experiments["sgd"].images(experiments["sgd"].textualization(a.model).modes)
    print(
        f"world {a.world_size}, model {a.model}: {len(ctx.y_train)} original + {len(ours)} generated images per "
        f"head, {len(ds.classes)} classes, feature dim {ctx.feats['head_train'].shape[1]}, {int(held.sum())} "
        "heldout failures; timed: core.fix.experiments.sweep end to end"
    )
    return run_sweep, (held, ctx.run.table["label"].to_numpy()[held]), (ctx.feats["test"], ctx.y_test)


def synthetic_context(d: dict, classes: list[str]):
    """A ModelContext on synthetic features (no dataset, backbone or run on disk): what retraining reads."""
    from types import SimpleNamespace

    import pandas as pd

    from core.fix.mitigate import ModelContext

    ctx = ModelContext.__new__(ModelContext)
    table = pd.DataFrame({"label": d["heldout"][1], "split": "heldout"})
    ctx.dataset = SimpleNamespace(classes=classes)
    ctx.run = SimpleNamespace(model="imagenet-shaped", family="synthetic", table=table, head=SimpleNamespace(meta={}))
    ctx.feats = {"head_train": d["train"][0], "debug": d["heldout"][0], "test": d["test"][0]}
    ctx.y_train, ctx.y_test = d["train"][1], d["test"][1]
    ctx._generated, ctx._solved, ctx._digests = {}, {}, {}
    return ctx


def imagenet_case(a) -> tuple:
    from core.fix.experiments import LAMBDAS

    d = imagenet_shaped(a.classes, a.dim, seed=a.seed)
    ctx = synthetic_context(d, [f"class{i}" for i in range(a.classes)])

    def run_sweep(cfg) -> list[str]:
        ctx.head_cfg = cfg
        points = [(lam, m) for lam in LAMBDAS for m in ("ours", "random")]
        ctx.retrain_many([ctx.problem(*d[m], lam, {"extra": m}) for lam, m in points])
        return [m for _, m in points]

    print(
        f"ImageNet-shaped synthetic: {a.classes} classes × (30 original + 15 generated) images, {a.dim}-d features, "
        f"{len(d['test'][1])} test and {len(d['heldout'][1])} heldout images, seed {a.seed}"
        + ("" if a.classes == 1000 else f" (the paper's ImageNet has 1000 classes; {a.classes} here)")
        + "; timed: ModelContext.retrain_many, the call sweep() makes once its images exist"
    )
    return run_sweep, (np.ones(len(d["heldout"][1]), bool), d["heldout"][1]), d["test"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="world-resnet-s")
    ap.add_argument("--world-size", default="tiny")
    ap.add_argument("--classes", type=int, default=1000, help="ImageNet-shaped case: classes (ImageNet: 1000)")
    ap.add_argument("--dim", type=int, default=2048, help="ImageNet-shaped case: feature width")
    ap.add_argument("--seed", type=int, default=0, help="ImageNet-shaped case: the synthetic features' seed")
    ap.add_argument("--ref-fraction", type=float, default=1.0, help="time the reference on this share of its epochs")
    ap.add_argument(
        "--longer-ref", type=int, default=0, help="retrain the most different head with this many × the epochs"
    )
    ap.add_argument("--world-ref-fraction", type=float, default=1.0)
    ap.add_argument("--skip-world", action="store_true")
    ap.add_argument("--skip-imagenet", action="store_true")
    a = ap.parse_args()
    speedups = {}
    if not a.skip_world:
        speedups["world"] = compare("world sweep", *world_case(a), a.world_ref_fraction, a.longer_ref)
    if not a.skip_imagenet:
        speedups["imagenet-shaped"] = compare("ImageNet-shaped sweep", *imagenet_case(a), a.ref_fraction, a.longer_ref)
    print(
        "\nspeed-up of the batched solver over the paper's SGD: "
        + ", ".join(f"{k} {v:.1f}x" for k, v in speedups.items())
    )


if __name__ == "__main__":
    main()
