"""Bad-CSV corpus (issue 11): every damaging file is refused with a line-numbered reason and changes nothing."""

from __future__ import annotations

import pytest

from core.describe.curation import CuratedLists
from core.errors import InvalidInputError

pytestmark = pytest.mark.faults

CLASSES = ["zero", "one", "two"]
H = "class_name,value\n"

CORPUS = [
    ("unclosed-quote", H + 'zero,"unclosed quote, ice\nzero,desert\n', "line 2.*never closed"),
    ("quote-swallows-rows", H + 'zero,"a\nzero,b"\n', "line 2: a quoted cell runs on to line 3"),
    ("unknown-class", H + "zero,sand\nnot-a-class,x\n", "line 3: unknown class 'not-a-class'"),
    ("case-class", H + "ZERO,x\n", r"unknown class 'ZERO' \(closest: 'zero'\)"),
    ("too-many-values", H + "".join(f"one,v{i}\n" for i in range(5000)), "line 202: class 'one' has more than 200"),
    ("three-cells", H + "zero,a,b\n", "line 2: expected 'class_name,value'"),
    ("blank-class", H + ",desert\n", "line 2"),
    ("markup-only-value", H + "zero,   \n", "line 2.*empty"),
    ("wrong-header", "name,value\nzero,desert\n", "header"),
    ("empty-file", "", "header"),
]


@pytest.fixture
def lists(fresh_cache):
    cl = CuratedLists("scenes", "background", classes=CLASSES)
    cl.replace("zero", ["grass"])
    return cl


@pytest.mark.parametrize("name,content,match", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_csv_is_refused_and_changes_nothing(lists, tmp_path, name, content, match):
    path = tmp_path / f"{name}.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=match) as e:
        lists.import_csv(path)
    assert "\n" not in str(e.value)  # one line, fit for a CLI error
    with pytest.raises(InvalidInputError, match=match):
        lists.import_csv(path, dry_run=True)
    assert lists.as_dict() == {"zero": ["grass"]} and len(lists.versions("zero")) == 1


@pytest.mark.parametrize(
    "data,match",
    [(b"class_name,value\nzero,caf\xe9\n", "not UTF-8"), (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8")],
    ids=["latin-1", "binary"],
)
def test_non_utf8_files_are_refused(lists, tmp_path, data, match):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match=match):
        lists.import_csv(path)
    assert lists.as_dict() == {"zero": ["grass"]}


def test_missing_and_unreadable_files_are_clear(lists, tmp_path):
    with pytest.raises(InvalidInputError, match="Could not read"):
        lists.import_csv(tmp_path / "missing.csv")
    with pytest.raises(InvalidInputError, match="Could not read"):
        lists.import_csv(tmp_path)  # a folder


def test_header_only_and_bom_files_are_fine(lists, tmp_path):
    path = tmp_path / "ok.csv"
    path.write_bytes("\ufeffclass_name,value\r\n".encode())
    assert lists.import_csv(path) == {}
    path.write_bytes("\ufeffclass_name,value\r\none,\u00e9t\u00e9\r\n".encode())
    assert lists.import_csv(path) == {"one": "created"} and lists.get("one").values == ["\u00e9t\u00e9"]
