"""An unlabelled image pool (a folder of images, any size) indexed by CLIP once, then searched by text.

:func:`index_pool` embeds every image with a CLIP and caches the embeddings under
``cache/pools/<key>/`` in shards of ``SHARD_SIZE`` images; the key covers every file's content and the CLIP's
key, so a changed pool or another CLIP gets its own index, and a stopped indexing run resumes from its last
finished shard. Each image also gets a *pixel hash* (of its decoded RGB pixels), which is how the pool is
kept apart from a model's debug and test images (:func:`protected_hashes`) whatever format they are stored in.
Search is an exact top-k over the normalised embeddings in torch (``benchmarks/retrieval.py`` measures it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core import store
from core.errors import InvalidInputError
from core.progress import ProgressFn, StopFn, check_stop, no_progress

POOL_SCHEMA = 1
SHARD_SIZE = 512
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def pixel_hash(img: Image.Image) -> str:
    """Content hash of an image's RGB pixels (independent of file format and metadata)."""
    rgb = img.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()[:24]


def pool_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden files skipped), in a fixed order."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InvalidInputError(f"Image pool folder {folder} does not exist; give a folder of images to retrieve from.")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise InvalidInputError(
            f"Image pool folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); put the images to "
            "retrieve from in it."
        )
    return files


def file_hashes(folder: Path, files: list[Path]) -> list[str]:
    """Content hash of each file, remembered per (path, size, modification time) so that a large pool is read
    in full only once, not every time it is opened."""
    memo_path = store.cache_root() / "pools" / "file-hashes" / f"{store.make_key(str(folder.resolve()))}.json"
    memo = store.load_json(memo_path, {})
    out, changed = [], False
    for p in files:
        st, rel = p.stat(), p.relative_to(folder).as_posix()
        stamp = [st.st_size, st.st_mtime_ns]
        hit = memo.get(rel)
        if not (isinstance(hit, list) and hit[:2] == stamp):
            hit, changed = [*stamp, store.file_hash(p)], True
            memo[rel] = hit
        out.append(hit[2])
    if changed:
        store.save_json(memo_path, memo)
    return out


def pool_key(folder: str | Path, clip_key: str) -> str:
    """Key of a pool's index: every file's relative path and content, and the CLIP that embeds them."""
    folder = Path(folder).expanduser().resolve()
    files = pool_files(folder)
    rel = [p.relative_to(folder).as_posix() for p in files]
    return store.make_key("pool", POOL_SCHEMA, clip_key, list(zip(rel, file_hashes(folder, files))))


@dataclass
class PoolIndex:
    """A pool's CLIP embeddings: row i is ``files[i]`` (relative to ``folder``); unreadable files have
    ``pixel_hashes[i] = None`` and are never returned."""

    folder: Path
    key: str
    files: list[str]
    pixel_hashes: list[str | None]
    embeddings: np.ndarray  # (N, D) float32, L2-normalised; zeros for unreadable files
    skipped: dict[str, str]  # relative path -> why it could not be read

    def __len__(self) -> int:
        return len(self.files)

    def usable(self) -> np.ndarray:
        return np.array([h is not None for h in self.pixel_hashes], bool)

    def search(self, text_embeddings: np.ndarray, k: int, allowed: np.ndarray | None = None):
        """Exact top-k by cosine similarity per query row: (scores, rows), each (Q, k'), k' = min(k, allowed)."""
        return top_k(self.embeddings, text_embeddings, k, self.usable() if allowed is None else allowed)

    def path(self, row: int) -> Path:
        return self.folder / self.files[row]


