"""The world CLIP: a small open_clip CLIP trained on the offline world's images and ground-truth captions.

It stands in for a web-trained CLIP where none can be downloaded. Model, loss and tokenizer are open_clip's own
(``open_clip.CLIP`` from small ``CLIPVisionCfg``/``CLIPTextCfg``, ``ClipLoss``, the built-in BPE tokenizer). It
learns only from the ``backbone_train`` and ``train`` pools, never from val (where debug and test sets come
from). The result is saved in open_clip's local-dir layout (``open_clip_config.json`` + safetensors) plus a
``meta.json``, keyed by the world's key and the training config, and loads through :func:`core.describe.clip.load_local_dir`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from core import store
from core.describe.clip import LOCAL_CONFIG, SAFE_WEIGHTS, ClipModel, load_local_dir
from core.describe.clip_loaders import CLIP_LOADERS
from core.errors import InvalidInputError, MissingResourceError
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.threads import single_thread

WORLD_CLIP_SCHEMA = 1
TRAIN_POOLS = ("backbone_train", "train")  # never val: debug/test sets are drawn from it

# Varied so the text tower generalises beyond one phrasing; they cover the assignment templates' shapes
# ("a photo of a {class} in {value}", "a photo of a {colour} {class}") the way web captions would.
CAPTION_TEMPLATES = (
    "a photo of a {digit} on {background}",
    "a photo of a {digit} in {background}",
    "a {digit} on {background}",
    "a {colour} {digit}",
    "a photo of a {colour} {digit}",
    "a {colour} {digit} on {background}",
    "a photo of a {colour} {digit} in {background}",
    "a photo of {background}",
)


@dataclass(frozen=True)
class WorldClipConfig:
    embed_dim: int = 64  # joint embedding size
    image_size: int = 32  # world images (64 px) are downsized: backgrounds and colours survive, 4x cheaper
    patch_size: int = 8  # 4x4 patches
    vision_width: int = 64
    vision_layers: int = 2
    vision_head_width: int = 32  # -> 2 heads
    text_width: int = 64
    text_heads: int = 2
    text_layers: int = 1
    context_length: int = 20  # the captions above tokenise to < 20 tokens
    epochs: int = 8  # passes over the training pools ...
    max_steps: int = 2000  # ... capped so a large world still trains in CPU minutes
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    balance: float = 0.5  # sample weight ∝ (count of the image's (class, value) pair)^-balance; see _weights
    seed: int = 0

    def model_cfg(self) -> dict:
        """open_clip model config (the ``model_cfg`` of open_clip_config.json)."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "width": self.vision_width,
                "layers": self.vision_layers,
                "head_width": self.vision_head_width,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }

    def preprocess_cfg(self) -> dict:
        from open_clip.transform import PreprocessCfg

        cfg = asdict(PreprocessCfg(size=self.image_size))
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def world_clip_key(dataset, config: WorldClipConfig) -> str:
    return store.make_key("world-clip", WORLD_CLIP_SCHEMA, dataset.key, asdict(config), TRAIN_POOLS, CAPTION_TEMPLATES)


def world_clip_dir(dataset, config: WorldClipConfig | None = None) -> Path:
    return store.cache_root() / "clip" / "world" / world_clip_key(dataset, config or WorldClipConfig())


def _trained_meta(folder: Path, key: str) -> dict | None:
    meta = store.load_json(folder / "meta.json")
    if not meta or meta.get("key") != key or not (folder / SAFE_WEIGHTS).is_file():
        return None
    return meta


@CLIP_LOADERS.register("world")
def load_world_clip(dataset, config: WorldClipConfig | None = None, device: str | None = None) -> ClipModel:
    """The trained world CLIP for ``dataset``; MissingResourceError (saying how to train it) when absent."""
    if dataset is None:
        raise InvalidInputError('load_clip("world") needs the offline world: load_clip("world", dataset=world).')
    config = config or WorldClipConfig()
    folder = world_clip_dir(dataset, config)
    if _trained_meta(folder, world_clip_key(dataset, config)) is None:
        raise MissingResourceError(
            f"The world CLIP for dataset {getattr(dataset, 'name', '?')} is not trained yet. Train it once "
            f"(CPU minutes; cached afterwards): `python -m core world clip --size {getattr(dataset, 'size', 'default')}` or "
            f"core.world.clip.train_world_clip(dataset) — or use a real CLIP "
            f"(load_clip('ViT-B-32', weights=<local weights file>))."
        )
    try:
        return load_local_dir(folder, device=device, source="world", name="world")
    except InvalidInputError as e:  # a damaged cache entry: say how to rebuild it
        raise MissingResourceError(
            f"The cached world CLIP in {folder} is damaged ({e}). Delete that folder and run "
            f"core.world.clip.train_world_clip(dataset) again."
        ) from e


def world_captions(dataset, df) -> list[list[str]]:
    """Every caption template filled from each row's ground truth, using the world's own names."""
    names = [dataset.classes[int(i)] for i in df["label"]]
    return [
        [t.format(digit=n, background=b, colour=c) for t in CAPTION_TEMPLATES]
        for n, b, c in zip(names, df["background"], df["colour"])
    ]


