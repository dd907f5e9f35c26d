"""kill -9 at random points of the long steps, then a resume that must produce the same artifacts (issue 11).

Each step runs in its own process on a copy of one prepared tiny-world cache (images and the world-mobilenet-s
backbone), is SIGKILLed after a seeded random delay, is rerun to completion, and its artifacts are compared byte
for byte with an uninterrupted run on another copy. Steps: a model run (feature extraction, head training,
failure table) through the CLI, and world-renderer generation of an image set."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open

from core import store
from tests.app_harness import ROOT, TINY

pytestmark = pytest.mark.faults

MODEL = "world-mobilenet-s"
RUN = [sys.executable, "-m", "core", "run", "--size", "tiny", "--models", MODEL]
GENERATE = [
    sys.executable,
    "-c",
    "from core.fix.generators import create_generator, generate_set, mode_requests\n"
    "from core.describe.proposals import world_values\n"
    "gen = create_generator('world', size='tiny', seed=0)\n"
    "modes = [(c, i, v) for i, c in enumerate(gen.world.classes) for v in world_values('background')[:3]]\n"
    "generate_set(gen, mode_requests(modes, 8), 'killed', seed=5, batch_size=4)\n",
]
RNG = random.Random(11)  # the kill points are random but the same on every run of the suite


@pytest.fixture(scope="module")
def prepared(session_cache) -> Path:
    """The session cache with the tiny world's images and the world-mobilenet-s backbone (built once)."""
    from core import steps
    from core.job_kinds import prepare_shared

    steps.build_world(TINY, ("images", "backbones"), models=[MODEL], prepare=prepare_shared)
    return session_cache


def _copy(prepared: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in ("datasets", "models"):
        shutil.copytree(prepared / part, dest / part)
    return dest


def _start(cmd: list[str], cache: Path) -> subprocess.Popen:
    """The step in its own process group; its output goes to a log next to the cache (a pipe could fill)."""
    env = dict(os.environ, BACKDROP_CACHE=str(cache), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with open(cache.with_suffix(".log"), "ab") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)


def _finish(cmd: list[str], cache: Path, marker: str) -> float:
    """Run the step to completion; the seconds it worked after ``marker`` (a path under the cache) appeared."""
    p, seen = _start(cmd, cache), None
    while p.poll() is None:
        if seen is None and (cache / marker).exists():
            seen = time.monotonic()
        time.sleep(0.02)
    assert p.returncode == 0, cache.with_suffix(".log").read_text()[-2000:]
    assert seen is not None, f"{marker} never appeared"
    return time.monotonic() - seen


def _kill_at(cmd: list[str], cache: Path, marker: str, delay: float) -> bool:
    """SIGKILL the step's whole process group ``delay`` s after ``marker`` appeared (so the kill lands in the
    step's work, not in its imports); False when it finished first."""
    p, seen = _start(cmd, cache), None
    while p.poll() is None:
        now = time.monotonic()
        if seen is None and (cache / marker).exists():
            seen = now
        if seen is not None and now - seen >= delay:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.02)
    return False


def _files(cache: Path, parts: tuple[str, ...], suffixes: tuple[str, ...]) -> dict[str, bytes | tuple]:
    """Each artifact's bytes by path. A safetensors file is compared by its tensors' bytes and its metadata's
    items: the library writes the metadata map in an order that varies from process to process, so two files with
    equal content need not be byte-identical."""
    out: dict[str, bytes | tuple] = {}
    for part in parts:
        for f in sorted((cache / part).rglob("*")):
            if not (f.is_file() and f.suffix in suffixes and f.name != "set.json"):
                continue
            if f.suffix == ".safetensors":
                with safe_open(str(f), "np") as st:
                    tensors = tuple((k, st.get_tensor(k).tobytes()) for k in sorted(st.keys()))
                    out[str(f.relative_to(cache))] = (tensors, sorted((st.metadata() or {}).items()))
            else:
                out[str(f.relative_to(cache))] = f.read_bytes()
    return out


def _killed_then_resumed(cmd, prepared, tmp_path, marker: str, work: float) -> tuple[Path, list[float]]:
    """A fresh copy where the step is killed at two seeded random points of its work, then run to the end."""
    cache = _copy(prepared, tmp_path / "killed")
    delays = sorted(round(RNG.uniform(0.05, 0.9) * work, 2) for _ in range(2))
    killed = [d for d in delays if _kill_at(cmd, cache, marker, d)]
    assert killed, f"every kill point {delays} came after the step had finished; nothing was interrupted"
    _finish(cmd, cache, marker)
    return cache, killed


def test_model_run_killed_at_random_points_resumes_to_identical_artifacts(prepared, tmp_path):
    clean = _copy(prepared, tmp_path / "clean")
    took = _finish(RUN, clean, "splits")
    # Kill points spread over the step's work: splits, feature extraction of the three splits, head training.
    resumed, killed = _killed_then_resumed(RUN, prepared, tmp_path, "splits", took)
    want = _files(clean, ("features", "runs", "splits"), (".npy", ".safetensors", ".parquet"))
    got = _files(resumed, ("features", "runs", "splits"), (".npy", ".safetensors", ".parquet"))
    assert any(k.endswith("features.npy") for k in want) and any(k.endswith("head.safetensors") for k in want)
    assert any(k.endswith("failures.parquet") for k in want)
    assert sorted(got) == sorted(want), f"killed at {killed} s"
    differ = [k for k in want if got[k] != want[k]]
    assert differ == [], f"killed at {killed} s of a {took:.0f} s run: {differ}"
    leftovers = [p.name for p in resumed.rglob("*") if ".tmp" in p.name]
    assert leftovers == [], "a resumed run leaves no temp files of the killed one"


def test_generation_killed_at_random_points_resumes_to_identical_images_and_manifest(prepared, tmp_path):
    from core.fix.generators.generated_set import read_manifest

    clean = _copy(prepared, tmp_path / "clean")
    took = _finish(GENERATE, clean, "generated/killed/images")
    resumed, killed = _killed_then_resumed(GENERATE, prepared, tmp_path, "generated/killed/images", took)
    want = _files(clean, ("generated",), (".png", ".json"))
    got = _files(resumed, ("generated",), (".png", ".json"))
    assert sum(k.endswith(".png") for k in want) == 10 * 3 * 8
    assert sorted(got) == sorted(want), f"killed at {killed} s"
    assert [k for k in want if got[k] != want[k]] == [], f"killed at {killed} s of a {took:.0f} s run"
    # set.json and the manifest record when the set and each image were made (created_at): the only fields a
    # resume may change; everything else must be equal.
    a, b = (store.load_json(c / "generated/killed/set.json") for c in (clean, resumed))
    assert a.pop("created_at") and b.pop("created_at") and a == b
    a, b = (read_manifest(c / "generated" / "killed").drop(columns="created_at") for c in (clean, resumed))
    pd.testing.assert_frame_equal(
        a.sort_values("image_id").reset_index(drop=True), b.sort_values("image_id").reset_index(drop=True)
    )
    assert list(b["image_id"]) == list(a["image_id"]), "rows in the same order"
