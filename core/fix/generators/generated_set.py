"""Generated image sets on disk: resumable generation, manifest, deletions the user makes, CSV export.

A set lives in ``cache/generated/<set_name>/``: ``set.json`` (generator, model, settings, seed — fixed for the
set's life), ``images/<image_id>.png`` written the moment each image exists, ``manifest.csv`` (one row per
image slot, rewritten atomically after every batch) and ``trash/`` for deleted images. Each slot's seed comes
from (set seed, class, value, index), so a stopped run resumes by skipping slots that already have a row or a
finished file, and a deleted slot is never made again.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import Timeout
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core import executors, store, validate
from core.datasets.base import ImageDataset
from core.errors import BackdropError, InvalidInputError
from core.fix.generators.base import Generator, GenSpec
from core.progress import ProgressFn, StopFn, check_stop, no_progress

SET_SCHEMA = 1
POOL = "generated"
COLUMNS = [
    "image_id",
    "file",
    "class_name",
    "label",
    "attribute",
    "value",
    "prompt",
    "backend",
    "model_id",
    "seed",
    "index",
    "created_at",
    "deleted",
    "dropped_reason",
    "info",
]
_OPTIONAL_TEXT = ["file", "attribute", "value", "dropped_reason", "info"]
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class GenerationError(BackdropError):
    """Generation stopped on an error; every image made before it is kept and a rerun resumes."""


def sets_root() -> Path:
    return store.cache_root() / "generated"


def list_sets() -> list[str]:
    root = sets_root()
    return sorted(p.name for p in root.iterdir() if (p / "set.json").is_file()) if root.is_dir() else []


def set_dir(set_name: str) -> Path:
    if not isinstance(set_name, str) or not _SET_NAME.match(set_name):
        raise InvalidInputError(
            f"Set name {set_name!r} is not usable: use letters, digits, '.', '_' or '-' "
            "(up to 100 characters, starting with a letter or digit)."
        )
    return sets_root() / set_name


def image_seed(set_seed: int, class_name: str, value: str | None, index: int) -> int:
    """The seed of one image slot: fixed by the set seed, the mode and the slot's index within it."""
    return int(store.make_key("generated-image", int(set_seed), class_name, value, int(index), n=8), 16) & 0x7FFFFFFF


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:32] or "x"


def slot_id(spec: GenSpec, index: int, seed: int) -> str:
    """File-safe, unique per (class, value, index); the hash keeps classes whose slugs collide apart."""
    h = store.make_key(spec.class_name, spec.value, n=6)
    return f"{spec.label:04d}_{_slug(spec.class_name)}_{_slug(spec.value or 'any')}_{h}_{index:03d}_s{seed}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- manifest -----------------------------------------------------------------------------------------


def _empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})


def read_manifest(root: Path) -> pd.DataFrame:
    p = root / "manifest.csv"
    if not p.is_file():
        return _empty_manifest()
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InvalidInputError(
            f"Manifest {p} is unreadable ({e}). Restore it from an export, or remove the set folder to start over."
        ) from None
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise InvalidInputError(f"Manifest {p} lacks columns {sorted(missing)}; it was not written by this version.")
    df["label"] = df["label"].astype(int)
    df["seed"] = df["seed"].astype(int)
    df["index"] = df["index"].astype(int)
    df["deleted"] = df["deleted"].map({"True": True, "False": False, "true": True, "false": False}).fillna(False)
    df["deleted"] = df["deleted"].astype(bool)
    for c in _OPTIONAL_TEXT:
        df[c] = pd.Series([x if x != "" else None for x in df[c]], index=df.index, dtype="object")
    return df[COLUMNS]


def _write_manifest(root: Path, df: pd.DataFrame) -> None:
    with store.atomic_path(root / "manifest.csv") as tmp:
        df[COLUMNS].to_csv(tmp, index=False)


