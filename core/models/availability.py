"""Which models this machine can run now: per model its family and source, whether its weights are here (and how
to get them when not), and, for a dataset, what its newest finished run scored. The Setup page and the CLI show it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from core.models.registry import list_models, model_info

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


def availability_table(names: Iterable[str] | None = None, dataset=None) -> pd.DataFrame:
    """One row per model (every registered one unless ``names``), with the columns of ``COLUMNS``.

    Cheap: no model is built and no file hashed. With ``dataset`` (an opened dataset), world-trained models are
    answered for that world and the run columns come from its newest finished run per model."""
    runs: dict[str, dict] = {}
    if dataset is not None:
        from core.find.runs import latest_runs

        runs = latest_runs(dataset)
    rows = []
    for name in list_models() if names is None else names:
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
