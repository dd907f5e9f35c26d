"""How well a CLIP reads the offline world, scored against its ground truth (digit, background, colour of each image).

:func:`clip_quality` measures, on the world's ``val`` pool (never seen by the world CLIP's training):

- **Text-search precision@k** (``search_precision``). For every (digit d, background b) pair of the world the
  query "a photo of a {d} on {b}" ranks all val images by cosine similarity; the query's precision is the fraction
  of its top k_q images whose digit is d AND whose background is b, with k_q = min(k, number of val images that
  are d on b) so that a perfect ranking scores 1 even where a pair has fewer than k images (the tiny world);
  ``search_precision`` is the mean over all pairs. Chance is about 1/(10 · number of backgrounds).
  ``search_background_precision`` is the same ranking scored on the background alone, and
  ``search_digit_precision`` on the digit alone: they say which half of a query a CLIP misses.
- **Zero-shot accuracy** of each attribute: an image's digit is the class whose "A photo of {class_name}" (the
  CLIP filter's class prompt) is most similar, its background the value whose "A photo of {value}" (the filter's
  value prompt) is; its colour the colour whose prompts "a {colour} {digit}", averaged over the digits (CLIP's
  prompt ensembling), are. Chance is 1/(number of values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.config import FilterConfig
from core.errors import InvalidInputError

SEARCH_TEMPLATE = "a photo of a {digit} on {background}"
SEARCH_K = 20


@dataclass(frozen=True)
class ClipQuality:
    search_precision: float  # digit AND background right among the top k_q (see the module docstring)
    search_digit_precision: float
    search_background_precision: float
    digit_accuracy: float  # zero-shot, among the world's classes
    background_accuracy: float  # zero-shot, among the world's backgrounds
    colour_accuracy: float  # zero-shot, among the world's colours
    k: int
    n_queries: int
    n_images: int
    pool: str

    def as_dict(self) -> dict:
        return asdict(self)


def _zero_shot(image_emb: np.ndarray, text_emb: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.argmax(image_emb @ text_emb.T, axis=1) == truth))


def _ensembled(clip, prompts: list[list[str]]) -> np.ndarray:
    """One normalised text embedding per row of ``prompts``: the mean of the row's prompt embeddings."""
    flat = clip.encode_texts([p for row in prompts for p in row]).reshape(len(prompts), len(prompts[0]), -1)
    mean = flat.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def clip_quality(clip, dataset, pool: str = "val", k: int = SEARCH_K) -> ClipQuality:
    """Text-search precision@``k`` and zero-shot digit/background/colour accuracy of ``clip`` on ``dataset``'s
    ``pool`` (an offline world with ground truth); see the module docstring for the exact definitions."""
    if k < 1:
        raise InvalidInputError(f"k must be a positive number of search results, got {k}.")
    df = dataset.index(pool)
    if not {"background", "colour"} <= set(df.columns):
        raise InvalidInputError(
            f"Dataset {getattr(dataset, 'name', '?')} has no ground-truth background/colour columns; CLIP quality "
            f"is measured on the offline world (scenes-mnist)."
        )
    classes, backgrounds, colours = list(dataset.classes), list(dataset.backgrounds), list(dataset.colours)
    pixels = dataset.pixels(pool) if hasattr(dataset, "pixels") else None
    if pixels is not None:
        from PIL import Image

        images = [Image.fromarray(np.asarray(p)) for p in pixels]
    else:
        images = [dataset.load(i) for i in df["image_id"]]
    emb = clip.encode_images(images)
    label = df["label"].to_numpy()
    bg = np.array([backgrounds.index(b) for b in df["background"]])
    col = np.array([colours.index(c) for c in df["colour"]])

    filt = FilterConfig()
    digit_acc = _zero_shot(emb, clip.encode_texts([filt.class_template.format(class_name=c) for c in classes]), label)
    bg_acc = _zero_shot(emb, clip.encode_texts([filt.value_template.format(value=b) for b in backgrounds]), bg)
    col_text = _ensembled(clip, [[f"a {c} {d}" for d in classes] for c in colours])
    col_acc = _zero_shot(emb, col_text, col)

    pairs = [(d, b) for d in range(len(classes)) for b in range(len(backgrounds))]
    queries = clip.encode_texts([SEARCH_TEMPLATE.format(digit=classes[d], background=backgrounds[b]) for d, b in pairs])
    order = np.argsort(-(queries @ emb.T), axis=1, kind="stable")
    both, digit_only, bg_only = [], [], []
    for (d, b), ranked in zip(pairs, order):
        n_rel = int(np.sum((label == d) & (bg == b)))
        if n_rel == 0:
            continue
        top = ranked[: min(k, n_rel)]
        both.append(np.mean((label[top] == d) & (bg[top] == b)))
        digit_only.append(np.mean(label[ranked[:k]] == d))
        bg_only.append(np.mean(bg[ranked[:k]] == b))
    return ClipQuality(
        search_precision=float(np.mean(both)),
        search_digit_precision=float(np.mean(digit_only)),
        search_background_precision=float(np.mean(bg_only)),
        digit_accuracy=digit_acc,
        background_accuracy=bg_acc,
        colour_accuracy=col_acc,
        k=k,
        n_queries=len(both),
        n_images=len(df),
        pool=pool,
    )