def top_k(embeddings: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Exact nearest neighbours by inner product (cosine for normalised rows) with torch; rows where
    ``allowed`` is False are never returned."""
    emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    q = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32))
    sims = q @ emb.T
    n_allowed = len(emb)
    if allowed is not None:
        mask = torch.from_numpy(np.asarray(allowed, bool))
        sims = torch.where(mask, sims, -torch.inf)
        n_allowed = int(mask.sum())
    k = max(0, min(int(k), n_allowed))
    scores, rows = torch.topk(sims, k, dim=1)
    return scores.numpy(), rows.numpy()


def _shard_paths(root: Path, i: int) -> tuple[Path, Path]:
    return root / f"emb_{i:05d}.npy", root / f"meta_{i:05d}.json"


def index_pool(
    folder: str | Path,
    clip,
    *,
    shard_size: int = SHARD_SIZE,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> PoolIndex:
    """CLIP embeddings of every image in ``folder``, computed once and cached (resumable per shard)."""
    progress = progress or no_progress
    folder = Path(folder).expanduser().resolve()
    files = pool_files(folder)
    rel = [p.relative_to(folder).as_posix() for p in files]
    key = pool_key(folder, clip.key)
    root = store.cache_root() / "pools" / key
    n_shards = (len(files) + shard_size - 1) // shard_size
    if not (root / "pool.json").is_file():
        store.save_json(root / "pool.json", {"folder": str(folder), "clip": clip.key, "files": len(files)})
    embs, hashes, skipped = [], [], {}
    with store.lock(root / "indexing"):
        for s in range(n_shards):
            lo, hi = s * shard_size, min(len(files), (s + 1) * shard_size)
            emb_p, meta_p = _shard_paths(root, s)
            meta = store.load_json(meta_p)
            emb = store.load_npy(emb_p, mmap=False)
            fresh = (
                isinstance(meta, dict)
                and meta.get("files") == rel[lo:hi]
                and emb is not None
                and emb.shape[0] == hi - lo
                and meta.get("shard_size") == shard_size
            )
            if not fresh:
                check_stop(should_stop)
                progress(lo, len(files), f"Indexing image pool {folder.name} with CLIP")
                emb, meta = _embed_shard(clip, files[lo:hi], rel[lo:hi], should_stop)
                meta["shard_size"] = shard_size
                store.save_npy(emb_p, emb)  # embeddings first: a shard counts only once its meta exists
                store.save_json(meta_p, meta)
            embs.append(np.asarray(emb, np.float32))
            hashes += meta["pixel_hashes"]
            skipped.update(meta["skipped"])
        store.save_json(root / "index.json", {"files": len(files), "shards": n_shards, "shard_size": shard_size})
    progress(len(files), len(files), f"Indexed image pool {folder.name}")
    dim = embs[0].shape[1] if embs else 0
    return PoolIndex(folder, key, rel, hashes, np.concatenate(embs) if embs else np.zeros((0, dim)), skipped)


def _embed_shard(clip, paths: list[Path], rel: list[str], should_stop: StopFn | None) -> tuple[np.ndarray, dict]:
    images: list[Image.Image | None] = []
    hashes: list[str | None] = []
    skipped: dict[str, str] = {}
    for p, r in zip(paths, rel):
        try:
            with Image.open(p) as raw:
                im = raw.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as e:
            skipped[r] = f"{type(e).__name__}: {e}"
            hashes.append(None)
            images.append(None)
            continue
        hashes.append(pixel_hash(im))
        images.append(im)
    good = [im for im in images if im is not None]
    check_stop(should_stop)
    emb = clip.encode_images(good) if good else np.zeros((0, 1), np.float32)
    out = np.zeros((len(images), emb.shape[1] if good else clip.embed_dim), np.float32)
    out[[i for i, im in enumerate(images) if im is not None]] = emb
    return out, {"files": rel, "pixel_hashes": hashes, "skipped": skipped}


def protected_hashes(dataset, split_cfg=None, progress: ProgressFn | None = None) -> set[str]:
    """Pixel hashes of the dataset's debug and test images (cached): retrieval never returns them."""
    from core.config import SplitConfig
    from core.find.runs import get_splits

    split_cfg = split_cfg or SplitConfig()
    p = store.cache_root() / "pools" / "protected" / f"{store.make_key(dataset.key, split_cfg.__dict__)}.json"
    cached = store.load_json(p)
    if isinstance(cached, list):
        return set(cached)
    splits = get_splits(dataset, split_cfg)
    ids = list(splits.debug["image_id"]) + list(splits.test["image_id"])
    progress = progress or no_progress
    out = []
    for i, image_id in enumerate(ids):
        out.append(pixel_hash(dataset.load(image_id)))
        if i % 500 == 0:
            progress(i, len(ids), "Hashing debug and test images")
    store.atomic_write_bytes(p, json.dumps(sorted(out)).encode())
    return set(out)
