"""The embedding map's widget files: Embedding Atlas's Streamlit component (Apple, MIT), made to work offline.

embedding-atlas ships a Streamlit component whose in-browser database (DuckDB-WASM) is fetched from the jsDelivr
CDN at first use, so the map stays blank on a machine without internet. The same package also ships those exact
DuckDB-WASM files (its standalone viewer, same DuckDB-WASM release). ``component_dir`` assembles the component
once per package version under the cache: the component's files, those DuckDB-WASM files next to them under the
names the component asks for, and the component's script pointed at them instead of the CDN. Nothing else of the
component changes; a package version whose script no longer has the CDN line is refused with a clear error rather
than served half-patched. The app's ui/atlas.py declares the component from this folder.
"""

from __future__ import annotations

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
SUPPORTED = "embedding-atlas>=0.22,<0.23"


class AtlasUnavailableError(MissingResourceError):
    """The installed embedding-atlas cannot be served offline."""


def component_dir(root: Path | None = None) -> Path:
    """The offline-ready copy of embedding-atlas's Streamlit component (made on first call, then reused)."""
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
        scripts = [p for p in (tmp / "assets").glob("index-*.js") if CDN.search(p.read_text(encoding="utf-8"))]
        if len(scripts) != 1:
            raise AtlasUnavailableError(
                f"embedding-atlas {version}'s Streamlit component no longer loads DuckDB-WASM the way this app "
                f"expects; pip install '{SUPPORTED}'."
            )
        text = scripts[0].read_text(encoding="utf-8")
        scripts[0].write_text(CDN.sub(LOCAL, text, count=1), encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
