"""Background jobs: long steps run in their own process, report progress to a file, and stop on request.

A job is a registered kind plus JSON arguments. Its id is a hash of both, so two sessions (or the CLI and the
app) asking for the same work share one job instead of running it twice. State lives in
``cache/jobs/<id>/``: ``spec.json``, ``status.json`` (state, done/total, message, seconds elapsed and an estimate
of the seconds left (``elapsed_s``, ``eta_s``: core.progress.Eta), error, result) and a ``stop``
file whose presence asks the job to stop between units of work. Pages poll ``status``; nothing here imports
streamlit. Ray or another scheduler can later run the same kinds over shards without changing callers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import store
from core.errors import BackdropError, Cancelled
from core.progress import Eta
from core.registry import Registry

JOB_KINDS: Registry[Callable[..., Any]] = Registry("job kind", plugins=("core.job_kinds",))
RUNNING, DONE, FAILED, CANCELLED, QUEUED = "running", "done", "failed", "cancelled", "queued"


def job_kind(name: str):
    """Register ``fn(progress, should_stop, **kwargs) -> JSON-able result`` as a job kind."""
    return JOB_KINDS.register(name)


@dataclass
class Job:
    id: str
    kind: str
    kwargs: dict

    @property
    def folder(self) -> Path:
        return store.cache_root() / "jobs" / self.id

    def status(self) -> dict:
        st = store.load_json(self.folder / "status.json", default={"state": QUEUED, "done": 0, "total": 0})
        if st.get("state") == RUNNING and not alive(st.get("pid")):
            st = dict(st, state=FAILED, error="The job's process ended unexpectedly; start it again to resume.")
        return st

    @property
    def state(self) -> str:
        return self.status()["state"]

    def request_stop(self) -> None:
        store.atomic_write_bytes(self.folder / "stop", b"stop")

    def stop_requested(self) -> bool:
        return (self.folder / "stop").exists()

    def wait(self, timeout: float = 600, poll: float = 0.2) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            st = self.status()
            if st["state"] in (DONE, FAILED, CANCELLED):
                return st
            time.sleep(poll)
        raise TimeoutError(f"job {self.kind} still running after {timeout}s")


def alive(pid) -> bool:
    """Whether the process ``pid`` (on this machine) still runs; a zombie or a missing pid is not."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    try:  # a finished child that nobody reaped is a zombie: not alive
        return Path(f"/proc/{int(pid)}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def job_for(kind: str, **kwargs) -> Job:
    JOB_KINDS.entry(kind)  # unknown kinds fail here, with the closest names
    return Job(store.make_key("job", kind, kwargs), kind, kwargs)


def submit(kind: str, *, restart: bool = False, **kwargs) -> Job:
    """Start the job in a background process unless the same job is already running (then share it).

    A finished job is not rerun unless ``restart``; a failed or cancelled one is restarted (its steps resume
    from their caches).
    """
    job = job_for(kind, **kwargs)
    with store.lock(job.folder / "submit"):
        st = job.status()
        if st["state"] == RUNNING or (st["state"] == DONE and not restart):
            return job
        (job.folder / "stop").unlink(missing_ok=True)
        store.save_json(job.folder / "spec.json", {"kind": kind, "kwargs": kwargs})
        # QUEUED until the pid is known: a reader never sees RUNNING without a pid (which reads as "failed").
        store.save_json(
            job.folder / "status.json",
            {"state": QUEUED, "done": 0, "total": 0, "message": "starting", "pid": None, "started": time.time()},
        )
        try:
            with open(job.folder / "log.txt", "ab") as log:  # the worker keeps its own copy of the handle
                proc = subprocess.Popen(
                    [sys.executable, "-m", "core.jobs", job.id],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=dict(os.environ),
                )
        except OSError as e:
            _update(job, state=FAILED, error=f"Could not start the job's process: {e}")
            raise
        _mark_started(job, proc.pid)
    return job


def _update(job: Job, **fields) -> None:
    with store.lock(job.folder / "status"):  # the submitter and the worker both write the status
        st = store.load_json(job.folder / "status.json", default={})
        st.update(fields, updated=time.time())
        store.save_json(job.folder / "status.json", st)


def _mark_started(job: Job, pid: int) -> None:
    """RUNNING and the pid in one write; a worker that already reported its own state keeps it."""
    with store.lock(job.folder / "status"):
        st = store.load_json(job.folder / "status.json", default={})
        if st.get("state") == QUEUED:
            st.update(state=RUNNING, pid=pid, updated=time.time())
            store.save_json(job.folder / "status.json", st)


def run_inline(job: Job, also: Callable[[int, int, str], None] | None = None) -> Any:
    """Run a job in this process (the worker's body; also what tests and the CLI use); ``also`` hears its
    progress too (a step that runs this job as part of a larger one)."""
    fn = JOB_KINDS.entry(job.kind).fn
    _update(job, state=RUNNING, pid=os.getpid(), kind=job.kind, kwargs=job.kwargs, elapsed_s=0.0, eta_s=None)
    last, eta = [0.0], Eta()

    def progress(done: int, total: int, message: str = "") -> None:
        now = time.time()
        elapsed, left = eta(done, total)
        if also is not None:
            also(done, total, message)
        if now - last[0] > 0.2 or done >= total:
            last[0] = now
            _update(
                job,
                done=int(done),
                total=int(total),
                message=message,
                elapsed_s=round(elapsed, 1),
                eta_s=None if left is None else round(left, 1),
            )

    try:
        result = fn(progress=progress, should_stop=job.stop_requested, **job.kwargs)
    except Cancelled as e:
        _update(job, state=CANCELLED, message=str(e))
        return None
    except BackdropError as e:
        _update(job, state=FAILED, error=str(e))
        raise
    except Exception as e:  # shown to users as one readable line; the worker logs the traceback
        _update(job, state=FAILED, error=f"{type(e).__name__}: {e}")
        raise
    _update(job, state=DONE, result=result, finished=time.time())
    return result


def stop_all(grace: float = 5.0) -> int:
    """Ask every running job in this cache to stop; end the process group of any still running after ``grace``
    seconds. Returns how many jobs were running. (Tests call it at teardown; the app never does.)"""
    import signal

    running = [(job, st) for job, st in list_jobs() if st.get("state") == RUNNING]
    for job, _ in running:
        job.request_stop()
    end = time.time() + grace
    while time.time() < end and any(alive(st.get("pid")) for _, st in running):
        time.sleep(0.1)
    for job, st in running:
        pid = st.get("pid")
        if pid and alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)  # workers start their own session: pgid == pid
            _update(job, state=CANCELLED, message="ended when its owner shut down")
    end = time.time() + 5.0  # SIGKILL is delivered asynchronously: return once the killed workers are gone
    while time.time() < end and any(alive(st.get("pid")) for _, st in running):
        time.sleep(0.05)
    return len(running)


def load_job(job_id: str) -> Job:
    spec = store.load_json(store.cache_root() / "jobs" / job_id / "spec.json")
    if not spec:
        raise BackdropError(f"No job {job_id!r} in the cache.")
    return Job(job_id, spec["kind"], spec["kwargs"])


def list_jobs() -> list[tuple[Job, dict]]:
    out = []
    for spec in (store.cache_root() / "jobs").glob("*/spec.json"):
        job = load_job(spec.parent.name)
        out.append((job, job.status()))
    return sorted(out, key=lambda js: -js[1].get("started", 0))


def _worker_main(job_id: str) -> int:
    from core import jobs  # the module itself, not this __main__ copy: its registry holds the kinds

    try:
        jobs.run_inline(jobs.load_job(job_id))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1]))
