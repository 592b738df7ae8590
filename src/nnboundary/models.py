"""Architectures. Every model is ``backbone → bottleneck Linear(·, d) → activation → last``.

``model.features(x)`` returns the bottleneck output h (after its activation, shape n×d): the
space in which the SVM is fitted. ``model.last`` is a plain ``nn.Linear(d, K)`` with bias, so
``model(x) == model.last(model.features(x))``; both are reachable by name, no hooks.

- ``mlp`` (the original's): flatten → Linear(·, hidden) → ReLU → Linear(hidden, d) → act → Linear(d, K).
- ``cnn`` (for 8×8 and 28×28 images): per entry of ``channels`` a block Conv3×3 → ReLU → MaxPool2
  (pooling only while the map is at least 4 wide), then adaptive average pooling to 2×2,
  Linear(·, hidden) → ReLU → Linear(hidden, d) → act → Linear(d, K).

Initialisation ``original`` follows the original study: dense weights from a normal with std 0.01
truncated at two standard deviations, every bias 0.1, convolution weights He-scaled (normal with
std sqrt(2 / fan_in)). ``pytorch`` keeps PyTorch's default initialisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class Square(nn.Module):
    """x ↦ x², one of the original study's activations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "softsign": nn.Softsign,
    "selu": nn.SELU,
    "square": Square,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class BottleneckNet(nn.Module):
    """A backbone, a bottleneck of width d with its activation, and a linear last layer."""

    def __init__(self, backbone: nn.Module, backbone_out: int, hidden: int, bottleneck: int,
                 n_classes: int, activation: str):
        super().__init__()
        self.backbone = backbone
        self.hidden = nn.Sequential(nn.Linear(backbone_out, hidden), nn.ReLU())
        self.bottleneck = nn.Linear(hidden, bottleneck)
        self.activation = make_activation(activation)
        self.last = nn.Linear(bottleneck, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer h (n×d), after the bottleneck's activation."""
        return self.activation(self.bottleneck(self.hidden(self.backbone(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.features(x))


def _cnn_backbone(input_shape: tuple[int, ...], channels: list[int]) -> tuple[nn.Module, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"arch 'cnn' needs image inputs (channels, height, width), got input shape {input_shape}"
        )
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


def build_model(arch: str, input_shape: tuple[int, ...], n_classes: int,
                settings: dict[str, Any]) -> BottleneckNet:
    """Build ``arch`` for inputs of ``input_shape`` and ``n_classes`` classes.

    ``settings`` are the arch settings (hidden, bottleneck, activation, init, channels).
    """
    bottleneck = int(settings["bottleneck"])
    if bottleneck < 1:
        raise ValueError(f"bottleneck width must be at least 1, got {bottleneck}")
    if arch == "mlp":
        backbone: nn.Module = nn.Flatten()
        backbone_out = math.prod(input_shape)
    elif arch == "cnn":
        backbone, backbone_out = _cnn_backbone(tuple(input_shape), list(settings["channels"]))
    else:
        raise ValueError(f"unknown arch {arch!r}; allowed: mlp, cnn")
    model = BottleneckNet(backbone, backbone_out, int(settings["hidden"]), bottleneck, n_classes,
                          settings["activation"])
    initialise(model, settings.get("init", "original"))
    return model


@torch.no_grad()
def initialise(model: nn.Module, scheme: str) -> None:
    """Apply the initialisation ``scheme`` (see the module docstring) in module order."""
    if scheme == "pytorch":
        return
    if scheme != "original":
        raise ValueError(f"unknown init {scheme!r}; allowed: original, pytorch")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-0.02, b=0.02)
            nn.init.constant_(module.bias, 0.1)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.constant_(module.bias, 0.1)
