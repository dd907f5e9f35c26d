"""Cached, resumable feature extraction: one memory-mapped float32 matrix per (backbone, image list).

Work is split into fixed-size shards of image ids written atomically as they finish, so an interrupted
extraction resumes at the first missing shard and the same function can later be fanned out over shards.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import executors, store
from core.datasets.base import ImageDataset, TorchView
from core.device import default_device
from core.errors import BackdropError
from core.models.base import Backbone
from core.progress import ProgressFn, StopFn, check_stop, no_progress

FEATURE_SCHEMA = 1
SHARD_SIZE = 1024
# Images per forward pass when the caller does not say. On a CPU small batches run faster: benchmarks/features.py
# (efficientnet-lite0, channels_last, 2 threads) measured batch 16 at 1.5x batch 64 at 224 px and 1.7x at 96 px,
# with equal features; a GPU wants larger batches.
CPU_BATCH_SIZE = 16
GPU_BATCH_SIZE = 64


@dataclass(frozen=True)
class FeatureRef:
    """Where a feature matrix lives and what determined it."""

    key: str
    folder: Path
    n: int
    dim: int

    @property
    def file(self) -> Path:
        return self.folder / "features.npy"


def feature_key(backbone: Backbone, dataset: ImageDataset, df: pd.DataFrame) -> str:
    return store.make_key("features", FEATURE_SCHEMA, backbone.key, backbone.data_config, dataset.manifest_hash(df))


def feature_ref(backbone: Backbone, dataset: ImageDataset, df: pd.DataFrame) -> FeatureRef:
    key = feature_key(backbone, dataset, df)
    return FeatureRef(key, store.cache_root() / "features" / backbone.name / key, len(df), backbone.feature_dim)


def load_cached(ref: FeatureRef) -> np.ndarray | None:
    """The finished matrix memory-mapped, or None if absent or invalid (wrong shape, truncated)."""
    meta = store.load_json(ref.folder / "meta.json")
    if not meta or meta.get("key") != ref.key:
        return None
    return store.load_npy(ref.file, mmap=True, shape=(ref.n, ref.dim))


def extract_features(
    backbone: Backbone,
    dataset: ImageDataset,
    df: pd.DataFrame,
    *,
    batch_size: int | None = None,
    num_workers: int = 0,
    device: str | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    shard_size: int = SHARD_SIZE,
) -> np.ndarray:
    """Features (len(df), D) for the images in ``df`` (rows in order), from cache when valid. ``batch_size``:
    images per forward pass (default: ``default_batch_size`` of the device)."""
    progress = progress or no_progress
    ref = feature_ref(backbone, dataset, df)
    cached = load_cached(ref)
    if cached is not None:
        progress(ref.n, ref.n, f"features {backbone.name}: cached")
        return cached

    shards = [(s, min(s + shard_size, ref.n)) for s in range(0, ref.n, shard_size)]
    shard_dir = ref.folder / "shards"
    with store.lock(ref.folder / "extract"):
        cached = load_cached(ref)  # another process may have finished while we waited for the lock
        if cached is not None:
            return cached
        store.remove_orphan_temps(ref.folder)  # a killed extraction's unfinished shard or merge writes
        missing = [
            (i, start, stop)
            for i, (start, stop) in enumerate(shards)
            if store.load_npy(shard_dir / f"{i:05d}.npy", mmap=True, shape=(stop - start, ref.dim)) is None
        ]
        done = ref.n - sum(stop - start for _, start, stop in missing)
        ex = executors.current()
        device = device or default_device()
        batch_size = batch_size or default_batch_size(device)
        if ex.name == "ray":
            computed = executors.ray_backend().extract_shards(
                backbone, dataset, df, missing, batch_size, ex, should_stop
            )
        else:
            computed = _local_shards(
                backbone.to(device).to(memory_format=forward_layout(backbone, device)).eval(),
                backbone.transform(),
                dataset,
                df,
                missing,
                batch_size,
                num_workers,
                device,
                lambda k: progress(done + k, ref.n, f"features {backbone.name}"),
                should_stop,
            )
        for i, arr in computed:
            store.save_npy(shard_dir / f"{i:05d}.npy", arr)
            done += len(arr)
            progress(done, ref.n, f"features {backbone.name}")
        _merge(ref, [shard_dir / f"{i:05d}.npy" for i in range(len(shards))])
    merged = load_cached(ref)
    if merged is None:
        raise BackdropError(
            f"The features of {backbone.name} were written to {ref.folder} but do not read back; free disk space "
            "there and run again."
        )
    return merged


def default_batch_size(device: str | torch.device) -> int:
    """Images per forward pass on ``device``: ``CPU_BATCH_SIZE`` on the CPU, ``GPU_BATCH_SIZE`` elsewhere."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_BATCH_SIZE


def forward_layout(backbone: Backbone, device: str | torch.device = "cpu") -> torch.memory_format:
    """The memory layout extraction runs ``backbone`` in: channels_last (NHWC) on the CPU for backbones that ask
    for it (measured faster there with equal features, benchmarks/features.py), else the default."""
    on_cpu = torch.device(device).type == "cpu"
    return torch.channels_last if on_cpu and getattr(backbone, "channels_last", False) else torch.contiguous_format


def _local_shards(model, transform, dataset, df, missing, batch_size, num_workers, device, report, should_stop):
    """(shard index, features) for each missing (index, start, stop), computed in this process."""
    for i, start, stop in missing:
        view = TorchView(dataset, df.iloc[start:stop], transform)
        yield i, _run_shard(model, view, batch_size, num_workers, device, report, should_stop)


def _run_shard(model, view: TorchView, batch_size: int, num_workers: int, device: str, report, should_stop):
    loader = torch.utils.data.DataLoader(view, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    layout = forward_layout(model, device)
    out, seen = [], 0
    with torch.inference_mode():
        for x, _ in loader:
            check_stop(should_stop)
            feats = model(x.to(device, memory_format=layout))
            if not torch.isfinite(feats).all():
                raise FloatingPointError(
                    f"{model.name} produced NaN/inf features; check its weights and preprocessing."
                )
            out.append(feats.cpu().numpy().astype(np.float32))
            seen += len(x)
            report(seen)
    return np.concatenate(out) if out else np.zeros((0, model.feature_dim), np.float32)


def _merge(ref: FeatureRef, shard_files: list[Path]) -> None:
    with store.atomic_path(ref.file) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(ref.n, ref.dim))
        row = 0
        for f in shard_files:
            part = np.load(f, mmap_mode="r")
            mm[row : row + len(part)] = part
            row += len(part)
        mm.flush()
        del mm
    store.save_json(ref.folder / "meta.json", {"key": ref.key, "n": ref.n, "dim": ref.dim, "schema": FEATURE_SCHEMA})
    shutil.rmtree(ref.folder / "shards", ignore_errors=True)
