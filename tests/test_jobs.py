import inspect

import pytest

import core.job_kinds  # noqa: F401
from core import jobs
from core.errors import UnknownNameError


def test_background_job_reports_progress_and_finishes(fresh_cache):
    job = jobs.submit("selftest", steps=3, delay=0.05)
    st = job.wait(timeout=60)
    assert st["state"] == jobs.DONE, st
    assert st["result"] == {"counted": 3} and st["done"] == 3


def test_same_job_is_shared_not_run_twice(fresh_cache):
    a = jobs.submit("selftest", steps=40, delay=0.05)
    b = jobs.submit("selftest", steps=40, delay=0.05)
    assert a.id == b.id and a.status()["pid"] == b.status()["pid"]
    a.request_stop()
    st = a.wait(timeout=60)
    assert st["state"] == jobs.CANCELLED and st["done"] < 40


def test_unknown_kind_names_closest(fresh_cache):
    with pytest.raises(UnknownNameError, match="selftest"):
        jobs.submit("selftst")


def test_stop_all_ends_running_jobs(fresh_cache):
    job = jobs.submit("selftest", steps=400, delay=0.05)
    assert jobs.stop_all(grace=10.0) == 1
    st = job.status()
    assert st["state"] == jobs.CANCELLED and not jobs.alive(st["pid"])


def test_one_job_kind_per_step():
    from core import steps

    kinds = set(jobs.JOB_KINDS) - {"selftest"}
    assert kinds == {
        "prepare_dataset",
        "setup_world",
        "run_models",
        "embedding_map",
        "propose_values",
        "textualize",
        "generate_modes",
        "experiment",
        "experiment_repeats",
        "search_failures",
    }
    for kind in kinds:
        assert "core_steps." in inspect.getsource(jobs.JOB_KINDS.entry(kind).fn), kind
    assert steps.EXPERIMENTS == ("individual", "collective", "lam", "k")


def test_job_id_is_a_stable_hash_of_its_json_arguments():
    a = jobs.job_for("experiment", dataset={"name": "scenes-mnist", "size": "tiny"}, what="lam", models=["m"])
    b = jobs.job_for("experiment", models=["m"], what="lam", dataset={"size": "tiny", "name": "scenes-mnist"})
    c = jobs.job_for("experiment", dataset={"name": "scenes-mnist", "size": "tiny"}, what="k", models=["m"])
    assert a.id == b.id != c.id


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"what": "individual", "debug": {"k": 2}}, "DebugConfig has no setting 'k'"),
        ({"what": "individual", "generator": {"steps": 1}}, "GeneratorConfig has no setting 'steps'"),
        ({"what": "sweep-lam"}, "Unknown experiment 'sweep-lam'"),
    ],
)
def test_bad_job_arguments_fail_readably_before_any_work(fresh_cache, kwargs, message):
    from core.errors import InvalidInputError

    job = jobs.job_for("experiment", dataset={"name": "scenes-mnist", "size": "tiny"}, models=["m"], **kwargs)
    with pytest.raises(InvalidInputError, match=message):
        jobs.run_inline(job)
    assert job.status()["state"] == jobs.FAILED and message in job.status()["error"]
    assert not (fresh_cache / "datasets").exists()


def test_submit_closes_its_handle_on_the_job_log(fresh_cache, monkeypatch):
    opened = []

    def tracking_open(*args, **kwargs):
        f = open(*args, **kwargs)  # noqa: SIM115 (returned to the caller, which owns closing it)
        opened.append(f)
        return f

    monkeypatch.setattr(jobs, "open", tracking_open, raising=False)  # module globals shadow the builtin
    job = jobs.submit("selftest", steps=2, delay=0.01)
    logs = [f for f in opened if f.name == str(job.folder / "log.txt")]
    assert len(logs) == 1 and logs[0].closed
    assert job.wait(timeout=60)["state"] == jobs.DONE
    assert (job.folder / "log.txt").exists()


def test_a_reader_never_sees_a_starting_job_as_failed(fresh_cache, monkeypatch):
    seen = []
    real_popen = jobs.subprocess.Popen

    def observing_popen(*args, **kwargs):  # the moment between the status write and the child's pid
        seen.append(jobs.job_for("selftest", steps=2, delay=0.01).status())
        proc = real_popen(*args, **kwargs)
        seen.append(jobs.job_for("selftest", steps=2, delay=0.01).status())
        return proc

    monkeypatch.setattr(jobs.subprocess, "Popen", observing_popen)
    job = jobs.submit("selftest", steps=2, delay=0.01)
    after = job.status()
    assert len(seen) == 2 and all(st["state"] != jobs.FAILED for st in seen), seen
    assert after["state"] in (jobs.RUNNING, jobs.DONE) and after["pid"], after
    assert job.wait(timeout=60)["state"] == jobs.DONE
