"""CLIP loading (open_clip local files, local-dir folders, the hub cache) and the world CLIP's training and cache."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from core.describe.clip import SAFE_WEIGHTS, load_clip
from core.errors import Cancelled, InvalidInputError, MissingResourceError, UnknownNameError

TINY = "BackdropTinyCLIP-test"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
IMAGES = [Image.new("RGB", (40, 48), (30 * i, 200 - 20 * i, 90)) for i in range(4)]
TEXTS = ["a photo of a cat", "a zero on grass", "a red seven"]


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    """A custom open_clip architecture registered from a json config, as a user would add one."""
    cfg = tmp_path_factory.mktemp("cfg") / f"{TINY}.json"
    cfg.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg)
    return TINY


def _random_tiny(seed: int):
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY)
    model.eval()
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(i) for i in IMAGES]), normalize=True).numpy()
        txt = model.encode_text(open_clip.get_tokenizer(TINY)(TEXTS), normalize=True).numpy()
    return model, img, txt


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_local_weights_file_gives_the_saved_models_embeddings(tiny_arch, tmp_path, fmt):
    model, ref_img, ref_txt = _random_tiny(seed=1)
    path = tmp_path / f"tiny.{fmt}"
    if fmt == "bin":
        torch.save(model.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    clip = load_clip(tiny_arch, pretrained=None, weights=path, device="cpu")
    img, txt = clip.encode_images(IMAGES), clip.encode_texts(TEXTS)
    np.testing.assert_allclose(img, ref_img, atol=1e-5)
    np.testing.assert_allclose(txt, ref_txt, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    # a preprocessed batch gives the same embeddings as PIL images
    np.testing.assert_allclose(clip.encode_images(torch.stack([clip.preprocess(i) for i in IMAGES])), img, atol=1e-6)
    assert clip.encode_images([]).shape == (0, 32)
    assert clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)


def test_key_follows_the_weights(tiny_arch, tmp_path):
    for seed in (1, 2):
        torch.save(_random_tiny(seed)[0].state_dict(), tmp_path / f"w{seed}.bin")
    k1 = load_clip(tiny_arch, weights=tmp_path / "w1.bin", device="cpu").key
    assert load_clip(tiny_arch, weights=tmp_path / "w1.bin", device="cpu").key == k1
    assert load_clip(tiny_arch, weights=tmp_path / "w2.bin", device="cpu").key != k1


def test_local_dir_folder_brings_its_own_config(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    model = open_clip.CLIP(
        **{
            **TINY_CFG,
            "vision_cfg": open_clip.CLIPVisionCfg(**TINY_CFG["vision_cfg"]),
            "text_cfg": open_clip.CLIPTextCfg(**TINY_CFG["text_cfg"]),
        }
    ).eval()
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}})
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / SAFE_WEIGHTS))
    clip = load_clip(weights=tmp_path, device="cpu")
    assert clip.preprocess_cfg["mean"] == [0.5] * 3
    x = torch.stack([clip.preprocess(i) for i in IMAGES])
    with torch.no_grad():
        ref = model.encode_image(x, normalize=True).numpy()
    np.testing.assert_allclose(clip.encode_images(IMAGES), ref, atol=1e-5)


def test_pickled_code_in_a_weights_file_is_refused_not_run(tiny_arch, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "evil.bin"
    torch.save({"state_dict": _random_tiny(1)[0].state_dict(), "extra": Payload()}, path)
    with pytest.raises(InvalidInputError, match="weights_only=True"):
        load_clip(tiny_arch, weights=path, device="cpu")
    assert not marker.exists()


def test_weights_that_do_not_fit_the_architecture(tiny_arch, tmp_path):
    sd = _random_tiny(1)[0].state_dict()
    sd.pop("text_projection")
    torch.save(sd, tmp_path / "partial.bin")
    with pytest.raises(InvalidInputError, match="do not fit"):
        load_clip(tiny_arch, weights=tmp_path / "partial.bin", device="cpu")


def test_unknown_architecture_and_missing_file(tmp_path):
    with pytest.raises(UnknownNameError, match="ViT-B-32"):
        load_clip("ViT-B-33", weights=__file__)
    with pytest.raises(MissingResourceError, match="does not exist"):
        load_clip("ViT-B-32", weights=tmp_path / "nope.safetensors")
    with pytest.raises(UnknownNameError, match="openai"):
        load_clip("ViT-B-32", pretrained="no-such-tag")


def test_hub_weights_come_from_the_local_cache_or_a_clear_error(tiny_arch, tmp_path, monkeypatch):
    """open_clip tags resolve to Hugging Face repos; only the local cache is read (real cache layout)."""
    import huggingface_hub.constants as hf_constants
    from safetensors.torch import save_file

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setitem(
        open_clip.pretrained._PRETRAINED,
        tiny_arch,
        {"tiny": {"hf_hub": "backdrop-test/tiny-clip/", "mean": [0.5] * 3, "std": [0.5] * 3}},
    )
    with pytest.raises(MissingResourceError) as err:
        load_clip(tiny_arch, "tiny", device="cpu")
    msg = str(err.value)
    assert "backdrop-test/tiny-clip" in msg and SAFE_WEIGHTS in msg and "weights=" in msg

    model, _, _ = _random_tiny(4)
    repo = tmp_path / "hub" / "models--backdrop-test--tiny-clip"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    (repo / "snapshots" / rev).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(repo / "snapshots" / rev / SAFE_WEIGHTS))
    clip = load_clip(tiny_arch, "tiny", device="cpu")
    assert clip.preprocess_cfg["mean"] == [0.5] * 3  # the tag's preprocessing, not open_clip's default
    x = torch.stack([clip.preprocess(i) for i in IMAGES])
    with torch.no_grad():
        ref = model.encode_image(x, normalize=True).numpy()
    np.testing.assert_allclose(clip.encode_images(IMAGES), ref, atol=1e-5)


def test_real_vit_b_32_is_missing_offline_with_instructions(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(MissingResourceError, match="timm/vit_base_patch32_clip_224.openai"):
        load_clip("ViT-B-32", "openai")


# -- the world CLIP -------------------------------------------------------------------------------------------


def test_world_clip_captions_use_the_worlds_names(tiny_world):
    from core.world.clip import CAPTION_TEMPLATES, world_captions

    df = tiny_world.index("train").head(50)
    caps = world_captions(tiny_world, df)
    assert len(caps) == 50 and all(len(c) == len(CAPTION_TEMPLATES) for c in caps)
    for row, c in zip(df.itertuples(), caps):
        name = tiny_world.classes[row.label]
        assert f"a photo of a {name} on {row.background}" in c
        assert f"a {row.colour} {name}" in c


@pytest.mark.slow
def test_world_clip_trains_on_training_pools_and_loads_back(tiny_world, world_clip):
    from core.world.clip import WorldClipConfig, world_clip_dir

    meta = json.loads((world_clip_dir(tiny_world) / "meta.json").read_text())
    assert meta["pools"] == ["backbone_train", "train"]
    assert meta["n_images"] == len(tiny_world.index("backbone_train")) + len(tiny_world.index("train"))
    assert meta["final_loss"] < 0.6 * meta["first_loss"]
    assert meta["config"] == json.loads(json.dumps(WorldClipConfig().__dict__))
    again = load_clip("world", dataset=tiny_world, device="cpu")
    assert again.key == world_clip.key and again.source == "world"
    np.testing.assert_allclose(again.encode_texts(TEXTS), world_clip.encode_texts(TEXTS), atol=1e-6)


@pytest.mark.slow
def test_world_clip_is_cached_not_retrained(tiny_world, world_clip):
    from core.world.clip import train_world_clip, world_clip_dir

    weights = world_clip_dir(tiny_world) / SAFE_WEIGHTS
    before = weights.stat().st_mtime_ns
    calls = []
    clip = train_world_clip(tiny_world, progress=lambda *a: calls.append(a))
    assert weights.stat().st_mtime_ns == before and not calls and clip.key == world_clip.key


def test_world_clip_missing_or_cancelled(tiny_world):
    from core.world.clip import WorldClipConfig, load_world_clip, train_world_clip, world_clip_dir

    other = WorldClipConfig(seed=12345)
    with pytest.raises(MissingResourceError, match="train_world_clip"):
        load_world_clip(tiny_world, other)
    with pytest.raises(InvalidInputError, match="dataset="):
        load_clip("world")
    with pytest.raises(Cancelled):
        train_world_clip(tiny_world, other, should_stop=lambda: True)
    assert not (world_clip_dir(tiny_world, other) / "meta.json").exists()


@pytest.mark.slow
def test_world_clip_with_a_backbone_tower_starts_from_the_backbone_and_loads_as_a_local_dir(tiny_world):
    """The opt-in image tower: a trained world backbone (named to timm for open_clip) whose weights start the tower;
    the saved folder loads back through the plain open_clip local-dir path."""
    import torch

    from core.weights import load_state_dict
    from core.world.backbones import train_world_backbone
    from core.world.clip import WorldClipConfig, _start_model, train_world_clip, world_clip_dir

    cfg = WorldClipConfig(image_tower="world-resnet-s", attribute_weight=1.0, max_steps=2)
    backbone = load_state_dict(train_world_backbone("world-resnet-s", tiny_world))
    trunk = _start_model(tiny_world, cfg).visual.trunk.state_dict()
    assert set(trunk) == {k for k in backbone if not k.startswith("body.fc.")}
    assert all(torch.equal(trunk[k], backbone[k]) for k in trunk)
    clip = train_world_clip(tiny_world, cfg, device="cpu")
    folder = world_clip_dir(tiny_world, cfg)
    saved = json.loads((folder / "open_clip_config.json").read_text())
    assert saved["model_cfg"]["vision_cfg"]["timm_model_name"] == "world_resnet_s"
    assert json.loads((folder / "meta.json").read_text())["image_tower"]["model"] == "world-resnet-s"
    again = load_clip(weights=folder, device="cpu")
    images = [tiny_world.load(i) for i in tiny_world.index("val")["image_id"][:4]]
    np.testing.assert_allclose(again.encode_images(images), clip.encode_images(images), atol=1e-6)
    assert again.encode_images(images).shape == (4, cfg.embed_dim)
