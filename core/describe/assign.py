"""CLIP zero-shot assignment of failures to attribute values, the top-k failure modes, and ground-truth scoring.

Paper §4.2: every debug_seed failure is shown to CLIP together with its (true) class's curated uncommon values
("a photo of a {class_name} in {value}"); CLIP's pick is the failure's value, and the k most frequent values
of a class are that class's failure modes. Image embeddings are cached per CLIP weights and image list through
:mod:`core.find.features`; text embeddings are built once per class with open_clip's prompt-ensembling classifier.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from core import validate
from core.describe.clip import ClipModel
from core.describe.proposals.text import unique_values
from core.errors import InvalidInputError
from core.models.base import Backbone
from core.progress import ProgressFn, StopFn, check_stop, no_progress

DEFAULT_TEMPLATE = "a photo of a {class_name} in {value}"
# A colour reads as an adjective; with "in {value}" the world CLIP names colours 0.37 vs 0.54 (tiny world, 10 colours).
ATTRIBUTE_TEMPLATES = {"background": DEFAULT_TEMPLATE, "colour": "a photo of a {value} {class_name}"}


def default_template(attribute: str) -> str:
    """The prompt that suits an attribute (backgrounds: "in {value}", colours: "a {value} {class_name}")."""
    return ATTRIBUTE_TEMPLATES.get(attribute, DEFAULT_TEMPLATE)


ASSIGN_COLUMNS = ["image_id", "label", "class_name", "value", "prob", "margin", "probs"]
MODE_COLUMNS = ["class_name", "label", "value", "count", "share", "rank", "example_ids"]
MAX_EXAMPLES = 8


# -- embeddings -----------------------------------------------------------------------------------------------


class ClipImageTower(Backbone):
    """A CLIP's image encoder as a :class:`Backbone` (normalised embeddings), so :mod:`core.find.features` caches it."""

    def __init__(self, clip: ClipModel):
        super().__init__(
            clip.model,
            name=f"clip-{clip.name}",
            family="CLIP",
            feature_dim=clip.embed_dim,
            data_config=clip.preprocess_cfg,
            weights_id=clip.weights_id,
            source=clip.source,
            forward_fn=lambda net, x: net.encode_image(x, normalize=True),
        )
        self._preprocess = clip.preprocess

    def transform(self):
        return self._preprocess  # the CLIP's own preprocessing, not a timm rebuild of it


