"""Curated value lists: per (dataset, attribute, class) the list a user owns, stored as immutable versions.

Lists live under ``cache/lists/<dataset>/<attribute>/<class>/v000001.json``; folder names are slug + hash, so
any class name (punctuation, unicode, 200 characters) is safe. Every edit writes a new version (atomic, under a
lock) recording who, what and when; nothing is ever overwritten or deleted. Seeding from proposals fills only
lists nobody has edited, so a recompute never replaces a person's work. Values are literal plain text:
sanitised (control characters, list markers, length) and never interpreted.
"""

from __future__ import annotations

import csv
import difflib
import getpass
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import store, validate
from core.describe.proposals.proposal import now_iso
from core.describe.proposals.text import (
    MAX_CURATED_CHARS,
    case_key,
    clean_value,
    display_value,
    safe_name,
    sanitize_class_name,
    sanitize_value,
    unique_values,
)
from core.errors import InvalidInputError

SCHEMA = 1
CSV_HEADER = ["class_name", "value"]
_VERSION_FILE = re.compile(r"^v(\d{6})\.json$")


@dataclass(frozen=True)
class Version:
    version: int
    values: list[str]
    action: str  # seed, add, remove, rename, merge, undo_merge, restore, edit, import
    source: str  # where the values came from: "proposals:llm:<model>", "user", "import:<file>"
    who: str
    when: str  # ISO-8601 UTC
    detail: dict = field(default_factory=dict)
    edited: bool = False  # True once a person (not a seed) has changed the list


@dataclass(frozen=True)
class CuratedList:
    class_name: str
    values: list[str]
    version: int
    source: str  # what the list started from (its first version's source)
    history: list[Version]
    version_id: str  # content id of these values, for results to record
    edited: bool


def default_user() -> str:
    try:
        return os.environ.get("BACKDROP_USER") or getpass.getuser()
    except Exception:  # getpass raises different errors per platform when no user is known
        return "unknown"


# A cell starting with one of these is run as a formula by spreadsheet programs (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a leading formula character gets a ``'`` in front. Text that
    already starts with ``'`` before one gets one more, so :func:`csv_uncell` always gives ``text`` back."""
    return "'" + text if text.lstrip("'").startswith(FORMULA_START) else text


def csv_uncell(text: str) -> str:
    """Inverse of :func:`csv_cell`."""
    return text[1:] if text.startswith("'") and text.lstrip("'").startswith(FORMULA_START) else text


def lists_to_csv(lists: Mapping[str, list[str]]) -> str:
    """``class_name,value`` rows (a class whose list is empty gets one row with an empty value), formula-safe."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for class_name, values in lists.items():
        for v in values or [""]:
            writer.writerow([csv_cell(class_name), csv_cell(v)])
    return buf.getvalue()


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text of an uploaded or read file; a byte-order mark (Excel's "CSV UTF-8") is accepted."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f'{source} is not UTF-8 text ({e}); save it as UTF-8 ("CSV UTF-8").') from None


def parse_lists_csv(
    text: str,
    source: str,
    classes: Sequence[str] | None = None,
    max_values: int = validate.MAX_VALUES_PER_CLASS,
) -> dict[str, list[str]]:
    """The lists in a ``class_name,value`` CSV text, checked strictly; every problem names its line.

    Refused: a missing header, a quote that is never closed, a value spanning lines, rows without exactly two
    cells, an empty class, a value that is empty after sanitising, a class not in ``classes`` (when given; the
    closest names are suggested) and more than ``max_values`` values for one class. A class whose only row has
    an empty value gets an empty list."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lists: dict[str, list[str]] = {}
    errors: list[str] = []
    start = 1
    try:
        for row in reader:
            end, line = reader.line_num, start
            start = end + 1
            if line == 1:
                if [c.strip().lower() for c in row] != CSV_HEADER:
                    raise InvalidInputError(f"{source} must start with the header row 'class_name,value'.")
                continue
            if not any(c.strip() for c in row):
                continue
            where = f"{source} line {line}"
            if end != line:
                errors.append(f"{where}: a quoted cell runs on to line {end} (a value is one line; an unclosed quote?)")
            elif len(row) != 2 or not row[0].strip():
                errors.append(f"{where}: expected 'class_name,value', got {row!r}")
            else:
                error = _add_row(lists, csv_uncell(row[0]), csv_uncell(row[1]), where, classes, max_values)
                if error:
                    errors.append(error)
            if len(errors) >= 5:
                break
    except csv.Error as e:
        errors.append(f"{source} line {start}: {e} (a quote opened here is never closed)")
    if start == 1 and not errors:
        raise InvalidInputError(f"{source} must start with the header row 'class_name,value'.")
    if errors:
        raise InvalidInputError("; ".join(errors) + ". Nothing was imported.")
    return lists


