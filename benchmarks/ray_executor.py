"""The same small job with the local and the ray executor, side by side in one run.

    python benchmarks/ray_executor.py [--model efficientnet-lite0] [--images 512] [--generate 96] [--cpus N]
                                      [--address auto]

1. Features: ``extract_features`` of ``--model`` over the first ``--images`` images of the offline world's debug
   split, into an empty cache, once per executor (the ray run includes starting its actors and shipping the model).
2. Generation: ``generate_set`` with the world's renderer, ``--generate`` images, once per executor.
It prints the Ray start-up time, each step's seconds per executor, the ratio local / ray (above 1: ray faster),
and checks that both executors wrote the same features (max abs difference) and the same image bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
NICENESS = "RAY_worker_niceness"  # Ray reads this exact (lower-case) name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--generate", type=int, default=96)
    ap.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--actors", type=int, help="actors per pool (default: one per GPU, else per CPU)")
    ap.add_argument("--address", help="join this Ray cluster instead of starting one")
    ap.add_argument(
        "--ray-niceness",
        default="0",
        help="nice value of the Ray workers this script starts (Ray's own default is 15; 0 competes with other "
        "programs on equal terms with the local executor's process)",
    )
    a = ap.parse_args()
    os.environ[NICENESS] = str(a.ray_niceness)  # read by the Ray this script starts
    base = Path(tempfile.mkdtemp(prefix="backdrop-bench-ray-"))
    os.environ["BACKDROP_CACHE"] = str(base / "world")

    import numpy as np

    from core import executors
    from core.config import ExecutorConfig
    from core.executors.ray_data import connect
    from core.find.features import extract_features
    from core.find.runs import get_splits, load_backbone
    from core.fix.experiments import default_generator
    from core.fix.generators import generate_set, mode_requests
    from core.workspace import open_dataset

    ds = open_dataset({"name": "scenes-mnist", "size": "tiny"})
    df = get_splits(ds).debug.head(a.images)
    backbone = load_backbone(a.model, ds)
    per_mode = max(1, a.generate // len(ds.classes))
    requests = mode_requests(
        [(c, i, ds.backgrounds[i % len(ds.backgrounds)]) for i, c in enumerate(ds.classes)], per_mode
    )
    ray_cfg = ExecutorConfig("ray", address=a.address, actors=a.actors)
    t = time.perf_counter()
    connect(ray_cfg, **({"num_cpus": a.cpus} if a.cpus else {}))
    import ray

    print(f"ray start-up: {time.perf_counter() - t:.1f} s  (cluster: {ray.cluster_resources()})")
    timings: dict[str, dict[str, float]] = {"features": {}, "generation": {}}
    out: dict[str, dict] = {"features": {}, "generation": {}}
    for name, cfg in (("local", ExecutorConfig()), ("ray", ray_cfg)):
        os.environ["BACKDROP_CACHE"] = str(base / name)
        with executors.use(cfg):
            t = time.perf_counter()
            out["features"][name] = np.array(extract_features(backbone, ds, df))
            timings["features"][name] = time.perf_counter() - t
            t = time.perf_counter()
            gset = generate_set(default_generator(ds, "world"), requests, "bench")
            timings["generation"][name] = time.perf_counter() - t
            out["generation"][name] = {f: (gset.root / f).read_bytes() for f in gset.manifest()["file"]}
    diff = float(np.abs(out["features"]["local"] - out["features"]["ray"]).max())
    same = out["generation"]["local"] == out["generation"]["ray"]
    n = {"features": len(df), "generation": per_mode * len(ds.classes)}
    for step, t in timings.items():
        print(
            f"{step:<10} {n[step]:>5} images: local {t['local']:6.1f} s ({n[step] / t['local']:6.1f}/s)  "
            f"ray {t['ray']:6.1f} s ({n[step] / t['ray']:6.1f}/s)  local/ray {t['local'] / t['ray']:.2f}"
        )
    print(f"features max |local - ray| = {diff:.2e}; generated images identical: {same}")


if __name__ == "__main__":
    main()
