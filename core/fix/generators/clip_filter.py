"""CLIP filtering of any generated set: drop images that do not show the class on the intended value.

:func:`filter_set` scores each image of a set with a CLIP: the zero-shot probability of its class among all
classes ("A photo of {class_name}") and of its value among the values asked for ("A photo of {value}"; a
random-baseline image has no value and is scored on its class alone). An image below a threshold (or outside a
mode's top share) is dropped: it is marked deleted — its file moves to the set's ``trash/``, so
mitigation never uses it — and its manifest ``info`` records the scores and why (``info.clip_filter``). Every
judged image, kept or dropped, carries its scores. A dropped image is restored by hand with
``GeneratedSet.restore``, and a later filter run never drops it again; images the user deleted are left alone.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from core import store
from core.config import FilterConfig
from core.errors import InvalidInputError
from core.fix.generators.generated_set import GeneratedSet
from core.progress import ProgressFn, StopFn, check_stop, no_progress

REPORT_COLUMNS = ["class_name", "value", "scored", "dropped", "restored", "kept"]


def check_filter(cfg: FilterConfig) -> None:
    for name in ("min_class_prob", "min_value_prob"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            raise InvalidInputError(f"{name.replace('_', ' ')} must lie in [0, 1]; got {v!r}.")
    if cfg.keep_fraction is not None and not 0.0 < cfg.keep_fraction <= 1.0:
        raise InvalidInputError(f"keep fraction must lie in (0, 1]; got {cfg.keep_fraction!r}.")


def filter_key(cfg: FilterConfig, clip_key: str, classes: list[str], values: list[str]) -> str:
    return store.make_key("clip-filter", cfg.__dict__, clip_key, classes, values, n=12)


def _record(info) -> dict | None:
    return json.loads(info).get("clip_filter") if isinstance(info, str) and info else None


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def filter_set(
    gset: GeneratedSet,
    clip,
    cfg: FilterConfig = FilterConfig(),
    *,
    classes: list[str] | None = None,
    values: list[str] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> pd.DataFrame:
    """Score and filter ``gset`` in place; returns per mode how many images were scored now, are dropped by
    the filter, were restored by hand, and are kept (:data:`REPORT_COLUMNS`).

    ``classes``: every class name the dataset has (default: the set's own); ``values``: the attribute values
    to tell apart (default: the set's own values; the value test is skipped when there is only one).
    """
    check_filter(cfg)
    progress = progress or no_progress
    man = gset.manifest()
    classes = [c for c in (classes or gset.classes) if c]
    values = sorted(set(values or []) | {v for v in man["value"] if isinstance(v, str)})
    if len(classes) < 2:
        raise InvalidInputError("The CLIP filter needs the dataset's class names (two or more) to compare against.")
    key = filter_key(cfg, clip.key, classes, values)
    records = [_record(x) for x in man["info"]]
    restored = [r is not None and not r["kept"] and not d for r, d in zip(records, man["deleted"])]
    user_deleted = [d and (r is None or r["kept"]) for r, d in zip(records, man["deleted"])]
    todo = man[
        man["file"].notna()
        & ~pd.Series(restored, index=man.index)
        & ~pd.Series(user_deleted, index=man.index)
        & pd.Series([r is None or r.get("key") != key for r in records], index=man.index)
    ]
    verdicts: dict[str, dict] = {}
    if len(todo):
        scale = clip.logit_scale
        class_text = clip.encode_texts([cfg.class_template.format(class_name=c) for c in classes])
        value_text = clip.encode_texts([cfg.value_template.format(value=v) for v in values]) if values else None
        chunks: list[np.ndarray] = []
        ids = list(todo["image_id"])
        for start in range(0, len(ids), 64):
            check_stop(should_stop)
            progress(start, len(ids), f"CLIP-filtering {gset.set_name}")
            chunks.append(clip.encode_images([gset.load(i) for i in ids[start : start + 64]]))
        emb = np.concatenate(chunks)
        p_class = _softmax(scale * emb @ class_text.T)
        p_value = _softmax(scale * emb @ value_text.T) if value_text is not None and len(values) > 1 else None
        for k, row in enumerate(todo.itertuples(index=False)):
            cp = float(p_class[k, classes.index(row.class_name)]) if row.class_name in classes else 0.0
            vp = None
            if p_value is not None and isinstance(row.value, str):
                vp = float(p_value[k, values.index(row.value)])
            verdicts[row.image_id] = {
                "key": key,
                "class_prob": round(cp, 5),
                "value_prob": None if vp is None else round(vp, 5),
                "score": round(min(cp, vp if vp is not None else 1.0), 5),
            }
        _decide(todo, verdicts, cfg)
        gset.annotate({i: {"clip_filter": v} for i, v in verdicts.items()})
        live = set(gset.index()["image_id"])
        gset.delete([i for i, v in verdicts.items() if not v["kept"] and i in live])
        # An image this filter dropped under other settings comes back when the new ones keep it.
        gset.restore([i for i, v in verdicts.items() if v["kept"] and i not in live])
    progress(len(todo), len(todo), f"CLIP-filtered {gset.set_name}")
    report = filter_report(gset)
    now = todo.assign(value=todo["value"].fillna("")).groupby(["class_name", "value"]).size()
    report["scored"] = [int(now.get((c, v or ""), 0)) for c, v in zip(report["class_name"], report["value"])]
    return report


def _decide(todo: pd.DataFrame, verdicts: dict[str, dict], cfg: FilterConfig) -> None:
    if cfg.keep_fraction is None:
        for v in verdicts.values():
            low = []
            if v["class_prob"] < cfg.min_class_prob:
                low.append(f"class probability {v['class_prob']:.2f} < {cfg.min_class_prob}")
            if v["value_prob"] is not None and v["value_prob"] < cfg.min_value_prob:
                low.append(f"value probability {v['value_prob']:.2f} < {cfg.min_value_prob}")
            v["kept"] = not low
            v["reason"] = "CLIP filter: " + "; ".join(low) if low else None
        return
    for _, group in todo.groupby(["class_name", todo["value"].fillna("")], sort=False):
        ranked = sorted(group["image_id"], key=lambda i: -verdicts[i]["score"])
        n_keep = max(1, math.ceil(cfg.keep_fraction * len(ranked)))
        for r, i in enumerate(ranked):
            verdicts[i]["kept"] = r < n_keep
            verdicts[i]["reason"] = (
                None
                if r < n_keep
                else f"CLIP filter: score {verdicts[i]['score']:.2f} outside the mode's top {cfg.keep_fraction:.0%}"
            )


def filter_report(gset: GeneratedSet) -> pd.DataFrame:
    """Per mode: images the CLIP filter judged (``scored``), dropped (still dropped), restored by hand, and kept."""
    man = gset.manifest()
    rec = [_record(x) for x in man["info"]]
    df = pd.DataFrame(
        {
            "class_name": man["class_name"],
            "value": man["value"].fillna(""),
            "scored": [r is not None for r in rec],
            "dropped": [r is not None and not r["kept"] and d for r, d in zip(rec, man["deleted"])],
            "restored": [r is not None and not r["kept"] and not d for r, d in zip(rec, man["deleted"])],
            "kept": (~man["deleted"] & man["file"].notna()).to_numpy(),
        }
    )
    out = df.groupby(["class_name", "value"], sort=False).sum().reset_index()
    out["value"] = pd.Series([v or None for v in out["value"]], dtype="object")
    return out[REPORT_COLUMNS].astype({c: int for c in REPORT_COLUMNS[2:]})


def dropped_by_filter(gset: GeneratedSet) -> pd.DataFrame:
    """Images the filter dropped and the user has not restored: image_id, class_name, value, reason, scores."""
    man = gset.manifest()
    rows = []
    for r, row in zip((_record(x) for x in man["info"]), man.itertuples(index=False)):
        if r is not None and not r["kept"] and row.deleted:
            rows.append(
                {
                    "image_id": row.image_id,
                    "class_name": row.class_name,
                    "value": row.value,
                    "reason": r["reason"],
                    "class_prob": r["class_prob"],
                    "value_prob": r["value_prob"],
                }
            )
    return pd.DataFrame(rows, columns=["image_id", "class_name", "value", "reason", "class_prob", "value_prob"])


def match_counts(ours: pd.DataFrame, random: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trim ours and the Random_debugging rows to the same number of images per class (after filtering one
    side may keep more); the lowest slot indices are kept, and ours loses images evenly across its modes."""
    n_ours, n_rand = ours.groupby("label").size(), random.groupby("label").size()
    want = {lab: int(min(n_ours.get(lab, 0), n_rand.get(lab, 0))) for lab in set(n_ours.index) | set(n_rand.index)}

    def trim(df: pd.DataFrame) -> pd.DataFrame:
        if df.empty:
            return df
        order = df.assign(_slot=df["image_id"].str.extract(r"_(\d{3,})_s\d+$")[0].astype(int))
        order = order.sort_values(["label", "_slot", "image_id"], kind="stable")
        keep = order.groupby("label").cumcount() < order["label"].map(want)
        out = df.loc[order.index[keep.to_numpy()]].sort_index()
        out.attrs = dict(df.attrs)
        return out

    return trim(ours), trim(random)
