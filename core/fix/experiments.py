"""The paper's experiments over one or more models: individual debugging vs Random_debugging, real_failures and
(offline world) the oracle, with discovery scored against ground truth (Table 2),
collective debugging types 1 and 2 (Table 3, Figure 6), and λ / k sweeps (Figure 5).

Each function runs every cached step it needs (features, heads, failures, assignments, generated images)
and returns a results table whose rows record what they came from; ``save_results`` persists them.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import pandas as pd

from core import validate
from core.config import DebugConfig, FilterConfig, HeadConfig, SplitConfig
from core.datasets.base import ImageDataset
from core.datasets.registry import is_offline_world
from core.describe.discovery import discovery_report, failure_slices, worst_slices
from core.describe.textualize import Textualization, textualize
from core.errors import InvalidInputError, NothingRenderable
from core.find.runs import run_model
from core.fix.generators import Generator, create_generator
from core.fix.mitigate import (
    ModelContext,
    check_config,
    debug_model,
    generate_for_modes,
    no_images,
    provenance,
    result_row,
    retrain_all,
    save_results,
)
from core.progress import ProgressFn, StopFn, check_stop, no_progress

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)
KS = (1, 2, 3, 4, 5)


def default_generator_name(dataset: ImageDataset) -> str:
    """The world's renderer for the offline world, Stable Diffusion v1-5 (diffusers, the paper's) otherwise."""
    return "world" if is_offline_world(dataset) else "diffusers"


def default_generator(dataset: ImageDataset, name: str | None = None, **kwargs) -> Generator:
    """The generator ``name`` (default: :func:`default_generator_name`) for this dataset."""
    name = name or default_generator_name(dataset)
    if name == "world":
        kwargs.setdefault("world", dataset)
    if name in ("retrieval", "edits"):  # both must know the dataset (protected images; images to edit)
        kwargs.setdefault("dataset", dataset)
    return create_generator(name, **kwargs)


class Experiment:
    """Shared settings of one experiment: dataset, split/head configs, attribute, generator."""

    def __init__(
        self,
        dataset: ImageDataset,
        cfg: DebugConfig = DebugConfig(),
        *,
        attribute: str = "background",
        generator: Generator | None = None,
        split_cfg: SplitConfig = SplitConfig(),
        head_cfg: HeadConfig = HeadConfig(),
        retrain_cfg: HeadConfig | None = None,
        clip=None,
        clip_filter: FilterConfig | None = None,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ):
        check_config(cfg)
        self.clip_filter = clip_filter  # None: generated images are not CLIP-filtered
        self.clip = clip  # None: the dataset's default CLIP (core.describe.textualize.default_clip), loaded when needed
        self.dataset, self.cfg, self.attribute = dataset, cfg, attribute
        self.generator = generator or default_generator(dataset)
        self.split_cfg, self.head_cfg = split_cfg, head_cfg
        # the retrained heads' config (default: the runs' own); e.g. the batched solver for sweeps, while the
        # models' heads, and so their failures, stay the paper's
        self.retrain_cfg = retrain_cfg or head_cfg
        self.progress, self.should_stop = progress or no_progress, should_stop
        self._ctx: dict[str, ModelContext] = {}
        self._text: dict[tuple[str, int], Textualization] = {}

    def context(self, model: str) -> ModelContext:
        if model not in self._ctx:
            run = run_model(
                self.dataset, model, self.split_cfg, self.head_cfg, progress=self.progress, should_stop=self.should_stop
            )
            self._ctx[model] = ModelContext(self.dataset, run, self.split_cfg, self.retrain_cfg)
        return self._ctx[model]

    def textualization(self, model: str, k: int | None = None):
        k = k or self.cfg.k_modes
        if (model, k) not in self._text:
            self._text[(model, k)] = textualize(
                self.dataset,
                self.context(model).run,
                k=k,
                attribute=self.attribute,
                clip=self.clip,
                progress=self.progress,
                should_stop=self.should_stop,
            )
        return self._text[(model, k)]

    def images(self, modes: pd.DataFrame, cfg: DebugConfig | None = None):
        return generate_for_modes(
            self.dataset,
            modes,
            self.generator,
            cfg or self.cfg,
            attribute=self.attribute,
            clip_filter=self.clip_filter,
            clip=self.clip,
            progress=self.progress,
            should_stop=self.should_stop,
        )

    def provenance(self, **extra) -> dict:
        return provenance(
            self.cfg,
            self.generator,
            attribute=self.attribute,
            dataset=self.dataset.key,
            head_solver=self.retrain_cfg.solver,
            **extra,
        )

    def meta(self, **extra) -> dict:
        return {
            "dataset": self.dataset.key,
            "debug": asdict(self.cfg),
            "split": asdict(self.split_cfg),
            "head": asdict(self.head_cfg),
            **({} if self.retrain_cfg == self.head_cfg else {"retrain_head": asdict(self.retrain_cfg)}),
            "attribute": self.attribute,
            "generator": self.generator.name,
            "generator_model": self.generator.model_id,
            "clip_filter": asdict(self.clip_filter) if self.clip_filter else None,
            **extra,
        }


def skipped_modes(rows: pd.DataFrame) -> str:
    """Failure modes the generator could not render, as "class · value" text for the results table."""
    return "; ".join(f"{s['class_name']} · {s['value']}" for s in rows.attrs.get("skipped", []))


def has_ground_truth(exp: Experiment) -> bool:
    """Whether discovery and the oracle can be scored: the offline world, with the experiment's attribute known."""
    return is_offline_world(exp.dataset) and exp.attribute in getattr(exp.dataset, "attributes", ())


