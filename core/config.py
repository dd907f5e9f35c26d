"""Typed defaults for every step; numbers marked (paper) come from the paper's Table 4 and section 5."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SplitConfig:
    head_train_per_class: int = 30  # images per class the linear head trains on (paper)
    debug_fraction: float = 0.6  # share of the evaluation pool that is the debug set (ImageNet 30k/50k, paper)
    seed: int = 0  # one seed fixes every split


@dataclass(frozen=True)
class HeadConfig:
    lr: float = 0.2  # (paper, Table 4)
    epochs: int = 1000  # full-batch steps on cached features (paper, Table 4)
    momentum: float = 0.9  # (paper, Table 4)
    weight_decay: float = 5e-4  # (paper, Table 4)
    # "sgd" = the paper's optimiser (reference); "fused" = the same steps, faster; "lbfgs" = the exact optimum
    solver: str = "sgd"
    seed: int = 0


@dataclass(frozen=True)
class DebugConfig:
    k_modes: int = 3  # failure modes per class (paper default)
    images_per_mode: int = 5  # generated images per failure mode (paper)
    lam: float = 0.5  # λ weighting the generated set's loss (paper, Table 4)
    prompt_template: str = "A photo of {class_name} {value}"  # (paper)
    random_template: str = "A photo of {class_name}"  # Random_debugging baseline (paper)
    seed: int = 0


def to_dict(cfg) -> dict:
    return asdict(cfg)
