"""Plain-text hygiene for attribute values and class names: sanitising, comparison keys, safe file names, redaction.

Values come from LLMs and from users; they are stored and shown as literal text and never interpreted, so
sanitising only removes what cannot be meant literally (control characters, list bullets, runs of spaces)
and caps the length.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from core.errors import InvalidInputError

MAX_VALUE_CHARS = 60  # longest value accepted from a proposer
MAX_CURATED_CHARS = 100  # longest value stored in a curated list (longer user text is cut)
MAX_CLASS_CHARS = 300  # longest class name used in prompts and keys

# "-", "*", "+", "•", "1.", "1)", "(1)" followed by a space start a list item; "3.5 inch" or "**x**" do not.
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•·▪‣◦]|\(?\d{1,3}[.)])(?=\s|$)\s*")
_WS = re.compile(r"\s+")
# Unicode categories that are never visible text: controls, format chars (incl. bidi overrides), surrogates.
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
_TRAILING_PUNCT = ".,;:!?"
_LEADING_WORDS = ("in", "on", "at", "inside", "a", "an", "the")


def strip_controls(text: str) -> str:
    """NFC-normalise and turn control/format characters into spaces (so 'a\\nb' stays two words)."""
    text = unicodedata.normalize("NFC", str(text))
    return "".join(" " if unicodedata.category(ch) in _DROP_CATEGORIES else ch for ch in text)


def collapse_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def strip_list_markers(text: str) -> str:
    """Remove leading bullets/numbering, repeatedly, so the result is stable under a second pass."""
    prev = None
    while prev != text:
        prev, text = text, _LIST_MARKER.sub("", text, count=1).strip()
    return text


def truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    # Prefer a word boundary when one is reasonably close to the cap.
    space = cut.rfind(" ")
    if space >= max_chars * 0.6:
        cut = cut[:space]
    return cut.rstrip()


def sanitize_value(text: str, max_chars: int | None = MAX_CURATED_CHARS) -> str:
    """Literal, single-line, length-capped text; idempotent (sanitising twice changes nothing)."""
    text = collapse_ws(strip_list_markers(collapse_ws(strip_controls(text))))
    if max_chars is not None:
        text = truncate(text, max_chars)
    return text


def clean_value(value: object, max_chars: int = MAX_CURATED_CHARS) -> str:
    """One value as stored in a list: literal, single-line, length-capped text; an error for non-text or
    text that sanitises to nothing."""
    if not isinstance(value, str):
        raise InvalidInputError(f"List values must be text; got {value!r}.")
    clean = sanitize_value(value, max_chars)
    if not clean:
        raise InvalidInputError(
            f"The value {value!r} is empty or only whitespace/markup; type a name such as 'desert'."
        )
    return clean


def unique_values(values: Iterable[object], max_chars: int = MAX_CURATED_CHARS, skip_empty: bool = False) -> list[str]:
    """The one normaliser for value lists: each value through :func:`clean_value`, duplicates that differ only
    in case or spacing collapsed (first kept), order kept. ``skip_empty`` takes any value as text and drops
    those that sanitise to nothing instead of raising."""
    out, seen = [], set()
    for v in values or ():
        if skip_empty:
            clean = sanitize_value(str(v), max_chars)
            if not clean:
                continue
        else:
            clean = clean_value(v, max_chars)
        if case_key(clean) not in seen:
            seen.add(case_key(clean))
            out.append(clean)
    return out


def sanitize_class_name(text: str) -> str:
    return sanitize_value(text, MAX_CLASS_CHARS)


def strip_leading_words(text: str) -> str:
    """Drop leading 'in', 'on', 'at', 'inside' and articles: 'in the desert' -> 'desert'."""
    words = text.split(" ")
    while len(words) > 1 and words[0].lower() in _LEADING_WORDS:
        words = words[1:]
    return " ".join(words)


def display_value(text: str) -> str:
    """The form shown and stored after dedupe: sanitised, no leading preposition/article or trailing
    punctuation, and a capitalised ordinary first word lower-cased ('Tropical Rainforests' ->
    'tropical rainforests'; 'NASA lab' keeps its case)."""
    text = strip_leading_words(sanitize_value(text).rstrip(_TRAILING_PUNCT).strip())
    words = text.split(" ")
    return " ".join(w.lower() if all(_is_capitalised(part) for part in w.split("-")) else w for w in words)


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() and (len(word) == 1 or word[1:].islower())


def _singular(word: str) -> str:
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def normal_key(text: str) -> str:
    """Comparison key: case, whitespace, hyphens, articles, leading 'in/on/at/inside', trailing
    punctuation and plurals removed ('In the Rain-Forests.' -> 'rain forest')."""
    text = sanitize_value(text, None).casefold().replace("-", " ").replace("_", " ")
    text = collapse_ws(text).rstrip(_TRAILING_PUNCT).strip()
    text = strip_leading_words(text)
    return " ".join(_singular(w) for w in text.split(" "))


def compact_key(text: str) -> str:
    """``normal_key`` without spaces, so 'rain forest' and 'rainforest' compare equal."""
    return normal_key(text).replace(" ", "")


def case_key(text: str) -> str:
    """Key for duplicates that differ only in case and spacing (curated lists keep one of them)."""
    return collapse_ws(text).casefold()


def safe_name(text: str, max_slug: int = 40) -> str:
    """A file-system-safe, collision-free name: ASCII slug of the text plus a hash of the exact text."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:max_slug].strip("-") or "x"
    return f"{slug}-{hashlib.sha256(str(text).encode()).hexdigest()[:10]}"


_TOKEN = re.compile(r"[A-Za-z0-9_\-]{8,}")
# Tokens that look like credentials whatever the key is: OpenAI-style "sk-…" keys and bearer tokens.
_SECRET_LIKE = re.compile(r"(?<![A-Za-z0-9])(?:sk|pk|rk)-[A-Za-z0-9_\-]{12,}|(?i:\bbearer)\s+[A-Za-z0-9._~+/\-]{8,}=*")
REDACTED = "***"


def redact(text: str, secret: str | None) -> str:
    """``text`` with the secret, any 8+ character fragment of it (servers echo masked keys), and anything that
    looks like an API key or bearer token replaced by ``***``."""
    text = str(text)
    if secret:
        text = text.replace(secret, REDACTED)
        text = _TOKEN.sub(lambda m: REDACTED if m.group(0) in secret else m.group(0), text)
    return _SECRET_LIKE.sub(REDACTED, text)


def holds_secret(text: str, secret: str | None) -> bool:
    """True when :func:`redact` would change ``text`` (it holds the secret or a credential-looking token)."""
    return redact(text, secret) != str(text)
