"""The mitigation loop on the tiny offline world: failure modes -> rendered images -> retrained heads.

Asserts the paper's effects from ground truth: ours beats Random_debugging on debug_heldout for every model
tested, λ trades test accuracy for heldout accuracy, more modes help, and collective debugging (types 1 and 2)
recovers most of individual debugging's gain.
"""

from __future__ import annotations

import pandas as pd
import pytest

from core.config import DebugConfig
from core.errors import InvalidInputError
from core.fix.experiments import Experiment, collective_study, sweep
from core.fix.mitigate import check_config, relative_to_individual, save_results
from core.threads import single_thread
from core.world.backbones import train_world_backbone

MODELS = ["world-resnet-s", "world-mobilenet-s"]  # one per world family


@pytest.fixture(scope="module")
def exp(tiny_world, world_clip):
    with single_thread():
        for m in MODELS:
            train_world_backbone(m, tiny_world)
    return Experiment(tiny_world, DebugConfig())


@pytest.fixture(scope="module")
def study(exp):
    return collective_study(exp, MODELS)


def by(df, model, method):
    return df[(df["model"] == model) & (df["method"] == method)].iloc[0]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_ours_beats_random_debugging_on_heldout(study, model):
    before, ours, rand = by(study, model, "before"), by(study, model, "ours"), by(study, model, "random")
    assert before["acc_seed"] == 0 and before["acc_heldout"] == 0  # they are the failures
    assert ours["n_generated"] == rand["n_generated"] > 0  # same images per class
    # measured on the tiny world: resnet-s 0.126 vs 0.075, mobilenet-s 0.095 vs 0.016
    assert ours["acc_heldout"] >= rand["acc_heldout"] + 0.03
    assert ours["acc_seed"] > rand["acc_seed"]


@pytest.mark.slow
def test_results_record_their_provenance_and_round_trip(study, exp):
    row = by(study, MODELS[0], "ours")
    assert row["generator"] == "world" and row["list_version"] and row["prompt_template"] == exp.cfg.prompt_template
    pq, csv = save_results(study, "test-study", exp.meta(models=MODELS))
    back = pd.read_parquet(pq)
    pd.testing.assert_frame_equal(back, study.reset_index(drop=True), check_dtype=False)
    assert len(pd.read_csv(csv)) == len(study)


@pytest.mark.slow
def test_collective_types_recover_most_of_individual_gain(study):
    rel = relative_to_individual(study)
    assert set(rel["method"]) == {"collective1", "collective2"} and len(rel) == 2 * len(MODELS)
    # measured: 0.83-1.08 of individual debugging's heldout gain
    assert (rel["relative"] >= 0.6).all(), rel


@pytest.mark.slow
def test_lambda_trades_test_for_heldout_and_zero_is_undebugged(exp):
    s = sweep(exp, MODELS[0], "lam", [0.0, 0.5, 1.0])
    before = s[s["method"] == "before"].iloc[0]
    ours = s[s["method"] == "ours"].set_index("lam")
    for col in ("acc_test", "acc_seed", "acc_heldout"):
        assert abs(ours.loc[0.0, col] - before[col]) < 1e-9, col  # λ = 0 reproduces the un-debugged head
    assert ours.loc[1.0, "acc_heldout"] > ours.loc[0.0, "acc_heldout"] + 0.05
    assert (
        ours.loc[1.0, "acc_test"] <= ours.loc[0.0, "acc_test"] + 0.01
    )  # measured: 0.415 -> 0.417 (test does not fall here)


@pytest.mark.slow
def test_more_modes_raise_heldout_accuracy(exp):
    s = sweep(exp, MODELS[0], "k", [1, 5])
    ours = s[s["method"] == "ours"].set_index("k")
    assert ours.loc[5, "n_generated"] == 5 * ours.loc[1, "n_generated"]
    assert ours.loc[5, "acc_heldout"] > ours.loc[1, "acc_heldout"]  # measured: 0.111 -> 0.191


def test_bad_settings_are_clear_errors(tiny_world):
    for bad in (dict(k_modes=0), dict(images_per_mode=-1), dict(lam=1.5)):
        with pytest.raises(InvalidInputError):
            check_config(DebugConfig(**bad))
    from core.fix.experiments import default_generator
    from core.fix.mitigate import generate_for_modes

    gen = default_generator(tiny_world)
    modes = pd.DataFrame({"class_name": ["zero"], "label": [0], "value": ["the bottom of the sea"]})
    with pytest.raises(InvalidInputError, match="can render"):
        generate_for_modes(tiny_world, modes, gen, DebugConfig())
    # one unrenderable mode among renderable ones is skipped and reported, the others are generated
    modes = pd.DataFrame({"class_name": ["zero", "zero"], "label": [0, 0], "value": ["grass", "salt flat"]})
    ours, rand = generate_for_modes(tiny_world, modes, gen, DebugConfig(images_per_mode=2))
    assert set(ours["value"]) == {"grass"} and len(ours) == len(rand) == 2
    assert [s["value"] for s in ours.attrs["skipped"]] == ["salt flat"]
    modes = pd.DataFrame({"class_name": ["zero"], "label": [0], "value": [None]})
    with pytest.raises(InvalidInputError, match="no value"):
        generate_for_modes(tiny_world, modes, gen, DebugConfig())
