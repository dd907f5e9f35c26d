"""Bounds on every size, count and seed a user can give, checked in core (issue 11, defect 2)."""

from __future__ import annotations

import pandas as pd
import pytest

from core import validate
from core.config import DebugConfig, HeadConfig, SplitConfig
from core.errors import InvalidInputError
from core.fix.generators import create_generator, mode_requests


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: DebugConfig(images_per_mode=1_000_000_000), "between 1 and 10,000"),
        (lambda: DebugConfig(k_modes=1_000_000_000), "between 1 and 100"),
        (lambda: DebugConfig(k_modes=2.7), "whole number"),
        (lambda: DebugConfig(k_modes="3"), "whole number"),
        (lambda: DebugConfig(k_modes=True), "whole number"),
        (lambda: DebugConfig(lam=float("nan")), "number"),
        (lambda: DebugConfig(seed=-1), "Generation seed"),
        (lambda: SplitConfig(seed=-1), "Split seed"),
        (lambda: SplitConfig(seed=2**40), "Split seed"),
        (lambda: SplitConfig(head_train_per_class=0), "Images per class"),
        (lambda: HeadConfig(epochs=-1), "Epochs"),
        (lambda: mode_requests([("zero", 0, "grass")], 10**9), "10,000"),
    ],
)
def test_out_of_bounds_values_are_refused(build, match):
    with pytest.raises(InvalidInputError, match=match):
        build()


def test_whole_floats_are_taken_as_ints():
    cfg = DebugConfig(k_modes=3.0, images_per_mode=5.0)
    assert cfg.k_modes == 3 and type(cfg.k_modes) is int and type(cfg.images_per_mode) is int


def test_diffusion_steps_are_bounded(tmp_path):
    for steps in (-1, 0, 1.5, 10**6):
        with pytest.raises(InvalidInputError, match="Diffusion steps"):
            create_generator("diffusers", model_id=str(tmp_path), num_inference_steps=steps)


def test_sweep_k_refuses_fractional_values_before_any_work():
    from core.fix.experiments import sweep

    with pytest.raises(InvalidInputError, match="whole number; got 2.7"):
        sweep(None, "m", "k", [1, 2.7])  # no experiment is touched: the check comes first
    with pytest.raises(InvalidInputError, match="λ"):
        sweep(None, "m", "lam", [0.5, 2.0])


def test_memory_estimate_refuses_work_that_cannot_fit():
    with pytest.raises(InvalidInputError, match=r"about 9\.3 GiB .* allows 1\.0 GiB"):
        validate.check_memory(10e9, "Generating", limit=2**30)
    validate.check_memory(10e6, "Generating", limit=2**30)
    assert validate.machine_memory() > 0


def test_generation_is_refused_with_the_estimate(tiny_world, monkeypatch):
    from core.fix.experiments import default_generator
    from core.fix.mitigate import generate_for_modes

    gen = default_generator(tiny_world)
    monkeypatch.setattr(validate, "machine_memory", lambda: 2**30)
    modes = pd.DataFrame({"class_name": ["zero"] * 3, "label": [0] * 3, "value": ["grass", "gravel", "brick wall"]})
    cfg = DebugConfig(images_per_mode=10_000, k_modes=3)
    with pytest.raises(InvalidInputError, match=r"Generating \d.* images .* GiB of memory"):
        generate_for_modes(tiny_world, modes, gen, cfg)
