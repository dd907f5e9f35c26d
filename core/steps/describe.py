"""Steps that describe failures in words: propose values into the curated lists, name each failure's value with
CLIP (failure modes), and search failures by text (paper §4.1–4.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.config import DEFAULT_ATTRIBUTE, DebugConfig, HeadConfig, SplitConfig
from core.executors import ExecutorLike
from core.progress import ProgressFn, StopFn
from core.steps.base import DatasetLike, StepResult, _in_memory, open_ds


@dataclass
class Proposed(StepResult):
    proposer: str
    classes: dict[str, str]  # class -> what happened to its list
    notice: str | None = None


def propose(
    dataset: DatasetLike,
    attribute: str = DEFAULT_ATTRIBUTE,
    *,
    proposer: str | None = None,
    options: dict | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Proposed:
    """Uncommon values per class (LLM when ``proposer`` is "llm" or a key is set, else the offline vocabulary:
    ``core.describe.proposals.offline.offline_options``), deduplicated, seeded into the curated lists. Lists a user edited
    are kept as they are. ``options`` go to the proposer (offline: ``top_n``, ``vocab``)."""
    from core.describe.curation import CuratedLists
    from core.describe.proposals import choose_proposer, dedupe_proposals
    from core.describe.proposals import propose as ask
    from core.describe.proposals.offline import offline_options

    ds = open_ds(dataset)
    proposer = proposer or choose_proposer()
    kw = dict(options or {})
    if proposer == "offline":
        kw = {**offline_options(ds), **kw}
    props = ask(attribute, ds.classes, proposer=proposer, progress=progress, should_stop=should_stop, **kw)
    report = CuratedLists(ds, attribute).seed_from_proposals(props, dedupe_proposals(props))
    return Proposed(proposer, report, next((p.notice for p in props.values() if p.notice), None))


@dataclass
class Textualized(StepResult):
    model: str
    assigned: int
    modes_found: int
    list_version: str
    accuracy: dict | None = None  # against ground truth, where the dataset knows it (the offline world)
    discovery: dict | None = None  # precision/recall@k of the modes against the true failure slices (idem)
    warnings: list[str] = field(default_factory=list)  # e.g. a class whose curated list is empty
    assignments: pd.DataFrame = _in_memory(default=None)
    modes: pd.DataFrame = _in_memory(default=None)


def textualize(
    dataset: DatasetLike,
    model: str,
    attribute: str = DEFAULT_ATTRIBUTE,
    k: int = DebugConfig.k_modes,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    *,
    clip: Any = None,
    executor: ExecutorLike = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Textualized:
    """CLIP names the value each debug_seed failure shows (over the curated lists); the k most frequent values
    per class are the model's failure modes. ``clip`` None: the dataset's default CLIP. ``executor="ray"``
    computes the model's features and the CLIP image embeddings on Ray Data actor pools (core.executors)."""
    from core import executors
    from core.describe import textualize as tx
    from core.find.runs import run_model

    ds = open_ds(dataset)
    with executors.use(executor):
        run = run_model(ds, model, split, head, should_stop=should_stop)
        text = tx.textualize(ds, run, k=k, attribute=attribute, clip=clip, progress=progress, should_stop=should_stop)
    acc = found = None
    if attribute in getattr(ds, "attributes", ()):
        from core.describe.assign import score_assignments
        from core.describe.discovery import discovery_report

        acc = score_assignments(text.assignments, ds, attribute)
        found = discovery_report(ds, run.table, text.modes, text.assignments, k, attribute)
    return Textualized(
        model,
        len(text.assignments),
        len(text.modes),
        text.provenance["list_version"],
        acc,
        found,
        list(text.warnings),
        text.assignments,
        text.modes,
    )


@dataclass
class SearchHits(StepResult):
    image_id: list[str]
    score: list[float]


def search_failures(
    dataset: DatasetLike,
    model: str,
    query: str,
    top: int = 200,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SearchHits:
    """The model's failures CLIP finds most like a free-text query ("a seven on grass"), best first."""
    from core.describe.assign import text_search
    from core.describe.textualize import default_clip
    from core.find.runs import run_model

    ds = open_ds(dataset)
    run = run_model(ds, model, should_stop=should_stop)
    hits = text_search(
        query,
        run.failures["image_id"].tolist(),
        ds,
        default_clip(ds),
        top=top,
        progress=progress,
        should_stop=should_stop,
    )
    return SearchHits(hits["image_id"].astype(str).tolist(), [round(float(s), 4) for s in hits["score"]])
