"""Progress and cancellation callbacks shared by every long-running core function.

``progress(done, total, message)`` reports; ``should_stop()`` is polled between units of work and a True
answer raises :class:`core.errors.Cancelled` through :func:`check_stop`. The CLI passes tqdm-backed
callbacks, the app passes its job's progress file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import Cancelled

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]


def no_progress(done: int, total: int, message: str = "") -> None:
    return None


def check_stop(should_stop: StopFn | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("Stopped by request; finished work is kept and the step resumes where it stopped.")


class TqdmProgress:
    """A ``ProgressFn`` drawing one tqdm bar per distinct message."""

    def __init__(self, desc: str = ""):
        self.desc = desc
        self._bar: Any = None  # the current tqdm bar
        self._msg: str | None = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        from tqdm.auto import tqdm

        if self._bar is None or message != self._msg or total != self._bar.total:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total, desc=message or self.desc, leave=False)
            self._msg = message
        self._bar.n = done
        self._bar.refresh()
        if done >= total:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