def _add_row(
    lists: dict[str, list[str]],
    class_name: str,
    value: Any,
    where: str,
    classes: Sequence[str] | None,
    max_values: int,
) -> str | None:
    """Add one (class, value) to ``lists``; the error text when it is not acceptable."""
    if classes is not None and class_name not in classes:
        return f"{where}: {unknown_class(class_name, classes)}"
    values = lists.setdefault(class_name, [])
    if value == "":
        return None
    if len(values) > max_values:
        return None  # reported once, at the first value over the limit
    try:
        values.append(clean_value(value))
    except InvalidInputError as e:
        return f"{where}: {e}"
    if len(values) > max_values:
        return f"{where}: class {class_name!r} has more than {max_values} values (the limit per class)"
    return None


def unknown_class(name: str, classes: Sequence[str]) -> str:
    """'unknown class …; closest: …' for a class name the dataset does not have."""
    by_fold = {c.casefold(): c for c in classes}
    close = [by_fold[name.casefold()]] if name.casefold() in by_fold else []
    close += [c for c in difflib.get_close_matches(name, list(classes), n=3, cutoff=0.5) if c not in close]
    hint = f"closest: {', '.join(repr(c) for c in close)}" if close else f"the dataset has {len(classes)} classes"
    return f"unknown class {name!r} ({hint})"


