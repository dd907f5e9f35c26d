"""The embedding map at scale in a real browser: time from page load to the first drawn points, where that time goes,
and the lasso round trip (selection -> image ids -> filtered gallery), for synthetic debug sets of 200,000 and 30,000
points, on a first load (a new browser profile: empty HTTP and code caches) and a second load of the same page in
the same profile, side by side.

    python benchmarks/embedding_map.py [--points 200000 30000] [--repeats 2] [--serving static component]

Serves benchmarks/embedding_map_page.py (the Failures page's map widget, selection and gallery filter on synthetic
points, no sampling) with the widget's files served by Streamlit's static file serving (``static``, as the app does:
the browser may cache them) or as a component's files (``component``, as before: fetched on every load), and drives Debian's chromium with Playwright, as the browser test does. Each repeat starts a
new browser profile and loads the page twice in it; before them, one load warms the server up (its first script run
imports the page's modules, makes the synthetic points and copies the widget's files once), reported on its own. "First points" is when a screenshot of the map's
canvas first shows coloured pixels (polled, so late by at most one screenshot). The lasso round trip runs from the
widget's last report of the selection (it reports a growing lasso more than once; the last is the whole selection,
the count the widget itself shows once it stops changing) to the page showing that count and the gallery filtered
to its failures, both read from the page's own timestamps.

Where the time goes (benchmarks/map_timeline.js records it in the page, the widget's frame and its database worker;
seconds after the page's navigation start): Streamlit's page loaded; the message carrying the widget's points
arrived over the websocket (the largest one; the points travel once per session); the widget's frame started, its
script arrived and the frame got the render message with the points; the widget started its in-browser database
(DuckDB-WASM): its WebAssembly fetched (``cached`` when it came from the browser's HTTP cache), compiled and
instantiated (its INSTANTIATE reply), connected, and the points ingested (INSERT_ARROW_FROM_IPC_STREAM).
Per rerun on the server: turning the widget's data frame into the Arrow message Streamlit sends (timed here).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser_harness import (  # noqa: E402
    ATLAS_FRAME,
    CHROMIUM_ARGS,
    chromium_path,
    lasso,
    serve_app,
    wait_for_points,
    wait_for_selection,
)

TIMELINE = Path(__file__).with_name("map_timeline.js")
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def synthetic_points(n: int):
    """The map's points (core.find.embedding.map_points) for ``n`` random debug images in ten Gaussian clusters, 30%
    of them failures, and the failure table's failing rows."""
    import numpy as np
    import pandas as pd

    from core.find.embedding import map_points

    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, n)
    centre = rng.normal(scale=4.0, size=(10, 2))
    xy = centre[label] + rng.normal(size=(n, 2))
    correct = rng.random(n) > 0.3
    pred = np.where(correct, label, (label + rng.integers(1, 10, n)) % 10)
    ids = [f"val/{i:06d}" for i in range(n)]
    split = np.where(rng.random(n) < 0.5, "seed", "heldout")
    table = pd.DataFrame({"image_id": ids, "label": label, "pred": pred, "correct": correct, "split": split})
    points = map_points(pd.DataFrame({"image_id": ids, "x": xy[:, 0], "y": xy[:, 1]}), table, CLASSES)
    return points, table[~table["correct"]]


def server_side(points, reps: int = 3) -> tuple[float, int]:
    """Seconds to turn the widget's data frame into the message Streamlit sends on every rerun, and its bytes."""
    import streamlit.components.v1.component_arrow as component_arrow
    from streamlit import util
    from streamlit.proto.Components_pb2 import ArrowTable

    times, size = [], 0
    for _ in range(reps):
        start = time.perf_counter()
        proto = ArrowTable()
        component_arrow.marshall(proto, points)
        data = proto.SerializeToString(deterministic=True)
        util.calc_hash(data)  # Streamlit hashes each element's message to send a reference when the browser has it
        times.append(time.perf_counter() - start)
        size = len(data)
    return statistics.median(times), size


def _first(log: list, what: str) -> float | None:
    return next((t for t, e, _ in log if e == what), None)


