"""Results: before/after accuracy of retraining with generated images, ours versus Random_debugging, real
failures and (offline world) the oracle, once or over several seeds with confidence intervals and paired tests;
collective debugging; λ and k sweeps; an IoU summary; every table as CSV and one self-contained HTML report."""

import pandas as pd
import streamlit as st

from core import steps, validate
from core.config import RepeatsConfig
from core.display import method_bars, repeats_figure, repeats_table, sweep_figure, table2_wide
from core.find.overlap import mean_pairwise_iou
from core.notebook_export import notebook_bytes
from core.report import results_report
from core.settings import load_settings, save_settings
from ui import data
from ui.feedback import guard
from ui.jobs import job_panel
from ui.nav import within_app
from ui.state import dataset_spec
from ui.tables import fmt_matrix
from ui.text import md

within_app()

METRICS = {"acc_test": "test", "acc_seed": "debug_seed", "acc_heldout": "debug_heldout"}


def filter_text(f) -> str:
    """The CLIP filter's thresholds, as the Generate page asks for them."""
    if f.keep_fraction:
        return f"keeps the top {f.keep_fraction:.0%} per mode"
    return f"class ≥ {f.min_class_prob:g}, value ≥ {f.min_value_prob:g}"


st.title("Results")
spec = dataset_spec()
ds = data.require_dataset(spec)
runs = data.require_runs(ds)
ordered = data.model_order(ds, runs)

models = st.multiselect("Models", ordered, default=ordered[:4], key="res-models")
settings = load_settings(spec)  # chosen on the Generate page (core.settings), so runs use the set made there
dbg = settings.debug
c = st.columns(4)
lam = float(c[0].number_input("λ", 0.0, 1.0, float(dbg.lam), 0.05, key="res-lam"))
k = int(c[1].number_input("k", 1, 20, dbg.k_modes, key="res-k"))
per_mode = int(c[2].number_input("Images per mode", 1, 500, dbg.images_per_mode, key="res-n"))
settings = save_settings(spec, settings.with_debug(lam=lam, k_modes=k, images_per_mode=per_mode))
gen = settings.generator
c[3].caption(
    f"Generator: {md(gen.name or 'default for this dataset')}"
    + (f" · {md(gen.model_id)}" if gen.model_id else "")
    + "".join(f" · {md(n)} {md(str(v))}" for n, v in sorted(gen.options.items()))
    + (f" · CLIP filter {md(filter_text(settings.clip_filter))}" if settings.clip_filter else "")
    + f" · seed {settings.debug.seed} · {md(settings.attribute)} (choose them on the Generate page)"
)
common = dict(dataset=spec, models=sorted(models), **settings.experiment_args())
saved = {}
with guard("Reading saved results"):
    saved = data.saved_results(ds)

tabs = st.tabs(["Before / after", "Collective", "λ and k sweeps", "IoU summary", "Download"])
report: list[tuple[str, object]] = []


with guard("Reading repeated results"):
    repeated = data.saved_repeats(ds)


