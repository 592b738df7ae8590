"""The backbones of the built-in archs (declared in :mod:`nnboundary.settings.catalog`), each
``name_backbone(input_shape, settings) -> (module, width)``: the module maps an input batch to
features of ``width``, which the shared head of :class:`nnboundary.models.networks.BottleneckNet`
follows. The architectures are described in :mod:`nnboundary.models.networks`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def mlp_backbone(input_shape: tuple[int, ...], settings: dict[str, Any]) -> tuple[nn.Module, int]:
    """The input flattened (the hidden layer and the head follow)."""
    return nn.Flatten(), math.prod(input_shape)


def cnn_backbone(input_shape: tuple[int, ...], settings: dict[str, Any]) -> tuple[nn.Module, int]:
    _require_image("cnn", input_shape)
    channels = list(settings["channels"])
    layers: list[nn.Module] = []
    c_in, size = input_shape[0], input_shape[1]
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
        if size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten()]
    return nn.Sequential(*layers), c_in * 4


def _conv(c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free convolution keeping the map size (for stride 1); a BatchNorm follows it."""
    return nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


def _require_image(arch: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3:
        raise ValueError(
            f"arch {arch!r} needs image inputs (channels, height, width), got input shape "
            f"{input_shape}; use it with an image dataset, or use arch 'mlp' for vectors"
        )


class PreActBottleneck(nn.Module):
    """Pre-activation residual bottleneck block in → inner → inner → out (module docstring)."""

    def __init__(self, in_channels: int, inner_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv(in_channels, inner_channels, 1)
        self.norm2 = nn.BatchNorm2d(inner_channels)
        self.conv2 = _conv(inner_channels, inner_channels, 3, stride)
        self.norm3 = nn.BatchNorm2d(inner_channels)
        self.conv3 = _conv(inner_channels, out_channels, 1)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    @property
    def projects(self) -> bool:
        """Whether the shortcut is a 1×1 projection rather than the identity."""
        return not isinstance(self.shortcut, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.norm1(x))
        shortcut = self.shortcut(pre) if self.projects else x
        r = self.conv1(pre)
        r = self.conv2(F.relu(self.norm2(r)))
        r = self.conv3(F.relu(self.norm3(r)))
        return r + shortcut


def _parse_stages(blocks: Any) -> list[tuple[int, int, int, int]]:
    """Check ``blocks`` (a list of ``[inner, out, n_blocks, stride]``, all positive integers)."""
    fmt = ("resnet 'blocks' must be a non-empty list of stages [inner, out, n_blocks, stride] "
           "of positive integers, e.g. [[16, 64, 3, 1], [32, 128, 3, 2]]")
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise ValueError(f"{fmt}; got {blocks!r}")
    stages = []
    for stage in blocks:
        if (not isinstance(stage, (list, tuple)) or len(stage) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                           for v in stage)):
            raise ValueError(f"{fmt}; stage {stage!r} is not")
        stages.append(tuple(stage))
    return stages


def resnet_backbone(input_shape: tuple[int, ...], settings: dict[str, Any]) -> tuple[nn.Module, int]:
    _require_image("resnet", input_shape)
    width, blocks = int(settings["width"]), settings["blocks"]
    if width < 1:
        raise ValueError(f"resnet 'width' (stem channels) must be at least 1, got {width}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=_conv(input_shape[0], width, 3))
    c_in = width
    for index, (inner, out, n_blocks, stride) in enumerate(_parse_stages(blocks), start=1):
        stage = [PreActBottleneck(c_in if i == 0 else out, inner, out, stride if i == 0 else 1)
                 for i in range(n_blocks)]
        layers[f"stage{index}"] = nn.Sequential(*stage)
        c_in = out
    layers.update(norm=nn.BatchNorm2d(c_in), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
                  flatten=nn.Flatten())
    return nn.Sequential(layers), c_in


class DenseLayer(nn.Module):
    """x ↦ concat(x, Conv3×3(growth)(ReLU(BN(x)))): adds ``growth`` channels."""

    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = _conv(in_channels, growth, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(F.relu(self.norm(x)))], dim=1)


def densenet_backbone(input_shape: tuple[int, ...], settings: dict[str, Any]) -> tuple[nn.Module, int]:
    _require_image("densenet40", input_shape)
    depth, growth, init_channels = (settings["depth"], int(settings["growth"]),
                                    int(settings["init_channels"]))
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 7 or (depth - 4) % 3:
        raise ValueError(
            f"densenet40 'depth' must be 3·L + 4 with L ≥ 1 layers per dense block "
            f"(7, 10, 13, …, 40, …), got {depth!r}"
        )
    if growth < 1 or init_channels < 1:
        raise ValueError(f"densenet40 'growth' and 'init_channels' must be at least 1, "
                         f"got {growth} and {init_channels}")
    n_layers = (depth - 4) // 3
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=_conv(input_shape[0], init_channels, 3))
    channels, size = init_channels, min(input_shape[1], input_shape[2])
    for index in range(1, 4):
        layers[f"block{index}"] = nn.Sequential(
            *[DenseLayer(channels + i * growth, growth) for i in range(n_layers)])
        channels += n_layers * growth
        if index < 3:
            transition = [nn.BatchNorm2d(channels), nn.ReLU(), _conv(channels, channels, 1)]
            if size >= 2:
                transition.append(nn.AvgPool2d(2))
                size //= 2
            layers[f"transition{index}"] = nn.Sequential(*transition)
    layers.update(norm=nn.BatchNorm2d(channels), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
                  flatten=nn.Flatten())
    return nn.Sequential(layers), channels
