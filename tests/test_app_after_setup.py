"""The one-click setup build: it ends with every page populated for the default world model, says which step made
what each page shows, reports progress inside each model with an ETA, and leaves the EfficientNet-Lite family as
its own step that can be skipped, stopped and resumed. The build itself is the ``results_world`` fixture (the
setup over the two smallest world backbones, without the Lite step, with the small test CLIP)."""

from __future__ import annotations

import re

import pytest

from core import jobs, steps
from core.progress import Eta, Stages, offset
from tests.app_harness import TINY, open_page, problems, texts
from tests.app_world import SMALL_CLIP
from ui.text import md

SETUP_CAPTION = "From the setup build at"


def _finished(step: str) -> str:
    import time

    return time.strftime("%H:%M", time.localtime(steps.setup_record(TINY)[step]["finished"]))


def test_stages_weight_progress_by_cost_and_eta_follows_the_work():
    events = []
    stages = Stages({"cheap": 1.0, "dear": 9.0}, lambda d, t, m="": events.append((d, t, m)))
    stages.stage("cheap", "render")(5, 5, "images")
    assert events[-1][:2] == (1000, 10000) and events[-1][2].startswith("1/2 render: images")
    stages.stage("dear", "extract")(50, 100, "features 50/100 images")
    assert events[-1][:2] == (5500, 10000)  # half of the dear stage is 45% of the work, not 25%
    now = [0.0]
    eta = Eta(clock=lambda: now[0])
    assert eta(0, 10000) == (0.0, None)  # no rate yet
    now[0] = 20.0
    assert eta(1000, 10000) == (20.0, pytest.approx(180.0))  # 10% in 20 s: 180 s left
    resumed = Eta(clock=lambda: now[0])
    resumed(6000, 10000)  # found done in the caches: not speed
    now[0] += 10.0
    assert resumed(7000, 10000)[1] == pytest.approx(30.0)


def test_parts_reported_through_offset_move_one_bar_forward_never_back():
    events = []
    bar = lambda d, t, m="": events.append((d, t, m))  # noqa: E731
    for j, n in enumerate([3, 7]):  # two parts of different counts, each filling half of 1000 units
        part = offset(bar, j * 500, 1000, 500, prefix=f"set {j + 1}/2", unit="images")
        for done in [0, *range(1, n + 1), n]:  # a repeated report (e.g. "cached") too
            part(done, n, "generating")
    done = [d for d, _, _ in events]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 1000 and {t for _, t, _ in events} == {1000}
    assert events[4][2] == "set 1/2: generating 3/3 images" and events[5][0] == 500  # the second part starts there
    counted = offset(bar, 300, 1000)  # without a size: the part's own count, after what came before
    counted(40, 700, "features")
    assert events[-1] == (340, 1000, "features")


def test_a_killed_builds_lite_step_reads_as_stopped_and_its_costs_follow_the_models_done(tiny_world, fresh_cache):
    import os
    import subprocess

    from core.config import SetupConfig
    from core.steps import setup

    ended = subprocess.Popen(["true"])
    ended.wait()  # a build process that is gone without writing its end (killed)
    setup._write(tiny_world, "lite", state="running", label="run the EfficientNet-Lite family", pid=ended.pid)
    entry = steps.setup_record(tiny_world)["lite"]
    assert entry["state"] == "stopped" and entry["interrupted"]
    assert setup.steps_left(tiny_world) == "run the EfficientNet-Lite family (stopped)"
    assert setup.setup_table(tiny_world).set_index("step").loc["lite", "state"] == "stopped"
    setup._write(tiny_world, "lite", pid=os.getpid(), models_done=["efficientnet-lite0@128"])  # a live build
    assert steps.setup_record(tiny_world)["lite"]["state"] == "running"
    # a resumed build: the finished Lite model costs ~nothing now, the others their measured seconds
    names = ["efficientnet-lite0@128", "efficientnet-lite1@128"]
    cfg = SetupConfig()
    costs = setup._costs({"size": "default"}, ["lite"], steps.setup_record(tiny_world), cfg, names)
    assert costs == {
        "lite:efficientnet-lite0@128": 0.5,
        "lite:efficientnet-lite1@128": cfg.seconds("efficientnet-lite1"),
    }


