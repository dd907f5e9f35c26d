"""The paper's claims on the offline world, over several seeds, every world-trained model, with ground truth.

    python benchmarks/fidelity.py [--dataset scenes-mnist|scenes-mnist-open] [--size default|tiny] [--seeds 5]
                                  [--vary world|split] [--world-seed 0] [--models ...]
                                  [--solver fused] [--out fidelity.md]

Each seed s redraws the splits (so the heads, their failures and seed/heldout halves, the failure modes) and the
generated images (``core.fix.repeats.reseeded``); with ``--vary world`` (the default) it also redraws the world
itself (world seed s: its images, and so its backbones and CLIP, trained per world), with ``--vary split`` every
seed uses the world of ``--world-seed``. Per model it reports, as mean [95% CI] over the seeds:
debug_heldout and test accuracy before debugging and after retraining with ours, Random_debugging (as many
generated images per class), real_failures (the debug_seed failures' own images) and the oracle (images of the
model's true worst slices, ours' image count); McNemar's test of ours against each on the same heldout images;
discovery precision@3 / recall@3 against the true failure slices (``core.describe.discovery``) and CLIP's
assignment accuracy; the world CLIP's text-search precision@20 and zero-shot digit/background/colour accuracy on
val (``core.world.clip_quality``); λ and k sweeps with Random_debugging at equal image counts; collective
debugging types 1 and 2 per family (type 2 only for the models other than the reference, whose modes it uses).
The markdown goes to ``--out`` with the command that made it; the project's targets are checked at the end.

The heads use ``--solver fused`` by default: the paper's SGD steps with the gradient written out (the same head,
see benchmarks/fused_heads.py), every head of one retraining call trained at once; pass ``--solver sgd`` for the
reference optimiser. One seed's Table 2, sweeps and collective debugging share one experiment, so each model's
features, its generated images' features and its heads of identical problems are computed once per seed (the
val pool's features once per model for all seeds). The raw tables and the markdown are rewritten after every seed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BACKDROP_CACHE", tempfile.mkdtemp(prefix="backdrop-bench-fidelity-"))

METHODS = ["before", "ours", "random", "real_failures", "oracle"]
DISCOVERY = [
    "n_true_slices",
    "discovery_precision",
    "discovery_ceiling",
    "discovery_recall",
    "assignment_accuracy",
    "assignment_chance",
    "assignment_coverage",
]


def ci(mean: float, low: float, high: float) -> str:
    if mean != mean:
        return "—"
    return f"{mean:.3f}" if low != low else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def cell(summary, model: str, method: str, metric: str) -> str:
    s = summary[(summary["model"] == model) & (summary["method"] == method) & (summary["metric"] == metric)]
    return ci(*s[["mean", "ci_low", "ci_high"]].iloc[0]) if len(s) else "—"


def seeds_phrase(d: dict) -> str:
    """What the seeds redrew, for the title."""
    n = len(d["seeds"])
    if d.get("vary") == "world":
        return f"{n} world seeds {d['seeds']}, each with the same split and generation seed"
    return f"world seed {d['world_seed']}, {n} split seeds"


def clip_line(q: dict) -> str:
    """The world CLIP's quality on val (``core.world.clip_quality``) in one sentence."""
    return (
        f"World CLIP on val ({q['n_images']} images): text-search precision@{q['k']} {q['search_precision']:.3f} "
        f"(digit right {q['search_digit_precision']:.3f}, background right {q['search_background_precision']:.3f}); "
        f"zero-shot accuracy digit {q['digit_accuracy']:.3f}, background {q['background_accuracy']:.3f}, "
        f"colour {q['colour_accuracy']:.3f}."
    )


