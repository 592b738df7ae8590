"""Networks whose training mode differs from their eval mode: BatchNorm's running statistics,
recomputed on the whole train set (:func:`recalibrate_bn`), the features in either mode, and
dropout (with which the fused full-batch loop does not apply).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def dropouts(model: nn.Module) -> list[nn.Module]:
    """The dropout layers of a model (e.g. a torchvision backbone's): with them the training
    loss is not the eval-mode loss, so the fused one-pass loop does not apply."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def kept_bn_buffers(model: nn.Module):
    """Run a train-mode forward without changing any BatchNorm running statistic."""
    norms = batch_norms(model)
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        for module, buffers in zip(norms, saved):
            for name, value in buffers.items():
                getattr(module, name).copy_(value)


def chunks(X: torch.Tensor, size: int, fmt: torch.memory_format = torch.contiguous_format):
    for lo in range(0, X.shape[0], size):
        yield lo, X[lo:lo + size].contiguous(memory_format=fmt)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, X: torch.Tensor, size: int,
                   fmt: torch.memory_format = torch.contiguous_format) -> None:
    """Recompute every BatchNorm running statistic on the whole train set X for the current
    weights: the running mean and variance become the average of the statistics of chunks of
    ``size`` samples (PyTorch's cumulative average, momentum None), the statistics a forward
    pass in training mode normalises with. The model's modes are restored."""
    norms = batch_norms(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for _, xb in chunks(X, size, fmt):
        model.features(xb)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    for m, mode in modes:
        m.train(mode)


@torch.no_grad()
def train_features(model: nn.Module, X: torch.Tensor, size: int,
                   fmt: torch.memory_format = torch.contiguous_format,
                   amp: torch.dtype | None = None) -> torch.Tensor:
    """The features h of X in the model's current modes (BatchNorm statistics untouched), in
    chunks of ``size``, optionally under autocast."""
    with kept_bn_buffers(model):
        return torch.cat([model.features(xb, autocast_dtype=amp) if amp is not None else
                          model.features(xb) for _, xb in chunks(X, size, fmt)])


def relative_shift(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖_F / ‖b‖_F (0 when both are 0)."""
    a, b = a.double(), b.double()
    norm = float(torch.linalg.norm(b))
    return float(torch.linalg.norm(a - b)) / norm if norm > 0 else float(torch.linalg.norm(a))
