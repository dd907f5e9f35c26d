"""Headless command line for every step: ``python -m core <command> …`` (also installed as ``backdrop``).

Each command parses its flags into the typed configs of core.config and calls one step of core.steps, the
same step the app's job for it calls, with tqdm progress bars. Errors that users can
fix print as one line (exit status 2); anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import steps
from core.config import (
    DEFAULT_ATTRIBUTE,
    EXECUTORS,
    DebugConfig,
    ExecutorConfig,
    FilterConfig,
    GeneratorConfig,
    HeadConfig,
    RepeatsConfig,
    SetupConfig,
    SplitConfig,
)
from core.errors import BackdropError, InvalidInputError
from core.progress import TqdmProgress

SPLIT, HEAD, DEBUG = SplitConfig(), HeadConfig(), DebugConfig()  # the defaults the flags show (config.py owns them)

COMMANDS: dict[str, tuple] = {}


def command(name: str, help: str):
    def deco(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return deco


def dataset_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--dataset", default="scenes-mnist", help="registered dataset name (default: the offline world)")
    g.add_argument("--size", help="offline world size: default or tiny")
    g.add_argument("--seed", type=int, help="dataset seed (offline world)")
    g.add_argument("--root", help="folder of a real dataset (cifar10/cifar100/imagenet/imagefolder)")


def dataset_spec(a) -> dict:
    """The dataset the flags name, spelled as the app spells it (so both share its cache and jobs)."""
    from core.workspace import canonical_spec

    spec = {"name": a.dataset}
    for k in ("size", "seed", "root"):
        if getattr(a, k, None) is not None:
            spec[k] = getattr(a, k)
    return canonical_spec(spec)


def open_ds(a):
    return steps.open_ds(dataset_spec(a))


def model_list(a) -> list[str]:
    from core.models import families

    names = list(a.models or [])
    for fam in a.family or []:
        fams = families()
        if fam not in fams:
            raise BackdropError(f"Unknown family {fam!r}; known families: {', '.join(sorted(fams))}.")
        names += fams[fam]
    if not names:
        raise BackdropError("Name models with --models or a family with --family (see `python -m core models`).")
    return list(dict.fromkeys(names))


def models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", help="model names (see `python -m core models`)")
    p.add_argument("--family", nargs="+", help="every model of these families")


def executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("executor")
    g.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=ExecutorConfig.name,
        help="where features, CLIP embeddings and images are computed: local (this process) or ray (Ray Data "
        "actor pools; pip install -e .[ray])",
    )
    g.add_argument("--ray-address", help="with --executor ray: the cluster to join (ray.init(address=...)), e.g. auto")


def executor_cfg(a) -> ExecutorConfig:
    if a.ray_address and a.executor != "ray":
        raise InvalidInputError("--ray-address is the Ray cluster to join: add --executor ray.")
    return ExecutorConfig(name=a.executor, address=a.ray_address)


def table(df) -> str:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 200):
        return df.to_string()


def write_csv(df, path: str | None, what: str) -> None:
    if path:
        df.to_csv(path, index=False)
        print(f"wrote {len(df)} {what} to {path}")


# -- commands --------------------------------------------------------------------------------------------------
@command("datasets", "list registered datasets")
def cmd_datasets(a):
    from core.datasets import list_datasets

    print("\n".join(list_datasets()))


@command("models", "list models: name, family, source, whether weights are available here")
def cmd_models(a):
    import pandas as pd

    from core.models import list_models, model_info

    rows = [
        dict(name=n, **{k: v for k, v in model_info(n).items() if k in ("family", "source", "available")})
        for n in list_models()
    ]
    df = pd.DataFrame(rows)
    if a.family:
        df = df[df["family"].isin(a.family)]
    print(table(df))


def _models_parser(p):
    p.add_argument("--family", nargs="+")


def splits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--per-class",
        type=int,
        default=SPLIT.head_train_per_class,
        help=f"head-training images per class (paper: {SPLIT.head_train_per_class})",
    )
    p.add_argument("--split-seed", type=int, default=SPLIT.seed)
    p.add_argument(
        "--solver",
        default=HEAD.solver,
        choices=["sgd", "fused", "lbfgs", "batched"],
        help="sgd = the paper's optimiser; fused = the same steps, faster; lbfgs = to the optimum; "
        "batched = L-BFGS over many heads at once (sweeps)",
    )


def split_cfg(a) -> SplitConfig:
    return SplitConfig(head_train_per_class=a.per_class, seed=a.split_seed)


def head_cfg(a) -> HeadConfig:
    return HeadConfig(solver=a.solver)


@command("prepare", "open and check a dataset once (the offline world renders its images); the app then opens it")
def cmd_prepare(a):
    from core.job_kinds import prepare_shared

    prepare_shared(dataset_spec(a))
    ds = open_ds(a)
    print(f"{ds.name}: {len(ds.classes)} classes")
    for pool in ds.pools():
        print(f"  {pool}: {len(ds.index(pool))} images")


@command(
    "setup",
    "the offline world's first run: world models built, run, assigned, generated for and debugged; then the "
    "EfficientNet-Lite family (--skip-lite leaves it for later)",
)
def cmd_setup(a):
    from core.job_kinds import prepare_shared

    bar = TqdmProgress("setup")
    size = SetupConfig.lite_input_size if a.lite_input_size is None else a.lite_input_size or None
    cfg = SetupConfig(lite=not a.skip_lite, lite_input_size=size)
    done = steps.setup_world(dataset_spec(a), config=cfg, prepare=prepare_shared, progress=bar)
    bar.close()
    print("ready: " + ", ".join(done.models) + f" (default model {done.default_model})")
    for step, state in done.steps.items():
        if state != steps.SETUP_DONE:
            print(f"  {step}: {state} (run `python -m core setup` without --skip-lite to resume it)")


def _setup_parser(p):
    p.add_argument(
        "--skip-lite",
        action="store_true",
        help="leave out the EfficientNet-Lite family (minutes per model on a CPU); a later setup resumes it",
    )
    p.add_argument(
        "--lite-input-size",
        type=int,
        help=f"pixels a side the EfficientNet-Lite family runs at on the world's 64 px images (default "
        f"{SetupConfig.lite_input_size}; 0: the models' native 224-260 px, slower)",
    )


@command("world", "build the offline world and train its backbones and CLIP")
def cmd_world(a):
    from core.job_kinds import prepare_shared

    parts = {"build": ("images",), "train": ("images", "backbones"), "clip": ("images", "clip")}.get(
        a.action, steps.WORLD_PARTS
    )
    bar = TqdmProgress("world")
    spec = dataset_spec(a)
    built = steps.build_world(spec, parts, models=a.models, prepare=prepare_shared, progress=bar)
    bar.close()
    print(f"offline world {spec.get('size', 'default')}: {built.folder}")
    for pool, n in built.images.items():
        print(f"  {pool}: {n} images")
    for path in built.backbones:
        print(f"  trained {path}")
    if built.clip:
        print(f"  world CLIP: {built.clip}")


def _world_parser(p):
    p.add_argument(
        "action",
        nargs="?",
        default="build",
        choices=["build", "train", "clip", "all"],
        help="build the images (default); train its backbones; train its CLIP; or all three",
    )
    p.add_argument("--models", nargs="+", help="only these world backbones")


@command("run", "features, linear head and debug failures for models (all cached)")
def cmd_run(a):
    import pandas as pd

    bar = TqdmProgress("models")
    models = model_list(a)  # flags are checked before the dataset is opened
    done = steps.run_models(open_ds(a), models, split_cfg(a), head_cfg(a), executor=executor_cfg(a), progress=bar)
    bar.close()
    rows = [
        {
            "model": m,
            "family": r.family,
            **{f"acc_{k}": v for k, v in r.summary["accuracy"].items()},
            "failures": r.summary["n_failures"],
            "seed": r.summary["n_seed"],
            "heldout": r.summary["n_heldout"],
        }
        for m, r in done.runs.items()
    ]
    print(table(pd.DataFrame(rows)))


def _run_parser(p):
    models_args(p)
    splits_args(p)
    executor_args(p)


@command("failures", "per-class failure counts of one model (after `run`)")
def cmd_failures(a):
    from core.find.failures import per_class_counts

    ds = open_ds(a)
    run = steps.run_models(ds, [a.model], split_cfg(a), head_cfg(a), progress=TqdmProgress(a.model)).runs[a.model]
    print(table(per_class_counts(run.table, ds.classes)))
    write_csv(run.failures, a.csv, "failures")


def _failures_parser(p):
    p.add_argument("--model", required=True)
    p.add_argument("--csv", help="also write the failures to this CSV file")
    splits_args(p)


@command("overlap", "intersection-over-union of failure sets across models")
def cmd_overlap(a):
    models = model_list(a)
    ov = steps.overlap(open_ds(a), models, split_cfg(a), head_cfg(a), progress=TqdmProgress("models"))
    print("IoU of failure sets\n" + table(ov.iou.round(3)))
    if a.intersections:
        print("\nshared failures\n" + table(ov.intersections))


def _overlap_parser(p):
    models_args(p)
    p.add_argument("--intersections", action="store_true", help="also print raw intersection counts")
    splits_args(p)


@command("search", "the failures of a model that CLIP finds most like a text query")
def cmd_search(a):
    import pandas as pd

    hits = steps.search_failures(open_ds(a), a.model, a.query, a.top, progress=TqdmProgress("searching"))
    df = pd.DataFrame({"image_id": hits.image_id, "score": hits.score})
    print(table(df))
    write_csv(df, a.csv, "matches")


def _search_parser(p):
    p.add_argument("--model", required=True)
    p.add_argument("query", help='what to look for, e.g. "a seven on grass"')
    p.add_argument("--top", type=int, default=200, help="at most this many failures, best first")
    p.add_argument("--csv", help="also write the matches to this CSV file")


# -- textualization (paper §4.1–4.2) ---------------------------------------------------------------------------
@command("propose", "propose uncommon values per class (LLM if OPENAI_API_KEY is set, else offline) into lists")
def cmd_propose(a):
    from core.describe.curation import CuratedLists

    ds = open_ds(a)
    options = {k: v for k, v in (("base_url", a.base_url), ("model", a.model)) if v}
    if options and a.proposer == "offline":
        raise BackdropError("--base-url and --model choose the LLM; drop them or use --proposer llm.")
    done = steps.propose(
        ds,
        a.attribute,
        proposer="llm" if options else a.proposer,
        options=options or None,
        progress=TqdmProgress("proposing"),
    )
    if done.notice:
        print(done.notice)
    lists = CuratedLists(ds, a.attribute)
    for c in ds.classes:
        cl = lists.get(c)
        print(f"{c}: {', '.join(cl.values) if cl else '(none)'}  [{done.classes.get(c, '')}]")


def _propose_parser(p):
    attribute_arg(p)
    p.add_argument("--proposer", choices=["llm", "offline"], help="default: llm when a key is set, else offline")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (default: OpenAI)")
    p.add_argument("--model", help="chat model for the LLM proposer (default: gpt-4o-mini)")


def attribute_arg(p) -> None:
    p.add_argument("--attribute", default=DEFAULT_ATTRIBUTE, help="background, colour, or a custom attribute name")


@command("lists", "show, export or import the curated value lists (every edit is a new version)")
def cmd_lists(a):
    from core.describe.curation import CuratedLists, empty_list_warning

    ds = open_ds(a)
    lists = CuratedLists(ds, a.attribute)
    if a.dry_run and not a.import_file:
        raise BackdropError("--dry-run previews an import; use it with --import FILE.")
    if a.restore is not None:
        if not a.class_name:
            raise BackdropError("--restore needs --class NAME (versions are per class; see `lists --history`).")
        cl = lists.restore(a.class_name, a.restore)
        print(f"{a.class_name}: v{a.restore} restored as v{cl.version}: {', '.join(cl.values) or '(empty)'}")
    elif a.history:
        for c in [a.class_name] if a.class_name else lists.classes():
            for v in lists.versions(c):
                print(f"{c} v{v.version} {v.when} {v.who} {v.action}: {', '.join(v.values) or '(empty)'}")
    elif a.export:
        path = lists.export_json(a.export) if a.export.endswith(".json") else lists.export_csv(a.export)
        print(f"exported to {path}")
    elif a.import_file:
        fn = lists.import_json if a.import_file.endswith(".json") else lists.import_csv
        for c, status in fn(a.import_file, dry_run=a.dry_run).items():
            print(f"{c}: {status}")
        if a.dry_run:
            print("dry run: nothing was changed")
    else:
        for c in lists.classes():
            shown = lists.get(c)
            if shown is not None:
                print(f"{c} (v{shown.version}, {shown.source}): {', '.join(shown.values)}")
        print(f"list version id: {lists.current_version_id()}")
    warning = empty_list_warning(lists.as_dict(), [c for c in ds.classes if lists.get(c) is not None])
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def _lists_parser(p):
    attribute_arg(p)
    p.add_argument("--export", metavar="FILE", help="write all lists to FILE (.csv or .json)")
    p.add_argument("--import", dest="import_file", metavar="FILE", help="read lists from FILE (.csv or .json)")
    p.add_argument("--dry-run", action="store_true", help="with --import: show what would change, write nothing")
    p.add_argument("--restore", type=int, metavar="VERSION", help="make VERSION of --class's list current again")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="the class for --restore / --history")
    p.add_argument("--history", action="store_true", help="list every version (of --class, or of all classes)")


@command("modes", "CLIP names each debug_seed failure's value; print the k failure modes per class")
def cmd_modes(a):
    text = steps.textualize(
        open_ds(a),
        a.model,
        a.attribute,
        a.k,
        split_cfg(a),
        head_cfg(a),
        executor=executor_cfg(a),
        progress=TqdmProgress("assigning"),
    )
    for warning in text.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(table(text.modes[["class_name", "rank", "value", "count", "share"]]))
    if text.accuracy:
        sc = text.accuracy
        print(
            f"\nassignment accuracy against ground truth: {sc['accuracy']:.3f} (chance {sc['chance']:.3f}, n={sc['n']})"
        )
    if text.discovery:
        from core.describe.discovery import describe

        print(describe(text.discovery, a.k))
    write_csv(text.assignments, a.csv, "assignments")


def _modes_parser(p):
    p.add_argument("--model", required=True)
    attribute_arg(p)
    p.add_argument("-k", type=int, default=DEBUG.k_modes, help=f"failure modes per class (paper: {DEBUG.k_modes})")
    p.add_argument("--csv", help="also write every assignment to this CSV file")
    splits_args(p)
    executor_args(p)


# -- mitigation (paper §4.3, §5.3) -----------------------------------------------------------------------------
def generator_cfg(a) -> GeneratorConfig:
    options: dict = {"num_inference_steps": a.steps} if a.steps else {}
    if a.pool:
        if a.generator != "retrieval":
            raise InvalidInputError("--pool is the folder the retrieval generator searches: add --generator retrieval.")
        options["pool"] = a.pool
    elif a.generator == "retrieval":
        raise InvalidInputError("--generator retrieval needs --pool DIR, the folder of images to retrieve from.")
    return GeneratorConfig(name=a.generator, model_id=a.generator_model, options=options)


def filter_cfg(a) -> FilterConfig | None:
    """The CLIP filter the flags ask for (None without --filter)."""
    if not a.filter:
        return None
    base = FilterConfig()
    return FilterConfig(
        min_class_prob=base.min_class_prob if a.filter_min_class is None else a.filter_min_class,
        min_value_prob=base.min_value_prob if a.filter_min_value is None else a.filter_min_value,
        keep_fraction=a.filter_keep,
    )


def debug_cfg(a) -> DebugConfig:
    return DebugConfig(k_modes=a.k, images_per_mode=a.images_per_mode, lam=a.lam, seed=a.gen_seed)


def _experiment_args(p, models=True):
    if models:
        models_args(p)
    attribute_arg(p)
    p.add_argument("-k", type=int, default=DEBUG.k_modes, help=f"failure modes per class (paper: {DEBUG.k_modes})")
    p.add_argument(
        "--images-per-mode",
        type=int,
        default=DEBUG.images_per_mode,
        help=f"generated images per mode (paper: {DEBUG.images_per_mode})",
    )
    p.add_argument(
        "--lam", type=float, default=DEBUG.lam, help=f"λ weighting the generated images' loss (paper: {DEBUG.lam})"
    )
    p.add_argument(
        "--generator",
        help="world (offline default), diffusers (real default: Stable Diffusion v1-5), retrieval (with --pool) "
        "or edits (the model's own failures, edited)",
    )
    p.add_argument("--generator-model", help="diffusers hub id or local pipeline folder")
    p.add_argument("--steps", type=int, help="diffusion steps (e.g. 1 for SD-Turbo)")
    p.add_argument("--pool", help="folder of unlabelled images that --generator retrieval searches with CLIP")
    p.add_argument("--filter", action="store_true", help="CLIP-filter the images; dropped ones are kept, restorable")
    p.add_argument(
        "--filter-min-class", type=float, help=f"class probability to keep (default {FilterConfig.min_class_prob})"
    )
    p.add_argument(
        "--filter-min-value", type=float, help=f"value probability to keep (default {FilterConfig.min_value_prob})"
    )
    p.add_argument("--filter-keep", type=float, help="instead of thresholds: keep this top share of each mode")
    p.add_argument("--gen-seed", type=int, default=DEBUG.seed)
    splits_args(p)
    p.add_argument("--csv", help="also write the results table to this CSV file")


def fix_configs(a) -> dict:
    """The settings the generate and experiment steps share, from the flags."""
    return {
        "attribute": a.attribute,
        "generator": generator_cfg(a),
        "clip_filter": filter_cfg(a),
        "debug": debug_cfg(a),
        "split": split_cfg(a),
        "head": head_cfg(a),
    }


def repeats_arg(p) -> None:
    p.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="rerun over N seeds (repeat i adds i to the split and generation seeds) and print mean and 95%% CI "
        "per method, with McNemar's test of ours against each baseline on the same images",
    )


def _repeated(a, what: str, **kw):
    """The experiment over ``--repeats`` seeds: mean ± CI per method and metric, paired tests, verdicts."""
    from core.display import repeats_table

    bar, models = TqdmProgress("repeats"), model_list(a)
    cfg = RepeatsConfig(n=a.repeats)
    done = steps.experiment_repeats(open_ds(a), what, models, repeats=cfg, progress=bar, **fix_configs(a), **kw)
    bar.close()
    print(f"mean ± half-width of the 95% confidence interval over {done.repeats} repeats")
    if what == "individual":
        print(table(repeats_table(done.summary)))
    else:
        s = done.summary[done.summary["metric"].isin(["acc_heldout", "acc_test"])]
        print(table(s.round(4)))
    cols = ["model", *[c for c in ("lam", "k") if c in done.tests], "method", "split", "n_pairs"]
    cols += ["diff_mean", "diff_ci_low", "diff_ci_high", "p_value"]
    print("\nours against each method on the same images (McNemar's test over the repeats' pooled images)")
    print(table(done.tests[cols].round(4)))
    print("\n" + "\n".join(done.verdicts))
    print(f"\nsaved {done.parquet}")
    write_csv(done.summary, a.csv, "summary rows")


def _experiment(a, what: str, **kw):
    if getattr(a, "repeats", None) is not None:
        return _repeated(a, what, **kw)
    bar, models = TqdmProgress("debugging"), model_list(a)
    done = steps.experiment(open_ds(a), what, models, progress=bar, **fix_configs(a), **kw)
    bar.close()
    df = done.table
    cols = [
        c
        for c in ("model", "method", "lam", "k", "n_generated", "acc_test", "acc_seed", "acc_heldout")
        if c in df.columns
    ]
    print(table(df[cols].round(4)))
    print(f"\nsaved {done.parquet}")
    write_csv(df, a.csv, "result rows")
    return df


@command("generate", "generate images for a model's failure modes and the Random_debugging baseline")
def cmd_generate(a):
    import pandas as pd

    models, ds, out = model_list(a), open_ds(a), []
    for m in models:
        bar = TqdmProgress(m)
        g = steps.generate(ds, model=m, executor=executor_cfg(a), progress=bar, **fix_configs(a))
        bar.close()
        row = {"model": m, "ours": g.ours, "random": g.random, "sets": ", ".join(g.sets), "skipped": g.skipped}
        out.append(row | ({"dropped by filter": g.dropped} if a.filter else {}))
    print(table(pd.DataFrame(out)))


def _generate_parser(p):
    _experiment_args(p)
    executor_args(p)


@command("debug", "individual debugging vs Random_debugging for each model (paper Table 2)")
def cmd_debug(a):
    _experiment(a, "individual")


@command("collective", "collective debugging types 1 and 2 on a family (paper Table 3, Figure 6)")
def cmd_collective(a):
    from core.fix.mitigate import relative_to_individual

    df = _experiment(a, "collective", reference=a.reference)
    print("\nheldout gain relative to individual debugging\n" + table(relative_to_individual(df).round(3)))


def _collective_parser(p):
    _experiment_args(p)
    p.add_argument("--reference", help="type 2: the model whose failure modes debug the family (default: first)")


@command("sweep", "sweep λ or k for models (paper Figure 5); the app's Results page shows the newest")
def cmd_sweep(a):
    _experiment(a, a.over, values=a.values)


def _debug_parser(p):
    _experiment_args(p)
    repeats_arg(p)


def _sweep_parser(p):
    _experiment_args(p)
    repeats_arg(p)
    p.add_argument("over", choices=["lam", "k"])
    p.add_argument("--values", nargs="+", type=float, help="default: λ 0,.25,.5,.75,1 or k 1..5")


@command("report", "the self-contained HTML report of the saved results (tables, charts, failures and images per mode)")
def cmd_report(a):
    import pandas as pd

    from core import store
    from core.fix.mitigate import list_results
    from core.report import results_report

    ds = open_ds(a)
    found = list_results(ds.key)
    if not found:
        raise BackdropError("No saved results for this dataset yet: run `debug`, `collective` or `sweep` first.")
    saved = {w: (pd.read_parquet(pq), meta) for w, (pq, meta) in found.items() if not a.only or w in a.only}
    html = results_report(ds, saved, models=a.models, per_mode=a.per_mode)
    store.atomic_write_bytes(Path(a.out), html.encode())
    print(f"wrote {a.out} ({len(html) // 1024} KiB): {', '.join(saved)}")


def _report_parser(p):
    p.add_argument("--out", default="backdrop-report.html", help="where to write the report")
    p.add_argument("--only", nargs="+", choices=list(steps.EXPERIMENTS), help="only these saved experiments")
    p.add_argument("--models", nargs="+", help="failure-mode images for these models (default: the debugged ones)")
    p.add_argument("--per-mode", type=int, default=3, help="failures and generated images shown per mode")


PARSERS = {
    "setup": _setup_parser,
    "report": _report_parser,
    "models": _models_parser,
    "world": _world_parser,
    "search": _search_parser,
    "run": _run_parser,
    "failures": _failures_parser,
    "overlap": _overlap_parser,
    "propose": _propose_parser,
    "lists": _lists_parser,
    "modes": _modes_parser,
    "debug": _debug_parser,
    "generate": _generate_parser,
    "collective": _collective_parser,
    "sweep": _sweep_parser,
}
NO_DATASET = {"datasets", "models"}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit status 2) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m core", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (fn, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        if name not in NO_DATASET:
            dataset_args(p)
        PARSERS.get(name, lambda p: None)(p)
        p.set_defaults(fn=fn)
    return ap


def check_args(a) -> None:
    """Build the configs a command will use from its arguments, so a bad size, count or seed is refused (by the
    checks in core) before any dataset is opened or work starts."""
    from core import validate
    from core.config import DebugConfig, SplitConfig

    if getattr(a, "seed", None) is not None:
        validate.seed("Dataset seed (--seed)", a.seed)
    if hasattr(a, "executor"):
        executor_cfg(a)
    if hasattr(a, "per_class"):
        SplitConfig(head_train_per_class=a.per_class, seed=a.split_seed)
    if hasattr(a, "images_per_mode"):
        DebugConfig(k_modes=a.k, images_per_mode=a.images_per_mode, lam=a.lam, seed=a.gen_seed)
    elif getattr(a, "k", None) is not None:
        validate.whole("k (failure modes per class)", a.k, 1, validate.MAX_K_MODES)
    if getattr(a, "repeats", None) is not None:
        RepeatsConfig(n=a.repeats)
    if getattr(a, "steps", None) is not None:
        validate.whole("Diffusion steps (--steps)", a.steps, 1, validate.MAX_STEPS)
    if getattr(a, "values", None):
        if a.over == "k":
            validate.wholes("k (failure modes per class)", a.values, 1, validate.MAX_K_MODES)
        else:
            for v in a.values:
                validate.number("λ", v, 0.0, 1.0)
    if getattr(a, "top", None) is not None:
        validate.whole("Search results (--top)", a.top, 1, validate.MAX_TOP)
    if getattr(a, "per_mode", None) is not None:
        validate.whole("Examples per mode (--per-mode)", a.per_mode, 1, validate.MAX_EXAMPLES_PER_MODE)
    if getattr(a, "restore", None) is not None:
        validate.whole("List version (--restore)", a.restore, 1)


def _close_bars() -> None:
    """End any progress bar's line, so an error message starts on its own line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        args.fn(args)
    except (BackdropError, ValueError) as e:  # BackdropError: said for users; ValueError: from bad input
        _close_bars()
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable or missing paths the user named
        _close_bars()
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where}: {e.strerror or e}. Check the path and its permissions.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
