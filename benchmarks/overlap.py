"""Overlap at scale: the IoU matrix of M models' failure sets over N debug images, side by side with the float32
matrix product it replaced, and equal results checked.

    python benchmarks/overlap.py [--repeats 5]

Cases: 40 models x 30,000 images (goal < 0.1 s) and 200 x 50,000 (goal < 1 s). Failure sets share a per-image
difficulty, so they overlap as real models' do. Best of ``--repeats``. Rows: core.find.overlap.iou_matrix on
wrong-prediction masks (what the app's overlap_of_runs passes for runs over one debug set) and on image-id sets;
the kernel alone (core.find.overlap.intersections: packed bits + popcount); the previous kernel (float32 matmul).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from core.find.overlap import intersections, iou_matrix

CASES = [(40, 30_000, 0.1), (200, 50_000, 1.0)]


def best(fn, arg, repeats: int) -> float:
    out = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(arg)
        out = min(out, time.perf_counter() - t)
    return out


def matmul_intersections(B: np.ndarray) -> np.ndarray:
    """The previous kernel: one float32 matrix product."""
    Bf = B.astype(np.float32)
    return Bf @ Bf.T


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    for m, n, goal in CASES:
        rng = np.random.default_rng(0)
        difficulty = rng.normal(size=n)
        B = np.stack([difficulty + rng.normal(size=n) > 0.8 for _ in range(m)])
        ids = np.array([f"val/{i:06d}" for i in range(n)])
        masks = {f"m{i}": row for i, row in enumerate(B)}
        sets = {k: ids[v] for k, v in masks.items()}
        new, old = intersections(B), matmul_intersections(B)
        assert np.array_equal(new, old.astype(np.int64)), "popcount and matmul intersections differ"
        iou_m, _ = iou_matrix(masks)
        iou_s, _ = iou_matrix(sets)
        assert np.array_equal(iou_m.to_numpy(), iou_s.to_numpy()), "mask and id paths differ"
        t = {
            "iou_matrix, masks": best(iou_matrix, masks, a.repeats),
            "iou_matrix, id sets": best(iou_matrix, sets, max(1, a.repeats // 2)),
            "kernel: packed bits + popcount": best(intersections, B, a.repeats),
            "previous kernel: float32 matmul": best(matmul_intersections, B, max(1, a.repeats // 2)),
        }
        print(f"{m} models x {n:,} images (goal < {goal * 1000:.0f} ms; intersections equal: yes)")
        for name, s in t.items():
            print(f"  {name:<34} {s * 1000:9.1f} ms")
        ratio = t["previous kernel: float32 matmul"] / t["kernel: packed bits + popcount"]
        verdict = "meets" if t["iou_matrix, masks"] < goal else "misses"
        print(f"  popcount vs matmul: {ratio:.0f}x faster; iou_matrix on masks {verdict} the goal")


if __name__ == "__main__":
    main()
