"""Model registry, the safe weights loader, every source's offline behaviour, and a contract over every model.

Real weights cannot be downloaded here, so each source is exercised with tiny random models saved in the
real on-disk format (a Hugging Face cache snapshot, torch.hub's checkpoint folder, MoCo/SwAV-style training
checkpoints) and loaded back through the real loader.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InvalidInputError, MissingResourceError, UnknownNameError
from core.models import create_model, families, list_models, model_info
from core.models.presets import PRESETS, swav_wide_resnet50
from core.weights import fit_state_dict, load_state_dict, weights_id

PAPER_FAMILIES = {"ResNet": 6, "EfficientNet": 10, "DenseNet": 2, "ViT": 6, "SwAV": 4, "MoCo": 1, "DINO": 5, "CLIP": 6}
DATA_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


pytestmark = pytest.mark.usefixtures("one_thread")


# -- the safe loader -------------------------------------------------------------------------------------------
class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_loader_reads_safetensors_and_unwraps_training_checkpoints(tmp_path):
    from safetensors.torch import save_file

    t = {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3)}
    save_file(t, str(tmp_path / "w.safetensors"))
    got = load_state_dict(tmp_path / "w.safetensors")
    assert set(got) == set(t) and all(torch.equal(got[k], t[k]) for k in t)

    torch.save({"epoch": 3, "arch": "x", "state_dict": {f"module.{k}": v for k, v in t.items()}}, tmp_path / "c.pth")
    got = load_state_dict(tmp_path / "c.pth")
    assert set(got) == set(t) and torch.equal(got["a.bias"], t["a.bias"])
    assert weights_id(tmp_path / "c.pth") != weights_id(tmp_path / "w.safetensors")


def test_loader_refuses_pickled_code_without_running_it(tmp_path):
    torch.save({"w": torch.zeros(1), "evil": _Payload()}, tmp_path / "bad.pth")
    _Payload.ran = False
    with pytest.raises(InvalidInputError, match="weights_only"):
        load_state_dict(tmp_path / "bad.pth")
    assert not _Payload.ran
    with pytest.raises(MissingResourceError, match="does not exist"):
        load_state_dict(tmp_path / "absent.pth")


def test_fit_names_mismatched_keys():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with pytest.raises(InvalidInputError, match=r"missing \['0.bias'\].*unexpected \['0.extra'\]"):
        fit_state_dict(net, {"0.weight": torch.zeros(3, 2), "0.extra": torch.zeros(1)})
    with pytest.raises(InvalidInputError, match="wrong shapes"):
        fit_state_dict(net, {"0.weight": torch.zeros(4, 2), "0.bias": torch.zeros(3)})


# -- registry ---------------------------------------------------------------------------------------------------
def test_registry_holds_the_papers_40_models_in_their_families():
    fams = families()
    assert {f: len(fams[f]) for f in PAPER_FAMILIES} == PAPER_FAMILIES
    assert sum(PAPER_FAMILIES.values()) == len(PRESETS) == 40
    assert set(list_models(family="DINO")) == {
        "dino_resnet50",
        "dino_vitb16",
        "dino_vitb8",
        "dino_vits16",
        "dino_vits8",
    }
    assert len(fams["EfficientNet-Lite"]) == 3 and len(fams["World-ResNet"]) == 3 == len(fams["World-MobileNet"])
    assert set(list_models(source="open_clip")) == set(fams["CLIP"])


def test_unknown_names_suggest_the_closest():
    with pytest.raises(UnknownNameError, match="Closest: resnet18"):
        create_model("resnet19")
    with pytest.raises(UnknownNameError, match="Closest: resnet18"):
        model_info("resnet19")
    with pytest.raises(UnknownNameError, match="convnext_tiny"):
        create_model("timm:convnext_tinny")
    with pytest.raises(UnknownNameError, match="resnet18.tv_in1k"):
        create_model("timm:resnet18.not_a_tag")


@pytest.fixture
def empty_weight_caches(tmp_path, monkeypatch):
    """No Hugging Face or torch.hub weights on this 'machine', whatever the developer's caches hold."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_says_what_it_would_download(name, empty_weight_caches):
    info = model_info(name)
    assert info["family"] in PAPER_FAMILIES and info["available"] is False  # nothing is cached in tests
    if PRESETS[name].get("pretrained") is False:
        assert info["downloads"] == [] and "never published" in info["note"]
    else:
        assert info["downloads"] and all(d.startswith("https://") for d in info["downloads"])
    with pytest.raises(MissingResourceError) as e:
        create_model(name)
    msg = str(e.value)
    assert "weights=" in msg and name in msg
    for d in info["downloads"][:1]:
        assert d.split(" ")[0] in msg
    if PRESETS[name]["source"] == "torch.hub":
        assert PRESETS[name]["hub"]["repo"] in msg and "never runs hub code" in msg