def _append_rows(root: Path, rows: list[dict]) -> None:
    """Read-modify-write under the set's lock, so deletions made meanwhile by another process survive."""
    if not rows:
        return
    with store.lock(root / "manifest.csv"):
        df = read_manifest(root)
        new = pd.DataFrame(rows, columns=COLUMNS)
        new = new[~new["image_id"].isin(df["image_id"])]
        _write_manifest(root, pd.concat([df, new], ignore_index=True) if len(df) else new)


# ---- set metadata -------------------------------------------------------------------------------------


def _identity(generator: Generator, seed: int) -> dict[str, Any]:
    return {
        "generator": generator.name,
        "backend": generator.backend,
        "model_id": generator.model_id,
        "config": json.loads(store.stable_json(generator.config())),
        "seed": int(seed),
    }


def _check_identity(root: Path, set_name: str, want: dict[str, Any]) -> dict | None:
    meta = store.load_json(root / "set.json")
    if meta is None:
        return None
    have = {k: meta.get(k) for k in want}
    if have == want:
        return meta
    if not read_manifest(root).shape[0] and not any((root / "images").glob("*.png")):
        return None  # nothing was ever made under the old settings: the set may take the new ones
    diff = ", ".join(f"{k}: {have[k]!r} (asked {want[k]!r})" for k in want if have[k] != want[k])
    raise InvalidInputError(
        f"Set {set_name!r} was made with different settings — {diff}. A set never mixes "
        "generators or settings: choose a new set name, or delete the folder "
        f"{root} to start this one over."
    )


# ---- generation ---------------------------------------------------------------------------------------


def _png_bytes(img: Image.Image, spec: GenSpec, seed: int, model_id: str, info: dict | None = None) -> bytes:
    """The PNG with its provenance; the generator's ``info`` rides along so a killed run's image is adopted whole."""
    chunks = PngInfo()
    for k, v in (("prompt", spec.prompt), ("seed", str(seed)), ("model_id", model_id)):
        chunks.add_text(k, v)
    if info:
        chunks.add_text("info", store.stable_json(info))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", pnginfo=chunks)
    return buf.getvalue()


def _png_info(path: Path) -> dict | None:
    """The generator's info saved in a PNG by :func:`_png_bytes` (None when it has none or cannot be read)."""
    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get("info")
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def _row(
    spec: GenSpec,
    index: int,
    seed: int,
    generator: Generator,
    file: str | None,
    created_at: str,
    dropped: str | None,
    info: dict | None,
) -> dict:
    return {
        "image_id": slot_id(spec, index, seed),
        "file": file,
        "class_name": spec.class_name,
        "label": spec.label,
        "attribute": spec.attribute,
        "value": spec.value,
        "prompt": spec.prompt,
        "backend": generator.backend,
        "model_id": generator.model_id,
        "seed": seed,
        "index": index,
        "created_at": created_at,
        "deleted": False,
        "dropped_reason": dropped,
        "info": store.stable_json(info) if info else None,
    }


def _check_requests(requests: Sequence[GenSpec], existing: pd.DataFrame) -> None:
    if not requests:
        raise InvalidInputError("Nothing to generate: the request list is empty (no failure modes selected?).")
    seen: set = set()
    for r in requests:
        if not isinstance(r, GenSpec):
            raise InvalidInputError(f"Generation requests must be GenSpec objects; got {type(r).__name__}.")
        if r.mode in seen:
            raise InvalidInputError(f"Mode {r.class_name!r} · {r.value!r} is requested twice; merge the two requests.")
        seen.add(r.mode)
    if len(existing):
        prompts = {(c, v): p for c, v, p in existing[["class_name", "value", "prompt"]].itertuples(index=False)}
        for r in requests:
            old = prompts.get(r.mode)
            if old is not None and old != r.prompt:
                raise InvalidInputError(
                    f"Set already holds {r.class_name!r} · {r.value!r} made from prompt {old!r}; "
                    f"this run asks {r.prompt!r}. Use a new set name for another prompt template."
                )


