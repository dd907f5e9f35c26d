"""Every CLI command with bad input (issue 11): exit status 2 and one line on stderr, never a traceback; plus the
new --base-url/--model, --dry-run and --restore options."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

from core.cli import COMMANDS, main
from tests.test_proposals_llm import KEY, ok, server  # noqa: F401  (server is a fixture)

pytestmark = pytest.mark.faults


@pytest.fixture
def folder(tmp_path, fresh_cache):
    """A two-class image folder: the cheapest real dataset to open."""
    root = tmp_path / "photos"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(root / c / f"{i}.png")
    return ["--dataset", "imagefolder", "--root", str(root)]


def _bad(tmp_path):
    blocked = str(tmp_path / "a-file" / "out.csv")  # a path under a file: never writable
    (tmp_path / "a-file").write_text("x")
    return [
        (["datasets", "--bogus"], "unrecognized arguments"),
        (["models", "--family"], "expected at least one argument"),
        (["world", "--seed", "-5"], "Dataset seed"),
        (["world", "everything"], "invalid choice"),
        (["run", "--models", "m", "--split-seed", "-1"], "Split seed must be between 0 and"),
        (["run", "--models", "m", "--per-class", "0"], "Images per class must be between 1 and"),
        (["run", "--models", "m", "--per-class", "2.5"], "invalid int value"),
        (["failures"], "the following arguments are required: --model"),
        (["failures", "--model", "m", "--csv", blocked], "cannot use"),
        (["overlap", "--dataset", "no-such-set", "--models", "m"], "no-such-set"),
        (["propose", "--proposer", "offline", "--model", "m"], "--base-url and --model choose the LLM"),
        (["lists", "--restore", "1"], "--restore needs --class"),
        (["lists", "--restore", "0", "--class", "cat"], "List version"),
        (["lists", "--dry-run"], "--dry-run previews an import"),
        (["lists", "--import", str(tmp_path / "missing.csv")], "Could not read"),
        (["lists", "--export", blocked], "cannot use"),
        (["modes", "--model", "m", "-k", "0"], "k (failure modes per class) must be between 1 and"),
        (["generate", "--models", "m", "--images-per-mode", "1000000000"], "between 1 and 10,000"),
        (["debug", "--models", "m", "--steps", "-1"], "Diffusion steps"),
        (["debug", "--models", "m", "-k", "1000000000"], "between 1 and 100"),
        (["collective", "--family", "F", "--lam", "1.5"], "λ must be between 0 and 1"),
        (["sweep", "k", "--models", "m", "--values", "2.7"], "whole number; got 2.7"),
        (["sweep", "lam", "--models", "m", "--values", "3"], "λ must be between 0 and 1"),
        (["sweep", "k", "--models", "m", "--gen-seed", "-1"], "Generation seed"),
        (["search", "--model", "m", "a seven on grass", "--top", "0"], "Search results (--top) must be between 1 and"),
        (["setup", "--seed", "-5"], "Dataset seed"),
        (["prepare", "--dataset", "no-such-set"], "no-such-set"),
        (["report", "--per-mode", "0"], "Examples per mode (--per-mode) must be between 1 and"),
    ]


def test_every_command_refuses_bad_input_in_one_line(folder, tmp_path, monkeypatch, capsys):
    import core.find.failures
    import core.find.runs

    # `failures` gets as far as writing its CSV without training anything.
    fake = SimpleNamespace(
        table=pd.DataFrame(), failures=pd.DataFrame({"image_id": ["a"]}), summary={"accuracy": {}}, family="F"
    )
    monkeypatch.setattr(core.find.runs, "run_model", lambda *a, **k: fake)
    monkeypatch.setattr(core.find.failures, "per_class_counts", lambda *a, **k: pd.DataFrame())
    cases = _bad(tmp_path)
    assert {argv[0] for argv, _ in cases} == set(COMMANDS)  # every command is walked
    for argv, expected in cases:
        needs_data = argv[0] not in ("datasets", "models", "world") and "--dataset" not in argv
        full = argv + (folder if needs_data else [])
        try:
            code = main(full)
        except SystemExit as e:  # argparse's own errors
            code = e.code
        err = capsys.readouterr().err
        assert code == 2, (full, err)
        # Progress bars of work that started before the failure may come first; the error is one line, last.
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], (full, err)
        assert expected in errors[0], (full, errors[0])
        assert "Traceback" not in err


def test_lists_dry_run_restore_and_history(folder, tmp_path, capsys):
    from core.describe.curation import CuratedLists

    lists = CuratedLists("imagefolder", "background", classes=["cat", "dog"])
    lists.replace("cat", ["sofa", "garden"])
    path = tmp_path / "in.csv"
    path.write_text("class_name,value\ncat,sofa\ncat,roof\n", encoding="utf-8")
    assert main(["lists", "--import", str(path), "--dry-run", *folder]) == 0
    out = capsys.readouterr().out
    assert "cat: would be updated (+'roof', -'garden')" in out and "nothing was changed" in out
    assert lists.get("cat").values == ["sofa", "garden"]
    assert main(["lists", "--import", str(path), *folder]) == 0
    assert lists.get("cat").values == ["sofa", "roof"]
    assert main(["lists", "--restore", "1", "--class", "cat", *folder]) == 0
    assert lists.get("cat").values == ["sofa", "garden"] and lists.get("cat").version == 3
    capsys.readouterr()
    assert main(["lists", "--history", "--class", "cat", *folder]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["v1", "v2", "v3"]


def test_empty_list_is_a_warning_in_the_lists_command(folder, capsys):
    from core.describe.curation import CuratedLists

    CuratedLists("imagefolder", "background").replace("dog", [])
    assert main(["lists", *folder]) == 0
    assert "warning: 1 class(es) have an empty value list: 'dog'" in capsys.readouterr().err


def test_propose_uses_base_url_and_model(server, folder, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.script = [ok(json.dumps({"values": ["on a roof", f"key {KEY}"]}))]
    assert main(["propose", "--base-url", server.base_url, "--model", "local-model", *folder]) == 0
    assert [r["body"]["model"] for r in server.requests] == ["local-model", "local-model"]
    out = capsys.readouterr()
    assert "cat: roof" in out.out and KEY not in out.out + out.err  # "on a roof", deduped for display


def test_app_propose_job_takes_base_url_and_model(server, folder, monkeypatch):
    from core.job_kinds import propose_values

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.script = [ok('["sofa", "x' + "y" * 200 + '"]')]
    spec = {"name": "imagefolder", "root": folder[-1]}
    out = propose_values(lambda *a: None, None, spec, proposer="llm", base_url=server.base_url, model="local-model")
    assert {r["body"]["model"] for r in server.requests} == {"local-model"}
    assert out["classes"] == {"cat": "created", "dog": "created"} and "201 characters" in out["notice"]
