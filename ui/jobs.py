"""A panel that starts, watches, stops and resumes one background job (core.jobs) from any page.

The job runs in its own process, so it survives reruns, page switches and closed tabs; two sessions asking
for the same work get the same job. While it runs, a fragment polls its status file every second and reruns
the whole page once it ends, so the page then renders the job's results from the cache.
"""

from __future__ import annotations

import time

import streamlit as st

from core import jobs
from core.progress import time_line
from ui.text import md

POLL_SECONDS = 1.0


def _progress_line(status: dict) -> tuple[float, str]:
    done, total = int(status.get("done") or 0), int(status.get("total") or 0)
    frac = min(1.0, done / total) if total > 0 else 0.0
    msg = status.get("message") or ""
    text = f"{md(msg)} — {frac:.0%}" if total else md(msg or "starting")
    if status.get("elapsed_s") is not None:
        text += f" · {time_line(status['elapsed_s'], status.get('eta_s'))}"
    return frac, text


def _elapsed(status: dict) -> str:
    start = status.get("started")
    if not start:
        return ""
    end = status.get("finished") or status.get("updated") or time.time()
    return f" in {max(0.0, end - start):.0f} s"


def job_panel(
    kind: str, *, label: str, key: str, start_label: str = "Start", help: str | None = None, **kwargs
) -> dict:
    """Render one job's controls and state; returns its status dict (``state`` is one of core.jobs' states)."""
    job = jobs.job_for(kind, **kwargs)
    status = job.status()
    state = status["state"]
    if state == jobs.RUNNING:
        _running(job, label, key)
        return status
    c1, c2 = st.columns([1, 3], vertical_alignment="center")
    if state == jobs.DONE:
        c2.success(f"{md(label)}: done{_elapsed(status)}.", icon=":material/check_circle:")
        if c1.button("Run again", key=f"{key}-again", help="Recompute; finished cached steps are reused."):
            jobs.submit(kind, restart=True, **kwargs)
            st.rerun()
    elif state == jobs.FAILED:
        c2.error(f"{md(label)} failed: {md(status.get('error') or 'no message')}", icon=":material/error:")
        if c1.button("Retry", key=f"{key}-retry", type="primary"):
            jobs.submit(kind, **kwargs)
            st.rerun()
    elif state == jobs.CANCELLED:
        done, total = int(status.get("done") or 0), int(status.get("total") or 0)
        where = f" at {done / total:.0%}" if total else ""
        c2.warning(
            f"{md(label)} stopped{where}. Finished work is kept; Resume continues where it stopped.",
            icon=":material/pause_circle:",
        )
        if c1.button("Resume", key=f"{key}-resume", type="primary"):
            jobs.submit(kind, **kwargs)
            st.rerun()
    else:
        if c1.button(start_label, key=f"{key}-start", type="primary", help=help):
            jobs.submit(kind, **kwargs)
            st.rerun()
        c2.caption(f"{md(label)}: runs in the background; progress shows here, and you can switch pages meanwhile.")
    return status


def _running(job: jobs.Job, label: str, key: str) -> None:
    @st.fragment(run_every=POLL_SECONDS)
    def poll() -> None:
        status = job.status()
        if status["state"] != jobs.RUNNING:
            st.rerun()  # whole page: it now renders the finished job's results
        frac, text = _progress_line(status)
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.progress(frac, text=f"{md(label)}: {text}")
        if job.stop_requested():
            c2.caption("stopping…")
        elif c2.button("Stop", key=f"{key}-stop", help="Stops after the current unit of work; resume later."):
            job.request_stop()
            st.rerun(scope="fragment")

    poll()


def any_running(kind: str | None = None) -> list[tuple[jobs.Job, dict]]:
    return [(j, s) for j, s in jobs.list_jobs() if s["state"] == jobs.RUNNING and (kind is None or j.kind == kind)]
