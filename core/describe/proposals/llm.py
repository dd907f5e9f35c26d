"""LLM proposer: asks an OpenAI or OpenAI-compatible chat endpoint the attribute question per class (paper 4.1-4.2).

The answer is requested as JSON but parsed defensively (bare list, object with a list field, list inside
prose or a ```json fence, markdown bullet list). The API key never reaches caches, reprs, logs or error
messages: every text that leaves this module (values, rejected items, notices, the raw answer, errors) is
redacted of the key and of anything that looks like a key or bearer token, a value that held one is rejected
with that reason, and errors are raised outside the library's exception context.

Each request runs against an overall deadline (``LLMConfig.deadline``, retries included) and each
:func:`~core.describe.proposals.propose` run against ``LLMConfig.run_deadline``: a server that drips bytes
cannot hold a request open, because the socket timeout only bounds the gap between two reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from core import store
from core.describe.proposals.attributes import Attribute
from core.describe.proposals.proposal import PROPOSERS, Proposal, ProposalError, Proposer, now_iso
from core.describe.proposals.text import (
    MAX_VALUE_CHARS,
    case_key,
    holds_secret,
    redact,
    sanitize_class_name,
    sanitize_value,
    strip_list_markers,
    truncate,
)
from core.errors import InvalidInputError, MissingResourceError

PROMPT_VERSION = "llm-1"  # bump when SYSTEM or INSTRUCTION change
SYSTEM = "You name visual settings for image datasets. Reply with JSON only, no prose."
INSTRUCTION = (
    '{question}\nAnswer with a JSON object of the form {{"values": ["...", "..."]}} listing {n} distinct, '
    "short names (1 to 4 words, at most {max_chars} characters each) and no explanations."
)


@dataclass(frozen=True)
class LLMConfig:
    model: str = "gpt-4o-mini"  # chat model (the paper used ChatGPT, gpt-3.5-turbo)
    base_url: str | None = None  # OpenAI-compatible server, e.g. "http://localhost:8000/v1"; None = OpenAI
    timeout: float = 60.0  # seconds without a byte from the server before a read fails (socket timeout)
    deadline: float = 120.0  # seconds one class's request may take in all, retries included
    run_deadline: float | None = 900.0  # seconds one propose() run may take over all its classes; None = no limit
    max_retries: int = 3  # retries on HTTP 429/5xx/timeouts, exponential backoff (openai client)
    temperature: float | None = 0.0  # None = server default (some models only accept their default)
    max_tokens: int | None = 600  # cap on the answer; an answer cut off at the cap is an error
    n_values: int = 15  # how many values to ask for
    max_items: int = 25  # an answer with more values than this is rejected as over-long
    max_chars: int = MAX_VALUE_CHARS  # longer items are dropped (listed in Proposal.rejected and its notice)
    json_mode: bool = True  # request response_format=json_object; dropped if the server rejects it


class LLMError(ProposalError):
    """The LLM step failed; the message names the cause and what to do."""


class LLMKeyMissingError(LLMError, MissingResourceError):
    """No API key was given."""


class LLMAuthError(LLMError, MissingResourceError):
    """The endpoint rejected the key."""


class LLMConnectionError(LLMError, MissingResourceError):
    """The endpoint could not be reached."""


class LLMTimeoutError(LLMError):
    """No answer within the timeout, after retries."""


class LLMRateLimitError(LLMError):
    """HTTP 429 after all retries."""


class LLMRefusalError(LLMError):
    """The model declined or answered without a list."""


class LLMOutputError(LLMError):
    """The answer was malformed, empty or over-long."""


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+(.+?)\s*$")
_DESCRIPTION = re.compile(r"\s*(?::|\s[-–—]\s).*$")
_REFUSAL = re.compile(
    r"\b(?:I\s*(?:can['’]?t|cannot|am unable|['’]m unable|won['’]?t|am not able)|I['’]?m sorry|"
    r"I am sorry|as an AI)\b",
    re.I,
)
_LIST_KEYS = (
    "values",
    "backgrounds",
    "colours",
    "colors",
    "items",
    "names",
    "answer",
    "answers",
    "list",
    "results",
    "result",
    "data",
)
_ITEM_KEYS = ("name", "value", "background", "colour", "color", "label", "title")
_MAX_JSON_STARTS = 200


def _list_in(obj: Any, depth: int = 0) -> list | None:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict) and depth < 2:
        keyed = [obj[k] for k in _LIST_KEYS if k in obj] + [v for k, v in obj.items() if k not in _LIST_KEYS]
        for v in keyed:
            found = _list_in(v, depth + 1)
            if found is not None:
                return found
    return None


def _json_list(text: str) -> list | None:
    """The first JSON value in ``text`` that is, or holds, a list."""
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(text) if ch in "[{"][:_MAX_JSON_STARTS]
    for i in starts:
        try:
            obj, _ = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            continue
        found = _list_in(obj)
        if found is not None:
            return found
    return None


def _bullet_list(text: str) -> list[str] | None:
    items = []
    for line in text.splitlines():
        m = _BULLET.match(line)
        if m:
            item = m.group(1).replace("**", "").replace("__", "").strip()
            items.append(_DESCRIPTION.sub("", item).strip(" \"'`"))
    return items if len(items) >= 2 else None


def extract_items(text: str) -> list | None:
    """Raw list items from an answer, or None when it holds no list."""
    for block in _FENCE.findall(text) + [text]:
        found = _json_list(block)
        if found is not None:
            return found
    return _bullet_list(text)


def _item_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for k in _ITEM_KEYS:
            if isinstance(item.get(k), str):
                return item[k]
    return None


def _shown(text: str, secret: str | None, max_chars: int) -> str:
    """Text as it may appear in a message or record: single-line, redacted, then cut to ``max_chars``."""
    return truncate(redact(sanitize_value(text, None), secret), max_chars)


def validate_items(
    items: list, max_items: int, max_chars: int, secret: str | None = None
) -> tuple[list[str], list[str]]:
    """(values, rejected): sanitised short strings without case duplicates, and what was dropped with why.

    A value holding ``secret`` (or anything that looks like an API key or bearer token) is rejected, and only
    its redacted form is kept, so no credential reaches a list, a cache or a message."""
    values, rejected, seen = [], [], set()
    for item in items:
        text = _item_text(item)
        if text is None:
            rejected.append(f"{_shown(json.dumps(item, default=str), secret, 80)} (not a text item)")
            continue
        value = sanitize_value(strip_list_markers(text), None).strip(" \"'`")
        if not value:
            continue
        if holds_secret(value, secret):
            rejected.append(f"{_shown(value, secret, 80)} (held the API key or a key-like token)")
            continue
        if len(value) > max_chars:
            rejected.append(f"{_shown(value, secret, 80)}… ({len(value)} characters; the limit is {max_chars})")
            continue
        if case_key(value) not in seen:
            seen.add(case_key(value))
            values.append(value)
    if len(values) > max_items:
        raise LLMOutputError(
            f"The LLM answered with {len(values)} values; at most {max_items} are accepted. Ask for fewer "
            "(LLMConfig.n_values) or raise LLMConfig.max_items."
        )
    if not values:
        raise LLMOutputError(
            f"The LLM's list held no usable values (each must be a short name of at most {max_chars} characters "
            f"and hold no key; dropped: {rejected[:3]}). Run again, try another model, or edit the list by hand."
        )
    return values, rejected


def parse_answer(
    text: str, max_items: int = 25, max_chars: int = MAX_VALUE_CHARS, secret: str | None = None
) -> tuple[list[str], list[str]]:
    """(values, rejected) from an answer's text, or a refusal/output error naming the problem."""
    items = extract_items(text or "")
    if items is None:
        shown = _shown(text or "", secret, 160)
        if not shown or _REFUSAL.search(text or ""):
            raise LLMRefusalError(
                f"The LLM declined or gave no list (answer: {shown!r}). Rephrase the attribute question, try "
                "another model, or write the list by hand."
            )
        raise LLMOutputError(
            f"Could not find a list in the LLM's answer ({shown!r}). Run again or try a model that follows "
            "JSON instructions."
        )
    return validate_items(items, max_items, max_chars, secret)


