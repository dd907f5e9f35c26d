"""Curated-list import and export from bytes and text (what the app's download and upload buttons use): the same
content as the file-based functions, and the same clear errors, with no file written anywhere."""

from __future__ import annotations

import pytest

from core.describe.curation import CuratedLists
from core.errors import InvalidInputError

LISTS = {"cat": ["desert", "moon surface"], 'sea, lion "x"': ["beach, wet", 'quote "q"', "café ☕"], "empty": []}


@pytest.fixture
def filled(fresh_cache):
    lists = CuratedLists("ds", "background", who="tester")
    for cls, values in LISTS.items():
        lists.replace(cls, values)
    return lists


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exported_bytes_are_what_the_file_export_writes(filled, tmp_path, fmt):
    on_disk = getattr(filled, f"export_{fmt}")(tmp_path / f"lists.{fmt}").read_bytes()
    assert getattr(filled, f"export_{fmt}_bytes")() == on_disk


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_uploaded_bytes_round_trip_into_another_cache(filled, tmp_path, monkeypatch, fmt):
    data = getattr(filled, f"export_{fmt}_bytes")()
    monkeypatch.setenv("BACKDROP_CACHE", str(tmp_path / "other"))
    other = CuratedLists("ds", "background", who="importer")
    report = other.import_bytes(data, f"upload.{fmt.upper()}")
    assert report == {c: "created" for c in LISTS}
    assert other.as_dict() == filled.as_dict() and other.current_version_id() == filled.current_version_id()
    assert other.get("cat").history[-1].source == f"import:upload.{fmt.upper()}"
    assert getattr(other, f"export_{fmt}_bytes")() == data
    assert not list(tmp_path.glob("upload*")), "no file is written for an upload"


def test_text_entry_points_name_the_upload_in_their_errors(filled):
    with pytest.raises(InvalidInputError, match=r"mine\.csv must start with the header row"):
        filled.import_csv_text("class,value\ncat,x\n", "mine.csv")
    with pytest.raises(InvalidInputError, match=r"mine\.csv line 3: expected 'class_name,value'"):
        filled.import_csv_text("class_name,value\ncat,x\ncat,y,z\n", "mine.csv")
    with pytest.raises(InvalidInputError, match=r"mine\.json as UTF-8 JSON"):
        filled.import_json_text("{not json", "mine.json")
    with pytest.raises(InvalidInputError, match=r"latin\.csv is not UTF-8"):
        filled.import_bytes("class_name,value\ncat,café\n".encode("latin-1"), "latin.csv")
    assert filled.as_dict() == LISTS, "nothing was imported from bad uploads"


def test_an_upload_adds_versions_and_keeps_the_old_ones(filled):
    before = filled.get("cat").version
    report = filled.import_bytes(b"class_name,value\ncat,glacier\n", "more.csv")
    assert report == {"cat": "updated"}
    assert filled.get("cat").values == ["glacier"] and filled.get("cat").version == before + 1
    assert filled.versions("cat")[before - 1].values == LISTS["cat"]
