"""head_train / debug / test splits: sizes, stratification, seeding, persistence and the errors users see."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from core.config import SplitConfig
from core.errors import InvalidInputError
from core.find import splits as splits_mod
from core.find.splits import make_splits
from core.world.dataset import SIZES
from tests.fakes import ColourDataset


def test_sizes_stratification_and_membership(tiny_world):
    s = make_splits(tiny_world, SplitConfig(head_train_per_class=20, debug_fraction=0.6, seed=0))
    assert (s.head_train["label"].value_counts() == 20).all() and s.head_train["label"].nunique() == 10
    n_val = SIZES["tiny"]["val"]
    assert (s.debug["label"].value_counts() == round(0.6 * n_val)).all()
    assert (s.test["label"].value_counts() == n_val - round(0.6 * n_val)).all()
    assert set(s.head_train["image_id"]) <= set(tiny_world.index("train")["image_id"])
    val_ids = set(tiny_world.index("val")["image_id"])
    assert set(s.debug["image_id"]) | set(s.test["image_id"]) == val_ids
    assert not set(s.debug["image_id"]) & set(s.test["image_id"])
    assert list(s.debug.columns) == list(tiny_world.index("val").columns)  # ground truth travels with the rows
    assert s.as_dict().keys() == {"head_train", "debug", "test"} and s.get("debug") is s.debug
    with pytest.raises(InvalidInputError, match="head_train, debug, test"):
        s.get("heldout")


def test_seeded_and_persisted(tiny_world, fresh_cache, monkeypatch):
    cfg = SplitConfig(head_train_per_class=10, seed=0)
    first = make_splits(tiny_world, cfg)
    assert (fresh_cache / "splits" / first.key / "debug.parquet").is_file()

    def no_redraw(*a, **k):
        raise AssertionError("splits were drawn again instead of loaded")

    monkeypatch.setattr(splits_mod, "_draw", no_redraw)
    loaded = make_splits(tiny_world, cfg)
    for name, df in first.as_dict().items():
        pd.testing.assert_frame_equal(loaded.get(name), df)
    monkeypatch.undo()
    other = make_splits(tiny_world, replace(cfg, seed=1))
    assert other.key != first.key
    assert set(other.head_train["image_id"]) != set(first.head_train["image_id"])
    assert set(other.debug["image_id"]) != set(first.debug["image_id"])
    (fresh_cache / "splits" / first.key / "test.parquet").write_bytes(b"broken")
    pd.testing.assert_frame_equal(make_splits(tiny_world, cfg).test, first.test)  # a damaged file is redrawn


def test_a_class_keeps_its_rows_when_other_classes_change():
    a = make_splits(ColourDataset(n_per_class=12, n_classes=3), SplitConfig(head_train_per_class=4))
    b = make_splits(ColourDataset(n_per_class=12, n_classes=4), SplitConfig(head_train_per_class=4))
    for name in ("head_train", "debug", "test"):
        assert set(a.get(name).query("label < 3")["image_id"]) == set(b.get(name).query("label < 3")["image_id"])


def test_too_many_per_class_names_the_class_and_the_limit(tiny_world):
    n = SIZES["tiny"]["train"]
    with pytest.raises(InvalidInputError, match=f"'zero' has only {n} images.*at most {n}"):
        make_splits(tiny_world, SplitConfig(head_train_per_class=n + 1))


class MissingClassInVal(ColourDataset):
    def index(self, pool):
        df = super().index(pool)
        return df[df["label"] != 2].reset_index(drop=True) if pool == "val" else df


def test_absent_class_and_empty_split_are_clear():
    with pytest.raises(InvalidInputError, match="'class2'.*'val' pool"):
        make_splits(MissingClassInVal(n_per_class=6), SplitConfig(head_train_per_class=2))
    with pytest.raises(InvalidInputError, match="'class0' has 1 val image.*test split empty"):
        make_splits(ColourDataset(n_per_class=1), SplitConfig(head_train_per_class=1, debug_fraction=0.6))
    with pytest.raises(InvalidInputError, match="debug_fraction"):
        make_splits(ColourDataset(n_per_class=6), SplitConfig(head_train_per_class=2, debug_fraction=1.0))
    with pytest.raises(InvalidInputError, match="between 1 and"):
        make_splits(ColourDataset(n_per_class=6), SplitConfig(head_train_per_class=0))