def empty_list_warning(lists: Mapping[str, list[str]], classes: Iterable[str]) -> str | None:
    """The warning to show where lists are used when some classes have no values (they get no failure modes)."""
    empty = [c for c in classes if not lists.get(c)]
    if not empty:
        return None
    shown = ", ".join(repr(c) for c in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
    return (
        f"{len(empty)} class(es) have an empty value list: {shown}. They get no failure modes; add values "
        "(or restore an earlier version) to include them."
    )


def _index(values: list[str], value: str) -> int:
    key = case_key(sanitize_value(value, MAX_CURATED_CHARS))
    for i, v in enumerate(values):
        if case_key(v) == key:
            return i
    return -1


def content_id(*parts: Any) -> str:
    return store.make_key("curated", SCHEMA, *parts)


class CuratedLists:
    """The curated lists of one dataset and attribute. ``dataset`` is a name or key string, or a dataset object
    (its ``name`` is used, so lists survive a change of the dataset's files). ``classes`` (default: a dataset
    object's ``classes``) are the class names imports may name; None accepts any."""

    def __init__(self, dataset: Any, attribute: Any, who: str | None = None, classes: Sequence[str] | None = None):
        name = dataset if isinstance(dataset, str) else getattr(dataset, "name", None)
        attr = attribute if isinstance(attribute, str) else getattr(attribute, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"Curated lists need a dataset name or key; got {dataset!r}.")
        if not isinstance(attr, str) or not attr.strip():
            raise InvalidInputError(f"Curated lists need an attribute name such as 'background'; got {attribute!r}.")
        self.dataset, self.attribute = name, attr
        self.who = who
        known = classes if classes is not None else getattr(dataset, "classes", None)
        self.known_classes: list[str] | None = list(known) if known is not None else None
        self.root = store.cache_root() / "lists" / safe_name(name) / safe_name(attr)

    def __repr__(self) -> str:
        return f"CuratedLists(dataset={self.dataset!r}, attribute={self.attribute!r})"

    # ---- reading -------------------------------------------------------------------------------------------

    def _dir(self, class_name: str) -> Path:
        if not isinstance(class_name, str) or not sanitize_class_name(class_name):
            raise InvalidInputError(f"Class name {class_name!r} is empty; give the class a name.")
        return self.root / safe_name(class_name)

    def _read(self, path: Path, class_name: str | None) -> tuple[str, Version] | None:
        d = store.load_json(path)
        m = _VERSION_FILE.match(path.name)
        try:
            ok = (
                isinstance(d, dict)
                and m
                and d.get("schema") == SCHEMA
                and d["version"] == int(m.group(1))
                and isinstance(d["values"], list)
                and all(isinstance(v, str) for v in d["values"])
                and (class_name is None or d["class_name"] == class_name)
            )
            if not ok:
                return None
            return d["class_name"], Version(**{k: d[k] for k in Version.__dataclass_fields__ if k in d})
        except (KeyError, TypeError):
            return None

    def versions(self, class_name: str) -> list[Version]:
        """Every version of a class's list, oldest first (empty when there is no list)."""
        folder = self._dir(class_name)
        found = [self._read(p, class_name) for p in sorted(folder.glob("v*.json"))] if folder.is_dir() else []
        return [v for _, v in filter(None, found)]

    def get(self, class_name: str) -> CuratedList | None:
        history = self.versions(class_name)
        if not history:
            return None
        cur = history[-1]
        return CuratedList(
            class_name,
            list(cur.values),
            cur.version,
            history[0].source,
            history,
            content_id(self.dataset, self.attribute, class_name, cur.values),
            cur.edited,
        )

    def classes(self) -> list[str]:
        names = set()
        if self.root.is_dir():
            for folder in self.root.iterdir():
                last = sorted(folder.glob("v*.json"))[-1:] if folder.is_dir() else []
                read = self._read(last[0], None) if last else None
                if read:
                    names.add(read[0])
        return sorted(names)

    def as_dict(self) -> dict[str, list[str]]:
        return {c: cl.values for c in self.classes() if (cl := self.get(c)) is not None}

    def current_version_id(self, class_name: str | None = None) -> str:
        """Content id of the current lists (of one class, or all): equal lists give equal ids, so results that
        record it can be matched to the exact lists they used."""
        if class_name is not None:
            cur = self.get(class_name)
            return content_id(self.dataset, self.attribute, class_name, cur.values if cur else None)
        return content_id(self.dataset, self.attribute, sorted(self.as_dict().items()))

    # ---- writing -------------------------------------------------------------------------------------------

    def _write(
        self,
        class_name: str,
        values: list[str],
        action: str,
        source: str,
        detail: dict | None = None,
        who: str | None = None,
        edited: bool = True,
        skip_if_same: bool = False,
    ) -> CuratedList:
        folder = self._dir(class_name)
        folder.mkdir(parents=True, exist_ok=True)
        with store.lock(folder / "list"):
            history = self.versions(class_name)
            prev = history[-1] if history else None
            if skip_if_same and prev is not None and prev.values == values:
                return self._current(class_name)
            n = (prev.version if prev else 0) + 1
            path = folder / f"v{n:06d}.json"
            if path.exists():  # never replace a version, even one that failed validation
                n = max(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name))) + 1
                path = folder / f"v{n:06d}.json"
            record = Version(
                n,
                list(values),
                action,
                source,
                who or self.who or default_user(),
                now_iso(),
                detail or {},
                edited or bool(prev and prev.edited),
            )
            store.save_json(
                path,
                {
                    "schema": SCHEMA,
                    "dataset": self.dataset,
                    "attribute": self.attribute,
                    "class_name": class_name,
                    **asdict(record),
                },
            )
        return self._current(class_name)

    def _current(self, class_name: str) -> CuratedList:
        cur = self.get(class_name)
        if cur is None:
            raise InvalidInputError(
                f"There is no {self.attribute} list for class {class_name!r} yet; add a value "
                "or seed it from proposals first."
            )
        return cur

    def seed_from_proposals(
        self, proposals: Mapping[str, Any], dedupe_results: Mapping[str, Any] | None = None, who: str | None = None
    ) -> dict[str, str]:
        """Fill lists from ``propose`` results (deduped values when ``dedupe_results`` has the class). Lists a
        person has edited are left alone. Returns class -> what happened."""
        report = {}
        for class_name, prop in proposals.items():
            deduped = (dedupe_results or {}).get(class_name)
            values = deduped.values if deduped is not None else getattr(prop, "values", prop)
            cur = self.get(class_name)
            if cur is not None and cur.edited:
                report[class_name] = "kept: edited by a user"
                continue
            clean = unique_values(v for v in values if isinstance(v, str) and sanitize_value(v))
            if not clean:
                report[class_name] = "skipped: no values proposed"
                continue
            merges = [
                {
                    "kept": m.kept,
                    "dropped": m.dropped,
                    "restore_as": display_value(m.dropped),
                    "reason": m.reason,
                    "similarity": m.similarity,
                }
                for m in getattr(deduped, "merges", [])
            ]
            source = f"proposals:{getattr(prop, 'source', 'given')}"
            new = self._write(
                class_name,
                clean,
                "seed",
                source,
                {"merges": merges},
                who or "backdrop",
                edited=False,
                skip_if_same=True,
            )
            report[class_name] = "created" if cur is None else "unchanged" if new.version == cur.version else "updated"
        return report

    def add(self, class_name: str, value: str, who: str | None = None) -> CuratedList:
        clean = clean_value(value)
        cur = self.get(class_name)
        values = list(cur.values) if cur else []
        if _index(values, clean) >= 0:
            raise InvalidInputError(
                f"{clean!r} is already in the list for {class_name!r} as {values[_index(values, clean)]!r}."
            )
        return self._write(class_name, values + [clean], "add", "user", {"value": clean}, who)

    def replace(self, class_name: str, values: Iterable[str], who: str | None = None) -> CuratedList:
        """Set the whole list at once (e.g. from a table editor); duplicates differing in case collapse."""
        return self._write(class_name, unique_values(values), "edit", "user", {}, who, skip_if_same=True)

    def remove(self, class_name: str, value: str, who: str | None = None) -> CuratedList:
        values = list(self._current(class_name).values)
        i = self._require(values, value, class_name)
        removed = values.pop(i)
        return self._write(class_name, values, "remove", "user", {"value": removed}, who)

    def rename(self, class_name: str, old: str, new: str, who: str | None = None) -> CuratedList:
        values = list(self._current(class_name).values)
        i = self._require(values, old, class_name)
        clean = clean_value(new)
        j = _index(values, clean)
        if j >= 0 and j != i:
            raise InvalidInputError(f"{clean!r} is already in the list as {values[j]!r}; use merge to combine them.")
        detail = {"old": values[i], "new": clean}
        values[i] = clean
        return self._write(class_name, values, "rename", "user", detail, who)

    def merge(self, class_name: str, values: Iterable[str], into: str, who: str | None = None) -> CuratedList:
        """Drop ``values`` in favour of ``into`` (added at the first dropped value's place if not in the list)."""
        current = list(self._current(class_name).values)
        dropped = [current[self._require(current, v, class_name)] for v in values]
        target = clean_value(into)
        dropped = [v for v in dropped if case_key(v) != case_key(target)]
        if not dropped:
            raise InvalidInputError("Pick at least one value other than the one to merge into.")
        if _index(current, target) < 0:
            current.insert(_index(current, dropped[0]), target)
        target = current[_index(current, target)]
        kept = [v for v in current if v not in dropped]
        merges = [
            {"kept": target, "dropped": v, "restore_as": v, "reason": "merged by a user", "similarity": None}
            for v in dropped
        ]
        return self._write(class_name, kept, "merge", "user", {"merges": merges}, who)

    def merges(self, class_name: str) -> list[dict]:
        """Merges recorded in the history (newest first) whose dropped value is not in the list now."""
        cur = self.get(class_name)
        if cur is None:
            return []
        out: list[dict] = []
        for version in reversed(cur.history):
            for m in version.detail.get("merges", []):
                if _index(cur.values, m["restore_as"]) < 0 and all(m["dropped"] != o["dropped"] for o in out):
                    out.append(m)
        return out

    def undo_merge(self, class_name: str, dropped: str, who: str | None = None) -> CuratedList:
        """Put a merged-away value back, right after the value it was merged into."""
        values = list(self._current(class_name).values)
        key = case_key(sanitize_value(dropped))
        match = next(
            (m for m in self.merges(class_name) if key in (case_key(m["dropped"]), case_key(m["restore_as"]))), None
        )
        if match is None:
            raise InvalidInputError(
                f"No merge of {dropped!r} to undo in the list for {class_name!r} (it may be in the list already)."
            )
        value = clean_value(match["restore_as"])
        at = _index(values, match["kept"])
        values.insert(at + 1 if at >= 0 else len(values), value)
        return self._write(class_name, values, "undo_merge", "user", {"value": value, "kept": match["kept"]}, who)

    def restore(self, class_name: str, version: int, who: str | None = None) -> CuratedList:
        """Make an earlier version current again (as a new version; history is kept)."""
        old = next((v for v in self.versions(class_name) if v.version == version), None)
        if old is None:
            raise InvalidInputError(f"The list for {class_name!r} has no version {version}; see versions().")
        return self._write(class_name, list(old.values), "restore", "user", {"restored": version}, who)

    def _require(self, values: list[str], value: str, class_name: str) -> int:
        i = _index(values, value)
        if i < 0:
            raise InvalidInputError(f"{value!r} is not in the {self.attribute} list for {class_name!r}.")
        return i

    # ---- import / export -----------------------------------------------------------------------------------

    def export_csv(self, path: str | os.PathLike) -> Path:
        """``class_name,value`` rows (see :func:`lists_to_csv`); cells a spreadsheet would run as formulas
        (leading ``= + - @``, tab, CR) get a leading ``'``, which import removes again."""
        return store.atomic_write_bytes(Path(path), self.export_csv_bytes())

    def export_csv_bytes(self) -> bytes:
        """What ``export_csv`` writes, as UTF-8 bytes (for a download)."""
        return lists_to_csv(self.as_dict()).encode("utf-8")

    def export_json(self, path: str | os.PathLike) -> Path:
        return store.atomic_write_bytes(Path(path), self.export_json_bytes())

    def export_json_bytes(self) -> bytes:
        """What ``export_json`` writes, as UTF-8 bytes (for a download)."""
        doc = {
            "schema": SCHEMA,
            "dataset": self.dataset,
            "attribute": self.attribute,
            "version_id": self.current_version_id(),
            "lists": self.as_dict(),
        }
        return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")

    def import_bytes(self, data: bytes, filename: str, who: str | None = None, dry_run: bool = False) -> dict[str, str]:
        """An uploaded file's content: JSON when ``filename`` ends in .json, CSV otherwise. ``dry_run`` writes
        nothing and says what would change."""
        name = Path(filename).name
        text = decode_text(bytes(data), name)
        if name.lower().endswith(".json"):
            return self.import_json_text(text, name, who, dry_run=dry_run)
        return self.import_csv_text(text, name, who, dry_run=dry_run)

    def import_csv(self, path: str | os.PathLike, who: str | None = None, dry_run: bool = False) -> dict[str, str]:
        """Import a ``class_name,value`` CSV file (strictly checked: :func:`parse_lists_csv`). ``dry_run``
        writes nothing and says what would change."""
        text = decode_text(_read_bytes(path), str(path))
        return self.import_csv_text(text, Path(path).name, who, where=str(path), dry_run=dry_run)

    def import_csv_text(
        self,
        text: str,
        name: str = "lists.csv",
        who: str | None = None,
        *,
        where: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, str]:
        """``class_name,value`` rows (as ``export_csv`` writes them); ``name`` is recorded as the source."""
        lists = parse_lists_csv(text, where or name, self.known_classes)
        return self._import(lists, f"import:{name}", who, dry_run)

    def import_json(self, path: str | os.PathLike, who: str | None = None, dry_run: bool = False) -> dict[str, str]:
        text = decode_text(_read_bytes(path), str(path))
        return self.import_json_text(text, Path(path).name, who, where=str(path), dry_run=dry_run)

    def import_json_text(
        self,
        text: str,
        name: str = "lists.json",
        who: str | None = None,
        *,
        where: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, str]:
        """``{"lists": {class_name: [values, ...]}}`` (as ``export_json`` writes it) or the bare mapping."""
        where = where or name
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"Could not read {where} as UTF-8 JSON ({e}).") from None
        lists = doc.get("lists", doc) if isinstance(doc, dict) else None
        if not isinstance(lists, dict) or not all(isinstance(v, list) for v in lists.values()):
            raise InvalidInputError(f'{where} must hold {{"lists": {{class_name: [values, ...]}}}}.')
        checked: dict[str, list[str]] = {}
        for c, vals in lists.items():
            for v in vals or [""]:
                error = _add_row(
                    checked, c, v, f"{where} class {c!r}", self.known_classes, validate.MAX_VALUES_PER_CLASS
                )
                if error:
                    raise InvalidInputError(f"{error}. Nothing was imported.")
        return self._import(checked, f"import:{name}", who, dry_run)

    def _import(self, lists: dict[str, list[str]], source: str, who: str | None, dry_run: bool) -> dict[str, str]:
        """Every class in the file gets a new version when its values differ; nothing is removed."""
        for class_name in lists:
            self._dir(class_name)  # validates names before anything is written
        report = {}
        for class_name, values in lists.items():
            before = self.get(class_name)
            new = unique_values(values)
            if dry_run:
                report[class_name] = _preview(before.values if before else None, new)
                continue
            after = self._write(class_name, new, "import", source, {}, who, skip_if_same=True)
            report[class_name] = (
                "created" if before is None else "unchanged" if after.version == before.version else "updated"
            )
        return report


def _preview(before: list[str] | None, after: list[str]) -> str:
    """What importing ``after`` over ``before`` would do, in words."""
    if before is None:
        return f"would be created with {len(after)} value(s)" + ("" if after else " (an empty list)")
    if before == after:
        return "unchanged"
    added = [v for v in after if v not in before]
    removed = [v for v in before if v not in after]
    parts = [f"+{v!r}" for v in added[:10]] + [f"-{v!r}" for v in removed[:10]]
    more = len(added) + len(removed) - len(parts)
    order = "" if added or removed else "reordered"
    change = ", ".join(parts) + (f" and {more} more" if more > 0 else "") or order
    return f"would be updated ({change})" + ("; the list would be empty" if not after else "")


def _read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InvalidInputError(f"Could not read {path} ({e.strerror or e}).") from None