def test_the_build_goes_on_to_a_model_the_second_process_is_not_training(tiny_world, fresh_cache):
    import subprocess
    import sys

    from core import store
    from core.steps import setup
    from core.world.backbones import weights_path

    busy, free = "world-resnet-m", "world-mobilenet-s"
    lock = str(weights_path(busy, tiny_world)) + ".lock"
    store.lock(weights_path(busy, tiny_world))  # makes the folder
    holder = subprocess.Popen(  # another process training ``busy`` for a second
        [
            sys.executable,
            "-c",
            f"import time, filelock\nwith filelock.FileLock({lock!r}):\n print(1, flush=True)\n time.sleep(1.5)",
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"1"

    class Second:  # the second process's progress, as the wait passes it on
        reports: list[str] = []

        def report(self, progress, prefix: str) -> None:
            self.reports.append(prefix)

    second = Second()
    assert store.held(weights_path(busy, tiny_world)) and not store.held(weights_path(free, tiny_world))
    assert setup._next_model(tiny_world, [busy, free], second, lambda *a: None) == free
    assert second.reports == []
    # only the busy one left: the build waits for it (passing the second process's progress on), then takes it
    assert setup._next_model(tiny_world, [busy], second, lambda *a: None) == busy
    assert second.reports and holder.wait(5) == 0 and not store.held(weights_path(busy, tiny_world))


def test_with_a_second_process_the_models_step_carries_half_the_worlds_training(monkeypatch):
    from core.config import SetupConfig
    from core.steps import second_process, setup

    monkeypatch.setattr(second_process, "cores", lambda: 2)
    world = ["backbones", "models", "clip"]
    one = setup._costs({"size": "default"}, world, {}, SetupConfig(second_process=False), [])
    two = setup._costs({"size": "default"}, world, {}, SetupConfig(), [])
    assert one == {s: SetupConfig().seconds(s) for s in world}
    assert two["backbones"] == one["backbones"] and two["clip"] == 1.0
    assert two["backbones"] + two["models"] == pytest.approx(sum(one.values()) / 2)
    monkeypatch.setattr(second_process, "cores", lambda: 1)  # one core: no second process, the costs of one
    assert setup._costs({"size": "default"}, world, {}, SetupConfig(), []) == one


def test_pages_after_setup_show_the_default_world_models_work(results_world):
    default = results_world.models[0]
    record = steps.setup_record(TINY)
    assert {s: e["state"] for s, e in record.items() if s != "lite"} == {
        s: steps.SETUP_DONE for s in steps.SETUP_STAGES if s != "lite"
    }

    at = open_page("pages/failures.py")
    assert problems(at) == [] and at.selectbox(key="failures-model").value == default
    assert "From the setup build at" in texts(at) and "CLIP assignment" in texts(at)
    assert at.multiselect(key="f-value").options, "the failures carry CLIP's assigned backgrounds"

    at = open_page("pages/backgrounds.py")
    assert problems(at) == [] and at.selectbox(key="bg-model").value == default
    modes = next(d.value for d in at.dataframe if "value" in d.value and "class_name" in d.value)
    assert len(modes) > 0
    assert texts(at).count(SETUP_CAPTION) >= 2  # the lists and the assignment

    at = open_page("pages/generate.py")
    assert problems(at) == [] and at.selectbox(key="gen-model").value == default
    assert "Generated images" in [h.value for h in at.header]
    assert SETUP_CAPTION in texts(at) and md(f"failure modes of {default}") in texts(at)

    at = open_page("pages/results.py")
    assert problems(at) == []
    table = next(d.value for d in at.dataframe if "debug_heldout · ours" in d.value)
    assert list(table["model"]) == [default]
    assert md(f"From the setup build at {_finished('experiment')}: before/after experiment for {default}.") in texts(at)


@pytest.mark.slow
def test_skipped_lite_step_is_listed_and_a_stopped_one_resumes(results_world):
    assert steps.setup_record(TINY)["lite"]["state"] == "skipped"
    at = open_page("pages/setup.py")
    assert problems(at) == []
    table = next(d.value for d in at.dataframe if "step" in d.value)
    assert table.set_index("step").loc["lite", "state"] == "skipped"
    assert md("run the EfficientNet-Lite family (skipped)") + ": Complete the world setup runs it" in texts(at)
    at.checkbox(key="setup-lite").uncheck().run()
    assert "python -m core setup --size tiny --skip-lite" in [c.value for c in at.code]

    # The build with the Lite step: everything before it is cached (or recorded) and the Lite step starts; a stop
    # once its first images are counted leaves it stopped, and the job resumable.
    job = jobs.job_for("setup_world", dataset=TINY, setup={"models": results_world.models}, clip=SMALL_CLIP)
    events = []

    def hear(done: int, total: int, message: str = "") -> None:
        events.append((done, total, message))
        if re.search(
            r"efficientnet-lite0(@\d+)? \(1/1\): features efficientnet-lite0(@\d+)? [1-9][\d,]*/[\d,]+ images", message
        ):
            job.request_stop()

    jobs.run_inline(job, also=hear)
    status = job.status()
    assert status["state"] == jobs.CANCELLED, status
    lite = [(d, m) for d, _, m in events if "efficientnet-lite0" in m]  # from the model's start to its images
    counted = re.search(r"([\d,]+)/([\d,]+) images", lite[-1][1])
    assert counted and 0 < int(counted[1].replace(",", "")) < int(counted[2].replace(",", ""))
    assert lite[-1][0] > lite[0][0], "the bar moves inside a model"
    assert status["elapsed_s"] > 0 and status["eta_s"] is not None and status["eta_s"] > 0
    assert steps.setup_record(TINY)["lite"]["state"] == "stopped"
    assert steps.setup_record(TINY)["experiment"]["state"] == steps.SETUP_DONE