def image_embeddings(
    image_ids: Sequence[str],
    dataset,
    clip: ClipModel,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> np.ndarray:
    """(len(image_ids), D) normalised CLIP embeddings, rows in the given order, from the feature cache.

    The cache holds the sorted unique ids (labels play no part in an image embedding), so the same images
    asked for in another order or by another caller reuse it.
    """
    from core.find.features import extract_features

    ids = [str(i) for i in image_ids]
    if not ids:
        return np.zeros((0, clip.embed_dim), np.float32)
    unique = sorted(set(ids))
    table = pd.DataFrame({"image_id": unique, "label": -1})
    emb = extract_features(
        ClipImageTower(clip), dataset, table, device=clip.device, progress=progress, should_stop=should_stop
    )
    row = {iid: i for i, iid in enumerate(unique)}
    return np.asarray(emb[[row[i] for i in ids]], dtype=np.float32)


def _check_templates(templates: Sequence[str]) -> list[str]:
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise InvalidInputError("Give at least one prompt template, e.g. 'a photo of a {class_name} in {value}'.")
    for t in templates:
        if "{value}" not in t:
            raise InvalidInputError(
                f"Prompt template {t!r} has no {{value}} placeholder; write it like "
                f"'a photo of a {{class_name}} in {{value}}'."
            )
        try:
            t.format(class_name="x", value="y")
        except (KeyError, IndexError, ValueError) as e:
            raise InvalidInputError(
                f"Prompt template {t!r} is not valid: only {{class_name}} and {{value}} may appear in braces ({e})."
            ) from None
    return templates


def value_embeddings(
    clip: ClipModel, class_name: str, values: Sequence[str], templates: Sequence[str] = (DEFAULT_TEMPLATE,)
) -> np.ndarray:
    """(len(values), D) normalised text embeddings, averaged over templates (CLIP's prompt ensembling)."""
    from open_clip import build_zero_shot_classifier

    templates = _check_templates(templates)
    fill = [lambda v, t=t: t.format(class_name=class_name, value=v) for t in templates]
    w = build_zero_shot_classifier(
        clip.model, clip.tokenizer, list(values), fill, num_classes_per_batch=64, device=clip.device
    )
    return np.ascontiguousarray(w.T.float().cpu().numpy())


def _choose(img: np.ndarray, txt: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """argmax, softmax probabilities over the values (CLIP's logit scale) and top1 - top2 margin."""
    probs = torch.softmax(torch.from_numpy(scale * (img @ txt.T)).double(), dim=1).numpy()
    top = np.sort(probs, axis=1)[:, ::-1]
    margin = top[:, 0] - (top[:, 1] if probs.shape[1] > 1 else 0.0)
    return probs.argmax(1), probs, margin


def _rows(values: list[str], probs: np.ndarray, best: np.ndarray, margin: np.ndarray) -> dict[str, list]:
    return {
        "value": [values[j] for j in best],
        "prob": probs[np.arange(len(best)), best].astype(float),
        "margin": margin.astype(float),
        "probs": [json.dumps({v: round(float(p), 6) for v, p in zip(values, row)}) for row in probs],
    }


def _clean_values(values: Sequence[str] | None) -> list[str]:
    """Sanitised, non-empty, first occurrence of each (case/spacing-insensitive) value, in the given order."""
    return unique_values(values or (), skip_empty=True)


# -- assignment -----------------------------------------------------------------------------------------------


def assign(
    failures: pd.DataFrame,
    dataset,
    values_by_class: dict[str, list[str]],
    clip: ClipModel,
    template: str = DEFAULT_TEMPLATE,
    templates: list[str] | None = None,
    attribute: str = "background",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> pd.DataFrame:
    """One row per failure: which of its TRUE class's values CLIP sees in it.

    ``failures`` has image_id, label (true class index) and usually pred/split (carried over). Columns out:
    image_id, label, class_name, value, prob, margin, probs (JSON value -> probability), attribute. Classes
    that have failures but no values are left out and listed in ``result.attrs["skipped"]``.
    """
    missing = {"image_id", "label"} - set(failures.columns)
    if missing:
        raise InvalidInputError(
            f"Failures table lacks column(s) {sorted(missing)}; it needs image_id and label "
            f"(the true class), as core.find.failures produces."
        )
    templates = _check_templates(templates if templates else [template])
    progress = progress or no_progress
    extra = [c for c in failures.columns if c not in ASSIGN_COLUMNS]
    labels = sorted({int(v) for v in failures["label"]})
    bad = [lab for lab in labels if not 0 <= lab < len(dataset.classes)]
    if bad:
        raise InvalidInputError(
            f"Failure labels {bad[:5]} are not classes of {dataset.name} "
            f"(0..{len(dataset.classes) - 1}); were these failures made on another dataset?"
        )
    plan, skipped = {}, []
    for lab in labels:
        name = dataset.classes[lab]
        vals = _clean_values(values_by_class.get(name))
        if vals:
            plan[lab] = vals
        else:
            skipped.append(name)
    rows = failures.reset_index(drop=True)  # positions: the output keeps the failures' order
    rows = rows[rows["label"].astype(int).isin(list(plan))]
    emb = image_embeddings(rows["image_id"], dataset, clip, progress=progress, should_stop=should_stop)
    scale = clip.logit_scale
    parts = []
    for i, (lab, vals) in enumerate(plan.items()):
        check_stop(should_stop)
        progress(i, len(plan), f"assigning {attribute}s")
        mask = (rows["label"].astype(int) == lab).to_numpy()
        best, probs, margin = _choose(emb[mask], value_embeddings(clip, dataset.classes[lab], vals, templates), scale)
        part = rows.loc[mask, ["image_id"] + extra].copy()
        part.insert(1, "label", lab)
        part.insert(2, "class_name", dataset.classes[lab])
        for col, v in _rows(vals, probs, best, margin).items():
            part[col] = v
        parts.append(part)
    progress(len(plan), len(plan), f"assigning {attribute}s")
    out = pd.concat(parts) if parts else pd.DataFrame(columns=["image_id", *extra, "label", "class_name"])
    out = out.reindex(columns=ASSIGN_COLUMNS + extra).assign(attribute=attribute).sort_index().reset_index(drop=True)
    out["image_id"] = out["image_id"].astype(str)
    out["label"] = out["label"].astype(int)
    out.attrs["skipped"] = skipped
    return out


def assign_values(
    images: Sequence[Image.Image] | np.ndarray,
    class_name: str,
    values: Sequence[str],
    clip: ClipModel,
    template: str = DEFAULT_TEMPLATE,
    templates: list[str] | None = None,
) -> pd.DataFrame:
    """Ad-hoc assignment: PIL images (or their normalised embeddings) of one class -> value, prob, margin, probs."""
    vals = _clean_values(values)
    if not vals:
        raise InvalidInputError(f"No values to choose from for {class_name!r}; give at least one.")
    emb = images if isinstance(images, np.ndarray) else clip.encode_images(list(images))
    best, probs, margin = _choose(
        np.asarray(emb, np.float32), value_embeddings(clip, class_name, vals, templates or [template]), clip.logit_scale
    )
    return pd.DataFrame(_rows(vals, probs, best, margin)).assign(class_name=class_name)


def text_search(
    query: str,
    image_ids: Sequence[str],
    dataset,
    clip: ClipModel,
    top: int = 50,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> pd.DataFrame:
    """The ``top`` images most similar to a free-text query ("a seven on grass"): image_id, score (cosine), rank."""
    if not str(query).strip():
        raise InvalidInputError("Type what to look for, e.g. 'a dog on snow'.")
    top = validate.whole("top (images to return)", top, 1, validate.MAX_TOP)
    ids = list(dict.fromkeys(str(i) for i in image_ids))
    if not ids:
        return pd.DataFrame(
            {"image_id": pd.Series(dtype=str), "score": pd.Series(dtype=float), "rank": pd.Series(dtype=int)}
        )
    emb = image_embeddings(ids, dataset, clip, progress=progress, should_stop=should_stop)
    score = emb @ clip.encode_texts([str(query).strip()])[0]
    order = sorted(range(len(ids)), key=lambda i: (-score[i], ids[i]))[:top]
    return pd.DataFrame(
        {"image_id": [ids[i] for i in order], "score": score[order].astype(float), "rank": np.arange(1, len(order) + 1)}
    )


# -- failure modes --------------------------------------------------------------------------------------------


def failure_modes(assignments: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The ``k`` most frequently assigned values per class (rank 1 = most frequent).

    Ties in count go to the value CLIP was surer of (higher summed probability), then alphabetically, so
    the result never depends on row order. ``share`` is count / the class's assigned failures. Pooling
    several models' assignments (``pd.concat``) pools their counts — collective debugging type 1; an image
    that failed for several models counts once per model but appears once among the examples.
    """
    k = validate.whole("k (failure modes per class)", k, 1, validate.MAX_K_MODES)
    if assignments is None or len(assignments) == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in zip(MODE_COLUMNS, [str, int, str, int, float, int, object])}
        )
    missing = {"class_name", "label", "value", "prob", "image_id"} - set(assignments.columns)
    if missing:
        raise InvalidInputError(f"Assignments lack column(s) {sorted(missing)}; pass the output of assign().")
    a = assignments.dropna(subset=["value"])
    stats = (
        a.groupby(["label", "class_name", "value"], sort=False)
        .agg(count=("image_id", "size"), psum=("prob", "sum"))
        .reset_index()
    )
    stats["share"] = stats["count"] / stats.groupby("label")["count"].transform("sum")
    stats = stats.sort_values(["label", "count", "psum", "value"], ascending=[True, False, False, True])
    stats["rank"] = stats.groupby("label").cumcount() + 1
    stats = stats[stats["rank"] <= k].reset_index(drop=True)
    ex = a.sort_values(["prob", "image_id"], ascending=[False, True]).drop_duplicates(["label", "value", "image_id"])
    examples = ex.groupby(["label", "value"])["image_id"].agg(lambda s: [str(i) for i in s[:MAX_EXAMPLES]])
    stats["example_ids"] = [examples[(lab, v)] for lab, v in zip(stats["label"], stats["value"])]
    stats["label"] = stats["label"].astype(int)
    stats["count"] = stats["count"].astype(int)
    return stats[MODE_COLUMNS]


# -- ground truth ---------------------------------------------------------------------------------------------


def _norm(v) -> str:
    return " ".join(str(v).lower().split())


def ground_truth(dataset, attribute: str) -> pd.Series:
    """image_id -> the dataset's true value of ``attribute``, over all its pools."""
    if attribute not in getattr(dataset, "attributes", ()):
        raise InvalidInputError(
            f"{dataset.name} has no ground truth for {attribute!r} "
            f"(it has: {', '.join(dataset.attributes) or 'none'}); only the offline world can "
            f"score assignments."
        )
    idx = pd.concat([dataset.index(p)[["image_id", attribute]] for p in dataset.pools()], ignore_index=True)
    return idx.drop_duplicates("image_id").set_index("image_id")[attribute]


def score_assignments(assignments: pd.DataFrame, dataset, attribute: str = "background") -> dict:
    """How often CLIP's value is the image's true value.

    accuracy: share of rows assigned their true value; chance: what picking uniformly from each row's own
    candidate list would score (1/len(candidates) when the truth is among them, else 0); coverage: share of
    rows whose true value was a candidate at all; per_class: the same per class_name.
    """
    truth_of = ground_truth(dataset, attribute)
    if len(assignments) == 0:
        return {"accuracy": float("nan"), "chance": float("nan"), "coverage": float("nan"), "n": 0, "per_class": {}}
    unknown = set(assignments["image_id"].astype(str)) - set(truth_of.index)
    if unknown:
        raise InvalidInputError(
            f"{len(unknown)} assigned image(s) are not in {dataset.name} "
            f"(e.g. {sorted(unknown)[:3]}); score assignments against the dataset they came from."
        )
    truth = truth_of.loc[assignments["image_id"].astype(str)].map(_norm).to_numpy()
    cands = [[_norm(v) for v in json.loads(p)] for p in assignments["probs"]]
    df = pd.DataFrame(
        {
            "class_name": assignments["class_name"].to_numpy(),
            "correct": assignments["value"].map(_norm).to_numpy() == truth,
            "covered": [t in c for t, c in zip(truth, cands)],
            "chance": [(1.0 / len(c)) if t in c else 0.0 for t, c in zip(truth, cands)],
        }
    )

    def summary(d: pd.DataFrame) -> dict:
        return {
            "accuracy": float(d["correct"].mean()),
            "chance": float(d["chance"].mean()),
            "coverage": float(d["covered"].mean()),
            "n": int(len(d)),
        }

    return {**summary(df), "per_class": {c: summary(g) for c, g in df.groupby("class_name", sort=True)}}
