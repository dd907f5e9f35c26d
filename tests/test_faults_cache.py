"""Corrupted-cache corpus and job/file faults (issue 11): truncated npy/parquet/safetensors, wrong shapes, stale
locks and orphan temp files are detected and recomputed or cleaned; concurrent runs of one model train its head
once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from core import store
from core.config import HeadConfig, SplitConfig
from core.find import features, runs
from tests.fakes import ColourDataset, tiny_backbone

pytestmark = pytest.mark.faults

SPLIT = SplitConfig(head_train_per_class=5)
HEAD = HeadConfig(epochs=30)


@pytest.fixture
def fake_run(fresh_cache, monkeypatch):
    """run_model on a fake dataset and backbone, counting head trainings."""
    ds, bb = ColourDataset(n_per_class=20, n_classes=3), tiny_backbone()
    monkeypatch.setattr(runs, "load_backbone", lambda *a, **k: bb)
    trained = []
    real_train = runs.train_head

    def counting_train(*a, **k):
        trained.append(threading.get_ident())
        time.sleep(0.3)  # keeps concurrent runs overlapping
        return real_train(*a, **k)

    monkeypatch.setattr(runs, "train_head", counting_train)
    return ds, bb, trained, lambda: runs.run_model(ds, "fake-net", SPLIT, HEAD)


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.table, b.table, check_dtype=False)
    assert a.summary["accuracy"] == b.summary["accuracy"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: (f / "head.safetensors").write_bytes((f / "head.safetensors").read_bytes()[:50]),
        lambda f: (f / "failures.parquet").write_bytes((f / "failures.parquet").read_bytes()[:64]),
        lambda f: (f / "summary.json").write_text('{"model": "fake-net", "accu'),
        lambda f: (f / "head.safetensors").unlink(),
    ],
    ids=["truncated-safetensors", "truncated-parquet", "truncated-json", "missing-head"],
)
def test_damaged_run_is_detected_and_recomputed(fake_run, damage):
    ds, bb, trained, run = fake_run
    first = run()
    damage(first.folder)
    again = run()
    assert len(trained) == 2  # recomputed, not loaded
    _same(first, again)
    assert len(trained) == 2 and run().folder == first.folder and len(trained) == 2  # now loaded


@pytest.mark.parametrize("damage", ["truncate", "wrong-shape", "wrong-dtype-text"])
def test_damaged_feature_cache_is_recomputed(fresh_cache, damage):
    ds, bb = ColourDataset(), tiny_backbone()
    df = ds.index("val")
    a = np.array(features.extract_features(bb, ds, df))
    ref = features.feature_ref(bb, ds, df)
    if damage == "truncate":
        ref.file.write_bytes(ref.file.read_bytes()[:100])
    elif damage == "wrong-shape":
        np.save(ref.file, np.zeros((len(df) - 1, a.shape[1]), np.float32))
    else:
        ref.file.write_text("not an array")
    assert features.load_cached(ref) is None
    np.testing.assert_allclose(np.array(features.extract_features(bb, ds, df)), a, atol=1e-6)


def test_stale_lock_file_does_not_block(fake_run):
    ds, bb, trained, run = fake_run
    first = run()
    (first.folder / "summary.json").unlink()
    (first.folder / "run.lock").write_text("12345")  # left by a process killed while holding it
    start = time.monotonic()
    run()
    assert time.monotonic() - start < 30 and len(trained) == 2


def test_concurrent_runs_train_each_head_once(fake_run):
    ds, bb, trained, run = fake_run
    results, errors = [], []

    def go():
        try:
            results.append(run())
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 3
    assert len(trained) == 1  # one head trained; the others waited and loaded it
    _same(results[0], results[1])


def test_orphan_temp_files_of_a_killed_run_are_cleaned(fake_run):
    ds, bb, trained, run = fake_run
    first = run()
    (first.folder / "summary.json").unlink()
    orphans = [first.folder / ".failures.abc123.tmp.parquet", first.folder / ".summary.json.xyz.tmp"]
    for p in orphans:
        p.write_bytes(b"half")
    keep = first.folder / "notes.tmp.txt"  # not a temp-file name: left alone
    keep.write_text("mine")
    run()
    assert not any(p.exists() for p in orphans) and keep.exists()


def test_atomic_writes_leave_recognisable_temp_names(tmp_path):
    seen = []
    with store.atomic_path(tmp_path / "a.npy") as tmp:
        seen.append(tmp.name)
        np.save(tmp, np.zeros(3))
    assert store.is_temp_file(seen[0]) and seen[0].endswith(".npy") and not store.is_temp_file("a.npy")
    assert store.remove_orphan_temps(tmp_path) == 0 and (tmp_path / "a.npy").exists()


def test_orphan_temp_files_of_a_killed_generation_are_cleaned(fresh_cache):
    from core.fix.generators import generate_set, mode_requests
    from core.fix.generators.generated_set import set_dir
    from tests.test_generate import MODES, SeedPainter

    reqs = mode_requests(MODES, 2)
    gen = SeedPainter()
    with pytest.raises(Exception, match="jammed"):
        generate_set(SeedPainter(fail_on_call=2), reqs, "s")
    root = set_dir("s")
    orphans = [root / "images" / ".abc.png.k3j4.tmp", root / ".manifest.q1w2.tmp.csv"]
    for p in orphans:
        p.write_bytes(b"half")  # what SIGKILL between write and rename leaves
    gset = generate_set(gen, reqs, "s")
    assert not any(p.exists() for p in orphans)
    assert len(gset.manifest()) == 6
    assert not [p for p in root.rglob("*") if store.is_temp_file(p)]


def test_orphan_temp_files_of_killed_splits_and_feature_extraction_are_cleaned(fresh_cache):
    from core.find.splits import make_splits, splits_key

    ds, bb = ColourDataset(), tiny_backbone()
    split_dir = store.cache_root() / "splits" / splits_key(ds, SPLIT)
    df = ds.index("val")
    ref = features.feature_ref(bb, ds, df)
    orphans = [
        split_dir / ".head_train.pw27ou25.tmp.parquet",  # what SIGKILL during make_splits left
        ref.folder / "shards" / ".00000.npy.k3j4.tmp.npy",
        ref.folder / ".features.q1w2.tmp.npy",
    ]
    for p in orphans:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    make_splits(ds, SPLIT)
    features.extract_features(bb, ds, df)
    assert [p for p in orphans if p.exists()] == []
