"""Feature-extraction throughput against the bare forward pass and the machine's matmul rate, side by side in one run.

    python benchmarks/features.py [--model efficientnet-lite0] [--images 256] [--batch-sizes 16 32 64]
                                  [--threads 1 2] [--rounds 3]
    python benchmarks/features.py --input-sizes 96 128 --models efficientnet-lite0 efficientnet-lite1 \
                                  efficientnet-lite2 [--world-size tiny]

1. Matmul rate: GFLOP/s of a float32 ``torch.mm`` (2048 × 2048) at the process's thread count, the ceiling a
   forward pass is measured against.
2. Model cost: FLOPs of one image's forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode``
   (convolutions and matmuls; 2 FLOPs per multiply-add).
3. Bare forward: images/s of ``backbone(x)`` on ready tensors under torch.inference_mode, for each layout
   (``contiguous``, the default, and ``channels_last``: weights and input in NHWC), batch size and thread count.
   Variants are timed in interleaved rounds (best round kept), so a load change on the machine hits all of them;
   each variant's features are compared with the default's on the same real images (max |Δ| over max |f|).
   Its share of the matmul rate is images/s × FLOPs per image / matmul FLOP/s.
4. Pipeline: images/s of ``core.find.features.extract_features`` (decode, the model's own preprocessing, batching,
   the forward pass as the pipeline sets it up, sharded atomic writes), into an empty cache, at the best batch
   size; its ratio to the bare forward in the pipeline's layout (1.0 would mean no overhead at all).

With ``--input-sizes``, instead: each of ``--models`` at its native input size and at each size given (the
registry's ``<model>@<pixels>``), side by side on the world's images: FLOPs per image, the bare forward's images/s
(interleaved rounds, best kept), the pipeline's images/s over a whole run's images (head-training, debug and test
sets, into an empty cache), and that run's linear-head accuracy on the test and debug sets, with each reduced
size's speed-up and accuracy change against native.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOLERANCE = 1e-4  # features of a faster variant may differ from the default's by this much (relative to max |f|)


def matmul_gflops(n: int = 2048, rounds: int = 5) -> float:
    """Best-of-``rounds`` float32 matmul rate, GFLOP/s (2·n³ FLOPs per product)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def gflop_per_image(bb, size) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        bb(torch.randn(1, *size))
    return counter.get_total_flops() / 1e9


