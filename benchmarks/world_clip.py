"""The world CLIP's configurations side by side: what each reads (against ground truth) and what it costs.

    python benchmarks/world_clip.py                     # the grid on the tiny world
    python benchmarks/world_clip.py --only default      # one row (names as printed in the table's first column)
    python benchmarks/world_clip.py --size default --only default   # confirm a row on the default-size world
    python benchmarks/world_clip.py --dataset scenes-mnist-open --only default vit   # the open-vocabulary world

Each row trains one world CLIP (``core.world.clip.train_world_clip``, one thread, in a fresh cache folder shared by
the rows, so a backbone tower's world backbone is trained once and timed apart) and scores it on the world's val
pool with ``core.world.clip_quality.clip_quality``: text-search precision@20 ("a photo of a {digit} on
{background}": digit and background both right), zero-shot digit / background / colour accuracy (chance 0.1 each),
and the CLIP's own training seconds (the ``seconds`` of its meta.json; a backbone tower's backbone is in the
"backbone s" column: the setup build trains every world backbone anyway). Model selection reads the tiny world's
val pool; never choose a row by the default world's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# name -> WorldClipConfig fields on top of BASE (spelled out, so a row means the same whatever the defaults are).
# "vit" is BASE: the ViT tower from scratch (the default before the backbone tower); the others vary one thing at a
# time around a backbone tower: which backbone, the attribute loss's weight, the rare-pair balance, the schedule
# and the tower's learning rate. "default" is whatever WorldClipConfig() is now.
BASE = dict(
    image_tower=None,
    balance=0.5,
    epochs=8,
    max_steps=2000,
    attribute_weight=0.0,
    attribute_images=32,
    tower_lr_scale=1.0,
)
M = dict(image_tower="world-resnet-m", balance=1.0, epochs=5)
GRID: dict[str, dict] = {
    "vit": {},
    "s": dict(M, image_tower="world-resnet-s"),
    "m": M,
    "l": dict(M, image_tower="world-resnet-l"),
    "s attr 1": dict(M, image_tower="world-resnet-s", attribute_weight=1.0),
    "m attr 0.5": dict(M, attribute_weight=0.5),
    "m attr 1": dict(M, attribute_weight=1.0),
    "m attr 1 img 8": dict(M, attribute_weight=1.0, attribute_images=8),
    "m bal 0.5": dict(M, balance=0.5),
    "m ep 3": dict(M, epochs=3),
    "m ep 6": dict(M, epochs=6),
    "m ep 7": dict(M, epochs=7),
    "m ep 8": dict(M, epochs=8),
    "m lr 0.3": dict(M, tower_lr_scale=0.3),
    "default": {},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="tiny", choices=["tiny", "default"])
    ap.add_argument("--dataset", default="scenes-mnist")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", choices=list(GRID), help="rows to run (default: all but 'default')")
    ap.add_argument("--cache", help="cache folder (default: a new empty one; reuse one to skip its trained parts)")
    a = ap.parse_args()
    os.environ["BACKDROP_CACHE"] = a.cache or tempfile.mkdtemp(prefix="backdrop-bench-world-clip-")

    from core.datasets import create_dataset
    from core.threads import single_thread
    from core.world.backbones import train_world_backbone
    from core.world.clip import WorldClipConfig, train_world_clip, world_clip_dir
    from core.world.clip_quality import clip_quality

    ds = create_dataset(a.dataset, size=a.size, seed=a.world_seed)
    names = a.only or [n for n in GRID if n != "default"]
    print(f"world CLIP configurations on {a.dataset} size {a.size} (world seed {a.world_seed}), val pool", flush=True)
    header = "| config | fields | search p@20 | digit | background | colour | CLIP s | backbone s |"
    lines = [header, "|" + " --- |" * 8]
    print(header, flush=True)
    backbone_s: dict[str, float] = {}
    for name in names:
        cfg = WorldClipConfig() if name == "default" else WorldClipConfig(**{**BASE, **GRID[name]})
        with single_thread():
            if cfg.image_tower and cfg.image_tower not in backbone_s:
                t = time.perf_counter()
                train_world_backbone(cfg.image_tower, ds)
                backbone_s[cfg.image_tower] = time.perf_counter() - t
            clip = train_world_clip(ds, cfg, device="cpu")
            q = clip_quality(clip, ds)
        seconds = json.loads((world_clip_dir(ds, cfg) / "meta.json").read_text())["seconds"]
        fields = "WorldClipConfig()" if name == "default" else ", ".join(f"{k}={v}" for k, v in GRID[name].items())
        bb = f"{backbone_s[cfg.image_tower]:.0f}" if cfg.image_tower else "—"
        line = (
            f"| {name} | {fields} | {q.search_precision:.3f} | {q.digit_accuracy:.3f} | {q.background_accuracy:.3f} "
            f"| {q.colour_accuracy:.3f} | {seconds:.0f} | {bb} |"
        )
        lines.append(line)
        print(line, flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