def before_after(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model: each metric before, with ours, Random_debugging, real failures and the oracle."""
    return table2_wide(df, ("model", "family")).reset_index()


def repeats_panel(what: str, key: str) -> None:
    """The control that reruns ``what`` over several seeds (a background job)."""
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    n = int(
        c1.number_input(
            "Repeats",
            2,
            validate.MAX_REPEATS,
            RepeatsConfig.n,
            key=f"{key}-n",
            help="Repeat i adds i to the split and generation seeds; repeat 0 is the single run above.",
        )
    )
    with c2:
        job_panel(
            "experiment_repeats",
            label=f"Rerun over {n} seeds: mean and 95% CI per method, McNemar's test of ours against each baseline",
            key=key,
            start_label="Run repeats",
            what=what,
            repeats={"n": n},
            **common,
        )


def verdict_list(verdicts: list[str]) -> None:
    """Whether ours' gain over each baseline is significant, in the words core chose."""
    st.markdown("\n".join(f"- {md(v)}" for v in verdicts) or "No paired tests.")


def made_with(meta: dict) -> None:
    """What a saved table came from, so a number on this page can be traced back."""
    dbg = meta.get("debug", {})
    st.caption(
        f"Saved run: models {md(', '.join(meta.get('models', [])))} · λ {dbg.get('lam')} · k "
        f"{dbg.get('k_modes')} · {dbg.get('images_per_mode')} images per mode · generator "
        f"{md(meta.get('generator', ''))} · {md(meta.get('attribute', ''))}"
    )


def grouped_bars(df: pd.DataFrame, y: str, label: str, key: str):
    """Bars per model, one per method; drawn on the page and returned for the report."""
    fig = method_bars(df, y, label)
    fig.update_layout(height=340, margin=dict(l=0, r=0, t=10, b=0))
    st.plotly_chart(fig, key=key)
    return fig


with tabs[0], guard("Showing before/after"):
    if not models:
        st.caption("Choose models above.")
    else:
        job_panel(
            "experiment",
            label="Retrain each model's head with its failure-mode images, and with as many Random_debugging images",
            key="res-ind",
            start_label="Run before/after",
            what="individual",
            **common,
        )
    if "individual" in saved:
        from core.fix.mitigate import gains

        df, meta = saved["individual"]
        table = before_after(df)
        st.subheader("Accuracy before and after debugging")
        if made := data.results_made_by(ds, "individual"):
            st.caption(md(made))
        made_with(meta)
        st.dataframe(
            table,
            hide_index=True,
            column_config={c_: st.column_config.NumberColumn(format="percent") for c_ in table.columns[2:]},
        )
        fig = grouped_bars(gains(df), "gain_heldout", "accuracy gain on debug_heldout", "res-gain")
        report += [("Before / after: accuracy", table), ("Gain on debug_heldout", fig)]
    st.subheader("Over several seeds")
    if models:
        repeats_panel("individual", "res-rep")
    if "individual" in repeated:
        summary, tests, verdicts, meta = repeated["individual"]
        made_with(meta)
        st.caption(
            f"Mean ± half-width of the 95% confidence interval over {meta.get('repeats')} repeats (split seeds "
            f"{', '.join(map(str, meta.get('split_seeds', [])))}); p: McNemar's test of ours against each method "
            "on the same images, pooled over the repeats."
        )
        rtable = repeats_table(summary)
        st.dataframe(rtable, hide_index=True)
        fig = repeats_figure(summary)
        fig.update_layout(height=340, margin=dict(l=0, r=0, t=30, b=0))
        st.plotly_chart(fig, key="res-rep-fig")
        verdict_list(verdicts)
        report += [("Before / after over repeats (mean ± 95% CI)", rtable), ("Over repeats", fig)]
        report += [("Is ours' gain significant?", verdicts)]

with tabs[1], guard("Showing collective debugging"):
    if len(models) >= 2:
        job_panel(
            "experiment",
            label="Individual, Random_debugging and collective types 1 and 2 on these models",
            key="res-col",
            start_label="Run collective",
            what="collective",
            **common,
        )
    else:
        st.caption("Collective debugging needs at least two models.")
    if "collective" in saved:
        from core.fix.mitigate import relative_to_individual

        df, meta = saved["collective"]
        made_with(meta)
        st.dataframe(df[[c_ for c_ in ["model", "family", "method", *METRICS] if c_ in df]], hide_index=True)
        fig = grouped_bars(relative_to_individual(df), "relative", "gain relative to individual debugging", "res-rel")
        report += [("Collective debugging", df), ("Collective gain relative to individual", fig)]

with tabs[2], guard("Showing the sweeps"):
    what = st.segmented_control(
        "Sweep", ["lam", "k"], default="lam", key="res-sweep", format_func=lambda w: "λ" if w == "lam" else "k"
    )
    if models and what:
        job_panel(
            "experiment",
            label=f"Sweep {'λ' if what == 'lam' else 'k'} (ours and Random_debugging at each point)",
            key=f"res-{what}",
            start_label="Run sweep",
            what=what,
            **common,
        )
        repeats_panel(what, f"res-rep-{what}")
    for w in ("lam", "k"):
        name = "λ" if w == "lam" else "k"
        if w in repeated:  # error bars: the sweep over several seeds
            df, tests, verdicts, meta = repeated[w]
            fig = sweep_figure(df, w)
        elif w in saved:
            (df, meta), verdicts = saved[w], []
            fig = sweep_figure(df, w)
        else:
            continue
        fig.update_layout(height=340, margin=dict(l=0, r=0, t=30, b=0))
        st.plotly_chart(fig, key=f"res-plot-{w}")
        if verdicts:
            with st.expander(f"Ours against Random_debugging at each {name}"):
                verdict_list(verdicts)
        report += [(f"{name} sweep", fig), (f"{name} sweep table", df)]

with tabs[3], guard("Showing the IoU summary"):
    chosen = models if len(models) >= 2 else ordered
    if len(chosen) >= 2:
        summaries = [runs[m] for m in chosen]
        iou, _ = data.overlap(summaries)
        st.metric("Mean IoU of failure sets across model pairs", f"{mean_pairwise_iou(iou):.3f}")
        fam = data.family_overlap(summaries)
        st.dataframe(fmt_matrix(fam))
        report += [("IoU of failure sets, family averages", fam.reset_index(names="family"))]
    else:
        st.caption("The IoU summary needs at least two models with finished runs.")

with tabs[4], guard("Preparing downloads"):
    if not saved:
        st.caption("Run an experiment first; its tables can then be downloaded here.")
    for w, (df, _meta) in saved.items():
        st.download_button(
            f"{w} results (CSV, {len(df)} rows)",
            lambda df=df: df.to_csv(index=False).encode(),
            file_name=f"backdrop-{w}.csv",
            mime="text/csv",
            key=f"dl-{w}",
            icon=":material/download:",
        )
    if report:
        st.download_button(
            "Report for stakeholders (self-contained HTML)",
            lambda: results_report(ds, saved, report).encode(),
            file_name="backdrop-report.html",
            mime="text/html",
            key="dl-report",
            icon=":material/description:",
        )
    if models:
        st.download_button(
            "Open as notebook (reproduces these experiments with the Python API)",
            lambda: notebook_bytes(
                "results",
                spec,
                sorted(models),
                attribute=settings.attribute,
                lam=lam,
                k=k,
                images_per_mode=per_mode,
                generator=gen.name,
                generator_model=gen.model_id,
                generator_options=gen.options,
                seed=settings.debug.seed,
                experiments=[w for w in saved if w in steps.EXPERIMENTS] or ["individual"],
            ),
            file_name="backdrop-results.ipynb",
            mime="application/x-ipynb+json",
            key="dl-notebook",
            icon=":material/code:",
        )
