"""The default torch device: the first CUDA GPU when one is visible, else the CPU."""

from __future__ import annotations

import torch


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``; every step that takes ``device=None`` uses this."""
    return "cuda" if torch.cuda.is_available() else "cpu"
