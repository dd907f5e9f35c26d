""" "Open as notebook": a Jupyter notebook that reproduces what an app page shows, with the public API
(``core.api``), so an analysis moves from the app to Jupyter and back (both read and write the same cache).

``analysis_notebook(view, dataset, models, ...)`` builds it; ``notebook_bytes`` gives the file to download.
Views: ``"failures"`` (one model's failures, optionally only some true and predicted classes), ``"overlap"`` (IoU of failure sets, by model
and by family) and ``"results"`` (before/after, collective and sweeps with the page's λ, k and generator).
"""

from __future__ import annotations

from dataclasses import asdict

from core.config import DebugConfig, HeadConfig, SplitConfig
from core.errors import InvalidInputError

VIEWS = ("failures", "overlap", "results")
EXPERIMENTS = ("individual", "collective", "lam", "k")


def _lit(value) -> str:
    """A Python literal for ``value`` (specs, names and numbers come from the page, never code)."""
    return repr(value)


def analysis_notebook(
    view: str,
    dataset: dict,
    models: list[str],
    *,
    true_classes: list[str] | None = None,
    predicted_classes: list[str] | None = None,
    attribute: str = "background",
    lam: float = DebugConfig.lam,
    k: int = DebugConfig.k_modes,
    images_per_mode: int = DebugConfig.images_per_mode,
    generator: str | None = None,
    generator_model: str | None = None,
    generator_options: dict | None = None,
    seed: int = DebugConfig.seed,
    experiments: list[str] | None = None,
    list_version: str | None = None,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
):
    """An ``nbformat`` notebook (no outputs) reproducing ``view`` for these settings."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    if view not in VIEWS:
        raise InvalidInputError(f"Unknown view {view!r}; choose one of {', '.join(VIEWS)}.")
    if not models:
        raise InvalidInputError("Choose at least one model before opening the analysis as a notebook.")
    experiments = list(experiments or ["individual"])
    bad = [e for e in experiments if e not in EXPERIMENTS]
    if bad:
        raise InvalidInputError(f"Unknown experiment(s) {bad}; choose from {', '.join(EXPERIMENTS)}.")
    split_args = "" if split == SplitConfig() else f", split=bd.SplitConfig(**{_lit(asdict(split))})"
    head_args = "" if head == HeadConfig() else f", head=bd.HeadConfig(**{_lit(asdict(head))})"
    cells = [
        new_markdown_cell(
            f"# Backdrop: {view} of {', '.join(models)}\n\nExported from the app's {view.title()} page. It reads and "
            "writes the same cache as the app (`$BACKDROP_CACHE`), so finished steps load instead of recomputing."
        ),
        new_code_cell(
            "import core.api as bd\n\n"
            f"dataset = bd.open_dataset(**{_lit(dict(dataset))})\n"
            f"MODELS = {_lit(list(models))}\n"
            f"runs = bd.run_models(dataset, MODELS{split_args}{head_args})"
        ),
    ]
    if view == "failures":
        model = models[0]
        filt = ""
        for column, names in (("label", true_classes), ("pred", predicted_classes)):
            if names:
                filt += (
                    f"\nfails = fails[fails[{column!r}].isin([dataset.classes.index(c) for c in {_lit(list(names))}])]"
                )
        cells += [
            new_code_cell(
                f"run = runs[{_lit(model)}]\nfails = bd.failures(run){filt}\n"
                'print(f"{len(fails)} failures of {run.model} on {len(run.table)} debug images '
                "(debug accuracy {run.summary['accuracy']['debug']:.4f})\")\n"
                "fails.assign(class_name=[dataset.classes[i] for i in fails['label']])"
                ".groupby('class_name').size().rename('failures')"
            ),
            new_code_cell(f"bd.failure_gallery(dataset, fails, title={_lit(f'Failures of {model}')}, limit=30)"),
        ]
    elif view == "overlap":
        cells += [
            new_code_cell("iou = bd.overlap(dataset, MODELS)\nbd.iou_heatmap(iou)"),
            new_code_cell("bd.iou_heatmap(bd.family_overlap(dataset, MODELS), 'Mean IoU by family')"),
        ]
    else:
        gen = "".join(
            f", {name}={_lit(value)}"
            for name, value in (
                ("generator", generator),
                ("generator_model", generator_model),
                ("generator_options", dict(generator_options or {}) or None),
                ("seed", seed if seed != DebugConfig.seed else None),
            )
            if value is not None
        )
        cells.append(
            new_code_cell(
                f"exp = bd.experiment(dataset, lam={lam!r}, k={int(k)}, images_per_mode={int(images_per_mode)}, "
                f"attribute={_lit(attribute)}{gen}{split_args}{head_args})"
            )
        )
        if list_version:
            cells.append(
                new_code_cell(
                    f"now = bd.value_lists(dataset, {_lit(attribute)}).current_version_id()\n"
                    f"if now != {_lit(list_version)}:\n"
                    "    print('The value lists changed since this was exported; results will use the lists as they are now.')"
                )
            )
        calls = {
            "individual": "table2 = bd.debug(exp, MODELS)\ntable2",
            "collective": "col = bd.collective(exp, MODELS)\ncol",
            "lam": "lam = bd.sweep(exp, MODELS, 'lam')\nbd.sweep_figure(lam.df, 'lam')",
            "k": "ks = bd.sweep(exp, MODELS, 'k')\nbd.sweep_figure(ks.df, 'k')",
        }
        shown = {"individual": "table2", "collective": "col", "lam": "lam", "k": "ks"}
        cells += [new_code_cell(calls[e]) for e in experiments]
        cells.append(
            new_code_cell(
                f"bd.report(exp, [{', '.join(shown[e] for e in experiments)}], 'backdrop-report.html');\n"
                "print('wrote backdrop-report.html')"
            )
        )
    nb = new_notebook(
        cells=cells,
        metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    )
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    return nb


def notebook_bytes(view: str, dataset: dict, models: list[str], **settings) -> bytes:
    """The notebook of :func:`analysis_notebook` as ``.ipynb`` file contents (for a download button)."""
    import nbformat

    return nbformat.writes(analysis_notebook(view, dataset, models, **settings)).encode()
