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
    assert st["state"] == jobs.CANCELLED and not jobs._alive(st["pid"])
