"""Artifact store under cache/: content keys, atomic writes, validated loads and file locks.

Every artifact path is derived from a key that hashes everything that determines the artifact, so a change
of any input lands in a new place instead of silently reusing a stale result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

SCHEMA_VERSION = 1
# Temp files of atomic writes: ".<name>.<random>.tmp" or ".<stem>.<random>.tmp<suffix>" (libraries such as
# numpy need the real suffix). Anything matching is an unfinished write, never a finished artifact.
_TEMP_FILE = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]{1,12})?$")


def cache_root() -> Path:
    """``$BACKDROP_CACHE`` or ``./cache`` (created on first use)."""
    env = os.environ.get("BACKDROP_CACHE")  # read on every call (pages call this per image): no resolve() then
    root = Path(env) if env else Path(__file__).resolve().parent.parent / "cache"
    root.mkdir(parents=True, exist_ok=True)
    return root


def path(*parts: str) -> Path:
    p = cache_root().joinpath(*parts)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def stable_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def make_key(*parts: Any, n: int = 16) -> str:
    """Short hex digest of JSON-able parts (order of dict keys does not matter)."""
    return hashlib.sha256(stable_json(parts).encode()).hexdigest()[:n]


def file_hash(p: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def atomic_write_bytes(p: str | os.PathLike[str], data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    p = Path(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


@contextmanager
def atomic_path(p: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path to write with any library; it replaces ``p`` only if the block succeeds."""
    p = Path(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, p)
    finally:
        Path(tmp).unlink(missing_ok=True)


def is_temp_file(p: str | Path) -> bool:
    return bool(_TEMP_FILE.match(Path(p).name))


def remove_orphan_temps(folder: str | Path, min_age: float = 0.0) -> int:
    """Delete temp files left under ``folder`` by writes that were killed (SIGKILL, power loss) before their
    rename; returns how many. Call it while holding the lock of the step that writes there (or with a
    ``min_age`` in seconds longer than any write takes), so no write in progress loses its temp file."""
    folder, n = Path(folder), 0
    if not folder.is_dir():
        return 0
    now = time.time()
    for p in folder.rglob(".*.tmp*"):
        try:
            if is_temp_file(p) and p.is_file() and now - p.stat().st_mtime >= min_age:
                p.unlink()
                n += 1
        except FileNotFoundError:  # finished (renamed) or removed meanwhile
            continue
    return n


def save_json(p: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(p, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def load_json(p: str | Path, default: Any = None) -> Any:
    """Parsed JSON, or ``default`` when the file is missing or corrupt (corrupt files are recomputed)."""
    try:
        return json.loads(Path(p).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def save_npy(p: str | Path, arr: np.ndarray) -> Path:
    with atomic_path(p) as tmp:
        np.save(tmp, arr, allow_pickle=False)
    return Path(p)


def load_npy(p: str | Path, mmap: bool = True, shape: tuple | None = None) -> np.ndarray | None:
    """Memory-mapped array, or None when missing, truncated, or not of the expected shape."""
    try:
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (FileNotFoundError, ValueError, OSError, EOFError):
        return None
    if shape is not None and tuple(arr.shape) != tuple(shape):
        return None
    return arr


def lock(p: str | Path, timeout: float = -1) -> FileLock:
    """An inter-process lock beside ``p`` (``p.lock``), for shards written by several workers."""
    p = Path(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(p) + ".lock", timeout=timeout)


def held(p: str | Path) -> bool:
    """Whether another process holds :func:`lock` ``(p)`` right now (e.g. is computing what it guards)."""
    from filelock import Timeout

    try:
        with lock(p, timeout=0):
            return False
    except Timeout:
        return True
