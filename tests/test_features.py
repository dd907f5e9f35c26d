import numpy as np
import pytest

from core.errors import Cancelled
from core.find import features
from tests.fakes import ColourDataset, tiny_backbone


def test_extract_is_cached_deterministic_and_memory_mapped(fresh_cache):
    ds, bb = ColourDataset(), tiny_backbone()
    df = ds.index("val")
    a = features.extract_features(bb, ds, df, batch_size=7, shard_size=16)
    assert a.shape == (len(df), 8) and np.isfinite(a).all()
    assert isinstance(a, np.memmap)
    loads = ds.loads
    b = features.extract_features(bb, ds, df, batch_size=7, shard_size=16)
    assert ds.loads == loads, "second call must come from the cache"
    np.testing.assert_array_equal(a, b)
    # a fresh extraction in a new cache gives the same numbers
    ref = features.feature_ref(bb, ds, df)
    (ref.folder / "meta.json").unlink()
    c = features.extract_features(bb, ds, df, batch_size=7, shard_size=16)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-6)


def test_key_changes_with_model_weights_preprocessing_and_images(fresh_cache):
    ds = ColourDataset()
    df = ds.index("val")
    k = features.feature_key(tiny_backbone(0), ds, df)
    assert k != features.feature_key(tiny_backbone(1), ds, df)
    bb = tiny_backbone(0)
    bb.data_config["mean"] = (0.4, 0.4, 0.4)
    assert k != features.feature_key(bb, ds, df)
    assert k != features.feature_key(tiny_backbone(0), ds, df.iloc[:-1])


def test_interrupted_extraction_resumes_at_first_missing_shard(fresh_cache):
    ds, bb = ColourDataset(), tiny_backbone()
    df = ds.index("val")
    calls = {"n": 0}

    def stop_after_two_batches():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        features.extract_features(bb, ds, df, batch_size=8, shard_size=16, should_stop=stop_after_two_batches)
    shard_dir = features.feature_ref(bb, ds, df).folder / "shards"
    assert sorted(p.name for p in shard_dir.glob("*.npy")) == ["00000.npy"]
    before = ds.loads
    out = features.extract_features(bb, ds, df, batch_size=8, shard_size=16)
    assert ds.loads - before == len(df) - 16, "the finished shard must not be recomputed"
    assert out.shape == (len(df), 8)


def test_the_default_batch_is_the_measured_cpu_batch_on_the_cpu_and_larger_on_a_gpu(fresh_cache):
    ds, bb = ColourDataset(), tiny_backbone()
    df = ds.index("val")  # 80 images: five CPU batches
    reported: list[int] = []
    out = features.extract_features(bb, ds, df, device="cpu", progress=lambda done, n, msg: reported.append(done))
    batches = np.diff([0, *dict.fromkeys(reported)])
    assert list(batches) == [features.CPU_BATCH_SIZE] * (len(df) // features.CPU_BATCH_SIZE)
    assert features.CPU_BATCH_SIZE == 16 and features.default_batch_size("cpu") == 16
    assert features.default_batch_size("cuda") == features.default_batch_size("cuda:1") == 64
    # the batch size does not change the features
    (features.feature_ref(bb, ds, df).folder / "meta.json").unlink()
    np.testing.assert_allclose(out, features.extract_features(bb, ds, df, batch_size=64), rtol=0, atol=1e-6)


def test_corrupt_cache_is_detected_and_recomputed(fresh_cache):
    ds, bb = ColourDataset(), tiny_backbone()
    df = ds.index("val")
    a = np.array(features.extract_features(bb, ds, df))
    ref = features.feature_ref(bb, ds, df)
    ref.file.write_bytes(ref.file.read_bytes()[:100])  # truncated
    assert features.load_cached(ref) is None
    b = features.extract_features(bb, ds, df)
    np.testing.assert_allclose(a, b, atol=1e-6)
