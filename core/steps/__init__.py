"""The user-visible steps, one function each: the only place that chains core's modules into a flow.

The command line (``core.cli``), the background jobs (``core.job_kinds``), the app (through those jobs) and the
test fixtures all call these. Each step takes a dataset (a spec dict such as ``{"name": "scenes-mnist", "size":
"tiny"}`` or an opened dataset), typed configs from :mod:`core.config` (their defaults are the only defaults),
``progress``/``should_stop`` callbacks, and returns a small typed result; ``result.to_json()`` is what a job
records. Every step is cached underneath, so running one again resumes or returns at once.
"""

from core.config import DEFAULT_ATTRIBUTE
from core.steps.base import DatasetLike, StepResult, open_ds
from core.steps.describe import Proposed, SearchHits, Textualized, propose, search_failures, textualize
from core.steps.find import (
    WORLD_PARTS,
    ModelsRun,
    Overlap,
    Prepare,
    Prepared,
    WorldBuilt,
    already_prepared,
    build_world,
    embedding_map,
    overlap,
    prepare_dataset,
    run_models,
)
from core.steps.fix import (
    EXPERIMENTS,
    ExperimentResult,
    Generated,
    RepeatsResult,
    experiment,
    experiment_repeats,
    generate,
    generated_set_names,
    make_generator,
)
from core.steps.setup import DONE as SETUP_DONE
from core.steps.setup import (
    SETUP_STAGES,
    SETUP_STEPS,
    SetupDone,
    made_by_setup,
    model_order,
    setup_record,
    setup_world,
)

__all__ = [
    "DEFAULT_ATTRIBUTE",
    "DatasetLike",
    "StepResult",
    "open_ds",
    "prepare_dataset",
    "build_world",
    "run_models",
    "overlap",
    "embedding_map",
    "propose",
    "textualize",
    "search_failures",
    "make_generator",
    "generated_set_names",
    "generate",
    "experiment",
    "experiment_repeats",
    "setup_world",
    "setup_record",
    "made_by_setup",
    "model_order",
    "Prepared",
    "Prepare",
    "already_prepared",
    "WorldBuilt",
    "ModelsRun",
    "Overlap",
    "Proposed",
    "Textualized",
    "SearchHits",
    "Generated",
    "ExperimentResult",
    "RepeatsResult",
    "SetupDone",
    "WORLD_PARTS",
    "EXPERIMENTS",
    "SETUP_STAGES",
    "SETUP_STEPS",
    "SETUP_DONE",
]
