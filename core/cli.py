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


# -- commands --------------------------------------------------------------------------------------------------
@command("datasets", "list registered datasets")
def cmd_datasets(a):
    from core.datasets import list_datasets

    print("\n".join(list_datasets()))


@command("models", "list models: name, family, source, whether weights are available here")
def cmd_models(a):
    import pandas as pd

    from core.models import list_models, model_info

    rows = [dict(name=n, **{k: v for k, v in model_info(n).items() if k in ("family", "source", "available")})
            for n in list_models()]
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
        from core.models.world_models import train_world_backbones

        for path in train_world_backbones(ds, names=a.models, progress=bar):
            print(f"  trained {path}")
    if a.action in ("clip", "all"):
        from core.world_clip import train_world_clip

        print(f"  world CLIP: {train_world_clip(ds, progress=bar)}")
    bar.close()


def _world_parser(p):
    p.add_argument("action", nargs="?", default="build", choices=["build", "train", "clip", "all"],
                   help="build the images (default); train its backbones; train its CLIP; or all three")
    p.add_argument("--models", nargs="+", help="only these world backbones")


@command("run", "features, linear head and debug failures for models (all cached)")
def cmd_run(a):
    import pandas as pd

    from core.config import HeadConfig, SplitConfig
    from core.pipeline import run_model

    ds = open_ds(a)
    rows = []
    for m in model_list(a, ds):
        bar = TqdmProgress(m)
        r = run_model(ds, m, SplitConfig(head_train_per_class=a.per_class, seed=a.split_seed),
                      HeadConfig(solver=a.solver), progress=bar)
        bar.close()
        rows.append({"model": m, "family": r.family, **{f"acc_{k}": v for k, v in r.summary["accuracy"].items()},
                     "failures": r.summary["n_failures"], "seed": r.summary["n_seed"],
                     "heldout": r.summary["n_heldout"]})
    print(table(pd.DataFrame(rows)))


def _run_parser(p):
    models_args(p)
    p.add_argument("--per-class", type=int, default=30, help="head-training images per class (paper: 30)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--solver", default="sgd", choices=["sgd", "lbfgs"], help="sgd = the paper's optimiser")


@command("failures", "per-class failure counts of one model (after `run`)")
def cmd_failures(a):
    from core.failures import per_class_counts
    from core.pipeline import run_model

    ds = open_ds(a)
    r = run_model(ds, a.model, progress=TqdmProgress(a.model))
    print(table(per_class_counts(r.table, ds.classes)))
    if a.csv:
        r.failures.to_csv(a.csv, index=False)
        print(f"wrote {len(r.failures)} failures to {a.csv}")


def _failures_parser(p):
    p.add_argument("--model", required=True)
    p.add_argument("--csv", help="also write the failures to this CSV file")


@command("overlap", "intersection-over-union of failure sets across models")
def cmd_overlap(a):
    from core.failures import iou_matrix
    from core.pipeline import failure_ids, run_model

    ds = open_ds(a)
    runs = [run_model(ds, m, progress=TqdmProgress(m)) for m in model_list(a, ds)]
    iou, inter = iou_matrix(failure_ids(runs))
    print("IoU of failure sets\n" + table(iou.round(3)))
    if a.intersections:
        print("\nshared failures\n" + table(inter))


def _overlap_parser(p):
    models_args(p)
    p.add_argument("--intersections", action="store_true", help="also print raw intersection counts")


PARSERS = {"models": _models_parser, "world": _world_parser, "run": _run_parser, "failures": _failures_parser,
           "overlap": _overlap_parser}
NO_DATASET = {"datasets", "models"}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m core", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (fn, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        if name not in NO_DATASET:
            dataset_args(p)
        PARSERS.get(name, lambda p: None)(p)
        p.set_defaults(fn=fn)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except BackdropError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
