"""The command line that does the same as a button in the app (shown beside it, for headless runs)."""

from __future__ import annotations

import shlex


def dataset_flags(spec: dict) -> list[str]:
    flags = [] if spec.get("name") == "scenes-mnist" else ["--dataset", str(spec["name"])]
    for k in ("size", "seed", "root"):
        if k in spec and not (k == "size" and spec[k] == "default") and not (k == "seed" and spec[k] == 0):
            flags += [f"--{k}", str(spec[k])]
    return flags


def cli(command: str, spec: dict | None = None, *args: str) -> str:
    """``python -m core COMMAND [dataset flags] ARGS`` with every part shell-quoted."""
    parts = ["python", "-m", "core", command, *(dataset_flags(spec) if spec is not None else []), *args]
    return " ".join(shlex.quote(str(p)) for p in parts)
