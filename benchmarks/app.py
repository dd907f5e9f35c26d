"""Render time of every app page with a populated world of 30,000 debug images (IoU at scale: benchmarks/overlap.py).

    python benchmarks/app.py [--debug 30000] [--models 40] [--repeats 3] [--pages overlap results]

The world: the tiny offline world's images behind a 30,000-image debug set ("bench-world", registered in this
process), 40 models whose failure tables are synthetic (random logits with a shared per-image difficulty, so
failure sets overlap as real models' do) and written where core.find.runs keeps finished runs, plus curated lists
and a generated set. Each page is rendered with streamlit's AppTest: one cold run, then the median of warm runs
(what a user sees when interacting), with the CPU seconds the process spent on it (a render is mostly Python, about
one core; on a busy machine its wall time grows with the load, its CPU time much less). Target: every page under 1 s warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BACKDROP_CACHE", tempfile.mkdtemp(prefix="backdrop-bench-app-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import core.job_kinds  # noqa: E402,F401
from core import jobs, store  # noqa: E402
from core.config import HeadConfig, SplitConfig  # noqa: E402
from core.datasets import DATASETS  # noqa: E402
from core.datasets.base import ImageDataset  # noqa: E402
from core.find.failures import failure_table, per_class_counts  # noqa: E402
from core.find.heads import LinearHead  # noqa: E402
from core.workspace import open_dataset  # noqa: E402
from ui.nav import PAGE_FILES  # noqa: E402

TINY = {"name": "scenes-mnist", "size": "tiny", "seed": 0}
PAGES = list(PAGE_FILES)
FAMILIES = ["ResNet", "EfficientNet", "ViT", "CLIP", "ConvNeXt", "DenseNet", "MobileNet", "RegNet"]


class BenchWorld(ImageDataset):
    """``n_debug`` debug images whose pixels are the tiny world's val images, reused in turn."""

    name = "bench-world"

    def __init__(self, n_debug: int = 30_000, size: str | None = None, seed: int = 0):
        # size and seed: the offline world's defaults, which core.workspace.canonical_spec adds to every offline
        # world's spec; this one is always the tiny world's images behind n_debug ids
        self.world = open_dataset(TINY)
        self.classes = list(self.world.classes)
        base = self.world.index("val")
        rows = np.arange(n_debug) % len(base)
        self._val = base.iloc[rows].reset_index(drop=True).assign(image_id=[f"val/{i:06d}" for i in range(n_debug)])
        self._base_ids = base["image_id"].to_numpy()[rows]

    @property
    def key(self) -> str:
        return store.make_key(self.name, len(self._val))

    def pools(self):
        return ["val"]

    def index(self, pool):
        return self._val.copy()

    def load(self, image_id):
        return self.world.load(self._base_ids[int(str(image_id).split("/")[1])])


def synthetic_runs(ds: BenchWorld, n_models: int, seed: int = 0) -> list[str]:
    """Failure tables of ``n_models`` models (accuracy 60-85%) stored as finished pipeline runs."""
    from core.find.runs import run_folder

    rng = np.random.default_rng(seed)
    debug = ds.index("val")
    n, c = len(debug), len(ds.classes)
    labels = debug["label"].to_numpy()
    difficulty = rng.normal(size=n)  # shared: hard images fail for many models
    names = []
    for m in range(n_models):
        fam = FAMILIES[m % len(FAMILIES)]
        name = f"{fam.lower()}-{m:02d}"
        logits = rng.normal(size=(n, c)).astype(np.float32)
        margin = 2.0 + 0.8 * rng.normal() - 1.6 * difficulty + 0.6 * rng.normal(size=n)
        logits[np.arange(n), labels] += margin
        table = failure_table(debug, logits, seed=0)
        head = LinearHead(torch.zeros(c, 8), torch.zeros(c), torch.zeros(8), torch.ones(8), ds.classes)
        folder = run_folder(ds, name, store.make_key("bench-run", name))
        folder.mkdir(parents=True, exist_ok=True)
        head.save(folder / "head.safetensors")
        table.to_parquet(folder / "failures.parquet", index=False)
        per_class_counts(table, ds.classes).to_parquet(folder / "per_class.parquet", index=False)
        acc = float(table["correct"].mean())
        store.save_json(
            folder / "summary.json",
            {
                "model": name,
                "family": fam,
                "dataset": ds.name,
                "dataset_key": ds.key,
                "backbone_key": f"bench-{name}",
                "weights_id": "synthetic",
                "split_config": asdict(SplitConfig()),
                "head_config": asdict(HeadConfig()),
                "accuracy": {"head_train": 1.0, "debug": acc, "test": acc},
                "n_debug": n,
                "n_failures": int((~table["correct"]).sum()),
                "n_seed": int((table["split"] == "seed").sum()),
                "n_heldout": int((table["split"] == "heldout").sum()),
            },
        )
        names.append(name)
    return names


def populate(n_debug: int, n_models: int) -> dict:
    """Register and prepare the bench world; write runs, an embedding map, curated lists and a generated set."""
    jobs.run_inline(jobs.job_for("prepare_dataset", dataset=TINY))
    if "bench-world" not in DATASETS:
        DATASETS.register("bench-world", offline_world=True)(BenchWorld)
    spec = {"name": "bench-world", "n_debug": n_debug}
    jobs.run_inline(jobs.job_for("prepare_dataset", dataset=spec))
    ds = open_dataset(spec)
    t = time.perf_counter()
    names = synthetic_runs(ds, n_models)
    print(f"populated {n_models} runs x {n_debug:,} debug images in {time.perf_counter() - t:.1f} s")
    _embedding_map(ds, names[0])
    _lists(ds)
    _assignments(ds, names[0])
    _results(ds, names[:4])
    return spec, names[0]


