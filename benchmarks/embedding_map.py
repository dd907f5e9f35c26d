"""The embedding map at scale in a real browser: time from page load to the first drawn points, and the lasso
round trip (selection -> image ids -> filtered gallery), for a synthetic debug set of 200,000 points.

    python benchmarks/embedding_map.py [--points 200000 20000] [--repeats 2]

Serves benchmarks/embedding_map_page.py (the Failures page's map widget, selection and gallery filter on synthetic
points, no sampling) and drives Debian's chromium with Playwright, as the browser test does. The first load of a
server includes the widget's one-time copy into the cache; each repeat is a fresh browser page (a new session).
"First points" is when a screenshot of the map's canvas first shows coloured pixels (polled, so late by at most
one screenshot). The round trip ends when the page's selected count equals the count the widget itself shows.
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


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def one_load(browser, url: str) -> dict:
    page = browser.new_page(viewport={"width": 1440, "height": 1200})
    try:
        start = time.perf_counter()
        page.goto(url)
        drawn = wait_for_points(page, timeout=300)
        page.wait_for_timeout(1500)  # let the widget finish its first queries before drawing on it
        lasso(page)
        lassoed = time.perf_counter()
        ours = wait_for_selection(page, timeout=120)
        return {"first_points_s": drawn - start, "lasso_round_trip_s": time.perf_counter() - lassoed, "selected": ours}
    finally:
        page.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, nargs="+", default=[200_000])
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    exe = chromium_path()
    if exe is None:
        sys.exit("Debian's chromium is not installed: run `make browser`.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        for n in a.points:
            cache = Path(tempfile.mkdtemp(prefix="backdrop-bench-map-"))
            env = {"BENCH_MAP_POINTS": str(n)}
            with serve_app(cache, {}, script=ROOT / "benchmarks" / "embedding_map_page.py", env=env) as url:
                runs = [one_load(browser, url) for _ in range(a.repeats)]
            for i, r in enumerate(runs):
                print(
                    f"{n:>9,} points, load {i + 1}: first points {r['first_points_s']:6.2f} s after page load; "
                    f"lasso round trip {r['lasso_round_trip_s']:5.2f} s ({r['selected']:,} points selected)"
                )
            print(
                f"{n:>9,} points, median: first points "
                f"{statistics.median(r['first_points_s'] for r in runs):.2f} s, lasso round trip "
                f"{statistics.median(r['lasso_round_trip_s'] for r in runs):.2f} s"
            )
        browser.close()


if __name__ == "__main__":
    main()
