"""Failure textualization (paper §4.1–4.2): curated value lists -> CLIP names each debug_seed failure's value ->
the k most frequent values per class are the model's failure modes.

Assignments are cached per (run, CLIP, list versions, prompt) so the app and the mitigation code read them
instead of recomputing; the list versions they used are recorded in every result built on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core import store
from core.datasets.base import ImageDataset
from core.datasets.registry import is_offline_world
from core.find.failures import failures
from core.find.runs import ModelRun
from core.progress import ProgressFn, StopFn


def default_clip(dataset: ImageDataset):
    """The offline world's own CLIP for the world; open_clip ViT-B-32 (openai weights, as the paper) otherwise."""
    from core.describe.clip import load_clip

    return load_clip("world", dataset=dataset) if is_offline_world(dataset) else load_clip("ViT-B-32", "openai")


def ensure_lists(
    dataset: ImageDataset,
    attribute: str = "background",
    proposer: str | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    proposer_options: dict | None = None,
):
    """Curated lists for every class; classes without one are proposed (LLM if a key is set, else offline)
    and deduplicated. Lists a user edited are never touched. ``proposer_options`` go to the proposer
    (e.g. ``{"base_url": ..., "model": ...}`` for the LLM)."""
    from core.describe.curation import CuratedLists
    from core.describe.proposals import choose_proposer, dedupe_proposals, propose
    from core.describe.proposals.offline import offline_options

    lists = CuratedLists(dataset, attribute)
    missing = [c for c in dataset.classes if lists.get(c) is None]
    if missing:
        proposer = proposer or choose_proposer()
        kw: dict[str, Any] = offline_options(dataset) if proposer == "offline" else {}
        kw.update(proposer_options or {})
        props = propose(attribute, missing, proposer=proposer, progress=progress, should_stop=should_stop, **kw)
        lists.seed_from_proposals(props, dedupe_proposals(props))
    return lists


@dataclass
class Textualization:
    assignments: pd.DataFrame  # one row per debug_seed failure: value, prob, margin, probs
    modes: pd.DataFrame  # k most frequent values per class
    provenance: dict  # list versions, CLIP key, prompt
    warnings: list[str] = field(default_factory=list)  # e.g. classes whose curated list is empty


def assignments_for(
    dataset: ImageDataset,
    run: ModelRun,
    *,
    attribute: str = "background",
    clip=None,
    template: str | None = None,
    templates: list[str] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[pd.DataFrame, dict]:
    """CLIP's value for each debug_seed failure of ``run`` over the current curated lists (cached)."""
    from core.describe.assign import assign, default_template

    template = template or default_template(attribute)
    lists = ensure_lists(dataset, attribute, progress=progress, should_stop=should_stop)
    values = lists.as_dict()
    clip = clip or default_clip(dataset)
    prov = {
        "attribute": attribute,
        "list_version": lists.current_version_id(),
        "clip": clip.key,
        "template": template,
        "templates": templates,
        "model": run.model,
    }
    path = run.folder / "assignments" / f"{store.make_key(prov)}.parquet"
    cached = read_assignments(path)
    if cached is not None:
        return cached, prov
    seed = failures(run.table, "seed")
    out = assign(
        seed,
        dataset,
        values,
        clip,
        template=template,
        templates=templates,
        attribute=attribute,
        progress=progress,
        should_stop=should_stop,
    )
    out = out.assign(model=run.model)
    with store.atomic_path(path) as tmp:
        out.to_parquet(tmp, index=False)
    store.save_json(path.with_suffix(".json"), prov)
    return out, prov


def textualize(dataset: ImageDataset, run: ModelRun, k: int = 3, **kw) -> Textualization:
    from core.describe.assign import failure_modes
    from core.describe.curation import CuratedLists, empty_list_warning

    assignments, prov = assignments_for(dataset, run, **kw)
    lists = CuratedLists(dataset, kw.get("attribute", "background")).as_dict()
    warning = empty_list_warning(lists, dataset.classes)
    return Textualization(assignments, failure_modes(assignments, k=k), dict(prov, k=k), [warning] if warning else [])


def list_assignments(run_folder: str | Path, attribute: str) -> list[tuple[dict, Path]]:
    """(provenance, parquet path) of a run's cached assignments for ``attribute``, newest first (one per list
    version, CLIP and prompt)."""
    folder = Path(run_folder) / "assignments"
    found = []
    for side in folder.glob("*.json") if folder.is_dir() else []:
        prov = store.load_json(side) or {}
        pq = side.with_suffix(".parquet")
        if prov.get("attribute") == attribute and pq.is_file():
            found.append((prov, pq))
    return sorted(found, key=lambda pp: -pp[1].stat().st_mtime)


def read_assignments(path: str | Path) -> pd.DataFrame | None:
    """One cached assignment table (see ``assignments_for``), or None when it is missing or damaged."""
    if not Path(path).is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # damaged: the caller recomputes or reports no assignment
        return None


def latest_assignments(run_folder: str | Path, attribute: str) -> tuple[pd.DataFrame, dict] | None:
    """The newest cached assignment of a finished run's debug_seed failures to ``attribute`` values, with its
    provenance (list version, CLIP, prompt); None before the textualize step has run."""
    for prov, path in list_assignments(run_folder, attribute):
        table = read_assignments(path)
        if table is not None:
            return table, prov
    return None


def latest_failure_modes(run_folder: str | Path, attribute: str, k: int = 3) -> pd.DataFrame | None:
    """The k most frequent assigned values per class of a finished run (core.describe.assign.failure_modes),
    or None before assignment."""
    from core.describe.assign import failure_modes

    got = latest_assignments(run_folder, attribute)
    return None if got is None else failure_modes(got[0], k=k)


def with_values(table: pd.DataFrame, assigned: pd.DataFrame | None) -> pd.DataFrame:
    """The failures of a run's table, with the assigned value and its probability where CLIP assigned one."""
    fails = failures(table)
    if assigned is None:
        return fails
    return fails.merge(assigned[["image_id", "value", "prob"]], on="image_id", how="left")


def failures_with_values(run_folder: str | Path, attribute: str) -> pd.DataFrame:
    """A finished run's failures with the ``attribute`` value CLIP assigned to each (debug_seed failures, once
    the textualize step has run; NaN elsewhere)."""
    from core.find.runs import read_failure_table

    got = latest_assignments(run_folder, attribute)
    return with_values(read_failure_table(run_folder), None if got is None else got[0])
