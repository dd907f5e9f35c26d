"""HTML and plotly views of Backdrop's results, shared by Jupyter (``_repr_html_``) and the HTML report.

Images are embedded as ``data:`` URIs (PNG thumbnails), so every view works offline and in a single file.
Every piece of text that can come from a user, an LLM or a dataset is escaped with :func:`html_text`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

THUMB = 96  # pixels on the longer side of a thumbnail
GRID_CSS = (
    "<style>.bd-grid{display:flex;flex-wrap:wrap;gap:6px;margin:.3rem 0 1rem}"
    f".bd-tile{{width:{THUMB}px;font:11px/1.3 system-ui,sans-serif;color:#333;text-align:center}}"
    f".bd-tile img{{width:{THUMB}px;height:{THUMB}px;object-fit:cover;border-radius:3px;display:block}}"
    ".bd-mode{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start;border-top:1px solid #eee;padding-top:.4rem}"
    ".bd-mode h4{margin:.2rem 0;font:600 13px system-ui,sans-serif}</style>"
)


def html_text(text: object) -> str:
    """``text`` safe inside HTML (reports, notebook views, captions the app renders as HTML)."""
    return html.escape(str(text), quote=True)


def image_data_uri(img: Image.Image, size: int = THUMB) -> str:
    """A PNG thumbnail of ``img`` (longer side ``size`` pixels) as a ``data:`` URI."""
    im = img.convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Tile:
    image: Image.Image
    caption: Sequence[str] = ()  # one line each


@dataclass
class Gallery:
    """A grid of thumbnails with captions; displays itself in Jupyter and goes into reports as it is."""

    title: str
    tiles: list[Tile] = field(default_factory=list)
    note: str = ""  # shown when there are no tiles, or under the title

    def __len__(self) -> int:
        return len(self.tiles)

    def to_html(self, css: bool = True) -> str:
        head = f"<h4>{html_text(self.title)}</h4>" if self.title else ""
        if self.note:
            head += f"<p style='color:#666;font-size:12px;margin:0'>{html_text(self.note)}</p>"
        tiles = "".join(
            f"<div class='bd-tile'><img alt='{html_text(' '.join(t.caption))}' src='{image_data_uri(t.image)}'>"
            + "<br>".join(html_text(line) for line in t.caption)
            + "</div>"
            for t in self.tiles
        )
        return (GRID_CSS if css else "") + f"<div>{head}<div class='bd-grid'>{tiles}</div></div>"

    def _repr_html_(self) -> str:
        return self.to_html()


def failure_gallery(
    dataset, rows: pd.DataFrame, *, title: str = "Failures", limit: int = 24, value_column: str = "value"
) -> Gallery:
    """Thumbnails of failures (rows of a failure table or of assignments: image_id, label, pred, and the
    assigned ``value`` when present), captioned "true → predicted" and the value.

    >>> failure_gallery(world, text.assignments, title="failures and their backgrounds", limit=18)
    """
    classes = list(dataset.classes)
    tiles = []
    for r in rows.head(limit).itertuples(index=False):
        d = r._asdict()
        line = f"{classes[int(d['label'])]} → {classes[int(d['pred'])]}" if "pred" in d else classes[int(d["label"])]
        caption = [line]
        if value_column in d and isinstance(d[value_column], str):
            caption.append(d[value_column])
        tiles.append(Tile(dataset.load(str(d["image_id"])), caption))
    note = "" if tiles else "No failures to show."
    if len(rows) > limit:
        note = f"{limit} of {len(rows)} shown."
    return Gallery(title, tiles, note)


@dataclass
class ModeExamples:
    """One failure mode of one model: a few of its failures beside the images generated for it."""

    model: str
    class_name: str
    value: str
    count: int
    failures: Gallery
    generated: Gallery

    def to_html(self, css: bool = True) -> str:
        head = (
            f"<h4>{html_text(self.model)} · {html_text(self.class_name)} on {html_text(self.value)} "
            f"({self.count} failures)</h4>"
        )
        return (
            (GRID_CSS if css else "")
            + f"<div>{head}<div class='bd-mode'>{self.failures.to_html(css=False)}"
            + f"{self.generated.to_html(css=False)}</div></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


class Examples(list):
    """A list of :class:`ModeExamples` that displays as one block in Jupyter (``examples[:3]`` stays one)."""

    def __getitem__(self, i):
        out = super().__getitem__(i)
        return Examples(out) if isinstance(i, slice) else out

    def to_html(self, css: bool = True) -> str:
        return (GRID_CSS if css else "") + "".join(e.to_html(css=False) for e in self)

    def _repr_html_(self) -> str:
        return self.to_html()


def mode_examples(
    dataset,
    model: str,
    assignments: pd.DataFrame,
    modes: pd.DataFrame,
    generated: pd.DataFrame,
    *,
    per_mode: int = 3,
    load_generated=None,
) -> Examples:
    """For each failure mode (rows of ``modes``), up to ``per_mode`` failures CLIP assigned that value and up to
    ``per_mode`` generated images of that class and value (rows with ``set`` naming their generated set)."""
    from core.fix.generators import GeneratedSet

    sets: dict[str, GeneratedSet] = {}

    def gen_image(row) -> Image.Image:
        if load_generated is not None:
            return load_generated(row)
        s = sets.setdefault(row["set"], GeneratedSet(row["set"]))
        return s.load(str(row["image_id"]))

    out = []
    for m in modes.sort_values(["label", "rank"]).itertuples(index=False):
        fails = assignments[(assignments["class_name"] == m.class_name) & (assignments["value"] == m.value)]
        gen = (
            generated[(generated["class_name"] == m.class_name) & (generated["value"] == m.value)]
            if len(generated)
            else generated
        )
        gal_f = failure_gallery(dataset, fails, title="failures", limit=per_mode)
        tiles = [Tile(gen_image(g), ["generated"]) for _, g in gen.head(per_mode).iterrows()]
        gal_g = Gallery("generated for this mode", tiles, "" if tiles else "None generated (yet).")
        out.append(ModeExamples(model, m.class_name, str(m.value), int(m.count), gal_f, gal_g))
    return Examples(out)


METRIC_NAMES = {"acc_test": "test", "acc_seed": "debug_seed", "acc_heldout": "debug_heldout"}
METHOD_ORDER = ("before", "ours", "random", "real_failures", "oracle")  # then any other (collective1/2)
METHOD_COLOURS = {
    "before": "#8C8C8C",
    "ours": "#636EFA",
    "random": "#EF553B",
    "real_failures": "#00CC96",
    "oracle": "#AB63FA",
    "collective1": "#FFA15A",
    "collective2": "#19D3F3",
}
"""One colour per method in every chart that shows methods (plotly's default palette, "before" in grey); a
method not listed takes the next colour of plotly's default sequence."""


def method_colours(methods) -> dict:
    """The plotly express arguments that draw ``methods`` in Table 2's order with their METHOD_COLOURS."""
    return {"category_orders": {"method": ordered_methods(methods)}, "color_discrete_map": METHOD_COLOURS}


def ordered_methods(methods) -> list[str]:
    """Methods in Table 2's order: before, ours, the baselines, then any other method alphabetically."""
    present = set(methods)
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def table2_wide(df: pd.DataFrame, index: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Table 2's layout: one row per ``index`` (model), columns "<split> · <method>" for test / debug_seed /
    debug_heldout accuracy before, with ours, Random_debugging, real failures, the oracle, then others."""
    cols = [c for c in METRIC_NAMES if c in df]
    wide = df.pivot_table(index=list(index), columns="method", values=cols, aggfunc="first")
    order = [(c, m) for c in cols for m in ordered_methods(df["method"]) if (c, m) in wide.columns]
    wide = wide[order]
    wide.columns = [f"{METRIC_NAMES[c]} · {m}" for c, m in order]
    return wide


def mean_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """ "0.083 ± 0.033": a mean and the half-width of its (symmetric) 95% interval; the mean alone without one."""
    if mean != mean:
        return "–"
    return f"{mean:.{digits}f}" if low != low else f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def repeats_table(summary: pd.DataFrame, metrics: Sequence[str] = tuple(METRIC_NAMES)) -> pd.DataFrame:
    """A repeated Table 2 (``core.fix.repeats.summarize`` rows): one row per model and method in Table 2's
    order, one "mean ± CI" column per metric, and the number of repeats."""
    s = summary[summary["metric"].isin(metrics)]
    rows = []
    for model in sorted(set(s["model"])):
        g = s[s["model"] == model]
        for method in ordered_methods(g["method"]):
            h = g[g["method"] == method].set_index("metric")
            row = {"model": model, "method": method}
            for m in metrics:
                if m in h.index:
                    row[METRIC_NAMES.get(m, m)] = mean_ci(*h.loc[m, ["mean", "ci_low", "ci_high"]])
            row["repeats"] = int(h["n"].max())
            rows.append(row)
    return pd.DataFrame(rows)


def _error_bars(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(err_plus=df["ci_high"] - df["mean"], err_minus=df["mean"] - df["ci_low"])


def repeats_figure(summary: pd.DataFrame, metric: str = "acc_heldout"):
    """Grouped bars per model, one per method: ``metric``'s mean over the repeats with its 95% CI as error bars."""
    import plotly.express as px

    s = _error_bars(summary[summary["metric"] == metric])
    label = METRIC_NAMES.get(metric, metric)
    n = int(s["n"].max()) if len(s) else 0
    fig = px.bar(
        s,
        x="model",
        y="mean",
        color="method",
        barmode="group",
        error_y="err_plus",
        error_y_minus="err_minus",
        labels={"mean": f"{label} accuracy"},
        **method_colours(s["method"]),
    )
    fig.update_layout(title=f"{label} accuracy: mean and 95% CI over {n} repeats", height=360)
    return fig


@dataclass
class RepeatsTable:
    """A repeated experiment (``bd.repeats``): ``.summary`` (mean, ci_low, ci_high, n per model, method and
    metric), ``.tests`` (McNemar's test of ours against each method on the same images), ``.rows`` (every
    repeat's result rows) and ``.verdicts`` (whether ours' gain over each baseline is significant, in words)."""

    summary: pd.DataFrame
    tests: pd.DataFrame
    rows: pd.DataFrame
    verdicts: list[str]
    meta: Mapping = field(default_factory=dict)
    title: str = "Repeated results"

    def table2(self) -> pd.DataFrame:
        """Mean ± 95% CI per model and method (Table 2's layout for an individual experiment)."""
        return repeats_table(self.summary)

    def figure(self, metric: str = "acc_heldout"):
        """Error bars: the individual experiment's bars, or a sweep's lines, with 95% CIs."""
        what = str(self.meta.get("what", "individual")).removesuffix("-repeats")
        return sweep_figure(self.summary, what) if what in ("lam", "k") else repeats_figure(self.summary, metric)

    def _repr_html_(self) -> str:
        sweep = next((c for c in ("lam", "k") if c in self.summary), None)
        body = self.summary if sweep else self.table2()
        items = "".join(f"<li>{html_text(v)}</li>" for v in self.verdicts)
        return (
            (f"<h4>{html_text(self.title)}</h4>" if self.title else "")
            + body.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4f}", border=0)
            + (f"<ul>{items}</ul>" if items else "")
        )


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html_text(v)


@dataclass
class ResultsTable:
    """A results table (one row per model and method) with what it came from; ``.df`` is the plain DataFrame."""

    df: pd.DataFrame
    meta: Mapping = field(default_factory=dict)
    title: str = "Results"

    def table2(self) -> pd.DataFrame:
        """Table 2's layout: per model, test / debug_seed / debug_heldout accuracy before, ours, random, real
        failures, the oracle (then any other method, e.g. collective1/2)."""
        return table2_wide(self.df)

    def _repr_html_(self) -> str:
        long_form = "sweep" in self.df or not {"method", "model"} <= set(self.df)  # sweeps: one row per point
        body = self.df if long_form else self.table2()
        caption = ", ".join(f"{k}: {v}" for k, v in self.meta.items() if not isinstance(v, (dict, list)))
        return (
            (f"<h4>{html_text(self.title)}</h4>" if self.title else "")
            + body.to_html(escape=True, float_format=lambda v: f"{v:.4f}", border=0)
            + (f"<p style='color:#666;font-size:12px'>{html_text(caption)}</p>" if caption else "")
        )


# -- charts (plotly) --------------------------------------------------------------------------------------------
def iou_heatmap(iou: pd.DataFrame, title: str = "IoU of failure sets", inter: pd.DataFrame | None = None):
    """The IoU matrix (models × models, or families × families) as a plotly heatmap, values written in the cells
    up to 12 rows. With ``inter`` (the raw intersection counts) every cell also carries an invisible marker, so a
    click selects the pair (plotly heatmap cells cannot be selected) and hovering shows IoU and the shared count.
    Built from numpy arrays, which plotly validates in one step (lists are validated cell by cell)."""
    import plotly.graph_objects as go

    rows, cols = np.asarray(iou.index, dtype=object), np.asarray(iou.columns, dtype=object)
    n = len(rows)
    values = iou.to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=cols,
            y=rows,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            hoverinfo="skip" if inter is not None else None,
            texttemplate="%{z:.2f}" if n <= 12 else None,
        )
    )
    if inter is not None:
        fig.add_trace(
            go.Scatter(
                x=np.tile(cols, n),
                y=np.repeat(rows, len(cols)),
                mode="markers",
                showlegend=False,
                customdata=np.column_stack([values.ravel(), inter.loc[iou.index, iou.columns].to_numpy().ravel()]),
                hovertemplate="%{y} × %{x}<br>IoU %{customdata[0]:.3f}<br>shared %{customdata[1]:,}<extra></extra>",
                marker=dict(symbol="square", size=max(6, 360 // max(n, 1)), opacity=0.01),
            )
        )
    fig.update_layout(
        title=title if inter is None else None,
        height=max(360, 22 * n + 120),
        margin=dict(l=0, r=0, t=40 if inter is None else 10, b=0),
        xaxis=dict(range=[-0.5, len(cols) - 0.5]),
        yaxis=dict(range=[n - 0.5, -0.5]),
        clickmode="event+select",
    )
    return fig


def method_bars(results: pd.DataFrame, y: str, label: str, title: str | None = None):
    """Grouped bars per model, one per method in Table 2's order and colours (METHOD_COLOURS)."""
    import plotly.express as px

    fig = px.bar(
        results, x="model", y=y, color="method", barmode="group", labels={y: label}, **method_colours(results["method"])
    )
    fig.update_layout(title=title, height=360)
    return fig


def before_after_figure(results: pd.DataFrame, metric: str = "acc_heldout", title: str | None = None):
    """Grouped bars per model: ``metric`` before debugging, with ours and with Random_debugging (and collective)."""
    label = METRIC_NAMES.get(metric, metric)
    return method_bars(results, metric, f"{label} accuracy", title or f"{label} accuracy before and after debugging")


def sweep_figure(results: pd.DataFrame, over: str):
    """Figure 5: debug_heldout accuracy against λ or k, ours and Random_debugging, one line style per model.
    ``results``: a sweep's rows, or a repeated sweep's summary (``core.fix.repeats``), drawn as the mean with
    its 95% CI as error bars."""
    import plotly.express as px

    x = "lam" if over == "lam" else "k"
    name = "λ" if over == "lam" else "k"
    labels = {"lam": "λ", "acc_heldout": "debug_heldout accuracy", "mean": "debug_heldout accuracy"}
    if "mean" in results:  # a repeated sweep's summary
        pts = _error_bars(results[(results["metric"] == "acc_heldout") & (results["method"] != "before")])
        bars = {"error_y": "err_plus", "error_y_minus": "err_minus"}
        y, title = "mean", f"{name} sweep: mean and 95% CI over {int(pts['n'].max()) if len(pts) else 0} repeats"
    else:
        pts, bars, y, title = results[results["method"] != "before"], {}, "acc_heldout", f"{name} sweep"
    fig = px.line(
        pts,
        x=x,
        y=y,
        color="method",
        line_dash="model",
        markers=True,
        labels=labels,
        **bars,
        **method_colours(pts["method"]),
    )
    fig.update_layout(title=title, height=360)
    return fig