def forward_rate(bb, x, n_images: int) -> float:
    """images/s of ``bb`` on the batch ``x``, repeated until ``n_images`` have passed (after one warm-up)."""
    import torch

    with torch.inference_mode():
        bb(x)
        n, t0 = 0, time.perf_counter()
        while n < n_images:
            bb(x)
            n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--images", type=int, default=256, help="images per timing (bare forward and pipeline)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts to try (default: torch's)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per variant (best kept)")
    ap.add_argument("--world-size", default="tiny")
    ap.add_argument("--input-sizes", type=int, nargs="+", help="compare these input sizes with native (see above)")
    ap.add_argument("--models", nargs="+", help="models for --input-sizes (default: --model)")
    ap.add_argument(
        "--cache", help="cache folder (default: a new empty one), e.g. an earlier run's, to reuse its rendered world"
    )
    a = ap.parse_args()
    os.environ["BACKDROP_CACHE"] = a.cache or tempfile.mkdtemp(prefix="backdrop-bench-features-")
    if a.input_sizes:
        compare_input_sizes(a.models or [a.model], a.input_sizes, a.world_size, a.rounds, a.images)
        return

    import torch

    from core.datasets.base import TorchView
    from core.find.features import extract_features, forward_layout
    from core.find.runs import load_backbone
    from core.workspace import open_dataset

    ds = open_dataset({"name": "scenes-mnist", "size": a.world_size})
    if a.model.startswith("world-"):
        from core.world.backbones import train_world_backbone

        train_world_backbone(a.model, ds)
    bb = load_backbone(a.model, ds).eval()
    df = ds.index("val").iloc[: a.images]
    size = tuple(bb.data_config["input_size"])
    default_threads = torch.get_num_threads()
    threads = a.threads or [default_threads]
    gflops = matmul_gflops()
    cost = gflop_per_image(bb, size)
    print(
        f"model {a.model}: input {size}, feature dim {bb.feature_dim}, {cost:.3f} GFLOP per image; {len(df)} images "
        f"per timing; float32 matmul {gflops:.0f} GFLOP/s at {default_threads} threads"
    )

    # the same real images through the model's preprocessing, to compare each variant's features
    view = TorchView(ds, df.iloc[: max(a.batch_sizes)], bb.transform())
    real = torch.stack([view[i][0] for i in range(len(view))])
    with torch.inference_mode():
        reference = bb(real)
    scale = float(reference.abs().max())

    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    variants = [(lay, bs, th) for lay in layouts for bs in a.batch_sizes for th in threads]
    rates = {v: 0.0 for v in variants}
    for _ in range(a.rounds):
        for lay, bs, th in variants:
            torch.set_num_threads(th)
            model = bb.to(memory_format=layouts[lay])
            x = torch.randn(bs, *size).contiguous(memory_format=layouts[lay])
            rates[(lay, bs, th)] = max(rates[(lay, bs, th)], forward_rate(model, x, len(df)))
    torch.set_num_threads(default_threads)
    base = rates[("contiguous", max(a.batch_sizes), default_threads)] if default_threads in threads else None
    print(f"  {'layout':13} {'batch':>5} {'threads':>7} {'images/s':>9} {'share of matmul':>15} {'vs default':>10}")
    for v in variants:
        ratio = f"{rates[v] / base:9.2f}x" if base else f"{'n/a':>10}"
        print(f"  {v[0]:13} {v[1]:5d} {v[2]:7d} {rates[v]:9.1f} {rates[v] * cost / gflops:14.1%} {ratio}")
    for lay, fmt in layouts.items():
        with torch.inference_mode():
            diff = float((bb.to(memory_format=fmt)(real.contiguous(memory_format=fmt)) - reference).abs().max())
        print(
            f"  features {lay:13}: max |Δ| {diff / scale:.1e} of max |f| "
            f"({'equal' if diff <= TOLERANCE * scale else 'NOT equal'} within {TOLERANCE:g})"
        )
    best = {lay: max(r for v, r in rates.items() if v[0] == lay and v[2] == default_threads) for lay in layouts}
    print(
        f"  channels_last / contiguous, best batch at {default_threads} threads: "
        f"{best['channels_last'] / best['contiguous']:.2f}x"
    )

    layout = forward_layout(bb)
    lay = "channels_last" if layout == torch.channels_last else "contiguous"
    best_bs = max(a.batch_sizes, key=lambda bs: rates[(lay, bs, default_threads)] if default_threads in threads else 0)
    bare = rates.get((lay, best_bs, default_threads), 0.0)
    bb.to(memory_format=torch.contiguous_format)  # as load_backbone returns it; the pipeline sets its own layout
    t0 = time.perf_counter()
    extract_features(bb, ds, df, batch_size=best_bs)
    pipe = len(df) / (time.perf_counter() - t0)
    print(
        f"  extract_features batch {best_bs:4d} ({lay}): {pipe:8.1f} images/s (decode + preprocess + forward + "
        f"write), {pipe * cost / gflops:.1%} of matmul"
    )
    if bare:
        print(f"ratio pipeline / bare forward ({lay}, batch {best_bs}): {pipe / bare:.2f}")


def compare_input_sizes(models: list[str], sizes: list[int], world_size: str, rounds: int, n_bare: int) -> None:
    """Native against reduced input sizes: speed of the bare forward and of the pipeline, and the heads' accuracy."""
    import torch

    from core.find.features import extract_features, forward_layout
    from core.find.runs import get_splits, load_backbone, run_model
    from core.models.registry import at_input_size
    from core.workspace import open_dataset

    ds = open_dataset({"name": "scenes-mnist", "size": world_size})
    splits = get_splits(ds)
    parts = [splits.head_train, splits.debug, splits.test]
    n_run = sum(len(p) for p in parts)
    print(
        f"world {world_size}: a run extracts "
        f"{n_run:,} images (head-training {len(parts[0]):,}, debug {len(parts[1]):,}, test {len(parts[2]):,}); "
        f"{torch.get_num_threads()} threads; float32 matmul {matmul_gflops():.0f} GFLOP/s"
    )
    names = {m: [m] + [at_input_size(m, s) for s in sizes] for m in models}
    backbones = {n: load_backbone(n, ds) for ns in names.values() for n in ns}
    bare = {n: 0.0 for n in backbones}
    for _ in range(rounds):  # interleaved, so a change of load on the machine hits every size alike
        for n, bb in backbones.items():
            layout = forward_layout(bb)
            x = torch.randn(64, *bb.data_config["input_size"]).contiguous(memory_format=layout)
            bare[n] = max(bare[n], forward_rate(bb.to(memory_format=layout), x, n_bare))
            bb.to(memory_format=torch.contiguous_format)
    print(
        f"  {'model':24} {'px':>4} {'GFLOP':>6} {'bare img/s':>10} {'pipeline img/s':>14} {'speed-up':>8} "
        f"{'test acc':>8} {'debug acc':>9} {'Δ test':>7} {'Δ debug':>7}"
    )
    for ns in names.values():
        ref = None
        for n in ns:
            bb = backbones[n]
            px = bb.data_config["input_size"][-1]
            t0 = time.perf_counter()
            for df in parts:
                extract_features(bb, ds, df, batch_size=64)
            pipe = n_run / (time.perf_counter() - t0)
            acc = run_model(ds, n).summary["accuracy"]  # features cached just above: this trains the head
            ref = ref or (pipe, acc)
            print(
                f"  {n:24} {px:4d} {gflop_per_image(bb, bb.data_config['input_size']):6.3f} {bare[n]:10.1f} "
                f"{pipe:14.1f} {pipe / ref[0]:7.2f}x {acc['test']:8.3f} {acc['debug']:9.3f} "
                f"{100 * (acc['test'] - ref[1]['test']):+6.1f}p {100 * (acc['debug'] - ref[1]['debug']):+6.1f}p",
                flush=True,
            )


if __name__ == "__main__":
    main()
