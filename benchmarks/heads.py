"""Head retraining, the inner loop of every sweep: the paper's SGD (reference) against the fused SGD and L-BFGS.

    python benchmarks/heads.py [--model world-resnet-s] [--world-size tiny] [--repeats 3]

All solvers fit the same objective, L(orig) + λ·L(generated) + weight decay, on the same cached features (the
head-training set plus the generated images of the model's failure modes). It prints each solver's median time,
the speed-up over the reference, and each head's accuracy on test and debug_heldout: a fast solver must stay
within 0.5 points of the reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BACKDROP_CACHE", tempfile.mkdtemp(prefix="backdrop-bench-heads-"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="world-resnet-s")
    ap.add_argument("--world-size", default="tiny")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    from dataclasses import replace

    from core.config import DebugConfig, HeadConfig
    from core.find.heads import train_head
    from core.fix.experiments import Experiment
    from core.fix.mitigate import evaluate, generated_features
    from core.workspace import open_dataset
    from core.world.backbones import train_world_backbone
    from core.world.clip import train_world_clip

    ds = open_dataset({"name": "scenes-mnist", "size": a.world_size})
    if a.model.startswith("world-"):
        train_world_backbone(a.model, ds)
    train_world_clip(ds)
    exp = Experiment(ds, DebugConfig())
    ctx = exp.context(a.model)
    ours, _ = exp.images(exp.textualization(a.model).modes)
    Xe = generated_features(ctx.backbone, ours)
    ye = ours["label"].to_numpy()
    print(
        f"model {a.model}: {len(ctx.y_train)} original + {len(ye)} generated images, "
        f"feature dim {ctx.feats['head_train'].shape[1]}, λ={exp.cfg.lam}"
    )

    results = {}
    for solver in ("sgd", "fused", "lbfgs"):
        cfg = replace(HeadConfig(), solver=solver)
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            head = train_head(
                ctx.feats["head_train"], ctx.y_train, ds.classes, cfg, X_extra=Xe, y_extra=ye, lam=exp.cfg.lam
            )
            times.append(time.perf_counter() - t0)
        sc = evaluate(head, ctx.run, ctx.feats, ctx.y_test)
        results[solver] = (statistics.median(times), sc)
        print(
            f"  {solver:6s} median {results[solver][0]:7.3f} s  test {sc['acc_test']:.4f}  "
            f"heldout {sc['acc_heldout']:.4f}  loss {head.meta['final_loss']:.5f}"
        )
    ts, ss = results["sgd"]
    for solver in ("fused", "lbfgs"):
        t, sc = results[solver]
        print(
            f"{solver} vs sgd: speed-up {ts / t:.1f}x; accuracy difference (points): "
            f"test {100 * (sc['acc_test'] - ss['acc_test']):+.2f}, "
            f"heldout {100 * (sc['acc_heldout'] - ss['acc_heldout']):+.2f}"
        )


if __name__ == "__main__":
    main()