def generate_set(
    generator: Generator,
    requests: Sequence[GenSpec],
    set_name: str,
    seed: int = 0,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> GeneratedSet:
    """Make every requested image that the set does not hold yet, writing each as soon as it exists.

    Resumes a stopped or failed run; slots the user deleted stay deleted. Raises Cancelled when
    ``should_stop()`` turns true (finished images kept), GenerationError on a generator or disk failure
    (finished images kept), InvalidInputError when the set was made with another generator or settings.
    """
    progress = progress or no_progress
    requests = list(requests)
    root = set_dir(set_name)
    batch_size = batch_size if batch_size is not None else generator.max_batch_size
    batch_size = validate.whole("Batch size", batch_size, 1, validate.MAX_BATCH)
    root.mkdir(parents=True, exist_ok=True)
    try:
        run_lock = store.lock(root / "generating", timeout=0).acquire()
    except Timeout:
        raise InvalidInputError(
            f"Set {set_name!r} is being generated by another job; wait for it or stop it."
        ) from None
    with run_lock:
        store.remove_orphan_temps(root)  # left by a generation that was killed mid-write (we hold its lock)
        want = _identity(generator, seed)
        meta = _check_identity(root, set_name, want)
        existing = read_manifest(root)
        _check_requests(requests, existing)
        generator.validate(requests)

        slots = [
            (spec, i, image_seed(seed, spec.class_name, spec.value, i))
            for spec in requests
            for i in range(spec.n_images)
        ]
        have = set(existing["image_id"])
        adopted, pending = [], []
        for spec, i, s in slots:
            sid = slot_id(spec, i, s)
            if sid in have:
                continue
            f = root / "images" / f"{sid}.png"
            if f.is_file():  # written before a hard stop that kept the manifest from being updated
                created = datetime.fromtimestamp(f.stat().st_mtime, UTC).isoformat(timespec="seconds")
                adopted.append(_row(spec, i, s, generator, f"images/{sid}.png", created, None, _png_info(f)))
            else:
                pending.append((spec, i, s))
        total, done = len(slots), len(slots) - len(pending)
        ex = executors.current()
        if pending:
            if ex.name != "ray":  # ray: each actor loads the weights (prepare) itself
                generator.prepare()
            generator.begin(pending, existing)
        if meta is None:
            store.save_json(root / "set.json", {**want, "schema": SET_SCHEMA, "created_at": _now()})
        _append_rows(root, adopted)
        progress(done, total, f"Generating {set_name}")

        if ex.name == "ray":
            made = executors.ray_backend().generated_batches(generator, pending, batch_size, ex, should_stop)
        else:
            made = _local_batches(generator, pending, batch_size, should_stop, set_name, total - len(pending), total)
        rows: list[dict] = []
        try:
            for batch, images, infos in made:
                for (spec, i, s), img, info in zip(batch, images, infos):
                    info = dict(info or {})
                    dropped = info.pop("dropped_reason", None)
                    file = None
                    if img is None:
                        dropped = dropped or "dropped by the generator"
                    else:
                        file = f"images/{slot_id(spec, i, s)}.png"
                        try:
                            store.atomic_write_bytes(root / file, _png_bytes(img, spec, s, generator.model_id, info))
                        except OSError as e:
                            raise GenerationError(
                                f"Could not write {root / file}: {e.strerror or e}. Free disk space or make {root} "
                                f"writable; the {done} images already written are kept and a rerun resumes."
                            ) from e
                    rows.append(_row(spec, i, s, generator, file, _now(), dropped, info))
                    done += 1
                try:
                    _append_rows(root, rows)
                except OSError as e:
                    raise GenerationError(
                        f"Could not update {root / 'manifest.csv'}: {e.strerror or e}. Free disk space or make {root} "
                        "writable; the images already written are kept and a rerun adopts them."
                    ) from e
                rows = []
                progress(done, total, f"Generating {set_name}")
        finally:
            with contextlib.suppress(OSError):  # the images are on disk; the next run adopts them from their names
                _append_rows(root, rows)
    return GeneratedSet(set_name)


def _local_batches(
    generator: Generator,
    pending: list,
    batch_size: int,
    should_stop: StopFn | None,
    set_name: str,
    done: int,
    total: int,
):
    """(slots, images, infos) per batch of ``pending``, made in this process."""
    for start in range(0, len(pending), batch_size):
        check_stop(should_stop)
        batch = pending[start : start + batch_size]
        specs = [b[0] for b in batch]
        try:
            images = generator.generate_batch([sp.prompt for sp in specs], [b[2] for b in batch], specs, should_stop)
        except BackdropError:
            raise
        except Exception as e:
            hint = " Lower the batch size." if "out of memory" in str(e).lower() else ""
            raise GenerationError(
                f"The {generator.name} generator failed on {specs[0].class_name!r} · {specs[0].value!r} after "
                f"{done + start} of {total} images of set {set_name!r}: {type(e).__name__}: {e}.{hint} The finished "
                "images are kept; run again to resume."
            ) from e
        if len(images) != len(batch):
            raise GenerationError(
                f"The {generator.name} generator returned {len(images)} images for "
                f"{len(batch)} prompts; finished images are kept."
            )
        yield batch, images, list(generator.last_info) + [{}] * (len(batch) - len(generator.last_info))


# ---- reading, deleting, exporting ---------------------------------------------------------------------


class GeneratedSet(ImageDataset):
    """A finished or partial generated set; also an ImageDataset (pool "generated") for feature extraction."""

    def __init__(self, set_name: str):
        self.set_name = set_name
        self.root = set_dir(set_name)
        self.meta = store.load_json(self.root / "set.json")
        if not isinstance(self.meta, dict):
            known = ", ".join(list_sets()) or "none yet"
            raise InvalidInputError(f"No generated set named {set_name!r} (known: {known}); generate it first.")
        self.name = f"generated/{set_name}"

    # ImageDataset
    @property
    def classes(self) -> list[str]:  # type: ignore[override]  # read-only here: it follows the manifest
        df = self.manifest()
        names = dict(zip(df["label"], df["class_name"]))
        return [names.get(i, "") for i in range(max(names, default=-1) + 1)]

    def pools(self) -> list[str]:
        return [POOL]

    def index(self, pool: str = POOL) -> pd.DataFrame:
        """Kept images (not deleted, not dropped): image_id, label, class_name, attribute, value, seed, path."""
        if pool != POOL:
            raise InvalidInputError(f"A generated set has one pool, {POOL!r}; got {pool!r}.")
        df = self.manifest()
        df = df[~df["deleted"] & df["file"].notna()].reset_index(drop=True)
        out = df[["image_id", "label", "class_name", "attribute", "value", "seed"]].copy()
        out["path"] = [str(self.root / f) for f in df["file"]]
        return out

    def load(self, image_id: str) -> Image.Image:
        with Image.open(self.path(image_id)) as im:
            return im.convert("RGB")

    @property
    def key(self) -> str:
        ids = list(self.index()["image_id"])
        return store.make_key(
            "generated", self.set_name, {k: self.meta.get(k) for k in ("generator", "model_id", "config", "seed")}, ids
        )

    # manifest views
    def manifest(self) -> pd.DataFrame:
        """Every slot, including deleted and dropped ones (re-read only when the file changes on disk)."""
        return self._read().copy()

    def _by_id(self) -> pd.DataFrame:
        """The manifest indexed by image id, built once per read of the file (``path`` is called per image)."""
        df = self._read()
        if getattr(self, "_by_id_of", None) is not df:
            self._by_id_frame, self._by_id_of = df.set_index("image_id", drop=False), df
        return self._by_id_frame

    def _read(self) -> pd.DataFrame:
        """The cached manifest itself (callers must not modify it)."""
        p = self.root / "manifest.csv"
        try:
            st = p.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp is None or getattr(self, "_manifest_stamp", None) != stamp:
            self._manifest, self._manifest_stamp = read_manifest(self.root), stamp
        return self._manifest

    def path(self, image_id: str) -> Path:
        row = self._rows([image_id]).iloc[0]
        if row["file"] is None:
            raise InvalidInputError(f"Image {image_id!r} was dropped ({row['dropped_reason']}); it has no file.")
        live = self.root / row["file"]
        return self.root / "trash" / live.name if row["deleted"] else live

    def groups(self) -> dict[tuple[str, str | None], list[str]]:
        """Kept image ids per (class_name, value), in generation order."""
        out: dict[tuple[str, str | None], list[str]] = {}
        for c, v, i in self.index()[["class_name", "value", "image_id"]].itertuples(index=False):
            out.setdefault((c, v), []).append(i)
        return out

    def counts(self) -> pd.DataFrame:
        """Per (class_name, value): kept, deleted and dropped slots."""
        df = self.manifest()
        df = df.assign(
            value=df["value"].fillna(""), kept=~df["deleted"] & df["file"].notna(), dropped=df["dropped_reason"].notna()
        )
        g = df.groupby(["class_name", "value"], sort=False)
        out = g.agg(
            label=("label", "first"), kept=("kept", "sum"), deleted=("deleted", "sum"), dropped=("dropped", "sum")
        ).reset_index()
        out["value"] = pd.Series([v or None for v in out["value"]], dtype="object")
        return out

    def _rows(self, image_ids: Iterable[str]) -> pd.DataFrame:
        ids = list(image_ids)
        df = self._by_id()
        unknown = [i for i in ids if i not in df.index]
        if unknown:
            raise InvalidInputError(
                f"Set {self.set_name!r} has no images {unknown[:5]}"
                + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
                + "."
            )
        return df.loc[ids]

    # user edits
    def delete(self, image_ids: Iterable[str]) -> int:
        """Mark images deleted and move their files to trash/; a later resume never remakes them."""
        return self._set_deleted(list(image_ids), True)

    def restore(self, image_ids: Iterable[str]) -> int:
        """Undo :meth:`delete`: move the files back from trash/ and unmark them."""
        return self._set_deleted(list(image_ids), False)

    def _set_deleted(self, ids: list[str], deleted: bool) -> int:
        with store.lock(self.root / "manifest.csv"):
            df = read_manifest(self.root)
            self._rows(ids)  # unknown ids raise before anything moves
            changed = 0
            for i in dict.fromkeys(ids):
                at = df.index[df["image_id"] == i][0]
                if bool(df.at[at, "deleted"]) == deleted:
                    continue
                if df.at[at, "file"] is not None:
                    live = self.root / df.at[at, "file"]
                    trashed = self.root / "trash" / live.name
                    src, dst = (live, trashed) if deleted else (trashed, live)
                    if not src.is_file():
                        raise InvalidInputError(
                            f"Cannot {'delete' if deleted else 'restore'} {i!r}: its file {src} is missing."
                        )
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(src), str(dst))
                df.at[at, "deleted"] = deleted
                changed += 1
                # Written per image so that the manifest always matches where the files are.
                _write_manifest(self.root, df)
        return changed

    def annotate(self, info: dict[str, dict]) -> None:
        """Merge ``info[image_id]`` into each image's ``info`` record (a filter's scores and verdict, say)."""
        with store.lock(self.root / "manifest.csv"):
            df = read_manifest(self.root)
            self._rows(info)
            at = {i: k for k, i in enumerate(df["image_id"])}
            for i, extra in info.items():
                old = df.at[at[i], "info"]
                df.at[at[i], "info"] = store.stable_json({**(json.loads(old) if old else {}), **extra})
            _write_manifest(self.root, df)
