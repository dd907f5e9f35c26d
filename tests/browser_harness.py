"""The real-browser test's machinery: the app served headless on loopback, Debian's chromium driven by Playwright.

No browser is downloaded: Playwright launches /usr/bin/chromium (``make browser`` installs it from Debian).
Screenshots go to artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(cache: Path, spec: dict, timeout: float = 90, script: Path = ROOT / "app.py", env: dict | None = None):
    """``streamlit run app.py`` (or ``script``) on 127.0.0.1 with its own cache; yields the base URL, stops the
    server after."""
    port = free_port()
    env = dict(os.environ, BACKDROP_CACHE=str(cache), BACKDROP_APP_DATASET=json.dumps(spec), **(env or {}))
    with open(cache / "streamlit.log", "ab") as log:  # the child keeps its own copy of the handle
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(script),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > end:
                raise RuntimeError(f"the app did not start; see {cache / 'streamlit.log'}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def settle(page, timeout: float = 90_000) -> None:
    """Wait until Streamlit has finished the current script run (the app root says ``notRunning``)."""
    page.wait_for_timeout(400)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
        " === 'notRunning'",
        timeout=timeout,
    )
    page.wait_for_timeout(300)


def shot(page, name: str, timeout: float = 120_000) -> Path:
    """A full-page screenshot (rendering one can take long on a busy machine, hence the generous timeout)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, timeout=timeout)
    return path


ATLAS_FRAME = "iframe[title*='embedding_atlas']"


def drawn_pixels(page, frame_selector: str = ATLAS_FRAME) -> int:
    """Coloured pixels on the embedding map's canvas (its background is white or grey): 0 before points are drawn."""
    import io

    import numpy as np
    from PIL import Image

    canvas = page.frame_locator(frame_selector).locator("canvas").first
    if canvas.count() == 0 or not canvas.is_visible():
        return 0
    rgb = np.asarray(Image.open(io.BytesIO(canvas.screenshot(timeout=30_000))).convert("RGB"), dtype=np.int16)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 40).sum())


def wait_for_points(page, timeout: float = 120, frame_selector: str = ATLAS_FRAME) -> float:
    """Block until the embedding map shows coloured points; returns the time.perf_counter() when first seen (each
    poll takes one canvas screenshot, so the reading is late by at most one poll)."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if drawn_pixels(page, frame_selector) > 50:
            return time.perf_counter()
        page.wait_for_timeout(50)
    raise TimeoutError(f"the embedding map drew no points within {timeout:.0f} s")


def lasso(page, frac: float = 0.25, frame_selector: str = ATLAS_FRAME) -> None:
    """Draw a lasso (an octagon around the canvas centre, ``frac`` of its smaller side in radius) with the map's
    lasso tool."""
    import math

    frame = page.frame_locator(frame_selector)
    frame.locator("[title^='Toggle lasso selection mode']").click()
    box = frame.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    r = min(box["width"], box["height"]) * frac
    ring = [(cx + r * math.cos(a * math.pi / 4), cy + r * math.sin(a * math.pi / 4)) for a in range(9)]
    page.mouse.move(*ring[0])
    page.mouse.down()
    for x, y in ring[1:]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()


def wait_for_selection(page, timeout: float = 60, frame_selector: str = ATLAS_FRAME) -> int:
    """After a selection on the embedding map: block until the page shows as many selected points as the map's own
    status line does and its script run has ended; returns that count. The widget reports a growing lasso more
    than once, so the first caption may be from a partial selection."""
    caption = page.get_by_text(re.compile(r"points selected on the map"))
    status = page.frame_locator(frame_selector).get_by_text(re.compile(r"^[\d,]+ / [\d,]+ points$")).last
    end = time.perf_counter() + timeout
    while True:
        caption.wait_for(timeout=timeout * 1000)
        state = page.evaluate(
            "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
        )
        ours = int(re.search(r"([\d,]+) points selected", caption.inner_text()).group(1).replace(",", ""))
        theirs = int(status.inner_text().split("/")[0].replace(",", ""))
        if state == "notRunning" and ours == theirs:
            return ours
        if time.perf_counter() > end:
            raise TimeoutError(f"the page's selection ({ours}) never matched the map's ({theirs})")
        page.wait_for_timeout(20)
