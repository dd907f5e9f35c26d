"""One model's pass through the foundation pipeline: splits -> features -> linear head -> failures, all cached.

``run_model`` is what the CLI, the app's jobs and the mitigation code call. Reading finished runs without computing
anything (what the app renders) goes through ``list_runs`` / ``latest_runs`` and ``read_failure_table``, the one
reader of a run's failure table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import store
from core.config import HeadConfig, SplitConfig
from core.datasets.base import ImageDataset
from core.errors import MissingResourceError
from core.find.failures import failure_table, per_class_counts
from core.find.features import extract_features, feature_key
from core.find.heads import LinearHead, train_head
from core.models.base import Backbone
from core.progress import ProgressFn, StopFn, no_progress, offset

RUN_SCHEMA = 1
_BACKBONES: dict[tuple, Backbone] = {}


def load_backbone(name: str, dataset: ImageDataset | None = None, weights: str | None = None) -> Backbone:
    """The named backbone (world-trained ones are looked up for ``dataset``), kept in memory for reuse."""
    from core.models import create_model, model_info

    kw: dict = {}
    if model_info(name).get("source") == "world":
        kw["dataset"] = dataset
    if weights:
        kw["weights"] = weights
    k = (name, dataset.key if dataset is not None else None, weights)
    if k not in _BACKBONES:
        _BACKBONES[k] = create_model(name, **kw)
    return _BACKBONES[k]


def get_splits(dataset: ImageDataset, split_cfg: SplitConfig = SplitConfig()):
    from core.find.splits import make_splits

    return make_splits(dataset, split_cfg)


SPLIT_PARTS = ("head_train", "debug", "test")


def split_features(
    backbone: Backbone,
    dataset: ImageDataset,
    splits,
    *,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> dict[str, np.ndarray]:
    """Features of head_train, debug and test. debug and test split the val pool, so their rows are taken from the
    val pool's features, extracted once per backbone whatever the split seed (other seeds cost nothing); head_train,
    a few images per class of the train pool, is extracted as it is. A dataset whose debug and test rows are not
    all in its val pool gets them extracted as they are too."""
    report = progress or no_progress
    parts = {name: getattr(splits, name) for name in SPLIT_PARTS}
    val = dataset.index("val") if "val" in dataset.pools() else None
    ids = pd.Index(val["image_id"]) if val is not None else pd.Index([])
    rows = {n: ids.get_indexer(parts[n]["image_id"]) for n in ("debug", "test")}
    from_val = val is not None and ids.is_unique and all((r >= 0).all() for r in rows.values())
    jobs = [("head_train", parts["head_train"])] + (
        [("val", val)] if from_val else [("debug", parts["debug"]), ("test", parts["test"])]
    )
    n_images, before, got = sum(len(df) for _, df in jobs), 0, {}
    for name, df in jobs:  # one count of images over all of them, so a bar never goes back between them
        within = offset(report, before, n_images)
        got[name] = np.asarray(
            extract_features(backbone, dataset, df, batch_size=batch_size, progress=within, should_stop=should_stop)
        )
        before += len(df)
    if from_val:
        got.update({n: got["val"][r] for n, r in rows.items()})
    return {n: got[n] for n in SPLIT_PARTS}


@dataclass
class ModelRun:
    model: str
    family: str
    folder: Path
    head: LinearHead
    table: pd.DataFrame  # one row per debug image (see core.find.failures.failure_table)
    summary: dict  # accuracies, counts, keys of everything the run came from

    @property
    def failures(self) -> pd.DataFrame:
        return self.table[~self.table["correct"]]


def run_key(backbone: Backbone, dataset: ImageDataset, split_cfg: SplitConfig, head_cfg: HeadConfig) -> str:
    return store.make_key("run", RUN_SCHEMA, backbone.key, dataset.key, asdict(split_cfg), asdict(head_cfg))


def run_folder(dataset: ImageDataset, model: str, key: str) -> Path:
    return store.cache_root() / "runs" / dataset.key / model / key


def run_model(
    dataset: ImageDataset,
    model: str,
    split_cfg: SplitConfig = SplitConfig(),
    head_cfg: HeadConfig = HeadConfig(),
    *,
    weights: str | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ModelRun:
    """Features for head_train/debug/test, the head trained on head_train, and the debug failure table."""
    backbone = load_backbone(model, dataset, weights)
    folder = run_folder(dataset, model, run_key(backbone, dataset, split_cfg, head_cfg))
    done = _load(folder, model, backbone.family)
    if done is not None:
        return done
    folder.mkdir(parents=True, exist_ok=True)
    # One process computes a run (features, head, failures); others wait and then load what it wrote, so
    # concurrent runs of one model train each head once.
    with store.lock(folder / "run"):
        done = _load(folder, model, backbone.family)
        if done is not None:
            return done
        store.remove_orphan_temps(folder)  # a killed run's unfinished writes
        return _compute(dataset, model, backbone, folder, split_cfg, head_cfg, batch_size, progress, should_stop)


def _compute(
    dataset: ImageDataset,
    model: str,
    backbone: Backbone,
    folder: Path,
    split_cfg: SplitConfig,
    head_cfg: HeadConfig,
    batch_size: int | None,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
) -> ModelRun:
    splits = get_splits(dataset, split_cfg)
    report = progress or no_progress
    feats = split_features(backbone, dataset, splits, batch_size=batch_size, progress=progress, should_stop=should_stop)
    ht = splits.head_train

    def head_progress(done: int, total: int, message: str = "") -> None:
        report(1, 1, message)  # the images are all done: the head is what remains

    head = train_head(
        feats["head_train"],
        ht["label"].to_numpy(),
        dataset.classes,
        head_cfg,
        meta={
            "backbone": backbone.name,
            "weights_id": backbone.weights_id,
            "data_config": backbone.data_config,
            "dataset": dataset.key,
            "feature_key": feature_key(backbone, dataset, ht),
        },
        progress=head_progress,
        should_stop=should_stop,
    )
    table = failure_table(splits.debug, head.logits(feats["debug"]).numpy(), seed=split_cfg.seed)
    counts = per_class_counts(table, dataset.classes)
    summary = {
        "model": model,
        "family": backbone.family,
        "dataset": dataset.name,
        "dataset_key": dataset.key,
        "backbone_key": backbone.key,
        "weights_id": backbone.weights_id,
        "split_config": asdict(split_cfg),
        "head_config": asdict(head_cfg),
        "accuracy": {
            "head_train": head.accuracy(feats["head_train"], ht["label"]),
            "debug": float(table["correct"].mean()),
            "test": head.accuracy(feats["test"], splits.test["label"]),
        },
        "n_debug": len(table),
        "n_failures": int((~table["correct"]).sum()),
        "n_seed": int((table["split"] == "seed").sum()),
        "n_heldout": int((table["split"] == "heldout").sum()),
    }
    folder.mkdir(parents=True, exist_ok=True)
    head.save(folder / "head.safetensors")
    with store.atomic_path(folder / "failures.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with store.atomic_path(folder / "per_class.parquet") as tmp:
        counts.to_parquet(tmp, index=False)
    store.save_json(folder / "summary.json", summary)  # written last: its presence marks the run complete
    return ModelRun(model, backbone.family, folder, head, table, summary)


def _load(folder: Path, model: str, family: str) -> ModelRun | None:
    summary = store.load_json(folder / "summary.json")
    if not summary:
        return None
    try:
        head = LinearHead.load(folder / "head.safetensors")
        table = read_failure_table(folder)
    except Exception:  # a corrupt or partial run is recomputed
        return None
    return ModelRun(model, family, folder, head, table, summary)


def load_run(
    dataset: ImageDataset, model: str, split_cfg: SplitConfig = SplitConfig(), head_cfg: HeadConfig = HeadConfig()
) -> ModelRun | None:
    """A finished run, or None: reads only (the report and other readers never start a computation)."""
    backbone = load_backbone(model, dataset)
    return _load(run_folder(dataset, model, run_key(backbone, dataset, split_cfg, head_cfg)), model, backbone.family)


def read_failure_table(folder: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A finished run's failure table (see core.find.failures.failure_table), or only ``columns`` of it.

    Top-5 predictions are int columns top1..top5; runs saved before that held them as one list column ``top5``,
    which is unpacked here, so every reader sees one schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(folder) / "failures.parquet"
    try:
        names = pq.read_schema(path).names
        legacy = "top5" in names and "top1" not in names
        wanted = columns
        if legacy and columns is not None and any(c.startswith("top") for c in columns):
            wanted = [c for c in columns if not c.startswith("top")] + ["top5"]
        tbl = pq.read_table(path, columns=wanted)
    except (OSError, pa.ArrowException) as e:
        raise MissingResourceError(
            f"The failure table of the run in {folder} cannot be read ({e}); run the model again to recompute it."
        ) from None
    if not legacy or "top5" not in tbl.column_names:
        return tbl.to_pandas()
    col = tbl.column("top5").combine_chunks()
    top = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1) if len(col) else np.zeros((0, 5))
    df = tbl.drop_columns(["top5"]).to_pandas()
    for j in range(top.shape[1]):
        if columns is None or f"top{j + 1}" in columns:
            df[f"top{j + 1}"] = top[:, j].astype(np.int32)
    return df


def list_runs(dataset: ImageDataset) -> list[dict]:
    """Summaries of every finished run for this dataset (any model, any config), newest first."""
    root = store.cache_root() / "runs" / dataset.key
    out = []
    for p in root.glob("*/*/summary.json"):
        s = store.load_json(p)
        if s:
            out.append(dict(s, folder=str(p.parent), mtime=p.stat().st_mtime))
    return sorted(out, key=lambda s: -s["mtime"])


def latest_runs(
    dataset: ImageDataset, split_cfg: SplitConfig = SplitConfig(), head_cfg: HeadConfig = HeadConfig()
) -> dict[str, dict]:
    """The run the app shows per model: model -> run summary (with its ``folder`` and ``mtime``). That is the
    newest finished run with these split and head settings (the defaults, which the pages' experiments use), so
    a run made with other settings (a repeat's split seed, a CLI run with ``--split-seed``) does not replace it;
    a model that has runs only with other settings shows its newest one."""
    wanted = (asdict(split_cfg), asdict(head_cfg))
    runs = list_runs(dataset)  # newest first
    same: dict[str, dict] = {}
    other: dict[str, dict] = {}
    for s in runs:
        (same if (s.get("split_config"), s.get("head_config")) == wanted else other).setdefault(s["model"], s)
    return {m: same.get(m) or other[m] for m in dict.fromkeys(s["model"] for s in runs)}
