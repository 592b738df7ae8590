"""A config's own networks: a ``source: module:function`` that builds the whole model, or a
``backbone: torchvision:NAME`` classifier whose features the shared head follows; each checked
(:func:`check_network`) before it trains.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import SourceError
from ..settings import catalog


#: Keys of a user arch's settings that are the pipeline's own, never passed to its function.
_PIPELINE_ARCH_KEYS = ("source", "backbone")


def user_network(arch: str, input_shape: tuple[int, ...], n_classes: int,
                 settings: dict[str, Any]) -> nn.Module:
    """``function(input_shape=..., n_classes=..., **settings)`` of a ``source:`` arch, checked
    (:func:`check_network`)."""
    source = settings["source"]
    function = catalog.resolve(source, f"arch {arch}")
    arguments = {k: v for k, v in settings.items() if k not in _PIPELINE_ARCH_KEYS}
    model = function(input_shape=tuple(input_shape), n_classes=n_classes, **arguments)
    return check_network(model, input_shape, n_classes, f"arch {arch} (source {source!r})")


@torch.no_grad()
def check_network(model, input_shape: tuple[int, ...], n_classes: int, where: str) -> nn.Module:
    """``model`` if it is what every stage needs, else :class:`nnboundary.errors.SourceError`
    saying what was expected and what came back: an ``nn.Module`` with ``features(x)`` giving
    (n, d), ``last`` an ``nn.Linear(d, n_classes)``, and ``forward(x) == last(features(x))``
    (checked in eval mode on two inputs; the modes are restored)."""
    expected = (f"expected an nn.Module with features(x) -> (n, d) (the last hidden layer), "
                f"last = nn.Linear(d, {n_classes}) and forward(x) == last(features(x))")
    if not isinstance(model, nn.Module):
        raise SourceError(f"{where}: {expected}; got {type(model).__name__}")
    last = getattr(model, "last", None)
    if not callable(getattr(model, "features", None)) or not isinstance(last, nn.Linear):
        found = [n for n in ("features", "last") if hasattr(model, n)]
        raise SourceError(
            f"{where}: {expected}; it has {' and '.join(found) or 'neither features nor last'}"
            f"{', but last is ' + type(last).__name__ if last is not None else ''}")
    if last.out_features != n_classes:
        raise SourceError(f"{where}: {expected}; last has {last.out_features} outputs")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        parameter = next(model.parameters())
        x = torch.linspace(-1, 1, 2 * math.prod(input_shape), dtype=parameter.dtype,
                           device=parameter.device).reshape(2, *input_shape)
        h = model.features(x)
        if not isinstance(h, torch.Tensor) or h.ndim != 2 or h.shape != (2, last.in_features):
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise SourceError(
                f"{where}: {expected}; features of 2 inputs of shape {tuple(input_shape)} gave "
                f"{shape}, last takes d = {last.in_features}")
        out = model(x)
        if not isinstance(out, torch.Tensor) or not torch.allclose(
                out, last(h), rtol=1e-4, atol=1e-5):
            raise SourceError(f"{where}: {expected}; forward(x) differs from "
                                      f"last(features(x))")
    finally:
        for module, mode in modes:
            module.train(mode)
    return model


def torchvision_backbone(arch: str, backbone: str, input_shape: tuple[int, ...],
                         settings: dict[str, Any]) -> tuple[nn.Module, int]:
    """A ``torchvision.models`` classifier built from scratch (``weights=None``, no download),
    its last ``nn.Linear`` (the classifier) replaced by the identity, its first convolution
    made to take the data's channels; returns it and the width of its features. Settings other
    than the head's (bottleneck, hidden, activation, init) go to ``torchvision.models.get_model``.
    """
    import torchvision.models

    name = backbone.removeprefix(catalog.TORCHVISION_PREFIX)
    where = f"arch {arch} (backbone {backbone!r})"
    if len(input_shape) != 3:
        raise ValueError(f"{where} needs image inputs (channels, height, width), got input "
                         f"shape {input_shape}")
    extra = {k: v for k, v in settings.items()
             if k not in _PIPELINE_ARCH_KEYS and k not in catalog.BACKBONE_HEAD_DEFAULTS}
    model = torchvision.models.get_model(name, weights=None, **extra)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise SourceError(f"{where}: the model has no nn.Linear classifier to replace")
    _replace(model, linears[-1], nn.Identity())
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if convs and convs[0][1].in_channels != input_shape[0]:
        first_name, first = convs[0]
        _replace(model, first_name, nn.Conv2d(
            input_shape[0], first.out_channels, first.kernel_size, stride=first.stride,
            padding=first.padding, dilation=first.dilation, bias=first.bias is not None))
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as err:
        raise SourceError(f"{where}: cannot take inputs of shape {input_shape} "
                                  f"({type(err).__name__}: {err})") from err
    model.train()
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise SourceError(f"{where}: without its classifier the model returns "
                                  f"{type(out).__name__}, not features of shape (n, d)")
    return model, int(out.shape[1])


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