def rejected_notice(rejected: list[str]) -> str | None:
    """The message users see when items of an answer were dropped (None when none were)."""
    if not rejected:
        return None
    shown = "; ".join(rejected[:3]) + (f"; and {len(rejected) - 3} more" if len(rejected) > 3 else "")
    return f"{len(rejected)} item(s) of the LLM's answer were dropped: {shown}."


def resolved_base_url(base_url: str | None) -> str | None:
    """The server a client built with ``base_url`` talks to: ``base_url``, else $OPENAI_BASE_URL, else OpenAI."""
    return base_url or os.environ.get("OPENAI_BASE_URL") or None


def _endpoint(base_url: str | None) -> str:
    """The server as shown to users: scheme, host and path only (no credentials or query)."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else "the configured base_url"


@PROPOSERS.register("llm", offline=False)
class LLMProposer(Proposer):
    """Asks ``config.model`` at ``config.base_url``; the key comes from ``api_key`` or $OPENAI_API_KEY."""

    def __init__(self, config: LLMConfig | None = None, api_key: str | None = None, **overrides: Any):
        self.config = replace(config or LLMConfig(), **overrides)
        check_llm_config(self.config)
        self._key = api_key or os.environ.get("OPENAI_API_KEY") or None
        self._json_mode = self.config.json_mode
        self._client_obj: Any = None  # openai.OpenAI, made on first use
        self._base_url = resolved_base_url(self.config.base_url)
        self._run_end: float | None = None
        self.source = f"llm:{self.config.model}"

    def __repr__(self) -> str:
        return (
            f"LLMProposer(model={self.config.model!r}, endpoint={_endpoint(self._base_url)!r}, "
            f"key={'set' if self._key else 'missing'})"
        )

    __str__ = __repr__

    def cache_id(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        for k in ("timeout", "deadline", "run_deadline", "max_retries", "json_mode", "base_url"):
            cfg.pop(k)
        # The endpoint actually used (base_url or $OPENAI_BASE_URL), hashed so a URL carrying credentials never
        # lands in a file; answers from one server or model are never reused for another.
        return {"kind": "llm", "prompt": PROMPT_VERSION, "endpoint": store.make_key(self._base_url), **cfg}

    def begin_run(self) -> None:
        self._run_end = None if self.config.run_deadline is None else time.monotonic() + self.config.run_deadline

    def messages(self, attribute: Attribute, class_name: str) -> list[dict[str, str]]:
        question = attribute.ask(sanitize_class_name(class_name))
        user = INSTRUCTION.format(question=question, n=self.config.n_values, max_chars=self.config.max_chars)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def propose_one(self, attribute: Attribute, class_name: str) -> Proposal:
        try:
            prop = self._propose_one(attribute, class_name)
        except LLMError as e:  # every message is built from redacted text; this is the last line of defence
            e.args = tuple(redact(a, self._key) if isinstance(a, str) else a for a in e.args)
            raise
        return self._scrub(prop)

    def _scrub(self, prop: Proposal) -> Proposal:
        """The proposal with every text field redacted (values that held a key were rejected already)."""
        key = self._key

        def red(text: str) -> str:
            return redact(text, key)

        return replace(
            prop,
            values=[red(v) for v in prop.values],
            rejected=[red(v) for v in prop.rejected],
            raw=red(prop.raw),
            prompt=red(prop.prompt),
            notice=None if prop.notice is None else red(prop.notice),
        )

    def _propose_one(self, attribute: Attribute, class_name: str) -> Proposal:
        if not self._key:
            raise LLMKeyMissingError(
                "No API key for the LLM proposer: set OPENAI_API_KEY in the environment that starts the app or the "
                "CLI, or pass api_key= (any placeholder works for a local server that needs none). Or use the offline "
                "proposer."
            )
        messages = self.messages(attribute, class_name)
        response = self._complete(messages)
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise LLMOutputError("The LLM's response held no answer (no choices). Run again or try another model.")
        choice = choices[0]
        message = choice.message
        text = (message.content or "") if message is not None else ""
        if getattr(message, "refusal", None) or choice.finish_reason == "content_filter":
            reason = redact(sanitize_value(getattr(message, "refusal", None) or "content filter", 160), self._key)
            raise LLMRefusalError(
                f"The LLM refused to answer ({reason!r}). Rephrase the attribute question or write the list by hand."
            )
        if choice.finish_reason == "length":
            raise LLMOutputError(
                f"The LLM's answer was cut off at max_tokens={self.config.max_tokens} (over-long output). Ask for "
                "fewer values (LLMConfig.n_values) or raise LLMConfig.max_tokens."
            )
        values, rejected = parse_answer(text, self.config.max_items, self.config.max_chars, self._key)
        return Proposal(
            class_name=class_name,
            attribute=attribute.name,
            values=values,
            source=self.source,
            raw=redact(text, self._key),
            prompt=messages[-1]["content"],
            timestamp=now_iso(),
            prompt_version=f"{attribute.prompt_version}/{PROMPT_VERSION}",
            rejected=rejected,
            notice=rejected_notice(rejected),
        )

    def _client(self):
        if self._client_obj is None:
            from openai import OpenAI

            self._client_obj = OpenAI(
                api_key=self._key,
                base_url=self._base_url,
                timeout=self.config.timeout,
                max_retries=self.config.max_retries,
            )
        return self._client_obj

    def _complete(self, messages: list[dict[str, str]]):
        import openai

        kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if self.config.temperature is not None:
            kwargs["temperature"] = self.config.temperature
        if self.config.max_tokens:
            kwargs["max_tokens"] = self.config.max_tokens
        error: LLMError | None = None
        for attempt in range(2):
            if self._json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            else:
                kwargs.pop("response_format", None)
            try:
                return self._create(kwargs)
            except openai.BadRequestError as e:
                if self._json_mode and attempt == 0 and "response_format" in str(e).lower():
                    self._json_mode = False  # the server has no JSON mode; the parser copes with prose
                    continue
                error = self._translate(e)
            except LLMError:
                raise
            except Exception as e:  # OpenAIError, and what the library lets through (a non-JSON body, say)
                error = self._translate(e)
            break
        # Raised here, outside the except blocks, so no library exception (holding request headers) is chained.
        raise error if error is not None else LLMError(f"The LLM at {_endpoint(self.config.base_url)} gave no answer.")

    def _create(self, kwargs: dict[str, Any]):
        """One chat completion (the client's retries included) within the request and run deadlines.

        The call runs in a daemon thread; when the deadline passes first the client is dropped (its
        connections closed) and a timeout error is raised, so no server can hold the caller."""
        limit = self.config.deadline
        if self._run_end is not None:
            left = self._run_end - time.monotonic()
            if left <= 0:
                raise self._run_timeout()
            limit = min(limit, left)
        client = self._client()
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["response"] = client.chat.completions.create(**kwargs)
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=call, name="llm-request", daemon=True).start()
        start = time.monotonic()
        while not done.wait(min(1.0, max(0.0, start + limit - time.monotonic()))):
            waited = time.monotonic() - start
            if waited >= limit:
                self._client_obj = None
                threading.Thread(target=_close_quietly, args=(client,), daemon=True).start()
                if self._run_end is not None and time.monotonic() >= self._run_end:
                    raise self._run_timeout()
                raise LLMTimeoutError(
                    f"The LLM at {_endpoint(self._base_url)} did not finish answering within {limit:g} s "
                    f"(LLMConfig.deadline, retries included). Raise the deadline, check the server, or use the "
                    "offline proposer."
                )
            if self.waiting is not None:
                self.waiting(waited)
        if "error" in box:
            raise box["error"]
        return box["response"]

    def _run_timeout(self) -> LLMTimeoutError:
        return LLMTimeoutError(
            f"Proposing with the LLM at {_endpoint(self._base_url)} took longer than {self.config.run_deadline:g} s "
            "in all (LLMConfig.run_deadline). Finished classes are kept; run again to continue, or raise the limit."
        )

    def _translate(self, e: Exception) -> LLMError:
        import openai

        where = _endpoint(self._base_url)
        detail = truncate(redact(sanitize_value(getattr(e, "message", None) or str(e), None), self._key), 300)
        if isinstance(e, openai.APITimeoutError):
            return LLMTimeoutError(
                f"The LLM at {where} gave no answer within {self.config.timeout:g} s (tried "
                f"{self.config.max_retries + 1} times). Raise LLMConfig.timeout, check the server, or use the "
                "offline proposer."
            )
        if isinstance(e, openai.APIConnectionError):
            return LLMConnectionError(
                f"Could not reach the LLM at {where} ({detail}). Check LLMConfig.base_url and the network, or use "
                "the offline proposer."
            )
        if isinstance(e, openai.RateLimitError):
            return LLMRateLimitError(
                f"The LLM at {where} kept answering HTTP 429 (rate limit or quota) after {self.config.max_retries} "
                f"retries with backoff ({detail}). Wait and run again (finished classes are kept), raise "
                "LLMConfig.max_retries, or check the account's quota."
            )
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return LLMAuthError(
                f"The LLM at {where} rejected the API key (HTTP {e.status_code}: {detail}). Check OPENAI_API_KEY "
                "or the api_key you passed."
            )
        if isinstance(e, openai.NotFoundError):
            return LLMError(
                f"Model {self.config.model!r} was not found at {where} (HTTP 404: {detail}). Set LLMConfig.model to "
                "a model that server serves."
            )
        if isinstance(e, openai.APIStatusError):
            return LLMError(
                f"The LLM at {where} answered HTTP {e.status_code} ({detail}). Check the model and "
                "base_url, or run again later."
            )
        return LLMOutputError(
            f"The LLM at {where} sent a response that could not be read ({detail}). Run again or try another model."
        )


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):  # closing a client mid-request may fail; it is dropped either way
        client.close()


def check_llm_config(cfg: LLMConfig) -> None:
    """Raise :class:`InvalidInputError` for settings no request could work with."""
    from core import validate

    validate.number("LLM timeout", cfg.timeout, 0.1, validate.MAX_LLM_SECONDS)
    validate.number("LLM deadline", cfg.deadline, 0.1, validate.MAX_LLM_SECONDS)
    if cfg.run_deadline is not None:
        validate.number("LLM run deadline", cfg.run_deadline, 0.1, validate.MAX_LLM_RUN_SECONDS)
    validate.whole("LLM max_retries", cfg.max_retries, 0, 20)
    validate.whole("LLM max_items", cfg.max_items, 1, validate.MAX_VALUES_PER_CLASS)
    validate.whole("LLM n_values", cfg.n_values, 1, validate.MAX_VALUES_PER_CLASS)
    validate.whole("LLM max_chars", cfg.max_chars, 1, 1000)
    if cfg.max_tokens is not None:
        validate.whole("LLM max_tokens", cfg.max_tokens, 1, 1_000_000)
    if not isinstance(cfg.model, str) or not cfg.model.strip():
        raise InvalidInputError(f"LLMConfig.model must name a model; got {cfg.model!r}.")
