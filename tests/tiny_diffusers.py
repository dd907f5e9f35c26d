"""A tiny random Stable Diffusion pipeline saved in diffusers' on-disk format, for generator tests.

After diffusers' own ``get_dummy_components``: a two-block UNet, a two-block VAE (32x32 images, 16x16
latents), a two-layer CLIP text encoder and a byte-level CLIP tokenizer whose vocab.json/merges.txt are
written here, since hub tokenizers cannot be downloaded offline.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_SIZE = 32
TINY_STEPS = 2


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's printable stand-in character for each of the 256 bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_clip_tokenizer_files(folder: Path) -> Path:
    """vocab.json, merges.txt and tokenizer_config.json of a byte-level CLIP BPE: every byte, every byte ending a word, a few merges."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars + [c + "</w>" for c in chars]:
        vocab[c] = len(vocab)
    merges = [("p", "h"), ("o", "t"), ("a", "t")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder


def build_tiny_pipeline(folder: Path, safety_checker: bool = False, seed: int = 0) -> Path:
    """Save a tiny random StableDiffusionPipeline to ``folder`` (optionally with a safety checker that flags
    every image, as the real one does with NSFW content) and return the folder."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    tok = CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer_files(folder.parent / f"{folder.name}-tok")))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=TINY_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=2,
        sample_size=TINY_SIZE,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tok),
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    checker = processor = None
    if safety_checker:
        checker = StableDiffusionSafetyChecker(
            CLIPConfig(
                text_config={
                    "hidden_size": 32,
                    "intermediate_size": 37,
                    "num_attention_heads": 4,
                    "num_hidden_layers": 1,
                    "vocab_size": 99,
                    "bos_token_id": 0,
                    "eos_token_id": 1,
                    "pad_token_id": 1,
                },
                vision_config={
                    "hidden_size": 32,
                    "intermediate_size": 37,
                    "num_attention_heads": 4,
                    "num_hidden_layers": 1,
                    "image_size": TINY_SIZE,
                    "patch_size": 8,
                },
                projection_dim=32,
            )
        )
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-2.0)  # cosine - threshold > 0 for every image: all flagged
        processor = CLIPImageProcessor(
            size={"shortest_edge": TINY_SIZE}, crop_size={"height": TINY_SIZE, "width": TINY_SIZE}
        )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        scheduler=scheduler,
        safety_checker=checker,
        feature_extractor=processor,
        requires_safety_checker=safety_checker,
    )
    pipe.save_pretrained(str(folder))
    return folder
