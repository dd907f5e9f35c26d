"""Attribute proposals per class: the Proposal record, the proposer registry, and the cached, resumable ``propose``.

Each (class, attribute, proposer settings, prompt version) answer is cached on its own, so a run that stops
midway (error, cancel, crash) resumes with the classes not yet answered.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from core import store
from core.describe.proposals.attributes import Attribute, get_attribute
from core.describe.proposals.text import safe_name, sanitize_class_name
from core.errors import BackdropError, InvalidInputError
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.registry import Registry

SCHEMA = 1


class ProposalError(BackdropError):
    """A proposer could not produce values for a class. ``class_name`` names it and ``partial`` holds the
    proposals finished (and cached) before it, when raised from :func:`propose`."""

    class_name: str | None = None
    partial: dict | None = None


@dataclass
class Proposal:
    class_name: str
    attribute: str
    values: list[str]  # proposed values, sanitised, in the proposer's order
    source: str  # "llm:<model>" or "offline:<embedder>"
    raw: str  # the proposer's answer as received (LLM text, or offline scores as JSON)
    prompt: str  # what was asked
    timestamp: str  # ISO-8601 UTC time of the answer
    prompt_version: str
    rejected: list[str] = field(default_factory=list)  # items dropped by validation
    notice: str | None = None  # shown to users, e.g. that no LLM was used

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Proposal:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Proposer(ABC):
    """Answers one class at a time; ``cache_id`` holds every setting that changes the answer."""

    source: str = ""
    notice: str | None = None
    waiting: Callable[[float], None] | None = None  # set by propose(): called with the seconds waited so far

    def begin_run(self) -> None:
        """Called by :func:`propose` before the first class (e.g. to start a run-wide deadline)."""
        return None

    @abstractmethod
    def cache_id(self) -> dict[str, Any]:
        """JSON-able settings that determine the answer (never secrets)."""

    @abstractmethod
    def propose_one(self, attribute: Attribute, class_name: str) -> Proposal:
        """Values for one class; raises a :class:`ProposalError` subclass saying what went wrong."""


PROPOSERS: Registry[Proposer] = Registry(
    "proposer", plugins=("core.describe.proposals.llm", "core.describe.proposals.offline")
)


def choose_proposer(api_key: str | None = None) -> str:
    """'llm' when an API key is given or in ``OPENAI_API_KEY``, else 'offline' (whose proposals carry a notice)."""
    return "llm" if (api_key or os.environ.get("OPENAI_API_KEY")) else "offline"


def _cache_file(attribute: Attribute, class_name: str, proposer: Proposer) -> Any:
    key = store.make_key(
        "proposal",
        SCHEMA,
        attribute.name,
        attribute.question,
        attribute.prompt_version,
        class_name,
        proposer.cache_id(),
    )
    return store.path("proposals", safe_name(attribute.name), f"{safe_name(class_name)}-{key}.json")


def _load_cached(path, attribute: Attribute, class_name: str) -> Proposal | None:
    d = store.load_json(path)
    if not isinstance(d, dict) or d.get("class_name") != class_name or d.get("attribute") != attribute.name:
        return None
    if not isinstance(d.get("values"), list) or not all(isinstance(v, str) for v in d["values"]):
        return None
    try:
        return Proposal.from_dict(d)
    except TypeError:
        return None


def _clean_class_names(class_names: Iterable[str]) -> list[str]:
    out = []
    for c in class_names:
        if not isinstance(c, str) or not sanitize_class_name(c):
            raise InvalidInputError(f"Class name {c!r} is empty; every class needs a name to ask about.")
        if c not in out:
            out.append(c)
    return out


def propose(
    attribute: Attribute | str,
    class_names: Iterable[str],
    proposer: str | Proposer | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    refresh: bool = False,
    **kw: Any,
) -> dict[str, Proposal]:
    """Proposals per class name, from the cache where answered before.

    ``proposer`` is a registered name ("llm", "offline"), a :class:`Proposer`, or None to pick with
    :func:`choose_proposer` (``api_key`` in ``kw`` counts). ``kw`` goes to the proposer's constructor.
    ``refresh=True`` asks again even when cached. On a per-class failure the raised :class:`ProposalError`
    carries ``partial`` (classes already done, all cached) and ``class_name``.
    """
    attr = get_attribute(attribute)
    names = _clean_class_names(class_names)
    if proposer is None:
        proposer = choose_proposer(kw.get("api_key"))
    if isinstance(proposer, str):
        if proposer != "llm":
            kw.pop("api_key", None)
        proposer = PROPOSERS.create(proposer, **kw)
    elif kw:
        raise InvalidInputError(
            f"Options {sorted(kw)} go to a proposer's constructor; pass them when building "
            f"{proposer!r}, or pass the proposer by name."
        )
    progress = progress or no_progress
    out: dict[str, Proposal] = {}
    n = len(names)
    proposer.begin_run()
    for i, class_name in enumerate(names):
        check_stop(should_stop)
        path = _cache_file(attr, class_name, proposer)
        cached = None if refresh else _load_cached(path, attr, class_name)
        if cached is not None:
            out[class_name] = cached
        else:
            asking = f"Proposing {attr.name}s: asking about {class_name!r}"
            progress(i, n, asking)
            proposer.waiting = lambda s, asking=asking, i=i: progress(i, n, f"{asking} (waiting {s:.0f} s)")
            try:
                prop = proposer.propose_one(attr, class_name)
            except ProposalError as e:
                e.class_name, e.partial = class_name, dict(out)
                e.args = (
                    f"{e.args[0] if e.args else e} (class {class_name!r}; {len(out)} of {n} classes are done "
                    "and cached — running again resumes with the rest.)",
                )
                raise
            store.save_json(path, prop.to_dict())
            out[class_name] = prop
        progress(i + 1, n, f"Proposing {attr.name}s")
    return out
