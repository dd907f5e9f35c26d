"""The ``ray`` executor: feature extraction and generation as Ray Data ``map_batches`` over actor pools.

Each actor is a callable class holding one model (a backbone, a CLIP image tower or a generator), built once from
the object store and moved to its GPU when the cluster has GPUs. The driver (the process that called the step)
keeps writing every cache artifact through the local path's own writers as results arrive, so what finished
before a worker or the driver died stays on disk, and the next run computes only what is missing. Ray Data
restarts a dead actor and retries its batch (``max_restarts``/``max_task_retries`` default to -1 for actor
pools). Workers read images through the dataset object they receive, so on a multi-machine cluster the dataset's
files must be reachable from every machine (the offline world ships its pixels with the object).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import ExecutorConfig
from core.errors import BackdropError
from core.progress import StopFn, check_stop

CPUS_PER_ACTOR = 1.0


class WorkerError(BackdropError):
    """The Ray workers failed on a batch; every result written before it is kept and a rerun resumes."""


def connect(cfg: ExecutorConfig, **local: Any) -> None:
    """Join the Ray cluster at ``cfg.address`` (or ``$RAY_ADDRESS``), or start one on this machine (``local`` goes
    to ``ray.init``, e.g. ``num_cpus``), unless this process has joined one already. A Ray started here gives its
    workers this process's ``core`` (a source checkout works uninstalled); a cluster's machines need backdrop
    installed."""
    import os

    import ray

    if ray.is_initialized():
        return
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.address, logging_level=logging.WARNING)
        return
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this process's core/
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        include_dashboard=False, logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": path}}, **local
    )


def _pool(cfg: ExecutorConfig, n_batches: int) -> tuple[Any, float]:
    """(actor pool strategy, GPUs per actor): one actor per GPU, else per CPU, unless ``cfg.actors`` says."""
    import ray

    res = ray.cluster_resources()
    gpus = float(res.get("GPU", 0.0))
    per_gpu = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    if cfg.actors:
        n = cfg.actors
    elif per_gpu:
        n = int(gpus // per_gpu)
    else:
        n = int(float(res.get("CPU", 1.0)) // CPUS_PER_ACTOR)
    return ray.data.ActorPoolStrategy(size=max(1, min(n, n_batches))), per_gpu


def _dataset(n_batches: int, *, ordered: bool):
    """A Ray dataset of batch numbers 0..n-1, one block each (built in the driver, so no task runs to make it and
    the batches spread over the actors); quiet, and in order when ``ordered``."""
    import ray

    ds = ray.data.from_items([{"batch": k} for k in range(n_batches)], override_num_blocks=n_batches)
    ds.context.enable_progress_bars = False
    ds.context.print_on_execution_start = False
    ds.context.execution_options.preserve_order = ordered
    return ds


def _results(ds, what: str, should_stop: StopFn | None) -> Iterator[dict[str, np.ndarray]]:
    """The output batches as they finish; a worker's BackdropError comes back as itself, other failures as one."""
    it = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        while True:
            check_stop(should_stop)
            try:
                batch = next(it)
            except StopIteration:
                return
            yield batch
    except BackdropError:
        raise
    except Exception as e:
        cause = _backdrop_cause(e)
        if cause is not None:
            raise cause from None
        raise WorkerError(
            f"The Ray workers failed while {what}: {type(e).__name__}: {' '.join(str(e).split())[:500]}. "
            "Everything finished before the failure is kept; run again to resume."
        ) from e
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _backdrop_cause(e: BaseException | None) -> BackdropError | None:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, BackdropError) and not type(e).__module__.startswith("ray"):
            return e
        e, seen = e.__cause__ or getattr(e, "cause", None), seen + 1
    return None


# -- feature extraction ---------------------------------------------------------------------------------------


class FeatureActor:
    """One backbone per actor: batch numbers -> their images' features, with each row's shard and position."""

    def __init__(self, backbone_ref, dataset_ref, plan_ref):
        import ray

        from core.device import default_device

        self.device = default_device()
        self.model = ray.get(backbone_ref).to(self.device).eval()
        self.dataset = ray.get(dataset_ref)
        self.plan = ray.get(plan_ref)  # batch number -> (shard, first position in the shard, image ids)
        self.transform = self.model.transform()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        shard, pos, feats = [], [], []
        for k in batch["batch"]:
            i, first, ids = self.plan[int(k)]
            x = torch.stack([self.transform(self.dataset.load(str(iid))) for iid in ids])
            with torch.inference_mode():
                f = self.model(x.to(self.device))
            if not torch.isfinite(f).all():
                raise FloatingPointError(
                    f"{self.model.name} produced NaN/inf features; check its weights and preprocessing."
                )
            feats.append(f.float().cpu().numpy())
            shard.append(np.full(len(ids), i))
            pos.append(np.arange(first, first + len(ids)))
        return {"shard": np.concatenate(shard), "pos": np.concatenate(pos), "features": np.concatenate(feats)}


