"""The one-click first run on the offline world (the Setup page's button and `python -m core setup`)."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import DEFAULT_ATTRIBUTE
from core.errors import InvalidInputError
from core.progress import ProgressFn, StopFn, no_progress
from core.steps.base import StepResult, open_ds
from core.steps.describe import propose
from core.steps.find import Prepare, build_world, prepare_dataset, run_models


@dataclass
class SetupDone(StepResult):
    models: list[str]


SETUP_STAGES = ("images", "backbones", "CLIP", "models", "lists")


def setup_world(
    dataset: dict | str,
    *,
    prepare: Prepare | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SetupDone:
    """Everything a first run on the offline world needs: its images, backbones and CLIP, a run of every world
    model, and offline-proposed background lists. Each stage is cached, so a rerun resumes."""
    from core.datasets import is_offline_world
    from core.world.backbones import world_model_names

    if not is_offline_world(dataset):
        raise InvalidInputError(
            "The one-click setup builds the offline world; for another dataset, prepare it and run models."
        )
    report = progress or no_progress
    n = len(SETUP_STAGES)

    def stage(i: int) -> ProgressFn:
        def within(done: int, total: int, message: str = "") -> None:
            report(i * 1000 + int(1000 * done / max(total, 1)), n * 1000, f"{i + 1}/{n} {SETUP_STAGES[i]}: {message}")

        return within

    stage(0)(0, 1, "rendering")
    spec = {"name": dataset} if isinstance(dataset, str) else dict(dataset)
    (prepare or (lambda s: prepare_dataset(s, progress=stage(0), should_stop=should_stop)))(spec)
    build_world(spec, ("backbones",), prepare=lambda s: None, progress=stage(1), should_stop=should_stop)
    build_world(spec, ("clip",), prepare=lambda s: None, progress=stage(2), should_stop=should_stop)
    ds = open_ds(spec)
    names = world_model_names(ds)  # the trained world backbones and the packaged ImageNet models
    run_models(ds, names, progress=stage(3), should_stop=should_stop)
    stage(4)(0, 1, "proposing")
    propose(ds, DEFAULT_ATTRIBUTE, proposer="offline", should_stop=should_stop)
    report(n * 1000, n * 1000, "ready")
    return SetupDone(names)
