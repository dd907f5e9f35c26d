"""Workspace settings: persisted per dataset, validated, and mapped to the exact step arguments pages submit."""

import json

import pytest

from core.config import DebugConfig, GeneratorConfig, from_dict
from core.errors import InvalidInputError
from core.settings import WorkspaceSettings, load_settings, save_settings, settings_path

SPEC = {"name": "scenes-mnist", "size": "tiny", "seed": 0}


def test_defaults_until_saved_then_what_was_saved(fresh_cache):
    assert load_settings(SPEC) == WorkspaceSettings()
    mine = WorkspaceSettings(
        attribute="colour",
        generator=GeneratorConfig("diffusers", "/models/sd15", {"num_inference_steps": 4}),
        debug=DebugConfig(k_modes=2, images_per_mode=7, lam=0.25, seed=3),
    )
    save_settings(SPEC, mine)
    assert load_settings(SPEC) == mine
    assert load_settings(dict(SPEC, seed=1)) == WorkspaceSettings(), "each dataset has its own settings"


def test_generation_and_experiment_args_name_the_same_set(fresh_cache):
    s = WorkspaceSettings(generator=GeneratorConfig("world"), debug=DebugConfig(lam=0.75, seed=5))
    gen, exp = s.generation_args(), s.experiment_args()
    assert gen["generator"] == exp["generator"] == {"name": "world", "model_id": None, "options": {}}
    assert gen["attribute"] == exp["attribute"] == "background"
    assert gen["debug"]["seed"] == exp["debug"]["seed"] == 5
    assert "lam" not in gen["debug"] and exp["debug"]["lam"] == 0.75
    assert json.loads(json.dumps(exp)) == exp, "job arguments are JSON"


def test_bad_values_are_refused_and_a_broken_file_reads_as_defaults(fresh_cache):
    with pytest.raises(InvalidInputError, match=r"k \(failure modes per class\) must be between 1 and"):
        save_settings(SPEC, WorkspaceSettings().with_debug(k_modes=0))
    with pytest.raises(InvalidInputError, match="no setting 'steps'"):
        from_dict(GeneratorConfig, {"steps": 4})
    settings_path(SPEC).parent.mkdir(parents=True, exist_ok=True)
    settings_path(SPEC).write_text('{"debug": {"lam": 7}}')
    assert load_settings(SPEC) == WorkspaceSettings()
    settings_path(SPEC).write_text("{not json")
    assert load_settings(SPEC) == WorkspaceSettings()


def test_the_clip_filter_is_saved_and_reaches_both_steps(fresh_cache):
    from core.config import FilterConfig

    assert "clip_filter" not in WorkspaceSettings().generation_args(), "unfiltered unless asked"
    mine = WorkspaceSettings(clip_filter=FilterConfig(min_value_prob=0.7, keep_fraction=0.8))
    save_settings(SPEC, mine)
    assert load_settings(SPEC) == mine
    want = from_dict(FilterConfig, mine.generation_args()["clip_filter"])
    assert want == from_dict(FilterConfig, mine.experiment_args()["clip_filter"]) == mine.clip_filter
    with pytest.raises(InvalidInputError, match="must lie in"):
        save_settings(SPEC, WorkspaceSettings(clip_filter=FilterConfig(min_class_prob=2.0)))