# -- timm from the Hugging Face cache, and checkpoints published outside timm ---------------------------------------
def _fake_hf_snapshot(root, repo_id: str, filename: str, write):
    folder = root / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    write(snap / filename)
    return snap / filename


def test_timm_weights_load_from_the_hugging_face_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    import timm
    from safetensors.torch import save_file

    arch = "test_resnet.r160_in1k"
    torch.manual_seed(1)
    ref = timm.create_model(arch, pretrained=False).eval()
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    assert model_info(f"timm:{arch}")["available"] is False
    path = _fake_hf_snapshot(
        tmp_path, "timm/test_resnet.r160_in1k", "model.safetensors", lambda p: save_file(ref.state_dict(), str(p))
    )
    info = model_info(f"timm:{arch}")
    assert info["available"] and info["weights_path"] == str(path)
    bb = create_model(f"timm:{arch}")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref.forward_head(ref.forward_features(x), pre_logits=True)
    assert torch.allclose(bb(x), want, atol=1e-5)
    assert bb.weights_id == weights_id(path) and bb.feature_dim == want.shape[1]
    assert bb.data_config == timm.data.resolve_model_data_config(ref)  # the tag's own preprocessing


def test_url_checkpoint_with_heads_is_selected_and_trimmed(tmp_path, monkeypatch):
    """A MoCo-style training checkpoint in torch.hub's cache: query encoder kept, MLP head and key encoder dropped."""
    import timm

    from core.models.timm_models import timm_backbone

    torch.manual_seed(2)
    ref = timm.create_model("test_resnet", pretrained=False).eval()
    enc = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    ckpt = {
        "epoch": 800,
        "arch": "resnet50",
        "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in enc.items()},
            "module.encoder_q.fc.0.weight": torch.zeros(4, 4),
            "module.encoder_q.fc.2.bias": torch.zeros(4),
            "module.encoder_k.conv1.weight": torch.zeros(1),
            "module.queue": torch.zeros(4, 8),
        },
    }
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    url = "https://example.invalid/moco/moco_test_pretrain.pth.tar"
    with pytest.raises(MissingResourceError, match="moco_test_pretrain"):
        timm_backbone("test_resnet", weights_url=url, select="encoder_q.", ignore=("fc.",))
    (tmp_path / "checkpoints").mkdir()
    torch.save(ckpt, tmp_path / "checkpoints" / "moco_test_pretrain.pth.tar")
    bb = timm_backbone(
        "test_resnet",
        weights_url=url,
        select="encoder_q.",
        ignore=("fc.",),
        pretrained_cfg_overlay={"crop_pct": 0.875, "interpolation": "bilinear"},
    )
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(bb(x), ref.forward_head(ref.forward_features(x), pre_logits=True), atol=1e-5)
    assert bb.data_config["crop_pct"] == 0.875 and bb.data_config["interpolation"] == "bilinear"


def test_local_weights_file_for_a_preset(tmp_path):
    torch.manual_seed(3)
    ref = create_model("resnet18", pretrained=False, seed=3)
    torch.save({"model": {f"module.{k}": v for k, v in ref.net.state_dict().items()}}, tmp_path / "r18.pth")
    bb = create_model("resnet18", weights=str(tmp_path / "r18.pth"))
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(bb(x), ref(x), atol=1e-5)
    assert bb.weights_id == weights_id(tmp_path / "r18.pth") != ref.weights_id
    assert bb.key != ref.key
    with pytest.raises(InvalidInputError, match="does not fit"):
        create_model("resnet34", weights=str(tmp_path / "r18.pth"))


def test_swav_wide_resnets_match_swav_layout_and_size():
    from torchvision.models import resnet50

    with torch.device("meta"):
        tv = resnet50()
        nets = {w: swav_wide_resnet50(w) for w in (1, 2, 4, 5)}
    assert {k: v.shape for k, v in nets[1].state_dict().items()} == {k: v.shape for k, v in tv.state_dict().items()}
    # SwAV paper, Table 1: RN50-w2/w4/w5 have 94M/375M/586M parameters (backbone without classifier)
    for w, millions in ((2, 94), (4, 375), (5, 586)):
        n = sum(p.numel() for k, p in nets[w].named_parameters() if not k.startswith("fc."))
        assert abs(n / 1e6 - millions) < 1.0, (w, n)
        assert nets[w].conv1.out_channels == 64 * w and nets[w].fc.in_features == 2048 * w


