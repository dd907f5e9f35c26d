"""The embedding map: a 2-D projection of a model's debug-set features for the Failures page's linked map, and the
debug images inside a selection drawn on it.

The projection is PCA (scikit-learn) by default, or UMAP when the ``umap-learn`` package is installed. Stored under
``embedding_maps/``, keyed like the features it projects (backbone, dataset, split config) and the method, so a
run's summary names its map and the projection is computed once for the same inputs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from core import store
from core.config import SplitConfig
from core.datasets.base import ImageDataset
from core.errors import InvalidInputError, MissingResourceError
from core.progress import ProgressFn, StopFn

METHODS = ("pca", "umap")
ROW = "__row_index__"  # the row number the map widget adds to the points it draws; selections may use it
# the columns of map_points the widget receives: image_id stays on the server (200,000 distinct strings are a fifth of
# what the browser receives and loads at that size); a selection comes back as a condition over these and ROW
DRAWN = ("x", "y", "true class", "predicted", "outcome", "half")


def available_methods() -> list[str]:
    """The projections this installation can compute: PCA always, UMAP when umap-learn is installed."""
    from importlib.util import find_spec

    return ["pca"] + (["umap"] if find_spec("umap") is not None else [])


def _path(backbone_key: str, dataset_key: str, split_config: dict, method: str = "pca") -> Path:
    parts = (backbone_key, dataset_key, split_config) + (() if method == "pca" else (method,))
    return store.cache_root() / "embedding_maps" / f"{store.make_key(*parts)}.parquet"


def embedding_map_path(run_summary: dict, method: str = "pca") -> Path:
    """Where the map of a finished run's debug features lives (it may not have been made yet)."""
    return _path(run_summary["backbone_key"], run_summary["dataset_key"], run_summary["split_config"], method)


def project(feats: np.ndarray, method: str = "pca") -> np.ndarray:
    """(N, 2) coordinates of N feature vectors: PCA, or UMAP (cosine, 15 neighbours) when umap-learn is installed."""
    if method not in METHODS:
        raise InvalidInputError(f"Unknown projection {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "umap":
        if "umap" not in available_methods():
            raise MissingResourceError("UMAP needs the umap-learn package: pip install umap-learn (or use PCA).")
        import umap

        return np.asarray(umap.UMAP(n_components=2, metric="cosine", random_state=0).fit_transform(feats), np.float32)
    from sklearn.decomposition import PCA

    return np.asarray(PCA(n_components=2, random_state=0).fit_transform(feats), np.float32)


def compute_embedding_map(
    dataset: ImageDataset,
    model: str,
    split_cfg: SplitConfig = SplitConfig(),
    *,
    method: str = "pca",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> dict:
    """Project ``model``'s debug-set features (cached by core.find.features) to 2-D and save image_id, x, y.

    Returns {"path", "points", "method"}; a map that exists for the same inputs is kept as it is."""
    from core.find.features import extract_features
    from core.find.runs import get_splits, load_backbone

    if method not in METHODS:
        raise InvalidInputError(f"Unknown projection {method!r}; choose one of {', '.join(METHODS)}.")
    debug = get_splits(dataset, split_cfg).debug
    backbone = load_backbone(model, dataset)
    path = _path(backbone.key, dataset.key, asdict(split_cfg), method)
    if path.is_file():
        return {"path": str(path), "points": len(debug), "method": method}
    feats = np.asarray(
        extract_features(backbone, dataset, debug, progress=progress, should_stop=should_stop), np.float32
    )
    xy = project(feats, method)
    out = pd.DataFrame({"image_id": debug["image_id"].astype(str).to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})
    with store.atomic_path(path) as tmp:
        out.to_parquet(tmp, index=False)
    return {"path": str(path), "points": len(out), "method": method}


def load_embedding_map(run_summary: dict, method: str = "pca") -> pd.DataFrame | None:
    """image_id, x, y of the run's debug images, or None until ``compute_embedding_map`` has made the map."""
    path = embedding_map_path(run_summary, method)
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # a damaged map is made again on request
        return None


def map_points(points: pd.DataFrame, table: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """What the map draws: every debug image of the run's failure table that has a point (image_id, x, y as
    float32, true and predicted class names, outcome failure/correct, debug half), in the map's order. Plain
    string columns: the map widget's Arrow reader does not take dictionary-encoded (categorical) ones."""
    cols = [c for c in ("image_id", "label", "pred", "correct", "split") if c in table]
    df = points[["image_id", "x", "y"]].merge(table[cols], on="image_id", how="inner")
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame(
        {
            "image_id": df["image_id"].astype(str).to_numpy(),
            "x": df["x"].to_numpy(np.float32),
            "y": df["y"].to_numpy(np.float32),
            "true class": names[df["label"].to_numpy()],
            "predicted": names[df["pred"].to_numpy()],
            "outcome": np.where(df["correct"].to_numpy(bool), "correct", "failure"),
            "half": df["split"].astype(str).to_numpy() if "split" in df else "",
        }
    )


def drawn_points(points: pd.DataFrame) -> pd.DataFrame:
    """What the map widget receives of ``points`` (map_points' frame): the DRAWN columns, in the same row order, so
    ``ids_in_selection(points, predicate)`` maps the widget's selection back to image ids."""
    return points[[c for c in DRAWN if c in points]]


def ids_in_selection(points: pd.DataFrame, predicate: str) -> np.ndarray:
    """image_ids of the rows of ``points`` (map_points' frame, whose ``drawn_points`` the map drew) inside a
    selection the map widget reported as an SQL predicate over those columns and ``__row_index__`` (the row number).

    The predicate runs in an in-process DuckDB with file and network access switched off, so a selection can only
    read ``points``."""
    import duckdb

    text = str(predicate).replace("≤", "<=").replace("≥", ">=").replace("≠", "<>").strip()
    if not text or ";" in text:
        raise InvalidInputError("The map's selection is not a single SQL condition; clear it and select again.")
    frame = points.assign(**{ROW: np.arange(len(points), dtype=np.int64)})
    con = duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})
    try:
        con.register("points", frame)
        try:
            rows = con.execute(f'SELECT "{ROW}" FROM points WHERE {text}').fetchnumpy()[ROW]
        except duckdb.Error as e:
            raise InvalidInputError(
                f"The map's selection could not be applied ({e}); clear it and select again."
            ) from e
    finally:
        con.close()
    return points["image_id"].to_numpy()[np.sort(np.asarray(rows, np.int64))]
