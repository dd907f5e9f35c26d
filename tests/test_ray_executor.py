"""The ``ray`` executor (core.executors) on a local Ray: it writes the same artifacts as the local executor.

One Ray session for the module (``ray.init`` with 2 CPUs, two actors per pool). Each test computes an artifact with
the local executor in one cache and with Ray in another, then compares them: features (within float tolerance,
after a worker death and a resume), CLIP assignments (equal) and generated images (equal bytes, equal manifest).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from core import executors, store
from core.config import ExecutorConfig
from core.errors import InvalidInputError, MissingResourceError
from core.models.base import Backbone

RAY = ExecutorConfig("ray", actors=2)
NICENESS = "RAY_worker_niceness"  # Ray reads this exact (lower-case) name


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from core.executors.ray_data import connect

    nice = os.environ.get(NICENESS)
    os.environ[NICENESS] = "0"  # Ray's default 15 starves the actors while other programs run
    try:
        connect(RAY, num_cpus=2)
    finally:
        if nice is None:
            os.environ.pop(NICENESS, None)
        else:
            os.environ[NICENESS] = nice
    yield
    ray.shutdown()


def _cache(monkeypatch, tmp_path, name: str):
    monkeypatch.setenv("BACKDROP_CACHE", str(tmp_path / name))
    return tmp_path / name


def _net_backbone(forward_fn=None) -> Backbone:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    cfg = {"input_size": (3, 64, 64), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 1.0}
    return Backbone(
        net,
        name="ray-test-net",
        family="Test",
        feature_dim=8,
        data_config=cfg,
        weights_id="random:0",
        source="test",
        forward_fn=forward_fn,
    )


def test_ray_features_equal_local_and_resume_after_a_worker_death(ray_session, tiny_world, tmp_path, monkeypatch):
    from core.executors import ray_data
    from core.find.features import extract_features, feature_ref
    from core.find.runs import get_splits

    df = get_splits(tiny_world).debug
    _cache(monkeypatch, tmp_path, "local")
    local = np.array(extract_features(_net_backbone(), tiny_world, df, shard_size=256))
    local_ref = feature_ref(_net_backbone(), tiny_world, df)

    marker = str(tmp_path / "worker-died")

    def dies_once(net, x):  # the first batch any actor runs kills that actor's process
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return net(x)

    _cache(monkeypatch, tmp_path, "ray")
    dying = _net_backbone(dies_once)
    ref = feature_ref(dying, tiny_world, df)
    assert ref.key == local_ref.key  # same key, so the ray run resumes and fills the local path's cache
    store.save_npy(ref.folder / "shards" / "00000.npy", local[:256])  # what a run killed after one shard left
    asked = []
    real = ray_data.extract_shards
    monkeypatch.setattr(ray_data, "extract_shards", lambda *a, **kw: (asked.extend(a[3]), real(*a, **kw))[1])
    with executors.use(RAY):
        got = np.array(extract_features(dying, tiny_world, df, shard_size=256))

    assert os.path.exists(marker)  # an actor did die, and the batch it held was retried
    assert [i for i, _, _ in asked] == [1, 2]  # the rerun computed only the missing shards
    assert got.shape == local.shape == (len(df), 8)
    np.testing.assert_allclose(got, local, rtol=1e-5, atol=1e-6)
    assert ref.folder.relative_to(tmp_path / "ray") == local_ref.folder.relative_to(tmp_path / "local")
    assert store.load_json(ref.folder / "meta.json") == store.load_json(local_ref.folder / "meta.json")


def test_ray_clip_assignments_equal_local(ray_session, tiny_world, tmp_path, monkeypatch):
    from core.describe.assign import assign
    from core.find.runs import get_splits
    from core.world.clip import WorldClipConfig, train_world_clip
    from tests.app_world import SMALL_CLIP

    clip = train_world_clip(tiny_world, WorldClipConfig(**SMALL_CLIP), device="cpu")  # session cache
    failures = get_splits(tiny_world).debug.head(120)[["image_id", "label"]]
    values = {c: list(tiny_world.backgrounds[:6]) for c in tiny_world.classes}
    _cache(monkeypatch, tmp_path, "local")
    local = assign(failures, tiny_world, values, clip)
    _cache(monkeypatch, tmp_path, "ray")
    with executors.use(RAY):
        got = assign(failures, tiny_world, values, clip)
    assert len(got) == len(failures)
    pd.testing.assert_frame_equal(got, local)


def test_ray_generated_images_equal_local(ray_session, tiny_world, tmp_path, monkeypatch):
    from core.fix.experiments import default_generator
    from core.fix.generators import generate_set, mode_requests

    modes = [(tiny_world.classes[c], c, tiny_world.backgrounds[c + 1]) for c in range(3)]
    requests = mode_requests(modes, 4)
    roots = {}
    for name, executor in (("local", "local"), ("ray", RAY)):
        _cache(monkeypatch, tmp_path, name)
        with executors.use(executor):
            gset = generate_set(default_generator(tiny_world, "world"), requests, "ray-test", batch_size=3)
        roots[name] = gset
    local, got = (roots[n].manifest().drop(columns="created_at") for n in ("local", "ray"))
    assert len(local) == 12
    pd.testing.assert_frame_equal(got, local)  # same rows in the same order
    for f in local["file"]:
        assert (roots["ray"].root / f).read_bytes() == (roots["local"].root / f).read_bytes()


def test_unknown_executor_is_refused():
    with pytest.raises(InvalidInputError, match="local or ray"):
        ExecutorConfig("spark")


def test_ray_chosen_but_not_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(MissingResourceError, match=r"pip install -e \.\[ray\]"), executors.use("ray"):
        pass


def test_local_path_does_not_import_ray():
    code = (
        "import sys, core.steps, core.cli, core.find.features, core.fix.generators.generated_set, core.describe.assign;"
        "sys.exit('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr


def test_steps_run_their_work_under_the_executor_they_are_given(tiny_world, monkeypatch):
    import core.find.runs
    from core import steps

    seen = []

    class Reached(Exception):
        pass

    def run_model(*a, **kw):
        seen.append(executors.current())
        raise Reached

    monkeypatch.setattr(core.find.runs, "run_model", run_model)
    for call in (
        lambda: steps.run_models(tiny_world, ["m"], executor=RAY),
        lambda: steps.textualize(tiny_world, "m", executor=RAY),
        lambda: steps.generate(tiny_world, model="m", executor=RAY),
        lambda: steps.run_models(tiny_world, ["m"]),
    ):
        with pytest.raises(Reached):
            call()
    assert seen == [RAY, RAY, RAY, ExecutorConfig()]
    assert executors.current() == ExecutorConfig()  # the scope ends with the step


def test_cli_executor_flags_on_run_modes_and_generate():
    from core.cli import build_parser, executor_cfg, main

    for cmd in (["run", "--models", "m"], ["modes", "--model", "m"], ["generate", "--models", "m"]):
        a = build_parser().parse_args([*cmd, "--executor", "ray", "--ray-address", "auto"])
        assert executor_cfg(a) == ExecutorConfig("ray", address="auto")
        assert executor_cfg(build_parser().parse_args(cmd)) == ExecutorConfig()
    assert main(["run", "--models", "m", "--ray-address", "auto"]) == 2  # refused before any work: needs --executor ray