def test_open_clip_image_tower_from_a_local_file(tmp_path):
    import open_clip

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "backdrop-test-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(tmp_path / "cfg"))
    torch.manual_seed(4)
    ref = open_clip.create_model("backdrop-test-tiny", pretrained=None).eval()
    from safetensors.torch import save_file

    save_file(ref.state_dict(), str(tmp_path / "tiny.safetensors"))
    bb = create_model("open_clip:backdrop-test-tiny", weights=str(tmp_path / "tiny.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(bb(x), ref.encode_image(x), atol=1e-5)
    assert bb.feature_dim == 32 and bb.source == "open_clip"
    assert bb.data_config["input_size"] == (3, 32, 32) and bb.data_config["crop_pct"] == 1.0


def test_open_clip_offline_error_names_the_hub_file(empty_weight_caches):
    with pytest.raises(MissingResourceError, match="resnet50_clip.openai"):
        create_model("open_clip:RN50/openai")
    info = model_info("open_clip:RN50/openai")
    assert info["available"] is False and info["hub_id"] == "timm/resnet50_clip.openai"


# -- contract over every registered model -------------------------------------------------------------------------
# A real forward for the smallest preset of each paper family (and every packaged/world model); the other presets
# are built on the meta device (architecture and config, no memory), which keeps this file well under a minute.
FORWARD_PRESETS = (
    "resnet18",
    "efficientnet_b0",
    "densenet121",
    "vit_base_patch16_224",
    "swav_resnet50",
    "moco_v2_800ep",
    "dino_vits16",
    "clip_rn50",
)
FORWARD = [n for n in list_models() if n not in PRESETS or n in FORWARD_PRESETS]


def test_forward_set_covers_every_family():
    assert {model_info(n)["family"] for n in FORWARD} == set(families())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_contract_config(name):
    meta = create_model(name, pretrained=False, device="meta")
    assert meta.name == name and meta.family == PRESETS[name]["family"] and meta.feature_dim > 0
    assert all(k in meta.data_config for k in DATA_KEYS) and len(meta.data_config["mean"]) == 3
    assert all(p.is_meta for p in meta.net.parameters())


def _input_size(bb) -> int:
    fixed = bb.source == "open_clip" or getattr(bb.net, "pretrained_cfg", {}).get("fixed_input_size", False)
    return bb.data_config["input_size"][-1] if fixed else 64


@pytest.mark.parametrize("name", FORWARD)
def test_contract_forward(name):
    bb = create_model(name, pretrained=False)
    assert bb.name == name and bb.family == model_info(name)["family"]
    assert all(k in bb.data_config for k in DATA_KEYS) and len(bb.data_config["mean"]) == 3
    if name in PRESETS:
        meta = create_model(name, pretrained=False, device="meta")
        assert meta.feature_dim == bb.feature_dim and meta.data_config == bb.data_config
    s = _input_size(bb)
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = bb(x), bb(x)
    assert a.shape == (2, bb.feature_dim) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and torch.equal(a, b)
    assert not any(p.requires_grad for p in bb.parameters()) and not bb.training
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    assert tuple(bb.transform()(img).shape) == tuple(bb.data_config["input_size"])


def test_a_model_at_another_input_size_keeps_its_weights_and_keys_its_caches_apart():
    from core.models.registry import at_input_size

    native, small = create_model("efficientnet-lite0"), create_model(at_input_size("efficientnet-lite0", 96))
    assert small.name == "efficientnet-lite0@96" and small.weights_id == native.weights_id
    assert small.data_config["input_size"] == (3, 96, 96) and "native_input_size" not in native.data_config
    assert small.key != native.key  # its features and runs are cached apart; the native model's keys are unchanged
    x = small.transform()(Image.new("RGB", (64, 64), (90, 140, 60)))
    assert x.shape == (3, 96, 96) and small(x[None]).shape == (1, native.feature_dim)
    assert model_info("efficientnet-lite0@96")["input_size"] == 96
    with pytest.raises(InvalidInputError, match="between 16"):
        create_model("efficientnet-lite0@8")
    with pytest.raises(InvalidInputError, match="does not run at 96 px"):  # a ViT's position embedding fixes its size
        create_model("timm:vit_tiny_patch16_224@96", pretrained=False)


def test_availability_lists_a_resized_run_after_the_model_it_resizes(monkeypatch, tiny_world):
    """A dataset's runs at another input size (what the setup build makes of the Lite family) get their own rows,
    so the Setup page's table and model picker show them with their results."""
    import core.find.runs as runs_mod
    from core.models import availability

    runs = {
        "efficientnet-lite0@96": {"accuracy": {"test": 0.15, "debug": 0.16}, "n_failures": 7},
        "efficientnet-lite0": {"accuracy": {"test": 0.14, "debug": 0.15}, "n_failures": 8},
    }
    monkeypatch.setattr(runs_mod, "latest_runs", lambda dataset: runs)
    table = availability.availability_table(dataset=tiny_world)
    names = table["model"].tolist()
    at = names.index("efficientnet-lite0")
    assert names[at + 1] == "efficientnet-lite0@96" and names.count("efficientnet-lite0@96") == 1
    row = table.set_index("model").loc["efficientnet-lite0@96"]
    assert row["run cached"] and row["test acc"] == 0.15 and row["family"] == "EfficientNet-Lite"
    assert availability._with_resized(["a", "b"], {"c@64": {}, "b@32": {}, "a": {}}) == ["a", "b", "b@32", "c@64"]
