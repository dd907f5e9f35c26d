"""The dataset contract, checked on every registered dataset built offline, plus each loader's own promises."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.datasets import DATASETS, TorchView, create_dataset, list_datasets
from core.datasets.folders import ImageFolderDataset
from core.errors import InvalidInputError, MissingResourceError, UnknownNameError
from tests.dataset_fakes import cifar_image, write_fake_cifar10, write_fake_cifar100, write_image_folder

WNIDS = {"n01440764": 3, "n01443537": 2, "n03126707": 2}  # tench, goldfish, crane (the machine)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    write_image_folder(base / "folder", {"cat": 5, "dog_house": 4})
    write_image_folder(base / "imagenet", WNIDS, split="train")
    write_image_folder(base / "imagenet", WNIDS, split="val", bad_files=False)
    return {
        "cifar10": write_fake_cifar10(base / "c10"),
        "cifar100": write_fake_cifar100(base / "c100"),
        "imagefolder": base / "folder",
        "imagenet": base / "imagenet",
    }


def build(name: str, roots: dict[str, Path]):
    kwargs = {"scenes-mnist": {"size": "tiny"}, "scenes-mnist-open": {"size": "tiny"}}.get(
        name, {"root": roots.get(name)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped-file warning has its own test
        return create_dataset(name, **kwargs)


def test_every_registered_dataset_is_covered():
    assert list_datasets() == sorted(
        ["scenes-mnist", "scenes-mnist-open", "cifar10", "cifar100", "imagenet", "imagefolder"]
    )


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_contract(name, roots):
    ds = build(name, roots)
    assert ds.name == name and ds.classes and ds.pools()
    ids = []
    for pool in ds.pools():
        df = ds.index(pool)
        assert list(df.columns[:2]) == ["image_id", "label"]
        assert set(ds.attributes) <= set(df.columns)
        assert df["label"].between(0, len(ds.classes) - 1).all() and df["label"].dtype.kind == "i"
        assert df["image_id"].is_unique and len(df)
        ids += list(df["image_id"])
    assert len(set(ids)) == len(ids)
    sample = ids[:: max(1, len(ids) // 5)]
    first = [np.asarray(ds.load(i)) for i in sample]
    for i, arr in zip(sample, first):
        img = ds.load(i)
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), arr)
    again = build(name, roots)
    assert again.key == ds.key and again.classes == ds.classes
    for pool in ds.pools():
        assert again.index(pool).equals(ds.index(pool))
    assert all(np.array_equal(np.asarray(again.load(i)), a) for i, a in zip(sample, first))
    view = TorchView(ds, ds.index(ds.pools()[-1]).head(3), transform=lambda im: np.asarray(im).shape)
    assert len(view) == len(ds.index(ds.pools()[-1]).head(3)) and view[0][0][2] == 3
    with pytest.raises(InvalidInputError):
        ds.index("no-such-pool")
    with pytest.raises(InvalidInputError):
        ds.load("no-such-pool/123")


def test_unknown_dataset_names_the_closest():
    with pytest.raises(UnknownNameError, match="cifar10"):
        create_dataset("cifar-10")


@pytest.mark.parametrize(
    "name, writer, folder",
    [("cifar10", write_fake_cifar10, "cifar-10-batches-py"), ("cifar100", write_fake_cifar100, "cifar-100-python")],
)
def test_cifar_reads_the_real_format(name, writer, folder, roots, tmp_path):
    ds = create_dataset(name, root=roots[name])
    train, val = ds.index("train"), ds.index("val")
    n_classes = len(ds.classes)
    assert n_classes == (10 if name == "cifar10" else 100)
    assert list(val["label"]) == [(1000 + i) % n_classes for i in range(len(val))]
    assert np.array_equal(np.asarray(ds.load("val/00001")), cifar_image(1001))
    assert np.array_equal(np.asarray(ds.load(train["image_id"].iloc[-1])), cifar_image(len(train) - 1))
    if name == "cifar100":
        assert ds.classes[-1] == "aquarium fish"
    with pytest.raises(MissingResourceError, match=folder) as e:
        create_dataset(name, root=tmp_path / "empty")
    assert "download=True" in str(e.value) and str(tmp_path / "empty") in str(e.value)
    with pytest.raises(InvalidInputError, match="failed torchvision's check"):
        create_dataset(name, root=roots[name], verify=True)  # fakes cannot match the real md5s


def test_cifar_damaged_file_is_a_clear_error(tmp_path):
    root = write_fake_cifar10(tmp_path / "c10")
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(InvalidInputError, match="re-extract"):
        create_dataset("cifar10", root=root)


def test_cifar_default_root_comes_from_backdrop_data(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path / "cifar10")
    monkeypatch.setenv("BACKDROP_DATA", str(tmp_path))
    assert create_dataset("cifar10").root == tmp_path / "cifar10"
    monkeypatch.setenv("BACKDROP_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(MissingResourceError, match="nowhere"):
        create_dataset("cifar10")


def test_imagefolder_skips_and_reports_bad_files(tmp_path):
    root = tmp_path / "pets"
    bad = write_image_folder(root, {"cat": 5, "dog_house": 4})
    with pytest.warns(UserWarning, match="skipped 4 unusable"):
        ds = create_dataset("imagefolder", root=root)
    assert sorted(p for p, _ in ds.skipped) == sorted(bad)
    reasons = dict(ds.skipped)
    assert "not an image" in reasons["cat/notes.txt"] and "unreadable" in reasons["cat/corrupt.jpg"]
    ids = set(ds.index("train")["image_id"]) | set(ds.index("val")["image_id"])
    assert len(ids) == 9 and not ids & set(bad)
    assert ds.classes == ["cat", "dog house"]
    for pool in ds.pools():  # every class gets both train and val images
        assert set(ds.index(pool)["label"]) == {0, 1}
    with pytest.warns(UserWarning, match="skipped 4"):  # the cached index reports them too
        again = create_dataset("imagefolder", root=root)
    assert again.skipped == ds.skipped and again.key == ds.key


def test_imagefolder_reindexes_when_files_change(tmp_path):
    root = tmp_path / "f"
    write_image_folder(root, {"a": 3, "b": 3}, bad_files=False)
    ds = create_dataset("imagefolder", root=root)
    (root / "b" / "img9.png").write_bytes((root / "b" / "img1.png").read_bytes())
    more = create_dataset("imagefolder", root=root)
    assert len(more.index("train")) + len(more.index("val")) == 7 and more.key != ds.key


def test_imagefolder_truncated_large_jpeg_is_caught(tmp_path):
    root = tmp_path / "t"
    write_image_folder(root, {"a": 2, "b": 2}, bad_files=False)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "a" / "cut.jpg").write_bytes(buf.getvalue()[: int(len(buf.getvalue()) * 0.9)])
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = create_dataset("imagefolder", root=root)
    assert ds.skipped[0][0] == "a/cut.jpg" and "truncated" in ds.skipped[0][1].lower()


def test_imagefolder_empty_class_and_missing_root_are_clear(tmp_path):
    root = tmp_path / "f"
    write_image_folder(root, {"a": 2, "b": 2}, bad_files=False)
    (root / "empty_class").mkdir()
    with pytest.raises(InvalidInputError, match="empty_class"):
        create_dataset("imagefolder", root=root)
    (root / "empty_class" / "readme.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="no readable images.*readme.txt"):
        create_dataset("imagefolder", root=root)
    with pytest.raises(MissingResourceError, match="does not exist"):
        create_dataset("imagefolder", root=tmp_path / "nope")
    with pytest.raises(InvalidInputError, match="root="):
        create_dataset("imagefolder")


def test_imagenet_names_from_timm_or_a_mapping_file(roots, tmp_path):
    with pytest.warns(UserWarning, match="skipped 4"):
        ds = create_dataset("imagenet", root=roots["imagenet"])
    assert ds.wnids == sorted(WNIDS)
    assert ds.classes == ["tench", "goldfish", "crane"]
    assert ds.index("val")["image_id"].str.startswith("val/").all()
    assert len(ds.index("train")) == sum(WNIDS.values()) and len(ds.skipped) == 4
    own = tmp_path / "own"
    write_image_folder(own, WNIDS, split="train", bad_files=False)
    write_image_folder(own, WNIDS, split="val", bad_files=False)
    (own / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench fish, Tinca tinca\nn01443537 goldfish\nn03126707 crane\n"
    )
    named = create_dataset("imagenet", root=own)
    assert named.classes == ["tench fish", "goldfish", "crane"]
    flat = tmp_path / "flat"
    write_image_folder(flat, WNIDS, bad_files=False)
    with pytest.raises(MissingResourceError, match="train/<wnid>"):
        create_dataset("imagenet", root=flat)


def test_imagefolder_names_repeated_after_cleaning_stay_unique(tmp_path):
    root = tmp_path / "dup"
    write_image_folder(root, {"big_cat": 2, "big cat": 2}, bad_files=False)
    ds = ImageFolderDataset(root)
    assert len(set(ds.classes)) == 2
