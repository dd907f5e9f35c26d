"""The command line: every command parses, errors users can fix are one line with exit status 2, and what it
saves is what the app reads (a CLI sweep is the Results page's sweep; `debug --repeats` is the Results page's
repeats)."""

import json
import re
import subprocess
import sys

import pytest

from core import cli
from tests.app_harness import ROOT, TINY, open_page, problems
from tests.app_world import SMALL_CLIP, assigned_world, populated_world, small_clip  # noqa: F401  (fixtures)

COMMANDS = {
    "datasets",
    "models",
    "prepare",
    "report",
    "setup",
    "world",
    "run",
    "failures",
    "overlap",
    "search",
    "propose",
    "lists",
    "modes",
    "generate",
    "debug",
    "collective",
    "sweep",
}


def test_help_names_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "core", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert f"    {name} " in out.stdout, name
    assert set(cli.COMMANDS) == COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    assert "usage: python -m core " + command in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--size", "tiny"], "Name models with --models"),
        (["overlap", "--family", "no-such-family"], "Unknown family 'no-such-family'"),
        (["debug", "--size", "tiny"], "Name models with --models"),
        (["setup", "--dataset", "cifar10"], "builds the offline world"),
        (["world", "--dataset", "cifar10"], "is not the offline world"),
        (["debug", "--size", "tiny", "--models", "m", "--repeats", "1"], "at least two repeats"),
    ],
)
def test_errors_users_can_fix_are_one_line_and_exit_2(argv, message, capsys, fresh_cache):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (fresh_cache / "datasets").exists(), "flags are checked before any dataset is built"


def test_cli_spells_the_world_as_the_app_does():
    args = cli.build_parser().parse_args(["prepare", "--size", "tiny"])
    assert cli.dataset_spec(args) == TINY


def test_cli_sweep_is_the_results_pages_sweep(assigned_world, monkeypatch, capsys):
    from core.describe import textualize
    from core.fix.mitigate import list_results
    from core.workspace import open_dataset
    from core.world.clip import WorldClipConfig, load_world_clip

    ds = open_dataset(TINY)
    small = load_world_clip(ds, WorldClipConfig(**SMALL_CLIP))  # trained by assigned_world
    monkeypatch.setattr(textualize, "default_clip", lambda dataset: small)
    model = assigned_world.models[0]
    argv = ["sweep", "lam", "--size", "tiny", "--models", model, "-k", "1", "--images-per-mode", "1"]
    assert cli.main([*argv, "--values", "0", "0.5"]) == 0
    assert "saved " in capsys.readouterr().out
    found = list_results(ds.key)
    assert "lam" in found, found.keys()
    pq, meta = found["lam"]
    assert meta["what"] == "lam" and meta["step"] == "experiment" and meta["models"] == [model]

    at = open_page("pages/results.py")
    assert problems(at) == []
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text") for c in at.get("plotly_chart")]
    assert "λ sweep" in titles, ("the Results page draws the CLI's λ sweep", titles)


def test_cli_debug_repeats_prints_intervals_and_paired_p(repeats_world, monkeypatch, capsys):
    """`debug --repeats 2` prints mean ± CI for every method, the paired McNemar p of ours against each and the
    verdicts; the repeats the app's job ran (repeats_world: same settings) are read back, not run again, and
    the single run's saved table is left as it was."""
    from core.describe import textualize
    from core.fix.mitigate import list_results
    from core.workspace import open_dataset

    ds = open_dataset(TINY)
    small = small_clip()
    monkeypatch.setattr(textualize, "default_clip", lambda dataset: small)
    parts = {p: p.stat().st_mtime for p in (repeats_world.cache / "results" / "repeats").glob("individual-*")}
    single = list_results(ds.key)["individual"][0]
    single_mtime = single.stat().st_mtime
    model = repeats_world.models[0]
    argv = ["debug", "--size", "tiny", "--models", model, "-k", "1", "--images-per-mode", "1", "--repeats", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "95% confidence interval over 2 repeats" in out
    for method in ("before", "ours", "random", "real_failures", "oracle"):
        assert re.search(rf"{method}(\s+\d\.\d{{3}} ± \d\.\d{{3}}){{3}}\s+2\n", out), (method, out)
    assert "McNemar" in out and "p_value" in out
    for other in ("random", "real_failures", "oracle"):
        line = next(x for x in out.splitlines() if x.startswith(f"ours − {other} on debug_heldout:"))
        assert re.search(r"McNemar p = [\d.e-]+ over \d+ paired images: .*significant", line), line
    assert len(parts) == 4, parts  # rows and predictions of two repeats
    assert {p: p.stat().st_mtime for p in parts} == parts, "finished repeats are reused, never rewritten"
    pq, meta = list_results(ds.key)["individual-repeats"]
    assert meta["repeats"] == 2 and meta["split_seeds"] == [0, 1] and f"saved {pq}" in out
    assert list_results(ds.key)["individual"][0] == single and single.stat().st_mtime == single_mtime


def test_sweeps_saved_by_older_versions_are_found_as_sweeps(fresh_cache):
    import pandas as pd

    from core.fix.mitigate import list_results, save_results

    save_results(pd.DataFrame({"lam": [0.5]}), "sweep-lam", {"dataset": "d1", "over": "lam", "models": ["m"]})
    assert set(list_results("d1")) == {"lam"}


def test_setup_pages_command_line_runs_what_its_button_runs(fresh_cache, monkeypatch):
    import shlex

    from core import jobs, steps
    from core.job_kinds import prepare_shared

    calls = []

    def setup_world(dataset, **kw):  # records what it was asked to do instead of training for minutes
        calls.append((dataset, kw["prepare"]))
        return steps.SetupDone(models=[])

    monkeypatch.setattr(steps, "setup_world", setup_world)
    submitted = []
    monkeypatch.setattr(jobs, "submit", lambda kind, restart=False, **kw: submitted.append((kind, kw)))

    at = open_page("pages/setup.py")  # the world is not built in this cache: the page offers to build it
    assert problems(at) == []
    line = next(c.value for c in at.code if " setup" in c.value)
    assert line == "python -m core setup --size tiny"
    at.button(key="world-start").click().run()
    kind, kw = submitted[-1]
    assert jobs.run_inline(jobs.job_for(kind, **kw))["models"] == []
    assert cli.main(shlex.split(line)[3:]) == 0
    (button_spec, button_prepare), (cli_spec, cli_prepare) = calls
    assert button_spec == cli_spec == TINY and button_prepare is cli_prepare is prepare_shared