def extract_shards(
    backbone,
    dataset,
    df: pd.DataFrame,
    shards: Sequence[tuple[int, int, int]],
    batch_size: int,
    cfg: ExecutorConfig,
    should_stop: StopFn | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(shard index, its (stop - start, D) features) for each (index, start, stop) in ``shards``, as each completes."""
    import ray

    ids = df["image_id"].astype(str).tolist()
    plan = [
        (i, s - start, ids[s : min(s + batch_size, stop)])
        for i, start, stop in shards
        for s in range(start, stop, batch_size)
    ]
    if not plan:
        return
    connect(cfg)
    strategy, gpus = _pool(cfg, len(plan))
    refs = {"backbone_ref": ray.put(_on_cpu(backbone)), "dataset_ref": ray.put(dataset), "plan_ref": ray.put(plan)}
    ds = _dataset(len(plan), ordered=False).map_batches(
        FeatureActor, fn_constructor_kwargs=refs, batch_size=1, compute=strategy, num_cpus=CPUS_PER_ACTOR, num_gpus=gpus
    )
    size = {i: stop - start for i, start, stop in shards}
    buffers: dict[int, np.ndarray] = {}
    filled: dict[int, int] = {}
    for out in _results(ds, f"extracting features with {backbone.name}", should_stop):
        feats = np.asarray(out["features"], np.float32)
        for i in np.unique(out["shard"]):
            i = int(i)
            rows = out["shard"] == i
            if i not in buffers:
                buffers[i], filled[i] = np.zeros((size[i], feats.shape[1]), np.float32), 0
            buffers[i][out["pos"][rows]] = feats[rows]
            filled[i] += int(rows.sum())
            if filled[i] == size[i]:
                yield i, buffers.pop(i)


def _on_cpu(module):
    """``module`` itself when it is on the CPU, else a CPU copy (the caller's model stays where it is)."""
    import copy

    tensors = [*module.parameters(), *module.buffers()]
    return module if all(t.device.type == "cpu" for t in tensors) else copy.deepcopy(module).cpu()


# -- generation -----------------------------------------------------------------------------------------------


class GeneratorActor:
    """One generator per actor (weights loaded here): batch numbers -> PNG bytes (b"" when dropped) and info."""

    def __init__(self, generator_ref, plan_ref):
        import ray

        self.generator = ray.get(generator_ref)
        self.plan = ray.get(plan_ref)  # batch number -> its (request, index, seed) slots
        self.generator.prepare()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        gen, number, png, info = self.generator, [], [], []
        for k in batch["batch"]:
            slots = self.plan[int(k)]
            specs = [sp for sp, _, _ in slots]
            images = gen.generate_batch([sp.prompt for sp in specs], [s for _, _, s in slots], specs)
            if len(images) != len(slots):
                raise WorkerError(f"The {gen.name} generator returned {len(images)} images for {len(slots)} prompts.")
            infos = list(gen.last_info) + [{}] * (len(slots) - len(gen.last_info))
            number += [int(k)] * len(slots)
            png += [_lossless_png(im) for im in images]
            info += [json.dumps(i or {}) for i in infos]
        return {"batch": np.array(number), "png": np.array(png, dtype=object), "info": np.array(info, dtype=object)}


def _lossless_png(img) -> bytes:
    if img is None:
        return b""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def generated_batches(
    generator,
    pending: Sequence[tuple[Any, int, int]],
    batch_size: int,
    cfg: ExecutorConfig,
    should_stop: StopFn | None = None,
) -> Iterator[tuple[list, list, list[dict]]]:
    """(slots, images or None, infos) per batch of ``pending`` (request, index, seed) slots, in the given order."""
    import ray
    from PIL import Image

    plan = [list(pending[s : s + batch_size]) for s in range(0, len(pending), batch_size)]
    if not plan:
        return
    connect(cfg)
    strategy, gpus = _pool(cfg, len(plan))
    refs = {"generator_ref": ray.put(generator), "plan_ref": ray.put(plan)}
    ds = _dataset(len(plan), ordered=True).map_batches(
        GeneratorActor,
        fn_constructor_kwargs=refs,
        batch_size=1,
        compute=strategy,
        num_cpus=CPUS_PER_ACTOR,
        num_gpus=gpus,
    )
    for out in _results(ds, f"generating with {generator.name}", should_stop):
        for k in np.unique(out["batch"]):
            rows = np.flatnonzero(out["batch"] == k)
            images = [
                Image.open(io.BytesIO(out["png"][r])).convert("RGB") if len(out["png"][r]) else None for r in rows
            ]
            yield plan[int(k)], images, [json.loads(out["info"][r]) for r in rows]
