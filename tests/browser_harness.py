"""The real-browser test's machinery: the app served headless on loopback, Debian's chromium driven by Playwright.

No browser is downloaded: Playwright launches /usr/bin/chromium (``make browser`` installs it from Debian).
Screenshots go to artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import json
import os
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
def serve_app(cache: Path, spec: dict, timeout: float = 90):
    """``streamlit run app.py`` on 127.0.0.1 with its own cache; yields the base URL, stops the server after."""
    port = free_port()
    env = dict(os.environ, BACKDROP_CACHE=str(cache), BACKDROP_APP_DATASET=json.dumps(spec))
    with open(cache / "streamlit.log", "ab") as log:  # the child keeps its own copy of the handle
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
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
