"""Progress and cancellation callbacks shared by every long-running core function.

``progress(done, total, message)`` reports; ``should_stop()`` is polled between units of work and a True
answer raises :class:`core.errors.Cancelled` through :func:`check_stop`. The CLI passes tqdm-backed
callbacks, the app passes its job's progress file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.errors import Cancelled

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]


def no_progress(done: int, total: int, message: str = "") -> None:
    return None


def offset(
    progress: ProgressFn, before: int, total: int, size: int | None = None, *, prefix: str = "", unit: str = ""
) -> ProgressFn:
    """The progress of one part of a larger count, for ``progress`` that hears the whole: the part's
    ``(done, n)`` reports as ``before + done`` of ``total`` or, with ``size``, as ``before + size * done / n`` (the
    part fills ``size`` units of the total however many it counts, never more). Parts handed consecutive
    ``before`` values move one bar forward, never back. With ``prefix`` the message reads
    "<prefix>: <message> <done>/<n> <unit>" (which part, and how far inside it)."""

    def part(done: int, n: int, message: str = "") -> None:
        at = max(done, 0) if size is None else size * min(max(done, 0), n) // max(n, 1)
        if prefix:
            message = f"{prefix}: {message} {done:,}/{n:,}" + (f" {unit}" if unit else "")
        progress(before + at, total, message)

    return part


def check_stop(should_stop: StopFn | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("Stopped by request; finished work is kept and the step resumes where it stopped.")


def duration(seconds: float) -> str:
    """A short human duration: "45 s", "3 min 05 s", "1 h 02 min"."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Eta:
    """Elapsed time and an estimate of the time left, from a stream of ``(done, total)`` whose units cost about
    the same (images, or the setup's expected seconds). Work found already done at the first report (a resumed
    step's caches) does not count as speed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.start = clock()
        self._base: int | None = None

    def __call__(self, done: int, total: int) -> tuple[float, float | None]:
        """(seconds elapsed, seconds left or None while there is no rate to go by)."""
        elapsed = self.clock() - self.start
        if self._base is None or done < self._base:
            self._base = done
            return elapsed, None
        if done >= total > 0:
            return elapsed, 0.0
        if done <= self._base or elapsed <= 0:
            return elapsed, None
        return elapsed, elapsed * (total - done) / (done - self._base)

    def line(self, done: int, total: int) -> str:
        return time_line(*self(done, total))


def time_line(elapsed: float, left: float | None) -> str:
    """ "2 min 10 s elapsed, about 3 min 05 s left" (the job panel's and the CLI's wording)."""
    return f"{duration(elapsed)} elapsed" + ("" if left is None else f", about {duration(left)} left")


class Stages:
    """The stages of one long step, weighted by their expected cost (seconds): ``stage(name, label)`` is that
    stage's ``ProgressFn``. The overall ``done``/``total`` count expected milliseconds of work, so a bar (and
    :class:`Eta`) moves as fast as the work does rather than stage by stage; the message says which stage and
    what inside it (images, batches, models)."""

    def __init__(self, costs: dict[str, float], progress: ProgressFn | None = None):
        self.costs = {k: max(float(v), 1e-3) for k, v in costs.items()}
        self.progress = progress or no_progress
        self._names = list(self.costs)
        self._total = int(1000 * sum(self.costs.values()))
        self._started: list[str] = []

    def offset(self, name: str) -> float:
        return sum(self.costs[n] for n in self._names[: self._names.index(name)])

    def stage(self, name: str, label: str) -> ProgressFn:
        base, cost, i = self.offset(name), self.costs[name], self._names.index(name) + 1
        self._started.append(name)

        def within(done: int, total: int, message: str = "") -> None:
            frac = min(1.0, done / total) if total > 0 else 0.0
            self.progress(int(1000 * (base + cost * frac)), self._total, f"{i}/{len(self._names)} {label}: {message}")

        return within

    def replan(self, costs: dict[str, float]) -> Stages:
        """The same stages with new expected costs for those not started yet (e.g. once it is known which are
        cached); stages that reported already keep theirs, so the overall count never goes back."""
        started = set(self._started)
        out = Stages(
            {n: (self.costs[n] if n in started else costs.get(n, self.costs[n])) for n in self._names}, self.progress
        )
        out._started = list(self._started)
        return out

    def finish(self, message: str = "ready") -> None:
        self.progress(self._total, self._total, message)


class TqdmProgress:
    """A ``ProgressFn`` drawing one tqdm bar while ``total`` stays the same, the message as its description and
    the :class:`Eta` line after it (a new total starts a new bar)."""

    def __init__(self, desc: str = ""):
        self.desc = desc
        self._bar: Any = None  # the current tqdm bar
        self._eta = Eta()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        from tqdm.auto import tqdm

        if self._bar is None or total != self._bar.total or done < self._bar.n:
            if self._bar is not None:
                self._bar.close()
            elif done >= total:
                return  # a step found finished (cached): no bar to draw
            self._bar = tqdm(total=total, leave=False, bar_format="{percentage:3.0f}%|{bar}| {desc}")
            self._eta = Eta()
        self._bar.set_description_str(f"{message or self.desc} · {self._eta.line(done, total)}", refresh=False)
        self._bar.n = done
        self._bar.refresh()
        if done >= total:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