def _embedding_map(ds, model: str) -> None:
    from core.find.embedding import embedding_map_path

    rng = np.random.default_rng(1)
    ids = ds.index("val")["image_id"]
    pts = pd.DataFrame({"image_id": ids, "x": rng.normal(size=len(ids)), "y": rng.normal(size=len(ids))})
    summary = {"backbone_key": f"bench-{model}", "dataset_key": ds.key, "split_config": asdict(SplitConfig())}
    path = embedding_map_path(summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    pts.to_parquet(path, index=False)


def _lists(ds) -> None:
    from core.describe.curation import CuratedLists

    lists = CuratedLists(ds, "background")
    for i, c in enumerate(ds.classes):
        lists.replace(c, [v for v in ds.world.backgrounds if v != ds.world.common_background(i)])


def _assignments(ds, model: str) -> None:
    """A synthetic CLIP assignment of the model's debug_seed failures, stored where core.describe.textualize keeps them."""
    from core.describe.curation import CuratedLists
    from core.find.runs import latest_runs, read_failure_table

    summary = latest_runs(ds)[model]
    table = read_failure_table(summary["folder"])
    seed = table[table["split"] == "seed"]
    rng = np.random.default_rng(2)
    values = np.array(ds.world.backgrounds)
    out = pd.DataFrame(
        {
            "image_id": seed["image_id"],
            "label": seed["label"],
            "class_name": [ds.classes[i] for i in seed["label"]],
            "value": values[rng.integers(0, len(values), len(seed))],
            "prob": rng.uniform(0.2, 0.9, len(seed)),
            "margin": rng.uniform(0, 0.5, len(seed)),
        }
    )
    out["probs"] = "[]"
    prov = {
        "attribute": "background",
        "list_version": CuratedLists(ds, "background").current_version_id(),
        "clip": "synthetic",
        "template": "a photo of a {class_name} in {value}",
        "model": model,
    }
    folder = Path(summary["folder"]) / "assignments"
    folder.mkdir(exist_ok=True)
    out.to_parquet(folder / "bench.parquet", index=False)
    store.save_json(folder / "bench.json", prov)


def _results(ds, models: list[str]) -> None:
    """Synthetic before/after and λ-sweep tables saved the way the Results page's experiment job saves them."""
    from core.fix.mitigate import save_results

    rng = np.random.default_rng(3)
    rows = []
    for m in models:
        base = rng.uniform(0.5, 0.8)
        for method, gain in (("before", 0.0), ("ours", 0.05), ("random", 0.01)):
            rows.append(
                {
                    "model": m,
                    "family": m.split("-")[0],
                    "method": method,
                    "lam": 0.5,
                    "k": 3,
                    "images_per_mode": 5,
                    "n_generated": 150,
                    "acc_test": base + gain,
                    "acc_seed": gain * 4,
                    "acc_heldout": gain * 3,
                    "acc_debug": base,
                }
            )
    meta = {
        "dataset": ds.key,
        "what": "individual",
        "models": models,
        "debug": {"lam": 0.5, "k_modes": 3, "images_per_mode": 5},
        "generator": "synthetic",
        "attribute": "background",
    }
    save_results(pd.DataFrame(rows), "individual", meta)
    sweep = [
        dict(r, method=meth, lam=lam, acc_heldout=0.1 * lam + (0.02 if meth == "ours" else 0), sweep="lam")
        for r in rows[:1]
        for lam in (0.0, 0.25, 0.5, 0.75, 1.0)
        for meth in ("ours", "random")
    ]
    save_results(pd.DataFrame(sweep), "lam", dict(meta, what="lam", models=models[:1]))


def render_times(spec: dict, repeats: int, model: str, pages: list[str] | None = None) -> list[dict]:
    """Cold and warm render seconds per page (``pages``: names such as "overlap"; default every page), each page
    showing ``model`` (the one with assignments)."""
    from streamlit.testing.v1 import AppTest

    os.environ["BACKDROP_APP_DATASET"] = json.dumps(spec)
    rows = []
    every = [(p, {}) for p in PAGES] + [("pages/failures.py", {"f-map-on": True})]
    for page, extra in [(p, x) for p, x in every if not pages or Path(p).stem in pages]:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        for key in ("failures-model", "gen-model", "bg-model"):
            at.session_state[key] = model
        for key, value in extra.items():
            at.session_state[key] = value
        at.run()
        if page != PAGES[0]:
            at.switch_page(page)
        t = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t
        warm, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            at.run()
            warm.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        rows.append(
            {
                "page": page + (" (embedding map on)" if extra else ""),
                "cold_s": round(cold, 3),
                "warm_median_s": round(statistics.median(warm), 3),
                "warm_cpu_s": round(statistics.median(cpu), 3),
                "under_1s": statistics.median(warm) < 1.0,
                "errors": "; ".join(map(str, problems))[:120],
            }
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--debug", type=int, default=30_000)
    ap.add_argument("--models", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pages", nargs="*", choices=[Path(p).stem for p in PAGES], help="only these pages")
    a = ap.parse_args(argv)
    print(f"cache: {store.cache_root()}")
    spec, model = populate(a.debug, a.models)
    print("load average (1, 5, 15 min) before rendering: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    rows = render_times(spec, a.repeats, model, a.pages)
    with pd.option_context("display.width", 200, "display.max_colwidth", 120):
        print(pd.DataFrame(rows).to_string(index=False))
    slow = [r["page"] for r in rows if not r["under_1s"]]
    print(f"every page under 1 s warm: {'yes' if not slow else 'no: ' + ', '.join(slow)}")
    print("load average (1, 5, 15 min) after rendering: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
