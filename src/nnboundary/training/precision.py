"""Numbers of a training run: the seed of every generator, the parameters' dtype, autocast and
the memory format of image batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def set_determinism(seed: int, device: torch.device) -> None:
    """Seed every generator; on the CPU the same seed gives bit-identical results.

    Deterministic algorithms are switched on through the flag itself: the public
    ``torch.use_deterministic_algorithms`` also imports the compiler stack (torch._dynamo and
    torch._inductor), about 1.7 s in every training job, to set an option of theirs that only
    matters with ``compile: true``, which then imports it anyway."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if device.type == "cpu":
        flag = getattr(torch._C, "_set_deterministic_algorithms", None)
        if flag is None:  # pragma: no cover - older or newer torch without the private setter
            torch.use_deterministic_algorithms(True)
        else:
            flag(True)


def memory_format(settings: dict[str, Any], input_ndim: int) -> torch.memory_format:
    """channels-last for image batches (n, C, H, W) when ``settings["channels_last"]``."""
    if input_ndim == 4 and settings.get("channels_last", True):
        return torch.channels_last
    return torch.contiguous_format


def autocast_dtype(settings: dict[str, Any]) -> torch.dtype | None:
    """The backbone's autocast dtype: bf16 with ``amp: bf16``, else None (all float32)."""
    amp = settings.get("amp", "none")
    if amp == "bf16":
        return torch.bfloat16
    if amp != "none":
        raise ValueError(f"unknown amp {amp!r}; allowed: none, bf16")
    return None



def torch_dtype(settings: dict[str, Any]) -> torch.dtype:
    """The parameters' and inputs' dtype: ``float32`` or ``float64`` (``dtype`` setting)."""
    name = settings.get("dtype", "float32")
    if name not in ("float32", "float64"):
        raise ValueError(f"unknown dtype {name!r}; allowed: float32, float64")
    return getattr(torch, name)
