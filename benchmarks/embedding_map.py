"""The embedding map at scale in a real browser: time from page load to the first drawn points, and the lasso
round trip (selection -> image ids -> filtered gallery), for synthetic debug sets of 200,000 and 30,000 points,
with the widget sent every column of the map's points (``all``, image ids included, as before) or only the columns
it draws (``drawn``, what the app sends), side by side in one run.

    python benchmarks/embedding_map.py [--points 200000 30000] [--frames all drawn] [--repeats 2]

Serves benchmarks/embedding_map_page.py (the Failures page's map widget, selection and gallery filter on synthetic
points, no sampling) and drives Debian's chromium with Playwright, as the browser test does. Each load is a fresh
browser page (a new session and an empty browser cache); the first load of a server also includes that server's first
script run (making the synthetic points, and the widget's one-time copy into the cache).
"First points" is when a screenshot of the map's canvas first shows coloured pixels (polled, so late by at most
one screenshot). The round trip ends when the page's selected count equals the count the widget itself shows.

Where the time goes, per load: the websocket bytes the page received (the points travel once per session; a rerun
sends Streamlit's reference to the cached message), the widget's in-browser database start (DuckDB-WASM: download
and compile, from its INSTANTIATE to its CONNECT message) and its ingest of the points (INSERT_ARROW_FROM_IPC_STREAM),
read from the messages the widget posts to its database worker. Per rerun on the server: turning the widget's data
frame into the Arrow message Streamlit sends (timed here, in this process).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser_harness import (  # noqa: E402
    CHROMIUM_ARGS,
    chromium_path,
    lasso,
    serve_app,
    wait_for_points,
    wait_for_selection,
)

# timestamps (ms since the epoch) of the messages the widget posts to its database worker, by type, and their replies
WORKER_LOG = r"""
(() => {
  const Native = window.Worker;
  if (!Native) return;
  const log = (window.__mapWorkerLog = []);
  window.Worker = function (url, opts) {
    const w = new Native(url, opts), post = w.postMessage.bind(w), sent = new Map();
    w.postMessage = (m, t) => {
      if (m && m.type) { log.push([Date.now(), 'send ' + m.type]); sent.set(m.messageId, m.type); }
      return post(m, t);
    };
    w.addEventListener('message', (e) => {
      const type = e.data && sent.get(e.data.requestId);
      if (type) { log.push([Date.now(), 'reply ' + type]); sent.delete(e.data.requestId); }
    });
    return w;
  };
  window.Worker.prototype = Native.prototype;
})();
"""


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


def widget_frame(points, frame: str):
    """What the page sends the widget: every column of the points (``all``) or the ones it draws (``drawn``)."""
    from core.find.embedding import drawn_points

    return points if frame == "all" else drawn_points(points)


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


def _phase(log: list, first: str, last: str) -> float | None:
    a = next((t for t, e in log if e == first), None)
    b = next((t for t, e in log if e == last), None)
    return None if a is None or b is None else (b - a) / 1000


def one_load(browser, url: str) -> dict:
    page = browser.new_page(viewport={"width": 1440, "height": 1200})
    received: list[tuple[float, int]] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda f: received.append((time.perf_counter(), len(f) if f else 0))),
    )
    page.add_init_script(WORKER_LOG)
    try:
        start = time.perf_counter()
        page.goto(url)
        drawn = wait_for_points(page, timeout=300)
        page.wait_for_timeout(1500)  # let the widget finish its first queries before drawing on it
        lasso(page)
        lassoed = time.perf_counter()
        ours = wait_for_selection(page, timeout=120)
        done = time.perf_counter()
        log = max((f.evaluate("() => window.__mapWorkerLog || []") for f in page.frames), key=len)
        return {
            "first_points_s": drawn - start,
            "lasso_round_trip_s": done - lassoed,
            "selected": ours,
            "mb_before_points": sum(n for t, n in received if t <= drawn) / 1e6,
            "mb_during_lasso": sum(n for t, n in received if lassoed <= t <= done) / 1e6,
            "db_start_s": _phase(log, "send INSTANTIATE", "send CONNECT"),
            "ingest_s": _phase(log, "send INSERT_ARROW_FROM_IPC_STREAM", "reply INSERT_ARROW_FROM_IPC_STREAM"),
        }
    finally:
        page.close()


def _s(v: float | None) -> str:
    return "   n/a" if v is None else f"{v:6.2f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, nargs="+", default=[200_000, 30_000])
    ap.add_argument("--frames", nargs="+", choices=["all", "drawn"], default=["all", "drawn"])
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    exe = chromium_path()
    if exe is None:
        sys.exit("Debian's chromium is not installed: run `make browser`.")
    from playwright.sync_api import sync_playwright

    medians: dict[tuple[int, str], tuple[float, float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        for n in a.points:
            points = synthetic_points(n)[0]
            for frame in a.frames:
                rerun_s, size = server_side(widget_frame(points, frame))
                env = {"BENCH_MAP_POINTS": str(n), "BENCH_MAP_FRAME": frame}
                page = ROOT / "benchmarks" / "embedding_map_page.py"
                with (
                    tempfile.TemporaryDirectory(prefix="backdrop-bench-map-") as cache,  # the widget's copy: 78 MB
                    serve_app(Path(cache), {}, script=page, env=env) as url,
                ):
                    runs = [one_load(browser, url) for _ in range(a.repeats)]
                print(
                    f"{n:>9,} points, {frame:>5} columns: widget data {size / 1e6:5.1f} MB, server-side per rerun "
                    f"{rerun_s:5.2f} s (data frame -> Arrow message + hash)"
                )
                for i, r in enumerate(runs):
                    print(
                        f"    load {i + 1}: first points {r['first_points_s']:6.2f} s after page load "
                        f"({r['mb_before_points']:5.1f} MB over the websocket; in-browser database start "
                        f"{_s(r['db_start_s'])} s, ingest {_s(r['ingest_s'])} s); lasso round trip "
                        f"{r['lasso_round_trip_s']:5.2f} s ({r['selected']:,} points selected, "
                        f"{r['mb_during_lasso']:.2f} MB received meanwhile)"
                    )
                med = (
                    statistics.median(r["first_points_s"] for r in runs),
                    statistics.median(r["lasso_round_trip_s"] for r in runs),
                )
                medians[(n, frame)] = med
                print(f"    median: first points {med[0]:.2f} s, lasso round trip {med[1]:.2f} s")
        browser.close()
    for n in a.points:
        if (n, "all") in medians and (n, "drawn") in medians:
            (fa, la), (fd, ld) = medians[(n, "all")], medians[(n, "drawn")]
            print(
                f"{n:>9,} points, all / drawn columns: first points {fa:.2f} / {fd:.2f} s = {fa / fd:.2f}x, "
                f"lasso round trip {la:.2f} / {ld:.2f} s = {la / ld:.2f}x"
            )


if __name__ == "__main__":
    main()
