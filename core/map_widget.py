"""The embedding map's widget files: Embedding Atlas's Streamlit component (Apple, MIT), made to work offline and
to load fast a second time.

embedding-atlas ships a Streamlit component whose in-browser database (DuckDB-WASM) is fetched from the jsDelivr
CDN at first use, so the map stays blank on a machine without internet. The same package also ships those exact
DuckDB-WASM files (its standalone viewer, same DuckDB-WASM release). ``component_dir`` assembles the component
once per package version into a folder: the component's files, those DuckDB-WASM files next to them under the
names the component asks for, and the component's script pointed at them instead of the CDN.

Two more changes let a browser reuse the files across page loads, when the folder is served by Streamlit's static
file serving (``server.enableStaticServing``; ui/atlas.py uses it when it is on):
- Every file gets a fixed modification time long ago. Streamlit's static route sends Last-Modified and ETag but no
  Cache-Control, so a browser derives how long a file stays fresh from its age (a tenth of it, RFC 9111 4.2.2); the
  folder is named by the package version and its files never change, so an old date lets the browser reuse them,
  the 36 MB WebAssembly module included, without asking the server again.
- DuckDB-WASM's worker wraps its WebAssembly download in a JavaScript stream (to report progress, which the
  component does not show). Chromium keeps a module's compiled code only when it was compiled straight from a
  fetched response (and only once enough of it has been optimized, which a short session with the map does not
  reach), so the worker takes its own unwrapped branch instead.
Nothing else of the component changes; a package version whose scripts no longer have the patched lines is refused
with a clear error rather than served half-patched.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import metadata
from pathlib import Path

from core import store
from core.errors import MissingResourceError

CDN = re.compile(r"`https://cdn\.jsdelivr\.net/npm/\$\{\w+\}@\$\{\w+\}/dist/`")
LOCAL = "new URL(`duckdb/`,document.baseURI).href"
# local file name prefix (the standalone viewer's files are hashed) -> the name the component asks the CDN for
DUCKDB_FILES = {
    "duckdb-eh-": "duckdb-eh.wasm",
    "duckdb-mvp-": "duckdb-mvp.wasm",
    "duckdb-browser-eh.worker-": "duckdb-browser-eh.worker.js",
    "duckdb-browser-mvp.worker-": "duckdb-browser-mvp.worker.js",
}
# DuckDB-WASM's worker: the streaming compile from a progress-reporting wrapper of the response -> from the response
WORKER_PATCHES = (
    (
        'if(WebAssembly.instantiateStreaming)if(typeof TransformStream=="function")',
        "if(WebAssembly.instantiateStreaming)if(!1)",
    ),
    ('console.warn("instantiating without progress handler since transform streams are unavailable");', ""),
)
FILE_TIME = 946_684_800  # 2000-01-01 UTC: the assembled files' modification time (see the module's docstring)
SUPPORTED = "embedding-atlas>=0.22,<0.23"


class AtlasUnavailableError(MissingResourceError):
    """The installed embedding-atlas cannot be served offline."""


def _patch(path: Path, patches: tuple[tuple[str, str], ...], what: str, version: str) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in patches:
        if text.count(old) != 1:
            raise AtlasUnavailableError(
                f"embedding-atlas {version}'s {what} no longer loads DuckDB-WASM the way this app expects; "
                f"pip install '{SUPPORTED}'."
            )
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def component_dir(root: Path | None = None) -> Path:
    """The offline-ready copy of embedding-atlas's Streamlit component in ``root`` (default: the cache's ui/), made
    on first call, then reused; copies made there for other package versions are removed."""
    try:
        import embedding_atlas

        version = metadata.version("embedding-atlas")
    except (ImportError, metadata.PackageNotFoundError) as e:
        raise AtlasUnavailableError(
            f"The embedding map needs the embedding-atlas package: pip install '{SUPPORTED}'."
        ) from e
    out = (root or store.cache_root() / "ui") / f"embedding-atlas-{version}"
    if (out / "index.html").is_file():
        return out
    pkg = Path(embedding_atlas.__file__).parent
    src, viewer = pkg / "widget_static" / "streamlit", pkg / "static" / "assets"
    tmp = out.with_name(f"{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        (tmp / "duckdb").mkdir()
        for prefix, name in DUCKDB_FILES.items():
            found = sorted(viewer.glob(f"{prefix}*"))
            if len(found) != 1:
                raise AtlasUnavailableError(
                    f"embedding-atlas {version} does not ship {name} ({viewer}); pip install '{SUPPORTED}'."
                )
            shutil.copyfile(found[0], tmp / "duckdb" / name)
            if name.endswith(".js"):
                _patch(tmp / "duckdb" / name, WORKER_PATCHES, name, version)
        scripts = [p for p in (tmp / "assets").glob("index-*.js") if CDN.search(p.read_text(encoding="utf-8"))]
        if len(scripts) != 1:
            raise AtlasUnavailableError(
                f"embedding-atlas {version}'s Streamlit component no longer loads DuckDB-WASM the way this app "
                f"expects; pip install '{SUPPORTED}'."
            )
        text = scripts[0].read_text(encoding="utf-8")
        scripts[0].write_text(CDN.sub(LOCAL, text, count=1), encoding="utf-8")
        for path in tmp.rglob("*"):
            os.utime(path, (FILE_TIME, FILE_TIME))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        for other in out.parent.glob("embedding-atlas-*"):
            if other != out and other.is_dir() and not other.name.endswith(".partial"):
                shutil.rmtree(other, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
