"""Headless command line for every step: ``python -m core <command> …`` (also installed as ``backdrop``).

Each command calls the same core functions the app's jobs call, with tqdm progress bars. Errors that users can
fix print as one line (exit status 2); anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import sys

from core.errors import BackdropError
from core.progress import TqdmProgress

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
    spec = {"name": a.dataset}
    for k in ("size", "seed", "root"):
        if getattr(a, k, None) is not None:
            spec[k] = getattr(a, k)
    return spec


def open_ds(a):
    from core.workspace import open_dataset

    return open_dataset(dataset_spec(a))


def model_list(a, ds=None) -> list[str]:
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


@command("world", "build the offline world and train its backbones and CLIP")
def cmd_world(a):
    from core.workspace import open_dataset

    spec = dataset_spec(a) | {"name": "scenes-mnist"}
    bar = TqdmProgress("world")
    ds = open_dataset(spec)
    print(f"offline world {spec.get('size', 'default')}: {ds.folder}")
    for pool in ds.pools():
        print(f"  {pool}: {len(ds.index(pool))} images")
    if a.action in ("train", "all"):
        from core.world.backbones import train_world_backbones

        for path in train_world_backbones(ds, names=a.models, progress=bar):
            print(f"  trained {path}")
    if a.action in ("clip", "all"):
        from core.world.clip import train_world_clip

        print(f"  world CLIP: {train_world_clip(ds, progress=bar)}")
    bar.close()


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

    from core.config import HeadConfig, SplitConfig
    from core.find.runs import run_model

    ds = open_ds(a)
    rows = []
    for m in model_list(a, ds):
        bar = TqdmProgress(m)
        r = run_model(
            ds,
            m,
            SplitConfig(head_train_per_class=a.per_class, seed=a.split_seed),
            HeadConfig(solver=a.solver),
            progress=bar,
        )
        bar.close()
        rows.append(
            {
                "model": m,
                "family": r.family,
                **{f"acc_{k}": v for k, v in r.summary["accuracy"].items()},
                "failures": r.summary["n_failures"],
                "seed": r.summary["n_seed"],
                "heldout": r.summary["n_heldout"],
            }
        )
    print(table(pd.DataFrame(rows)))


def _run_parser(p):
    models_args(p)
    p.add_argument("--per-class", type=int, default=30, help="head-training images per class (paper: 30)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument(
        "--solver",
        default="sgd",
        choices=["sgd", "fused", "lbfgs"],
        help="sgd = the paper's optimiser; fused = the same steps, faster; lbfgs = to the optimum",
    )


@command("failures", "per-class failure counts of one model (after `run`)")
def cmd_failures(a):
    from core.find.failures import per_class_counts
    from core.find.runs import run_model

    ds = open_ds(a)
    r = run_model(ds, a.model, progress=TqdmProgress(a.model))
    print(table(per_class_counts(r.table, ds.classes)))
    write_csv(r.failures, a.csv, "failures")


def _failures_parser(p):
    p.add_argument("--model", required=True)
    p.add_argument("--csv", help="also write the failures to this CSV file")


@command("overlap", "intersection-over-union of failure sets across models")
def cmd_overlap(a):
    from core.find.failures import iou_matrix
    from core.find.runs import failure_ids, run_model

    ds = open_ds(a)
    runs = [run_model(ds, m, progress=TqdmProgress(m)) for m in model_list(a, ds)]
    iou, inter = iou_matrix(failure_ids(runs))
    print("IoU of failure sets\n" + table(iou.round(3)))
    if a.intersections:
        print("\nshared failures\n" + table(inter))


def _overlap_parser(p):
    models_args(p)
    p.add_argument("--intersections", action="store_true", help="also print raw intersection counts")


# -- textualization (paper §4.1–4.2) ---------------------------------------------------------------------------
@command("propose", "propose uncommon values per class (LLM if OPENAI_API_KEY is set, else offline) into lists")
def cmd_propose(a):
    from core.describe.textualize import ensure_lists

    ds = open_ds(a)
    options = {k: v for k, v in (("base_url", a.base_url), ("model", a.model)) if v}
    if options and a.proposer == "offline":
        raise BackdropError("--base-url and --model choose the LLM; drop them or use --proposer llm.")
    lists = ensure_lists(
        ds,
        a.attribute,
        proposer="llm" if options else a.proposer,
        progress=TqdmProgress("proposing"),
        proposer_options=options,
    )
    for c in ds.classes:
        cl = lists.get(c)
        print(f"{c}: {', '.join(cl.values) if cl else '(none)'}")


def _propose_parser(p):
    p.add_argument("--attribute", default="background", help="background, colour, or a custom attribute name")
    p.add_argument("--proposer", choices=["llm", "offline"], help="default: llm when a key is set, else offline")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (default: OpenAI)")
    p.add_argument("--model", help="chat model for the LLM proposer (default: gpt-4o-mini)")


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
            cl = lists.get(c)
            print(f"{c} (v{cl.version}, {cl.source}): {', '.join(cl.values)}")
        print(f"list version id: {lists.current_version_id()}")
    warning = empty_list_warning(lists.as_dict(), [c for c in ds.classes if lists.get(c) is not None])
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def _lists_parser(p):
    p.add_argument("--attribute", default="background")
    p.add_argument("--export", metavar="FILE", help="write all lists to FILE (.csv or .json)")
    p.add_argument("--import", dest="import_file", metavar="FILE", help="read lists from FILE (.csv or .json)")
    p.add_argument("--dry-run", action="store_true", help="with --import: show what would change, write nothing")
    p.add_argument("--restore", type=int, metavar="VERSION", help="make VERSION of --class's list current again")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="the class for --restore / --history")
    p.add_argument("--history", action="store_true", help="list every version (of --class, or of all classes)")


@command("modes", "CLIP names each debug_seed failure's value; print the k failure modes per class")
def cmd_modes(a):
    from core.describe.textualize import textualize
    from core.find.runs import run_model

    ds = open_ds(a)
    run = run_model(ds, a.model, progress=TqdmProgress(a.model))
    text = textualize(ds, run, k=a.k, attribute=a.attribute, progress=TqdmProgress("assigning"))
    for warning in text.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(table(text.modes[["class_name", "rank", "value", "count", "share"]]))
    if a.attribute in getattr(ds, "attributes", ()):
        from core.describe.assign import score_assignments

        sc = score_assignments(text.assignments, ds, a.attribute)
        print(
            f"\nassignment accuracy against ground truth: {sc['accuracy']:.3f} (chance {sc['chance']:.3f}, n={sc['n']})"
        )
    write_csv(text.assignments, a.csv, "assignments")


def _modes_parser(p):
    p.add_argument("--model", required=True)
    p.add_argument("--attribute", default="background")
    p.add_argument("-k", type=int, default=3, help="failure modes per class (paper: 3)")
    p.add_argument("--csv", help="also write every assignment to this CSV file")


# -- mitigation (paper §4.3, §5.3) -----------------------------------------------------------------------------
def _experiment(a, ds):
    from core.config import DebugConfig, HeadConfig
    from core.fix.experiments import Experiment, default_generator

    gen_kw = {"model_id": a.generator_model} if a.generator_model else {}
    if a.steps:
        gen_kw["num_inference_steps"] = a.steps
    return Experiment(
        ds,
        DebugConfig(k_modes=a.k, images_per_mode=a.images_per_mode, lam=a.lam, seed=a.gen_seed),
        attribute=a.attribute,
        generator=default_generator(ds, a.generator, **gen_kw),
        head_cfg=HeadConfig(solver=a.solver),
        progress=TqdmProgress("debugging"),
    )


def _experiment_args(p, models=True):
    if models:
        models_args(p)
    p.add_argument("--attribute", default="background")
    p.add_argument("-k", type=int, default=3, help="failure modes per class (paper: 3)")
    p.add_argument("--images-per-mode", type=int, default=5, help="generated images per mode (paper: 5)")
    p.add_argument("--lam", type=float, default=0.5, help="λ weighting the generated images' loss (paper: 0.5)")
    p.add_argument("--generator", help="world (offline default) or diffusers (real default: Stable Diffusion v1-5)")
    p.add_argument("--generator-model", help="diffusers hub id or local pipeline folder")
    p.add_argument("--steps", type=int, help="diffusion steps (e.g. 1 for SD-Turbo)")
    p.add_argument("--gen-seed", type=int, default=0)
    p.add_argument(
        "--solver",
        default="sgd",
        choices=["sgd", "fused", "lbfgs"],
        help="head solver: sgd (the paper's), fused (the same steps, faster), lbfgs",
    )
    p.add_argument("--csv", help="also write the results table to this CSV file")


def _report(df, name: str, exp, a, **meta):
    from core.fix.experiments import save_results

    cols = [
        c
        for c in ("model", "method", "lam", "k", "n_generated", "acc_test", "acc_seed", "acc_heldout")
        if c in df.columns
    ]
    print(table(df[cols].round(4)))
    pq, csv = save_results(df, name, exp.meta(**meta))
    print(f"\nsaved {pq}")
    write_csv(df, a.csv, "result rows")


@command("generate", "generate images for a model's failure modes and the Random_debugging baseline")
def cmd_generate(a):
    from core.fix.experiments import skipped_modes

    ds = open_ds(a)
    out = []
    exp = _experiment(a, ds)
    for m in model_list(a, ds):
        ours, rand = exp.images(exp.textualization(m).modes)
        out.append(
            {
                "model": m,
                "ours": len(ours),
                "random": len(rand),
                "sets": ", ".join(sorted(set(ours.get("set", [])) | set(rand.get("set", [])))),
                "skipped": skipped_modes(ours),
            }
        )
    import pandas as pd

    print(table(pd.DataFrame(out)))


@command("debug", "individual debugging vs Random_debugging for each model (paper Table 2)")
def cmd_debug(a):
    from core.fix.experiments import individual

    ds = open_ds(a)
    models = model_list(a, ds)
    exp = _experiment(a, ds)
    _report(individual(exp, models), "individual", exp, a, models=models)


@command("collective", "collective debugging types 1 and 2 on a family (paper Table 3, Figure 6)")
def cmd_collective(a):
    from core.fix.experiments import collective_study
    from core.fix.mitigate import relative_to_individual

    ds = open_ds(a)
    models = model_list(a, ds)
    exp = _experiment(a, ds)
    df = collective_study(exp, models, a.reference)
    _report(df, "collective", exp, a, models=models, reference=a.reference)
    rel = relative_to_individual(df)
    print("\nheldout gain relative to individual debugging\n" + table(rel.round(3)))


def _collective_parser(p):
    _experiment_args(p)
    p.add_argument("--reference", help="type 2: the model whose failure modes debug the family (default: first)")


@command("sweep", "sweep λ or k for models (paper Figure 5)")
def cmd_sweep(a):
    import pandas as pd

    from core.fix.experiments import sweep

    ds = open_ds(a)
    models = model_list(a, ds)
    exp = _experiment(a, ds)
    values = a.values or None  # core checks them (k must be whole: 2.7 is refused, not truncated)
    df = pd.concat([sweep(exp, m, a.over, values) for m in models], ignore_index=True)
    _report(df, f"sweep-{a.over}", exp, a, models=models, over=a.over)


def _sweep_parser(p):
    _experiment_args(p)
    p.add_argument("over", choices=["lam", "k"])
    p.add_argument("--values", nargs="+", type=float, help="default: λ 0,.25,.5,.75,1 or k 1..5")


PARSERS = {
    "models": _models_parser,
    "world": _world_parser,
    "run": _run_parser,
    "failures": _failures_parser,
    "overlap": _overlap_parser,
    "propose": _propose_parser,
    "lists": _lists_parser,
    "modes": _modes_parser,
    "debug": _experiment_args,
    "generate": _experiment_args,
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
    if hasattr(a, "per_class"):
        SplitConfig(head_train_per_class=a.per_class, seed=a.split_seed)
    if hasattr(a, "images_per_mode"):
        DebugConfig(k_modes=a.k, images_per_mode=a.images_per_mode, lam=a.lam, seed=a.gen_seed)
    elif getattr(a, "k", None) is not None:
        validate.whole("k (failure modes per class)", a.k, 1, validate.MAX_K_MODES)
    if getattr(a, "steps", None) is not None:
        validate.whole("Diffusion steps (--steps)", a.steps, 1, validate.MAX_STEPS)
    if getattr(a, "values", None):
        if a.over == "k":
            validate.wholes("k (failure modes per class)", a.values, 1, validate.MAX_K_MODES)
        else:
            for v in a.values:
                validate.number("λ", v, 0.0, 1.0)
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
