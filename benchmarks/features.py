"""Feature-extraction throughput against the bare forward pass, measured side by side in one run.

    python benchmarks/features.py [--model efficientnet-lite0] [--images 512] [--batch-sizes 16 32 64 128]

1. Bare forward: images/s of ``backbone(x)`` on ready tensors under torch.inference_mode, at each batch size;
   the best is the ceiling.
2. Pipeline: images/s of ``core.find.features.extract_features`` on the offline world's images (decode, the model's
   own preprocessing, batching, the forward pass, sharded atomic writes), into an empty cache.
It prints both figures and their ratio (pipeline / best bare forward); 1.0 would mean no overhead at all.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--world-size", default="tiny")
    a = ap.parse_args()
    os.environ["BACKDROP_CACHE"] = tempfile.mkdtemp(prefix="backdrop-bench-features-")

    import torch

    from core.find.features import extract_features
    from core.find.runs import load_backbone
    from core.workspace import open_dataset

    ds = open_dataset({"name": "scenes-mnist", "size": a.world_size})
    if a.model.startswith("world-"):
        from core.world.backbones import train_world_backbone

        train_world_backbone(a.model, ds)
    bb = load_backbone(a.model, ds).eval()
    df = ds.index("val").iloc[: a.images]
    size = tuple(bb.data_config["input_size"])
    print(
        f"model {a.model}: input {size}, feature dim {bb.feature_dim}, {len(df)} images, "
        f"{torch.get_num_threads()} threads"
    )

    bare = {}
    with torch.inference_mode():
        for bs in a.batch_sizes:
            x = torch.randn(bs, *size)
            bb(x)  # warm-up
            n, t0 = 0, time.perf_counter()
            while n < len(df):
                bb(x)
                n += bs
            bare[bs] = n / (time.perf_counter() - t0)
            print(f"  bare forward  batch {bs:4d}: {bare[bs]:8.1f} images/s")
    best_bs = max(bare, key=bare.get)

    t0 = time.perf_counter()
    extract_features(bb, ds, df, batch_size=best_bs)
    pipe = len(df) / (time.perf_counter() - t0)
    print(f"  extract_features batch {best_bs:4d}: {pipe:8.1f} images/s (decode + preprocess + forward + write)")
    print(f"ratio pipeline / best bare forward: {pipe / bare[best_bs]:.2f}")


if __name__ == "__main__":
    main()
