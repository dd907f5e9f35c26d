"""A new user's first run, timed: the Setup page's one-click "Build the offline world" job on a fresh cache.

    python benchmarks/first_run.py                 # the default world
    python benchmarks/first_run.py --size tiny     # the tiny world (what the tests use)
    python benchmarks/first_run.py --skip-lite     # without the EfficientNet-Lite family
    python benchmarks/first_run.py --one-process   # without the second process (SetupConfig.second_process)

It submits the same background job the app does (core.jobs, kind ``setup_world``) in an empty cache folder, polls
its status file as the app's progress bar does, and prints: the time until the world's failures are shown (the
default world model trained and run), until every page is populated (CLIP assignments and failure modes, a generated set,
a before/after table), the total, each step's measured seconds, and the longest gap between progress updates
(how long the bar can sit still).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="default", choices=["default", "tiny"])
    ap.add_argument("--skip-lite", action="store_true", help="leave out the EfficientNet-Lite family")
    ap.add_argument("--one-process", action="store_true", help="no second process (as on a one-core machine)")
    ap.add_argument("--cache", help="cache folder to use (default: a new empty one)")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between status reads")
    a = ap.parse_args()

    os.environ["BACKDROP_CACHE"] = a.cache or tempfile.mkdtemp(prefix="backdrop-first-run-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from core import jobs, steps
    from core.progress import duration

    spec = {"name": "scenes-mnist", "size": a.size, "seed": 0}
    setup = {**({"lite": False} if a.skip_lite else {}), **({"second_process": False} if a.one_process else {})}
    kwargs = {"dataset": spec, **({"setup": setup} if setup else {})}
    print(f"cache {os.environ['BACKDROP_CACHE']} · world {a.size} · {os.cpu_count()} CPUs · load {os.getloadavg()}")
    t0 = time.time()
    job = jobs.submit("setup_world", **kwargs)
    marks: dict[str, float] = {}
    last_change, longest, longest_at, seen = t0, 0.0, "", None
    interrupted = False
    while True:
        try:
            st = job.status()
        except KeyboardInterrupt:  # Ctrl-C: stop the build and print what was measured so far
            job.request_stop()
            interrupted, st = True, job.wait(timeout=120)
            break
        now = time.time()
        key = (st.get("done"), st.get("message"))
        if key != seen:
            if now - last_change > longest:
                longest, longest_at = now - last_change, str(seen[1] if seen else "starting")
            seen, last_change = key, now
            if st.get("message"):
                eta = st.get("eta_s")
                left = "" if eta is None else f" · about {duration(eta)} left"
                print(
                    f"\r{now - t0:7.1f} s  {st.get('done', 0) / max(st.get('total') or 1, 1):6.1%}{left}  "
                    f"{str(st['message'])[:90]:<90}",
                    end="",
                    flush=True,
                )
        ready = "images" in marks or jobs.job_for("prepare_dataset", dataset=spec).state == jobs.DONE
        record = steps.setup_record(spec) if ready else {}  # opening earlier would render the world here too
        for step in ("backbones", "experiment"):
            if step not in marks and record.get(step, {}).get("state") == steps.SETUP_DONE:
                marks[step] = now - t0
        if "images" not in marks and record.get("images"):
            marks["images"] = now - t0
        if st["state"] in (jobs.DONE, jobs.FAILED, jobs.CANCELLED):
            break
        try:
            time.sleep(a.poll)
        except KeyboardInterrupt:
            job.request_stop()
            interrupted, st = True, job.wait(timeout=120)
            break
    total = time.time() - t0
    print()
    if st["state"] != jobs.DONE:
        print(
            f"the job ended {st['state']}{' (interrupted)' if interrupted else ''}: {st.get('error') or st.get('message')}"
        )
    print(f"failures shown (default model run):  {marks.get('backbones', float('nan')):7.1f} s")
    print(f"every page populated (before/after): {marks.get('experiment', float('nan')):7.1f} s")
    print(
        f"total{' (until stopped)' if st['state'] != jobs.DONE else ''}:".ljust(37)
        + f"{total:7.1f} s  ({duration(total)})"
    )
    print(f"longest gap between progress updates: {longest:.1f} s (during: {longest_at[:80]})")
    for step, entry in steps.setup_record(spec).items():
        print(f"  {step:<11} {entry.get('state', ''):<8} {entry.get('seconds') or 0:7.1f} s")
    return 0 if st["state"] == jobs.DONE else 1


if __name__ == "__main__":
    sys.exit(main())
