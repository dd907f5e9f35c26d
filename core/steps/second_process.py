"""A second process for the one-click build, so a machine's second core works too.

Every world model and the world CLIP train on one thread (small models: thread hand-offs cost more than they give,
core.threads), so on a two-core machine the build used one core for most of its time. With a second process the
build trains the world CLIP there, then the world backbones the main process has not reached yet (from the end of
the list), while the main process trains and runs the world models. Training takes each model's own file lock
(``store.lock``), so neither process trains what the other is training: the main process goes on to a free model
and waits only for the last ones. The trained weights are the same whichever process trains them (same seed, one
thread each). If the second process stops or fails, the main process trains what is left itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from core import store
from core.errors import Cancelled
from core.progress import ProgressFn

_MESSAGE = 160  # bytes of the second process's progress message shared with the main process


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class SecondProcess:
    """The second process of one build: :meth:`report` passes on its progress; :meth:`close` stops it and waits."""

    def __init__(self, spec: dict, models: list[str], clip_config: Any):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # not fork: torch's thread pools do not survive a fork
        self._stop = ctx.Event()
        self._done = ctx.Array("d", 2)  # done, total of its current part
        self._message: Any = ctx.Array("c", _MESSAGE)  # a char array: its ``value`` is the bytes
        self._proc = ctx.Process(
            target=_work,
            args=(spec, models, clip_config, self._stop, self._done, self._message, os.getpid()),
            name="backdrop-setup-second",
            daemon=True,
        )
        self._proc.start()

    def report(self, progress: ProgressFn, prefix: str) -> None:
        """Pass the second process's progress on to ``progress`` (as "<prefix>: <its message>")."""
        done, total = self._done[:]
        message = self._message.value.decode(errors="replace")
        progress(int(done), int(total), f"{prefix}: {message}" if message else prefix)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


def start(spec: dict, ds, models: list[str], clip_config: Any) -> SecondProcess | None:
    """A second process when this machine has two or more cores and there is something for it to train (the
    world CLIP or one of ``models`` not trained yet), else None."""
    from core.world.backbones import load_metadata
    from core.world.clip import is_trained

    if cores() < 2:
        return None
    todo = [m for m in models if load_metadata(m, ds) is None]
    if not todo and is_trained(ds, clip_config):
        return None
    return SecondProcess(spec, todo, clip_config)


def wait_while_held(path, progress: Callable[[], None], poll: float = 0.5) -> None:
    """Return once no other process holds the lock beside ``path``, calling ``progress`` every ``poll`` seconds."""
    while store.held(path):
        progress()
        time.sleep(poll)


def _work(spec, models, clip_config, stop, done, message, parent: int) -> None:
    """The second process: the world CLIP, then ``models``' backbones from the last, skipping any the main process
    has trained or is training. It stops when asked or when the main process is gone."""
    import torch

    torch.set_num_threads(1)  # the other core is the main process's

    from core.steps.base import open_ds
    from core.world.backbones import load_metadata, train_world_backbone, weights_path
    from core.world.clip import train_world_clip

    def should_stop() -> bool:
        return stop.is_set() or os.getppid() != parent

    def report(label: str) -> ProgressFn:
        def progress(d: int, n: int, msg: str = "") -> None:
            done[:] = [float(d), float(n)]
            message.value = f"{label} {msg}".encode()[: _MESSAGE - 1]

        return progress

    try:
        ds = open_ds(spec)
        train_world_clip(ds, clip_config, progress=report("world CLIP:"), should_stop=should_stop)
        for m in reversed(models):
            if should_stop():
                return
            if load_metadata(m, ds) is None and not store.held(weights_path(m, ds)):
                train_world_backbone(m, ds, progress=report(f"{m}:"), should_stop=should_stop)
    except Cancelled:
        return
