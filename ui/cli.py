"""The command line that does the same as a button in the app (shown beside it, for headless runs)."""

from __future__ import annotations

import shlex

from core.datasets import is_offline_world
from core.workspace import DEFAULT_WORLD


def dataset_flags(spec: dict) -> list[str]:
    """Flags naming ``spec``; the CLI fills in the offline world's defaults the same way the app does."""
    world = is_offline_world(spec)
    flags = [] if world else ["--dataset", str(spec["name"])]
    for k in ("size", "seed", "root"):
        if k in spec and not (world and DEFAULT_WORLD.get(k) == spec[k]):
            flags += [f"--{k}", str(spec[k])]
    return flags


def cli(command: str, spec: dict | None = None, *args: str) -> str:
    """``python -m core COMMAND [dataset flags] ARGS`` with every part shell-quoted."""
    parts = ["python", "-m", "core", command, *(dataset_flags(spec) if spec is not None else []), *args]
    return " ".join(shlex.quote(str(p)) for p in parts)
