"""Which executor the heavy steps use: ``local`` (this process, the default) or ``ray`` (Ray Data actor pools).

A step function takes ``executor=`` (an :class:`core.config.ExecutorConfig` or its name) and runs its body inside
:func:`use`; feature extraction (:mod:`core.find.features`, also CLIP image embeddings) and generation
(:mod:`core.fix.generators.generated_set`) ask :func:`current` which one to use. Both executors write the same
cache artifacts through the same writers, so keys, resuming and every reader are unchanged. Ray is imported only
when ``ray`` is chosen (:mod:`core.executors.ray_data`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from types import ModuleType

from core.config import ExecutorConfig
from core.errors import MissingResourceError

ExecutorLike = ExecutorConfig | str | None

_CURRENT: contextvars.ContextVar[ExecutorConfig | None] = contextvars.ContextVar("backdrop_executor", default=None)


def as_config(executor: ExecutorLike) -> ExecutorConfig:
    """An :class:`ExecutorConfig` from a config, a name ("local", "ray") or None (the enclosing step's executor,
    local at the top)."""
    if executor is None:
        return current()
    return executor if isinstance(executor, ExecutorConfig) else ExecutorConfig(name=str(executor))


def current() -> ExecutorConfig:
    """The executor of the step running in this thread (local unless a step chose ``ray``)."""
    return _CURRENT.get() or ExecutorConfig()


@contextlib.contextmanager
def use(executor: ExecutorLike) -> Iterator[ExecutorConfig]:
    """Run the block with ``executor``; ``ray`` is checked to be installed before any work starts."""
    cfg = as_config(executor)
    if cfg.name == "ray":
        ray_backend()
    token = _CURRENT.set(cfg)
    try:
        yield cfg
    finally:
        _CURRENT.reset(token)


def ray_backend() -> ModuleType:
    """:mod:`core.executors.ray_data`, or a clear error when Ray Data is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingResourceError(
            "The ray executor needs Ray Data, which is not installed: run `pip install -e .[ray]` "
            "(or `pip install 'ray[data]'`), or use the local executor."
        ) from None
    from core.executors import ray_data

    return ray_data