def oracle_modes(slices: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """The oracle's modes: per class, the model's worst true cells, as many as ours rendered for that class, so
    the oracle gets ours' image count per class."""
    per_class = ours.groupby("label")["value"].nunique().to_dict() if len(ours) else {}
    return worst_slices(slices, {int(lab): int(m) for lab, m in per_class.items()})


def individual(exp: Experiment, models: list[str], predictions: list[pd.DataFrame] | None = None) -> pd.DataFrame:
    """Table 2: per model, before / ours / Random_debugging / real_failures (and on the offline world the oracle)
    on test, debug_seed and debug_heldout. On the offline world every row also records discovery against
    ground truth (precision@k, recall@k, assignment accuracy; :mod:`core.describe.discovery`). Per-image
    predictions are appended to ``predictions`` when a list is given (see :mod:`core.fix.repeats`)."""
    rows = []
    for i, m in enumerate(models):
        check_stop(exp.should_stop)
        exp.progress(i, len(models), f"debugging {m}")
        text = exp.textualization(m)
        ours, rand = exp.images(text.modes)
        ctx = exp.context(m)
        found, oracle = {}, None
        if has_ground_truth(exp):
            slices = failure_slices(ctx.run.table, exp.dataset, exp.attribute)
            found = discovery_report(
                exp.dataset, ctx.run.table, text.modes, text.assignments, exp.cfg.k_modes, exp.attribute, slices=slices
            )
            oracle, _ = exp.images(oracle_modes(slices, ours))
        rows += debug_model(
            ctx,
            ours,
            rand,
            exp.cfg,
            should_stop=exp.should_stop,
            oracle=oracle,
            predictions=predictions,
            **exp.provenance(
                list_version=text.provenance["list_version"],
                modes_from=m,
                skipped_modes=skipped_modes(ours),
                **found,
            ),
        )
    exp.progress(len(models), len(models), "done")
    return pd.DataFrame(rows)


def collective(exp: Experiment, models: list[str], kind: int, reference: str | None = None) -> pd.DataFrame:
    """Table 3. Type 1: pool all models' assigned failures and take the k modes of the pooled counts. Type 2:
    one model's (``reference``, default the first) modes. One generated set then debugs every model. Type 2 has
    rows only for the models other than the reference: for the reference it is individual debugging by
    construction, not a result."""
    from core.describe.assign import failure_modes

    if kind not in (1, 2):
        raise InvalidInputError(f"Collective debugging has types 1 and 2; got {kind!r}.")
    if not models:
        raise InvalidInputError("Collective debugging needs at least one model.")
    reference = reference or models[0]
    if kind == 2 and reference not in models:
        raise InvalidInputError(f"The reference model {reference!r} is not among {models}.")
    if kind == 1:
        texts = [exp.textualization(m) for m in models]
        modes = failure_modes(pd.concat([t.assignments for t in texts], ignore_index=True), k=exp.cfg.k_modes)
        source, versions = "pooled:" + ",".join(models), sorted({t.provenance["list_version"] for t in texts})
    else:
        t = exp.textualization(reference)
        modes, source, versions = t.modes, reference, [t.provenance["list_version"]]
    ours, _ = exp.images(modes)
    debugged = [m for m in models if not (kind == 2 and m == reference)]
    jobs = []
    for i, m in enumerate(debugged):
        check_stop(exp.should_stop)
        exp.progress(i, len(debugged), f"collective type {kind}: {m}")
        ctx = exp.context(m)
        jobs.append((ctx, ctx.generated_problem(ours, exp.cfg.lam, should_stop=exp.should_stop)))
    # one call: with the batched solver, the family's heads of a common feature width train together
    exp.progress(len(debugged), len(debugged), f"collective type {kind}: retraining {len(jobs)} heads")
    rows = []
    for (ctx, _), ev in zip(jobs, retrain_all(jobs, should_stop=exp.should_stop)):
        rows.append(
            result_row(
                ctx,
                f"collective{kind}",
                exp.cfg,
                ours,
                ev.scores,
                **exp.provenance(list_version=",".join(versions), modes_from=source, skipped_modes=skipped_modes(ours)),
            )
        )
    return pd.DataFrame(rows)


def collective_study(exp: Experiment, models: list[str], reference: str | None = None) -> pd.DataFrame:
    """Individual, Random_debugging and both collective types on one family, in one table (Table 3, Figure 6)."""
    return pd.concat(
        [individual(exp, models), collective(exp, models, 1), collective(exp, models, 2, reference)], ignore_index=True
    )


def sweep(
    exp: Experiment, model: str, what: str, values=None, predictions: list[pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Figure 5: vary λ (``what="lam"``) or the number of modes k (``what="k"``) for one model; ours and
    Random_debugging with the same image count at each point. Images are generated once, for the largest k.
    Per-image predictions (with a ``what`` column: the point) are appended to ``predictions`` when a list is
    given (see :mod:`core.fix.repeats`)."""
    if what not in ("lam", "k"):
        raise InvalidInputError(f"Sweep over 'lam' or 'k'; got {what!r}.")
    values = list(values if values is not None else (LAMBDAS if what == "lam" else KS))
    if what == "k":  # checked before any work: 2.7 modes is an error, not 2
        values = validate.wholes("k (failure modes per class)", values, 1, validate.MAX_K_MODES)
    else:
        values = [validate.number("λ", v, 0.0, 1.0) for v in values]
    ctx = exp.context(model)
    rows = [result_row(ctx, "before", exp.cfg, ctx.run.table.iloc[:0], ctx.before(), sweep=what)]
    points, problems = [], []
    for i, v in enumerate(values):
        check_stop(exp.should_stop)
        exp.progress(i, len(values), f"sweep {what}={v}")
        cfg = replace(exp.cfg, **{"lam" if what == "lam" else "k_modes": v})
        check_config(cfg)
        text = exp.textualization(model, k=cfg.k_modes)
        try:
            ours, rand = exp.images(text.modes, cfg)
        except NothingRenderable:  # this point's modes are all values the generator cannot make: no images
            ours, rand = no_images(), no_images()
        for method, imgs in (("ours", ours), ("random", rand)):
            points.append((v, method, cfg, imgs, text.provenance["list_version"]))
            problems.append(ctx.generated_problem(imgs, cfg.lam, should_stop=exp.should_stop))
    # every head of the sweep in one call: one batched computation with the batched solver
    exp.progress(len(values), len(values), f"sweep {what}: retraining {len(problems)} heads")
    for (v, method, cfg, imgs, version), ev in zip(points, ctx.retrain_many(problems, exp.should_stop)):
        if predictions is not None:
            predictions.append(ctx.predictions(ev, method).assign(**{what: v}))
        rows.append(result_row(ctx, method, cfg, imgs, ev.scores, sweep=what, **exp.provenance(list_version=version)))
    return pd.DataFrame(rows)


__all__ = [
    "Experiment",
    "individual",
    "collective",
    "collective_study",
    "sweep",
    "default_generator",
    "save_results",
    "skipped_modes",
    "has_ground_truth",
    "oracle_modes",
    "LAMBDAS",
    "KS",
]
