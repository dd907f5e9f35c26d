"""Checks for every size, count, seed and duration a user can give (CLI, app, API), with documented upper bounds.

The config dataclasses (:mod:`core.config`) and the step entry points call these, so a bad value is refused
with one clear :class:`~core.errors.InvalidInputError` before any work starts, whichever front end passed it.
Work whose size scales with a user's numbers is also estimated against the machine's memory
(:func:`check_memory`) and refused, with the estimate, when it could not fit.

Upper bounds (each far above what the paper or any sensible run uses, and low enough that a typo is refused
instead of silently filling memory or disk):
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

from core.errors import InvalidInputError

MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_K_MODES = 100  # failure modes per class (paper: 3)
MAX_IMAGES_PER_MODE = 10_000  # generated images per failure mode (paper: 5)
MAX_PER_CLASS = 100_000  # head-training images per class (paper: 30)
MAX_EPOCHS = 1_000_000  # full-batch head training steps (paper: 1000)
MAX_STEPS = 1_000  # diffusion steps per image (Stable Diffusion: 50; SD-Turbo: 1)
MAX_BATCH = 4_096  # images per batch
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 2_048  # pixels a side of a model's input (a model run at another size)
MAX_TOP = 100_000  # images returned by a search
MAX_REPEATS = 100  # seeds an experiment is rerun over
MAX_EXAMPLES_PER_MODE = 100  # failures and generated images shown per mode in a report
MAX_VALUES_PER_CLASS = 200  # values in one curated list (CLIP scores every failure against each)
MAX_IMAGE_PIXELS = 40_000_000  # pixels in one user image (e.g. 8000 x 5000); larger files are skipped
MAX_LLM_SECONDS = 3_600.0  # one LLM request, retries included
MAX_LLM_RUN_SECONDS = 86_400.0  # one proposal run over all classes
MEMORY_SHARE = 0.5  # work estimated above this share of the machine's memory is refused

__doc__ += "\n".join(
    f"    {name} = {value:,}"
    for name, value in sorted(globals().items())
    if name.startswith("MAX_") and isinstance(value, int | float)
)


def whole(name: str, value: Any, lo: int = 1, hi: int | None = None, hint: str = "") -> int:
    """``value`` as an int in [lo, hi]; floats are accepted only when they are whole (3.0, not 2.7)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a whole number; got {value!r}.{_hint(hint)}")
    if isinstance(value, numbers.Integral):
        n = int(value)
    else:
        x = float(value)
        if not math.isfinite(x) or not x.is_integer():
            raise InvalidInputError(f"{name} must be a whole number; got {value!r}.{_hint(hint)}")
        n = int(x)
    if n < lo or (hi is not None and n > hi):
        span = f"between {lo:,} and {hi:,}" if hi is not None else f"at least {lo:,}"
        raise InvalidInputError(f"{name} must be {span}; got {n:,}.{_hint(hint)}")
    return n


def number(name: str, value: Any, lo: float, hi: float, hint: str = "") -> float:
    """``value`` as a finite float in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a number; got {value!r}.{_hint(hint)}")
    x = float(value)
    if not lo <= x <= hi:
        raise InvalidInputError(f"{name} must be between {lo:g} and {hi:g}; got {x:g}.{_hint(hint)}")
    return x


def seed(name: str, value: Any) -> int:
    return whole(name, value, 0, MAX_SEED)


def wholes(name: str, values: Iterable[Any], lo: int = 1, hi: int | None = None) -> list[int]:
    """Every value checked by :func:`whole` (e.g. the k values of a sweep)."""
    return [whole(name, v, lo, hi) for v in values]


def _hint(hint: str) -> str:
    return f" {hint}" if hint else ""


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def check_memory(need_bytes: float, what: str, hint: str = "", limit: int | None = None) -> None:
    """Refuse work estimated to need more than ``MEMORY_SHARE`` of the machine's memory (or ``limit`` bytes)."""
    limit = limit if limit is not None else int(machine_memory() * MEMORY_SHARE)
    if limit and need_bytes > limit:
        raise InvalidInputError(
            f"{what} would need about {_gib(need_bytes)} of memory; this machine allows {_gib(limit)} "
            f"({MEMORY_SHARE:.0%} of its memory).{_hint(hint)}"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