def _training_rows(dataset):
    import pandas as pd

    missing = [p for p in TRAIN_POOLS if p not in dataset.pools()]
    if missing:
        raise InvalidInputError(
            f"Dataset {dataset.name} has no pool(s) {missing}; the world CLIP trains on "
            f"{list(TRAIN_POOLS)} of the offline world (scenes-mnist)."
        )
    df = pd.concat([dataset.index(p) for p in TRAIN_POOLS], ignore_index=True)
    for col in ("background", "colour"):
        if col not in df.columns:
            raise InvalidInputError(
                f"Dataset {dataset.name} has no ground-truth column {col!r}; the world CLIP "
                f"needs the offline world's captions."
            )
    return df


def train_world_clip(
    dataset,
    config: WorldClipConfig | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    device: str | None = None,
    force: bool = False,
) -> ClipModel:
    """Train (or reuse the cached) world CLIP for ``dataset`` and return it loaded."""
    import open_clip
    from safetensors.torch import save_file

    config = config or WorldClipConfig()
    progress = progress or no_progress
    key = world_clip_key(dataset, config)
    folder = world_clip_dir(dataset, config)
    with store.lock(folder / "train"):
        if force or _trained_meta(folder, key) is None:
            t0 = time.time()
            df = _training_rows(dataset)
            torch.manual_seed(config.seed)
            model = open_clip.CLIP(
                config.embed_dim,
                open_clip.CLIPVisionCfg(**config.model_cfg()["vision_cfg"]),
                open_clip.CLIPTextCfg(**config.model_cfg()["text_cfg"]),
            )
            images = _image_tensor(dataset, df, config, progress, should_stop)
            tokens = _caption_tokens(dataset, df, config)
            with single_thread():  # a small model: thread hand-offs cost more than they give
                log = _fit(
                    model, images, tokens, _weights(df, config.balance), config, progress, should_stop, device or "cpu"
                )
            store.save_json(
                folder / LOCAL_CONFIG, {"model_cfg": config.model_cfg(), "preprocess_cfg": config.preprocess_cfg()}
            )
            with store.atomic_path(folder / SAFE_WEIGHTS) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
            store.save_json(
                folder / "meta.json",
                {  # written last: its presence marks a finished model
                    "key": key,
                    "schema": WORLD_CLIP_SCHEMA,
                    "dataset": dataset.name,
                    "dataset_key": dataset.key,
                    "config": asdict(config),
                    "pools": list(TRAIN_POOLS),
                    "n_images": len(df),
                    "templates": list(CAPTION_TEMPLATES),
                    "seconds": round(time.time() - t0, 1),
                    **log,
                },
            )
    return load_local_dir(folder, device=device, source="world", name="world")


def _image_tensor(dataset, df, config: WorldClipConfig, progress, should_stop) -> torch.Tensor:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    pre = image_transform_v2(PreprocessCfg(**config.preprocess_cfg()), is_train=False)
    out = torch.empty((len(df), 3, config.image_size, config.image_size))
    for i, image_id in enumerate(df["image_id"]):
        if i % 256 == 0:
            check_stop(should_stop)
            progress(i, len(df), "world CLIP: loading images")
        out[i] = pre(dataset.load(image_id).convert("RGB"))
    return out


def _caption_tokens(dataset, df, config: WorldClipConfig) -> torch.Tensor:
    """(N, templates, context) token ids; unique captions are tokenised once."""
    from open_clip.tokenizer import SimpleTokenizer

    captions = world_captions(dataset, df)
    unique = sorted({c for row in captions for c in row})
    tok = SimpleTokenizer(context_length=config.context_length)(unique)
    where = {c: i for i, c in enumerate(unique)}
    idx = torch.tensor([[where[c] for c in row] for row in captions])
    return tok[idx]


def _weights(df, balance: float) -> torch.Tensor:
    """Sampling weights that even out (class, background) and (class, colour) pairs.

    The training pools are biased on purpose (95% of a class on its common value), so a CLIP fit to them
    learns "background" as a proxy for digit and colour. Up-weighting the rare pairs shows it the
    decoupled combinations a web-trained CLIP has seen plenty of; balance=0 is plain uniform sampling.
    """
    w = np.zeros(len(df))
    for col in ("background", "colour"):
        count = df.groupby(["label", col])["image_id"].transform("size").to_numpy(float)
        w += count**-balance
    return torch.as_tensor(w / w.sum())


def _fit(model, images, tokens, weights, config: WorldClipConfig, progress, should_stop, device) -> dict:
    import open_clip

    n = len(images)
    bs = min(config.batch_size, n)
    steps = max(1, min(config.max_steps, math.ceil(config.epochs * n / bs)))
    decay = [p for name, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in name]
    rest = [p for name, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in name)]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    try:  # the fused kernel is ~10x faster on the 49k-token embedding; same maths
        opt = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / config.warmup_steps) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    loss_fn = open_clip.ClipLoss()
    gen = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    losses = []
    for step in range(steps):
        check_stop(should_stop)
        idx = torch.multinomial(weights, bs, replacement=False, generator=gen)
        which = torch.randint(0, tokens.shape[1], (len(idx),), generator=gen)
        img_f, txt_f, scale = model(images[idx].to(device), tokens[idx, which].to(device))
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():  # CLIP's clamp: the temperature may not exceed 100
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            progress(step + 1, steps, "world CLIP: training")
    model.eval()
    tail = losses[-max(1, steps // 10) :]
    return {"steps": steps, "first_loss": round(losses[0], 4), "final_loss": round(float(np.mean(tail)), 4)}
