"""Name -> constructor registries (datasets, models, generators, proposers, CLIP loaders, job kinds), after
timm's _registry.

One registration style everywhere: ``@REGISTRY.register(name, **meta)`` on the constructor, in the module that
defines it. A registry names its ``plugins`` (the modules that register into it) and imports them the first
time it is asked anything, so a registry module never imports its entries' modules and no import cycle forms.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from core.errors import UnknownNameError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    fn: Callable[..., T]
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A decorator records ``name -> constructor``; ``create(name)`` builds, or names the closest known names."""

    def __init__(self, kind: str, plugins: tuple[str, ...] = ()):
        self.kind = kind
        self.plugins = plugins  # modules whose import registers entries (loaded on first use)
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = not plugins

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.plugins:
                importlib.import_module(module)

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            self._add(name, fn, **meta)
            return fn

        return deco

    def _add(self, name: str, fn: Callable[..., T], **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, fn, meta)

    def entry(self, name: str) -> Entry[T]:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=5, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else ""
        return (
            f"Unknown {self.kind} {name!r}.{hint} "
            f"Known {self.kind}s: {', '.join(sorted(self._entries)[:40])}"
            + (" …" if len(self._entries) > 40 else "")
            + "."
        )

    def create(self, name: str, **kwargs: Any) -> T:
        return self.entry(name).fn(**kwargs)

    def names(self, **where: Any) -> list[str]:
        self._load()
        return [n for n, e in self._entries.items() if all(e.meta.get(k) == v for k, v in where.items())]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(self._entries)

    def __len__(self) -> int:
        self._load()
        return len(self._entries)
