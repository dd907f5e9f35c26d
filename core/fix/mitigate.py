"""Failure mitigation (paper §4.3, §5.3): retrain a model's head on its original head-training set plus images
generated for its failure modes, weighted L(orig) + λ·L(generated), and score it against the baselines a user
would try: Random_debugging (as many generated images of the class alone), real_failures (the debug_seed failures'
own images, same λ) and, on the offline world, an oracle (images of the model's true worst slices). Evaluations
keep per-image predictions so methods can be compared on the same images (:mod:`core.fix.repeats`).

Generated images live in one set per (dataset, generator, attribute) and one per (dataset, generator) for the
random baseline; every experiment picks its images from those sets by (class, value, index), so sweeps over λ
and k and collective debugging reuse images instead of generating them again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import store, validate
from core.config import DebugConfig, FilterConfig, HeadConfig, SplitConfig
from core.datasets.base import ImageDataset
from core.errors import InvalidInputError, NothingRenderable
from core.find.features import extract_features
from core.find.head_problem import HeadProblem, problem_key
from core.find.heads import LinearHead, train_heads
from core.find.runs import ModelRun, get_splits, load_backbone, split_features
from core.fix.generators import GeneratedSet, Generator, baseline_for, generate_set, mode_requests
from core.fix.generators.clip_filter import filter_set, match_counts
from core.progress import ProgressFn, StopFn, no_progress, offset

RESULT_COLUMNS = [
    "model",
    "family",
    "method",
    "lam",
    "k",
    "images_per_mode",
    "n_generated",
    "n_real",
    "acc_test",
    "acc_seed",
    "acc_heldout",
    "acc_debug",
]
# n_generated: generated images added to the head's training set; n_real: real images added (the real_failures
# baseline retrains with the debug_seed failures themselves).


def check_config(cfg: DebugConfig) -> None:
    """Re-check a config (DebugConfig checks itself when built; this catches one changed after)."""
    DebugConfig(**asdict(cfg))


def set_name(dataset: ImageDataset, generator: Generator, attribute: str | None, seed: int) -> str:
    """The shared generated set for this dataset, generator and attribute (None: the random baseline)."""
    ident = store.make_key(dataset.key, generator.name, generator.model_id, generator.config(), attribute, seed, n=10)
    return f"{dataset.name.replace('/', '-')}-{generator.name}-{attribute or 'random'}-{ident}"


def generate_for_modes(
    dataset: ImageDataset,
    modes: pd.DataFrame,
    generator: Generator,
    cfg: DebugConfig,
    *,
    attribute: str = "background",
    clip_filter: FilterConfig | None = None,
    clip=None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Images for the top-k modes per class and as many Random_debugging images per class.

    Returns (ours, random): index rows of the generated sets (image_id, label, class_name, value, ...) with
    ``set`` naming the set each row came from. With ``clip_filter`` both sets are CLIP-filtered
    (:mod:`core.fix.generators.clip_filter`; ``clip`` defaults to the dataset's) and trimmed to the same images
    per class; ``ours.attrs["filtered"]`` then reports the drops per mode.
    """
    check_config(cfg)
    requests = mode_requests(
        modes, cfg.images_per_mode, attribute=attribute, template=cfg.prompt_template, k=cfg.k_modes
    )
    requests, skipped = renderable(generator, requests)
    n_images = 2 * sum(r.n_images for r in requests)  # ours and as many Random_debugging images
    validate.check_memory(
        n_images * (3 * generator.image_pixels + 4096),
        f"Generating {n_images:,} images ({cfg.images_per_mode:,} per mode, ours and the random baseline)",
        "Lower the images per mode or k.",
    )
    if not requests:
        return no_images(), no_images()
    out, filtered = [], []
    sets = ((attribute, requests), (None, baseline_for(requests, template=cfg.random_template)))
    for j, (attr, reqs) in enumerate(sets):  # one bar over both sets: each fills its half
        name = set_name(dataset, generator, attr, cfg.seed)
        part = offset(progress or no_progress, j * n_images // 2, n_images, n_images // 2)
        gset = generate_set(generator, reqs, name, seed=cfg.seed, progress=part, should_stop=should_stop)
        if clip_filter is not None:
            from core.describe.textualize import default_clip

            clip = clip or default_clip(dataset)
            filtered += filter_set(gset, clip, clip_filter, classes=dataset.classes).to_dict("records")
        out.append(select_images(gset, reqs))
    if clip_filter is not None:
        out = list(match_counts(out[0], out[1]))
        out[0].attrs["filtered"] = filtered
    out[0].attrs["skipped"] = skipped
    return out[0], out[1]


def no_images() -> pd.DataFrame:
    """An empty set of generated images (the columns :func:`generate_for_modes` returns)."""
    return pd.DataFrame(columns=["image_id", "label", "class_name", "value", "set"])


def renderable(generator: Generator, requests: list) -> tuple[list, list[dict]]:
    """The requests the generator can make, and a report of those it cannot (a curated value the offline world
    has no picture for, say). Raises ``NothingRenderable`` with the generator's own message when it can make none
    of them."""
    ok: list = []
    skipped: list[dict] = []
    first_error: InvalidInputError | None = None
    for r in requests:
        try:
            generator.validate([r])
        except InvalidInputError as e:
            first_error = first_error or e
            skipped.append({"class_name": r.class_name, "value": r.value, "reason": str(e)})
        else:
            ok.append(r)
    if requests and not ok and first_error is not None:  # (every request was refused: first_error is set)
        raise NothingRenderable(str(first_error)) from first_error
    return ok, skipped


def select_images(gset: GeneratedSet, requests) -> pd.DataFrame:
    """Kept images of ``gset`` that answer ``requests`` (slot index below each request's count)."""
    man = gset.manifest()
    man = man[~man["deleted"] & man["file"].notna()]
    want = {(r.class_name, r.value): r.n_images for r in requests}
    keep = pd.Series(
        [
            want.get((c, v if isinstance(v, str) else None), 0) > i
            for c, v, i in man[["class_name", "value", "index"]].itertuples(index=False)
        ],
        index=man.index,
        dtype=bool,
    )  # a Series even when empty (every image dropped): an empty list would select columns
    idx = gset.index().set_index("image_id")
    rows = idx.loc[man.loc[keep, "image_id"]].reset_index()
    rows["set"] = gset.set_name
    return rows


def generated_features(backbone, rows: pd.DataFrame, progress=None, should_stop=None) -> np.ndarray:
    """Features of generated images (rows from several sets allowed), cached per set like any dataset."""
    if rows.empty:
        return np.zeros((0, backbone.feature_dim), np.float32)
    parts = []
    for name, group in rows.groupby("set", sort=False):
        parts.append(
            (
                group.index,
                np.asarray(
                    extract_features(backbone, GeneratedSet(name), group, progress=progress, should_stop=should_stop)
                ),
            )
        )
    out = np.zeros((len(rows), backbone.feature_dim), np.float32)
    for index, feats in parts:
        out[rows.index.get_indexer(index)] = feats
    return out


PREDICTION_COLUMNS = ["model", "method", "image_id", "split", "label", "pred", "correct"]


@dataclass
class Evaluation:
    head: LinearHead
    scores: dict
    pred_debug: np.ndarray  # the head's prediction for every debug image (run.table's rows)
    pred_test: np.ndarray  # and for every test image


def evaluate(head: LinearHead, run: ModelRun, feats: dict[str, np.ndarray], test_labels: np.ndarray) -> dict:
    """Accuracy on test, the whole debug set, and the debug_seed / debug_heldout failures."""
    return evaluation(head, run, feats, test_labels).scores


def evaluation(head: LinearHead, run: ModelRun, feats: dict[str, np.ndarray], test_labels: np.ndarray) -> Evaluation:
    """:func:`evaluate`'s scores together with the per-image predictions they came from."""
    table = run.table
    pred, pred_test = head.predict(feats["debug"]), head.predict(feats["test"])
    correct = pred == table["label"].to_numpy()
    seed, held = (table["split"] == "seed").to_numpy(), (table["split"] == "heldout").to_numpy()
    nan = float("nan")
    test_labels = np.asarray(test_labels)
    scores = {
        "acc_test": float((pred_test == test_labels).mean()) if len(test_labels) else nan,
        "acc_debug": float(correct.mean()),
        "acc_seed": float(correct[seed].mean()) if seed.any() else nan,
        "acc_heldout": float(correct[held].mean()) if held.any() else nan,
    }
    return Evaluation(head, scores, pred, pred_test)


class ModelContext:
    """A finished run plus the cached features every retraining of its head needs.

    Within one context a generated image's features are extracted once (a k sweep's images for k = 5 include
    those for k = 1..4), and a head is trained once per distinct problem (the λ sweep's point at the experiment's
    λ, the k sweep's at its k and Table 2's ours and random are the same heads): a problem met again, by content,
    gets the evaluation already computed."""

    def __init__(self, dataset: ImageDataset, run: ModelRun, split_cfg: SplitConfig, head_cfg: HeadConfig):
        self.dataset, self.run, self.head_cfg = dataset, run, head_cfg
        self.backbone = load_backbone(run.model, dataset)
        splits = get_splits(dataset, split_cfg)
        self.feats = split_features(self.backbone, dataset, splits)
        self.y_train = splits.head_train["label"].to_numpy()
        self.y_test = splits.test["label"].to_numpy()
        self.test_ids = splits.test["image_id"].astype(str).to_numpy()
        self._generated: dict[tuple[str, str], np.ndarray] = {}  # (set, image_id) -> features
        self._solved: dict[tuple, Evaluation] = {}  # (head config, problem_key) -> its evaluation
        self._digests: dict = {}

    def before(self) -> dict:
        return self.before_evaluation().scores

    def before_evaluation(self) -> Evaluation:
        return evaluation(self.run.head, self.run, self.feats, self.y_test)

    def retrain(self, rows: pd.DataFrame, lam: float, progress=None, should_stop=None) -> Evaluation:
        """The head retrained on head_train plus the generated images ``rows`` (from any sets), weighted by λ."""
        return self.retrain_many([self.generated_problem(rows, lam, progress, should_stop)], should_stop)[0]

    def retrain_on_failures(self, lam: float, should_stop=None) -> Evaluation:
        """The real-failure baseline: the head retrained with the debug_seed failures' own images (their cached
        features), weighted by λ as generated images would be."""
        return self.retrain_many([self.failures_problem(lam)], should_stop)[0]

    def retrain_on(self, X_extra, y_extra, lam: float, meta: dict, should_stop=None) -> Evaluation:
        return self.retrain_many([self.problem(X_extra, y_extra, lam, meta)], should_stop)[0]

    def retrain_many(self, problems: list[HeadProblem], should_stop=None, progress=None) -> list[Evaluation]:
        """Several retrained heads of this model (e.g. a λ sweep, or ours and the baselines), in one call:
        see :func:`retrain_all`."""
        keys = [(self.head_cfg, problem_key(p, self._digests)) for p in problems]
        todo = [(k, p) for k, p in zip(keys, problems) if k not in self._solved]  # (repeats within: the solver's)
        evs = retrain_all([(self, p) for _, p in todo], should_stop=should_stop, progress=progress)
        self._solved.update(zip((k for k, _ in todo), evs))
        return [self._solved[k] for k in keys]

    def problem(self, X_extra, y_extra, lam: float, meta: dict) -> HeadProblem:
        """The head of this model retrained on head_train plus an extra set weighted by λ, as a problem to solve."""
        X, y = self.feats["head_train"], self.y_train
        return HeadProblem(X, y, self.dataset.classes, X_extra, y_extra, lam, dict(self.run.head.meta, **meta))

    def generated_problem(self, rows: pd.DataFrame, lam: float, progress=None, should_stop=None) -> HeadProblem:
        """:meth:`problem` for the generated images ``rows`` (their features extracted and cached first)."""
        Xe = self.generated_features(rows, progress, should_stop)
        y = rows["label"].to_numpy() if len(rows) else None
        return self.problem(Xe, y, lam, {"generated_sets": sorted(set(rows.get("set", [])))})

    def generated_features(self, rows: pd.DataFrame, progress=None, should_stop=None) -> np.ndarray:
        """Features of the generated images ``rows``; those this context has not met yet are extracted (and
        cached on disk, :func:`generated_features`)."""
        keys = list(zip(rows["set"].astype(str), rows["image_id"].astype(str))) if len(rows) else []
        todo: dict[tuple[str, str], int] = {}  # image not met yet -> its first row
        for i, k in enumerate(keys):
            if k not in self._generated:
                todo.setdefault(k, i)
        if todo:
            part = rows.iloc[list(todo.values())].reset_index(drop=True)
            self._generated.update(zip(todo, generated_features(self.backbone, part, progress, should_stop)))
        if not keys:
            return np.zeros((0, self.backbone.feature_dim), np.float32)
        return np.stack([self._generated[k] for k in keys])

    def failures_problem(self, lam: float) -> HeadProblem:
        """:meth:`problem` for the real-failure baseline: the debug_seed failures' own (cached) features."""
        seed = (self.run.table["split"] == "seed").to_numpy()
        y = self.run.table["label"].to_numpy()[seed]
        return self.problem(self.feats["debug"][seed], y, lam, {"extra": "debug_seed failures"})

    def predictions(self, ev: Evaluation, method: str) -> pd.DataFrame:
        """Per-image predictions of ``ev`` on the debug failures (seed and heldout halves) and the test set, for
        paired tests between methods on the same images (columns :data:`PREDICTION_COLUMNS`)."""
        t = self.run.table
        fail = (t["split"] != "").to_numpy()
        parts = [
            pd.DataFrame(
                {
                    "image_id": t["image_id"].astype(str).to_numpy()[fail],
                    "split": t["split"].to_numpy()[fail],
                    "label": t["label"].to_numpy()[fail],
                    "pred": ev.pred_debug[fail],
                }
            ),
            pd.DataFrame({"image_id": self.test_ids, "split": "test", "label": self.y_test, "pred": ev.pred_test}),
        ]
        out = pd.concat(parts, ignore_index=True)
        out.insert(0, "method", method)
        out.insert(0, "model", self.run.model)
        out["correct"] = out["pred"].to_numpy() == out["label"].to_numpy()
        return out[PREDICTION_COLUMNS]


def retrain_all(jobs: list[tuple[ModelContext, HeadProblem]], should_stop=None, progress=None) -> list[Evaluation]:
    """Retrained heads for (model, problem) pairs, evaluated on each model's debug and test sets, in order.

    The heads are trained by one :func:`core.find.heads.train_heads` call with the models' head config (they
    must share one): with ``solver="batched"`` the heads of a common feature width are minimised together, one
    batched computation per λ (a λ sweep, ours and its baselines, a family in collective debugging); the other
    solvers, the paper's SGD first, train them one after another exactly as one :meth:`ModelContext.retrain` each
    would."""
    if not jobs:
        return []
    cfg = jobs[0][0].head_cfg
    if any(ctx.head_cfg != cfg for ctx, _ in jobs):
        raise InvalidInputError("Heads retrained together must share one head config; retrain them separately.")
    heads = train_heads([p for _, p in jobs], cfg, progress=progress, should_stop=should_stop)
    return [evaluation(h, ctx.run, ctx.feats, ctx.y_test) for (ctx, _), h in zip(jobs, heads)]


def result_row(ctx: ModelContext, method: str, cfg: DebugConfig, rows: pd.DataFrame, scores: dict, **extra) -> dict:
    return {
        "model": ctx.run.model,
        "family": ctx.run.family,
        "method": method,
        "lam": cfg.lam,
        "k": cfg.k_modes,
        "images_per_mode": cfg.images_per_mode,
        "n_generated": len(rows),
        "n_real": 0,
        **scores,
        **extra,
    }


def debug_model(
    ctx: ModelContext,
    ours: pd.DataFrame,
    random: pd.DataFrame,
    cfg: DebugConfig,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    oracle: pd.DataFrame | None = None,
    predictions: list[pd.DataFrame] | None = None,
    **provenance,
) -> list[dict]:
    """Table 2 rows for one model, side by side: before; ours; Random_debugging with the same images per class;
    real_failures (the debug_seed failures' own images, same λ); and, given its images, the oracle (images
    for the model's true worst slices, as many per class as ours). Each method's per-image predictions are
    appended to ``predictions`` when a list is given."""
    progress = progress or no_progress
    empty = ours.iloc[:0]
    methods = [("ours", ours), ("random", random), ("real_failures", None)]
    if oracle is not None:
        methods.append(("oracle", oracle))
    total = len(methods) + 1
    before = ctx.before_evaluation()
    rows = [result_row(ctx, "before", cfg, empty, before.scores, **provenance)]
    problems = []
    for i, (method, imgs) in enumerate(methods):
        progress(i, total, f"{ctx.run.model}: features for {method}")
        if imgs is None:
            problems.append(ctx.failures_problem(cfg.lam))
        else:
            problems.append(ctx.generated_problem(imgs, cfg.lam, should_stop=should_stop))
    progress(total - 1, total, f"{ctx.run.model}: retraining {len(problems)} heads")
    evs = [("before", before)]
    for (method, imgs), ev in zip(methods, ctx.retrain_many(problems, should_stop)):
        row = result_row(ctx, method, cfg, empty if imgs is None else imgs, ev.scores, **provenance)
        if imgs is None:
            row["n_real"] = int((ctx.run.table["split"] == "seed").sum())
        rows.append(row)
        evs.append((method, ev))
    if predictions is not None:
        predictions += [ctx.predictions(ev, method) for method, ev in evs]
    progress(total, total, f"{ctx.run.model}: done")
    return rows


def provenance(cfg: DebugConfig, generator: Generator, **extra) -> dict:
    return {
        "generator": generator.name,
        "generator_model": generator.model_id,
        "seed": cfg.seed,
        "prompt_template": cfg.prompt_template,
        "random_template": cfg.random_template,
        **extra,
    }


def gains(results: pd.DataFrame) -> pd.DataFrame:
    """Per model and method: accuracy change against 'before' on test, debug_seed and debug_heldout."""
    base = results[results["method"] == "before"].set_index("model")
    out = results[results["method"] != "before"].copy()
    for col in ("acc_test", "acc_seed", "acc_heldout"):
        out[col.replace("acc_", "gain_")] = out[col].to_numpy() - base.loc[out["model"], col].to_numpy()
    return out


def relative_to_individual(results: pd.DataFrame, metric: str = "acc_heldout") -> pd.DataFrame:
    """Figure 6: each collective method's accuracy gain as a share of individual debugging's ('ours') gain."""
    g = gains(results)
    gain = metric.replace("acc_", "gain_")
    ind = g[g["method"] == "ours"].set_index("model")[gain]
    out = g[g["method"].str.startswith("collective")][["model", "family", "method", gain]].copy()
    out["individual_gain"] = ind.reindex(out["model"]).to_numpy()
    out["relative"] = out[gain] / out["individual_gain"].where(out["individual_gain"].abs() > 1e-12)
    return out.reset_index(drop=True)


def save_results(
    df: pd.DataFrame, name: str, meta: dict, parts: dict[str, pd.DataFrame] | None = None
) -> tuple[str, str]:
    """Persist a results table (parquet + CSV) with what it came from; returns both paths. ``parts``: further
    tables of the same result (e.g. a repeated experiment's paired tests), written first beside it
    (:func:`result_part` reads them)."""
    folder = store.cache_root() / "results"
    key = store.make_key(name, meta, n=10)
    pq, csv = folder / f"{name}-{key}.parquet", folder / f"{name}-{key}.csv"
    for label, part in (parts or {}).items():
        with store.atomic_path(part_path(pq, label)) as tmp:
            part.to_parquet(tmp, index=False)
    with store.atomic_path(pq) as tmp:
        df.to_parquet(tmp, index=False)
    store.atomic_write_bytes(csv, df.to_csv(index=False).encode())
    store.save_json(folder / f"{name}-{key}.json", meta)
    return str(pq), str(csv)


def list_results(dataset_key: str) -> dict[str, tuple[Path, dict]]:
    """The newest saved results table per experiment kind ("individual", "collective", "lam", "k", ...) for a
    dataset: kind -> (parquet path, the metadata it was saved with)."""
    folder = store.cache_root() / "results"
    found: dict[str, tuple[float, Path, dict]] = {}
    for side in folder.glob("*.json") if folder.is_dir() else []:
        meta = store.load_json(side) or {}
        pq = side.with_suffix(".parquet")
        if meta.get("dataset") != dataset_key or not pq.is_file():
            continue
        # older command-line sweeps were saved as "sweep-<over>" with no "what"
        what = str(meta.get("what") or meta.get("over") or side.stem.split("-")[0])
        mtime = pq.stat().st_mtime
        if what not in found or mtime > found[what][0]:
            found[what] = (mtime, pq, meta)
    return {w: (pq, meta) for w, (_, pq, meta) in found.items()}


def read_results(path: str | Path) -> pd.DataFrame:
    """One saved results table (a path ``list_results`` gave)."""
    return pd.read_parquet(path)


def part_path(path: str | Path, label: str) -> Path:
    """Where the part ``label`` of the saved results table at ``path`` lives."""
    return Path(path).with_suffix(f".{label}.parquet")


def result_part(path: str | Path, label: str) -> pd.DataFrame:
    """A further table saved with a results table (``save_results(..., parts=...)``); empty when there is none."""
    p = part_path(path, label)
    return pd.read_parquet(p) if p.is_file() else pd.DataFrame()


__all__ = [
    "check_config",
    "set_name",
    "generate_for_modes",
    "select_images",
    "ModelContext",
    "retrain_all",
    "debug_model",
    "gains",
    "relative_to_individual",
    "save_results",
    "list_results",
    "read_results",
    "result_part",
    "evaluate",
    "evaluation",
    "Evaluation",
    "PREDICTION_COLUMNS",
    "provenance",
]