def timeline(page, t0_epoch_ms: float, drawn_epoch_ms: float) -> dict:
    """Seconds after the page's navigation start of each step between the page load and the first points."""
    top = page.evaluate(
        "() => ({origin: Date.now() - performance.now(), load: performance.getEntriesByType('navigation')[0]?.loadEventEnd,"
        " log: window.__mapLog || []})"
    )
    element = page.query_selector(ATLAS_FRAME)
    frame = None if element is None else element.content_frame()
    widget: dict = {"log": [], "resources": [], "origin": None}
    worker: list = []
    if frame is not None:
        frame.evaluate("() => window.__mapAskPerf && window.__mapAskPerf()")
        page.wait_for_timeout(300)
        widget = frame.evaluate(
            "() => { const o = Date.now() - performance.now(); return {origin: o, log: window.__mapLog || [],"
            " resources: performance.getEntriesByType('resource').map((r) => ({name: r.name,"
            " end: o + r.responseEnd, transfer: r.transferSize}))}; }"
        )
        worker = frame.evaluate("() => window.__mapWorkerPerf || []")
    origin = top["origin"]
    before = [(t, v) for t, e, v in top["log"] if e == "ws message" and t <= drawn_epoch_ms]
    data_at, data_bytes = max(before, key=lambda tv: tv[1]) if before else (None, 0)
    script = next((r for r in widget["resources"] if "/assets/index-" in r["name"]), None)
    wasm = next((r for r in worker if r["name"].endswith(".wasm")), None)
    wlog = widget["log"]

    def s(t: float | None) -> float | None:
        return None if t is None else (t - origin) / 1000

    return {
        "page_loaded": None if top["load"] is None else top["load"] / 1000,
        "points_message": s(data_at),
        "points_mb": data_bytes / 1e6,
        "frame_start": s(widget["origin"]),
        "widget_script": s(script and script["end"]),
        "render": s(_first(wlog, "render")),
        "worker": s(_first(wlog, "worker created")),
        "wasm_start": s(wasm and wasm["start"]),
        "wasm_end": s(wasm and wasm["end"]),
        "wasm_cached": None if wasm is None else wasm["transfer"] == 0,
        "instantiated": s(_first(wlog, "reply INSTANTIATE")),
        "connected": s(_first(wlog, "reply CONNECT")),
        "ingest_start": s(_first(wlog, "send INSERT_ARROW_FROM_IPC_STREAM")),
        "ingested": s(_first(wlog, "reply INSERT_ARROW_FROM_IPC_STREAM")),
        "first_points": s(drawn_epoch_ms),
        "navigation_s": (origin - t0_epoch_ms) / 1000,
    }


def settled_count(page, quiet_s: float = 1.5, timeout: float = 120) -> int:
    """The map's own count of selected points once it has not changed for ``quiet_s`` (a busy browser draws the
    lasso, and reports it, for a while after the mouse is released)."""
    status = page.frame_locator(ATLAS_FRAME).get_by_text(re.compile(r"^[\d,]+ / [\d,]+ points$")).last
    end, last, since = time.perf_counter() + timeout, None, time.perf_counter()
    while time.perf_counter() < end:
        now = status.inner_text() if status.count() else None
        if now != last:
            last, since = now, time.perf_counter()
        elif now is not None and time.perf_counter() - since >= quiet_s:
            return int(now.split("/")[0].replace(",", ""))
        page.wait_for_timeout(100)
    raise TimeoutError("the map's selection kept changing")


def one_load(context, url: str, select: bool = True) -> dict:
    page = context.new_page()
    received: list[tuple[float, int]] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda f: received.append((time.perf_counter(), len(f) if f else 0))),
    )
    try:
        to_epoch = time.time() - time.perf_counter()
        start = time.perf_counter()
        page.goto(url)
        drawn = wait_for_points(page, timeout=300)
        if not select:
            return {"first_points_s": drawn - start}
        steps = timeline(page, (start + to_epoch) * 1000, (drawn + to_epoch) * 1000)
        page.wait_for_timeout(1500)  # let the widget finish its first queries before drawing on it
        began = time.perf_counter()
        lasso(page)
        lassoed = time.perf_counter()
        settled_count(page)
        ours = wait_for_selection(page, timeout=120)
        log = page.evaluate("() => window.__mapLog || []")
        # the widget reports a growing lasso more than once: its last report is the whole selection
        sent = [t / 1000 - to_epoch for t, e, _ in log if e == "from widget streamlit:setComponentValue"]
        sent = [t for t in sent if t >= began]
        pattern = re.compile(rf"\b{ours:,} points selected on the map, ([\d,]+) of them failures")
        shown = next(
            (
                t / 1000 - to_epoch
                for t, e, v in log
                if e == "captions" and t / 1000 - to_epoch >= sent[-1] and (m := pattern.search(v))
                if f"Gallery: {m.group(1)} failures" in v
            ),
            None,
        )
        return {
            "selection_sent_s": sent[-1] - lassoed,
            "first_points_s": drawn - start,
            "lasso_round_trip_s": None if shown is None else shown - sent[-1],
            "selected": ours,
            "mb_during_lasso": sum(n for t, n in received if sent[-1] <= t <= (shown or sent[-1])) / 1e6,
            "steps": steps,
        }
    finally:
        page.close()


def _s(v: float | None) -> str:
    return "  n/a" if v is None else f"{v:5.2f}"


