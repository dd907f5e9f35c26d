"""Which models this machine can run now: per model its family and source, whether its weights are here (and how
to get them when not), and, for a dataset, what its newest finished run scored. The Setup page and the CLI show it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from core.models.registry import list_models, model_info, split_input_size

COLUMNS = [
    "model",
    "family",
    "source",
    "paper preset",
    "weights here",
    "run cached",
    "test acc",
    "debug acc",
    "failures",
    "to get the weights",
]


def how_to_get(info: dict) -> str:
    """What to do for weights that are not here: the command that trains them, or where to download them."""
    if info.get("available", True):
        return ""
    if info.get("train"):
        return f"train: {info['train']}"
    return "download: " + "; or ".join(info.get("downloads") or ["(no source known)"])


def _with_resized(names: list[str], runs: dict) -> list[str]:
    """``names`` with each run model at another input size placed after the model it resizes (or at the end)."""
    resized: dict[str, list[str]] = {}
    for model in sorted(runs):
        if model not in names:
            resized.setdefault(split_input_size(model)[0], []).append(model)
    out = [m for name in names for m in (name, *resized.pop(name, []))]
    return out + [m for rest in resized.values() for m in rest]


def availability_table(names: Iterable[str] | None = None, dataset=None) -> pd.DataFrame:
    """One row per model (every registered one unless ``names``), with the columns of ``COLUMNS``.

    Cheap: no model is built and no file hashed. With ``dataset`` (an opened dataset), world-trained models are
    answered for that world and the run columns come from its newest finished run per model; listing every model,
    a model the dataset has runs of at another input size (``efficientnet-lite0@96``) gets its own row, after
    the model it resizes."""
    runs: dict[str, dict] = {}
    if dataset is not None:
        from core.find.runs import latest_runs

        runs = latest_runs(dataset)
    rows = []
    for name in _with_resized(list_models(), runs) if names is None else names:
        info = model_info(name)
        if info.get("source") == "world" and dataset is not None:  # whether its weights exist depends on the world
            info = model_info(name, dataset=dataset)
        run = runs.get(name) or {}
        acc = run.get("accuracy", {})
        rows.append(
            {
                "model": name,
                "family": info.get("family", ""),
                "source": info.get("source", ""),
                "paper preset": bool(info.get("paper_name")),
                "weights here": bool(info.get("available", True)),
                "run cached": bool(run),
                "test acc": acc.get("test"),
                "debug acc": acc.get("debug"),
                "failures": run.get("n_failures"),
                "to get the weights": how_to_get(info),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