def render(d: dict) -> str:
    """The markdown report from the raw tables ``main`` computed."""
    import numpy as np

    from core.fix.repeats import METRICS, interval, paired_tests, summarize

    models, seeds, size, solver = d["models"], d["seeds"], d["size"], d["solver"]
    dataset = d.get("dataset", "scenes-mnist")
    t_setup, t_ind, t_rest = d["times"]
    summary = summarize(d["rows"], metrics=[m for m in dict.fromkeys([*METRICS, *DISCOVERY]) if m in d["rows"]])
    held = paired_tests(d["predictions"], split="heldout")
    test = paired_tests(d["predictions"], split="test")
    sw, rel = d["sweeps"], d["rel"]
    lambdas, ks = sorted(set(sw.loc[sw["sweep"] == "lam", "lam"])), sorted(set(sw.loc[sw["sweep"] == "k", "k"]))
    lines = [
        f"# Fidelity on the offline world {dataset} ({size}, {seeds_phrase(d)})",
        "",
        f"Command: `{d['command']}`",
        "",
        f"Paper defaults (k = 3, 5 images per mode, λ = 0.5), head solver {solver}. Mean [95% t-interval] over "
        f"seeds {seeds}; p: McNemar's test of ours against the method on the same images, pooled over seeds. "
        f"Time: setup {t_setup:.0f} s, individual {t_ind:.0f} s, sweeps and collective {t_rest:.0f} s.",
        "",
        "## debug_heldout accuracy (0 before debugging, by definition)",
        "",
        md_table(["model", *METHODS], [[m] + [cell(summary, m, x, "acc_heldout") for x in METHODS] for m in models]),
        "",
        "## ours against each baseline on the same heldout images",
        "",
        md_table(
            ["model", "vs", "ours − other, mean [95% CI]", "ours only / other only", "p (McNemar)"],
            [
                [
                    r.model,
                    r.method,
                    ci(r.diff_mean, r.diff_ci_low, r.diff_ci_high),
                    f"{r.ours_only} / {r.other_only}",
                    f"{r.p_value:.3g}",
                ]
                for r in held[held["method"] != "before"].itertuples()
            ],
        ),  # fmt: skip
        "",
        "## test accuracy",
        "",
        md_table(
            ["model", *METHODS, "p ours vs before"],
            [
                [m]
                + [cell(summary, m, x, "acc_test") for x in METHODS]
                + [f"{test[(test['model'] == m) & (test['method'] == 'before')]['p_value'].iloc[0]:.3g}"]
                for m in models
            ],
        ),
        "",
        "## discovery against ground truth (ours' k = 3 modes) and CLIP assignment",
        "",
        md_table(
            [
                "model",
                "true failure slices",
                "precision@3",
                "precision@3 at most",
                "recall@3",
                "assignment accuracy",
                "chance",
                "true value a candidate",
            ],  # fmt: skip
            [[m] + [cell(summary, m, "ours", c) for c in DISCOVERY] for m in models],
        ),
    ]
    qs = d.get("clip_quality")  # absent in raw tables written before it was measured; one per world
    qs = [qs] if isinstance(qs, dict) else list(qs or [])
    q = (
        {k: qs[0][k] if len({x[k] for x in qs}) == 1 else float(np.mean([x[k] for x in qs])) for k in qs[0]}
        if qs
        else None
    )
    if len(qs) == 1:
        lines += ["", clip_line(qs[0])]
    elif qs:
        lines += ["", f"Mean over the {len(qs)} worlds' CLIPs. " + clip_line(q)]
        lines += [
            "",
            "Text-search precision@20 per world: " + ", ".join(f"{x['search_precision']:.3f}" for x in qs) + ".",
        ]
    lines += ["", "## λ and k sweeps (Random_debugging with the same image count at every point)", ""]
    for what, vals in (("lam", lambdas), ("k", ks)):
        pts = sw[(sw["sweep"] == what) & (sw["method"] != "before")]
        col = "lam" if what == "lam" else "k"
        sm = summarize(pts, metrics=["acc_heldout", "acc_test", "n_generated"], by=("model", "method", col))
        rows = []
        for m in models:
            for v in vals:
                g = sm[(sm["model"] == m) & (sm[col] == v)]

                def get(method, metric, g=g):
                    r = g[(g["method"] == method) & (g["metric"] == metric)]
                    return ci(*r[["mean", "ci_low", "ci_high"]].iloc[0]) if len(r) else "—"

                rows.append(
                    [m, v, get("ours", "n_generated").split(".")[0], get("ours", "acc_heldout"),
                     get("random", "acc_heldout"), get("ours", "acc_test"), get("random", "acc_test")]
                )  # fmt: skip
        name = "λ" if what == "lam" else "k"
        lines += [
            md_table(["model", name, "images", "heldout: ours", "heldout: random", "test: ours", "test: random"], rows),
            "",
        ]
    lines += [
        "## collective debugging: heldout gain as a share of individual debugging's",
        "",
        "Type 2 uses the first model of each family's modes (the reference) and is reported for the others only.",
        "",
    ]
    if len(rel):
        rows = []
        for (model, method), g in rel.groupby(["model", "method"], sort=True):
            rows.append([model, g["family"].iloc[0], method, g["reference"].iloc[0], ci(*interval(g["relative"]))])
        lines += [md_table(["model", "family", "type", "reference", "relative gain"], rows), ""]
    else:
        lines += ["(no family with two or more of the chosen models)", ""]

    lines += ["## targets", ""]
    checks = []
    for m in models:
        ours = summary[(summary["model"] == m) & (summary["method"] == "ours")].set_index("metric")
        before = summary[(summary["model"] == m) & (summary["method"] == "before")].set_index("metric")
        h = held[(held["model"] == m) & (held["method"] == "random")].iloc[0]
        checks += [
            [m, "debug_heldout with ours ≥ 0.20 (mean)", f"{ours.at['acc_heldout', 'mean']:.3f}",
             ours.at["acc_heldout", "mean"] >= 0.20],
            [m, "ours − random ≥ 0.10, CI excluding 0", ci(h.diff_mean, h.diff_ci_low, h.diff_ci_high),
             h.diff_mean >= 0.10 and h.diff_ci_low > 0],
            [m, "test after ours ≥ before − 0.01", f"{ours.at['acc_test', 'mean']:.3f} vs "
             f"{before.at['acc_test', 'mean']:.3f}", ours.at["acc_test", "mean"] >= before.at["acc_test", "mean"] - 0.01],
            [m, "discovery precision@3 ≥ 0.7", f"{ours.at['discovery_precision', 'mean']:.3f}"
             + (f" (at most {ours.at['discovery_ceiling', 'mean']:.3f})" if "discovery_ceiling" in ours.index else ""),
             ours.at["discovery_precision", "mean"] >= 0.7],
            [m, "assignment accuracy ≥ 0.8", f"{ours.at['assignment_accuracy', 'mean']:.3f}",
             ours.at["assignment_accuracy", "mean"] >= 0.8],
        ]  # fmt: skip
    if q:
        checks.append(["world CLIP", "text-search precision@20 ≥ 0.8", f"{q['search_precision']:.3f}",
                       q["search_precision"] >= 0.8])  # fmt: skip
    lines += [md_table(["model", "target", "measured", "met"], [[*c[:3], "yes" if c[3] else "no"] for c in checks])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="scenes-mnist", help="offline world: scenes-mnist or scenes-mnist-open")
    ap.add_argument("--size", default="default", help="world size: default (what the app builds) or tiny")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (what each redraws: --vary)")
    ap.add_argument(
        "--vary",
        default="world",
        choices=["world", "split"],
        help="world: seed s redraws the world too (world seed s); split: one world, seeds redraw splits",
    )
    ap.add_argument("--world-seed", type=int, default=0, help="the world of --vary split")
    ap.add_argument("--models", nargs="+", help="default: every world-trained model")
    ap.add_argument("--solver", default="fused", choices=["sgd", "fused", "lbfgs"])
    ap.add_argument("--out", default="fidelity.md")
    ap.add_argument("--render-only", metavar="PKL", help="redraw the markdown from the raw tables of an earlier run")
    a = ap.parse_args()
    command = "python benchmarks/fidelity.py " + shlex.join(sys.argv[1:])

    import pandas as pd

    from core.config import DebugConfig, HeadConfig
    from core.datasets import create_dataset, is_offline_world
    from core.fix.experiments import KS, LAMBDAS, Experiment, collective, individual, sweep
    from core.fix.mitigate import relative_to_individual
    from core.fix.repeats import reseeded
    from core.models import model_info
    from core.threads import single_thread
    from core.world.backbones import ARCHS, train_world_backbone
    from core.world.clip import train_world_clip
    from core.world.clip_quality import clip_quality

    if a.render_only:
        d = pd.read_pickle(a.render_only)
        Path(a.out).write_text(render(d))
        print(Path(a.out).read_text())
        return
    t0 = time.perf_counter()
    seeds = list(range(a.seeds))
    models = a.models or list(ARCHS)
    if not is_offline_world(create_dataset(a.dataset, size=a.size, seed=a.world_seed)):
        ap.error(f"{a.dataset!r} is not an offline world (it has no ground truth to score against)")
    clip_qs: list[dict] = []
    t_setup = 0.0

    def world(seed: int) -> Experiment:
        """The world of ``seed`` with its backbones and CLIP trained (loaded when cached), as an experiment."""
        nonlocal t_setup
        t = time.perf_counter()
        ds = create_dataset(a.dataset, size=a.size, seed=seed)
        with single_thread():
            for m in models:
                train_world_backbone(m, ds)
            clip = train_world_clip(ds)
            clip_qs.append(clip_quality(clip, ds).as_dict())
        print(f"world seed {seed}: " + clip_line(clip_qs[-1]), flush=True)
        t_setup += time.perf_counter() - t
        return Experiment(ds, DebugConfig(), clip=clip, head_cfg=HeadConfig(solver=a.solver))

    exp = world(a.world_seed) if a.vary == "split" else None
    families: dict[str, list[str]] = {}
    for m in models:
        families.setdefault(model_info(m)["family"], []).append(m)
    sweeps, coll, times = [], [], {"individual": 0.0, "rest": 0.0}

    def one_seed(e, predictions: list) -> pd.DataFrame:
        """Table 2, the sweeps and collective debugging on one seed's experiment: one Experiment, so its models'
        contexts (features, generated images' features, heads of identical problems) serve all three."""
        t = time.perf_counter()
        ind = individual(e, models, predictions)
        times["individual"] += time.perf_counter() - t
        t, s = time.perf_counter(), e.split_cfg.seed
        for m in models:
            sweeps.extend([sweep(e, m, "lam", LAMBDAS).assign(repeat=s), sweep(e, m, "k", KS).assign(repeat=s)])
        for ms in families.values():
            if len(ms) < 2:
                continue
            rows = pd.concat([ind[ind["model"].isin(ms)], collective(e, ms, 1), collective(e, ms, 2)])
            coll.append(relative_to_individual(rows).assign(repeat=s, reference=ms[0]))
        times["rest"] += time.perf_counter() - t
        print(f"seed {s}: individual and the rest done at {time.perf_counter() - t0:.0f} s", flush=True)
        return ind

    raw = Path(a.out).with_suffix(".pkl")
    rows, preds = [], []
    for i, s in enumerate(seeds):
        with single_thread():
            found: list[pd.DataFrame] = []
            rows.append(one_seed(reseeded(exp if exp is not None else world(s), s), found).assign(repeat=s))
            preds += [x.assign(repeat=s) for x in found]
        # the raw tables and the markdown of the seeds done so far, rewritten after every seed: a stopped run
        # keeps its finished seeds (--render-only redraws the markdown from the raw tables)
        d = dict(
            command=command, dataset=a.dataset, size=a.size, vary=a.vary, world_seed=a.world_seed,
            seeds=seeds[: i + 1], models=models, solver=a.solver, times=(t_setup, times["individual"], times["rest"]),
            clip_quality=clip_qs,
            rows=pd.concat(rows, ignore_index=True), predictions=pd.concat(preds, ignore_index=True),
            sweeps=pd.concat(sweeps, ignore_index=True), rel=pd.concat(coll, ignore_index=True) if coll else pd.DataFrame(),
        )  # fmt: skip
        pd.to_pickle(d, raw)
        Path(a.out).write_text(render(d))
    print(Path(a.out).read_text())
    print(f"wrote {a.out} (raw tables: {raw}) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