STEPS = (
    ("page_loaded", "page loaded"),
    ("points_message", "points arrived"),
    ("frame_start", "widget frame"),
    ("widget_script", "its script"),
    ("render", "render msg"),
    ("worker", "db worker"),
    ("wasm_start", "wasm fetch"),
    ("wasm_end", "fetched"),
    ("instantiated", "compiled"),
    ("connected", "connected"),
    ("ingested", "ingested"),
    ("first_points", "first points"),
)


def report(label: str, r: dict) -> None:
    st = r["steps"]
    cached = {None: "", True: " (wasm from HTTP cache)", False: " (wasm over the network)"}[st["wasm_cached"]]
    print(
        f"    {label}: first points {r['first_points_s']:6.2f} s after page.goto{cached}; lasso round trip "
        f"{_s(r['lasso_round_trip_s'])} s ({r['selected']:,} selected, {r['mb_during_lasso']:.2f} MB received; the "
        f"widget sent its last selection {r['selection_sent_s']:.2f} s after the mouse was released)"
    )
    print("        " + " | ".join(f"{name} {_s(st[key])}" for key, name in STEPS))
    phases = {
        "Streamlit page": st["page_loaded"],
        "wasm download": None if st["wasm_end"] is None else st["wasm_end"] - st["wasm_start"],
        "compile after download": None if st["instantiated"] is None else st["instantiated"] - st["wasm_end"],
        "db start (worker to connected)": None if st["connected"] is None else st["connected"] - st["worker"],
        "ingest": None if st["ingested"] is None else st["ingested"] - st["ingest_start"],
        "ingested to first points": None if st["ingested"] is None else st["first_points"] - st["ingested"],
    }
    print(
        f"        points message {st['points_mb']:.1f} MB; "
        + "; ".join(f"{k} {_s(v).strip()} s" for k, v in phases.items())
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, nargs="+", default=[200_000, 30_000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--serving", nargs="+", choices=["static", "component"], default=["static", "component"])
    a = ap.parse_args(argv)
    exe = chromium_path()
    if exe is None:
        sys.exit("Debian's chromium is not installed: run `make browser`.")
    from playwright.sync_api import sync_playwright

    from core.find.embedding import drawn_points

    summary = []
    page = ROOT / "benchmarks" / "embedding_map_page.py"
    (page.parent / "static").mkdir(exist_ok=True)  # the page's static folder (git-ignored): the widget's copy
    with sync_playwright() as p:
        for n, serving in ((n, s) for n in a.points for s in a.serving):
            rerun_s, size = server_side(drawn_points(synthetic_points(n)[0]))
            on = "true" if serving == "static" else "false"
            env = {"BENCH_MAP_POINTS": str(n), "STREAMLIT_SERVER_ENABLE_STATIC_SERVING": on}
            loads: list[tuple[dict, dict]] = []
            with (
                tempfile.TemporaryDirectory(prefix="backdrop-bench-map-") as cache,  # the widget's copy: 78 MB
                serve_app(Path(cache), {}, script=page, env=env) as url,
            ):
                for i in range(a.repeats + 1):
                    with tempfile.TemporaryDirectory(prefix="backdrop-bench-profile-") as profile:
                        context = p.chromium.launch_persistent_context(
                            profile, executable_path=exe, args=CHROMIUM_ARGS, viewport={"width": 1440, "height": 1200}
                        )
                        context.add_init_script(path=str(TIMELINE))
                        try:
                            if i == 0:  # the server's first script run (imports, the widget's copy) is not measured
                                server_first = one_load(context, url, select=False)["first_points_s"]
                            else:
                                loads.append((one_load(context, url), one_load(context, url)))
                        finally:
                            context.close()
            print(
                f"{n:>9,} points, widget served as {serving} files: widget data {size / 1e6:5.1f} MB, server-side per "
                f"rerun {rerun_s:5.2f} s (data frame -> Arrow message + hash); the server's first page load (its "
                f"first script run, not counted below) drew first points after {server_first:.2f} s"
            )
            for i, (first, second) in enumerate(loads):
                report(f"profile {i + 1}, first load ", first)
                report(f"profile {i + 1}, second load", second)
            med = [
                statistics.median(load[k][key] for load in loads if load[k][key] is not None)
                for k in (0, 1)
                for key in ("first_points_s", "lasso_round_trip_s")
            ]
            summary.append((n, serving, med))
    for n, serving, (f1, l1, f2, l2) in summary:
        print(
            f"{n:>9,} points, {serving:>9} files, medians: first points {f1:5.2f} s first load, {f2:5.2f} s second "
            f"load ({f1 / f2:.2f}x); lasso round trip {l1:.2f} / {l2:.2f} s"
        )


if __name__ == "__main__":
    main()
