"""Architectures. Every model is ``backbone → [hidden] → bottleneck Linear(·, d) → activation → last``.

``model.features(x)`` returns the bottleneck output h (after its activation, shape n×d): the
space in which the SVM is fitted. ``model.last`` is a plain ``nn.Linear(d, K)`` with bias, so
``model(x) == model.last(model.features(x))``; both are reachable by name, no hooks.

- ``mlp`` (the original's): flatten → Linear(·, hidden) → ReLU → Linear(hidden, d) → act → Linear(d, K).
- ``cnn`` (for 8×8 and 28×28 images): per entry of ``channels`` a block Conv3×3 → ReLU → MaxPool2
  (pooling only while the map is at least 4 wide), then adaptive average pooling to 2×2,
  Linear(·, hidden) → ReLU → Linear(hidden, d) → act → Linear(d, K).
- ``resnet`` (the original study's bottleneck ResNet for MNIST): Conv3×3(``width``), then stages of
  pre-activation bottleneck blocks, BN → ReLU → global average pool, Linear(·, hidden) → ReLU →
  Linear(hidden, d) → act → Linear(d, K). ``blocks`` lists the stages, one entry
  ``[inner, out, n_blocks, stride]`` each: ``n_blocks`` blocks with ``inner`` channels inside and
  ``out`` channels out; the first block of the stage has stride ``stride``, the others stride 1.
  The default ``[[16, 64, 3, 1], [32, 128, 3, 2], [64, 256, 3, 2]]`` on a 64-channel stem gives
  3 × (16→64), 1 × (32→128, stride 2), 2 × (32→128), 1 × (64→256, stride 2), 2 × (64→256).
  A block with input x is ``x' = ReLU(BN(x))``, ``r = Conv1×1(out)(ReLU(BN(Conv3×3(inner, stride)(
  ReLU(BN(Conv1×1(inner)(x'))))))``, output ``r + shortcut`` where the shortcut is x itself when
  the block keeps channels and size, else ``Conv1×1(out, stride)(x')`` (projection of the
  pre-activated input, as in He et al.'s pre-activation ResNet).
- ``densenet40`` (Huang et al.'s DenseNet, non-bottleneck, no compression): Conv3×3(
  ``init_channels``), three dense blocks of L = (depth − 4) / 3 layers, each layer
  ``x ↦ concat(x, Conv3×3(growth)(ReLU(BN(x))))``; between blocks a transition BN → ReLU →
  Conv1×1 (same channels) → AvgPool2 (pooling only while the map is at least 2 wide); then
  BN → ReLU → global average pool and straight to Linear(·, d) (``hidden`` 0: no hidden layer) →
  act → Linear(d, K). depth 40, growth 12, 16 initial channels: 39 convolutions, 448 features.

``hidden`` 0 means no hidden layer: the bottleneck reads the backbone's output directly.

Convolutions in ``resnet`` and ``densenet40`` have no bias: every one of them is followed (on
every path) by a BatchNorm, which would cancel a per-channel constant anyway.

Initialisation ``original`` follows the original study: dense weights from a normal with std 0.01
truncated at two standard deviations, every bias 0.1, convolution weights He-scaled (normal with
std sqrt(2 / fan_in)), BatchNorm weight 1 and bias 0. ``pytorch`` keeps PyTorch's default
initialisation.

Mixed precision: ``model(x, autocast_dtype=torch.bfloat16)`` runs only the backbone under autocast
and the hidden layer, bottleneck, activation and last layer in float32 (see
``BottleneckNet.features``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .config import DEFAULT_ARCH


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
    """A backbone, an optional hidden layer, a bottleneck of width d with its activation, and a
    linear last layer. ``hidden`` 0 means no hidden layer (``self.hidden`` is the identity)."""

    def __init__(self, backbone: nn.Module, backbone_out: int, hidden: int, bottleneck: int,
                 n_classes: int, activation: str):
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden width must be 0 (no hidden layer) or positive, got {hidden}")
        self.backbone = backbone
        if hidden == 0:
            self.hidden: nn.Module = nn.Identity()
            hidden = backbone_out
        else:
            self.hidden = nn.Sequential(nn.Linear(backbone_out, hidden), nn.ReLU())
        self.bottleneck = nn.Linear(hidden, bottleneck)
        self.activation = make_activation(activation)
        self.last = nn.Linear(bottleneck, n_classes)

    def features(self, x: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The last hidden layer h (n×d), after the bottleneck's activation.

        With ``autocast_dtype`` (e.g. ``torch.bfloat16``) the backbone runs under
        ``torch.autocast`` on x's device, its output is cast back to the bottleneck's dtype
        (float32), and hidden → bottleneck → activation run outside autocast: the features we
        measure and fit the SVM on stay in full precision.
        """
        if autocast_dtype is None:
            return self.activation(self.bottleneck(self.hidden(self.backbone(x))))
        with torch.autocast(device_type=x.device.type, dtype=autocast_dtype):
            z = self.backbone(x)
        z = z.to(self.bottleneck.weight.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.activation(self.bottleneck(self.hidden(z)))

    def forward(self, x: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        h = self.features(x, autocast_dtype)
        return self.last(h.to(self.last.weight.dtype))  # a retrained last layer may be float64


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


# Default arch settings of the two image networks live with every arch's in the config module
# (pure Python, JSON-able); build_model merges user settings over them.
RESNET_DEFAULTS: dict[str, Any] = DEFAULT_ARCH["resnet"]
DENSENET_DEFAULTS: dict[str, Any] = DEFAULT_ARCH["densenet40"]


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


def _resnet_backbone(input_shape: tuple[int, ...], width: int,
                     blocks: Any) -> tuple[nn.Module, int]:
    _require_image("resnet", input_shape)
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


def _densenet_backbone(input_shape: tuple[int, ...], depth: int, growth: int,
                       init_channels: int) -> tuple[nn.Module, int]:
    _require_image("densenet40", input_shape)
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


def build_model(arch: str, input_shape: tuple[int, ...], n_classes: int,
                settings: dict[str, Any]) -> BottleneckNet:
    """Build ``arch`` for inputs of ``input_shape`` and ``n_classes`` classes.

    ``settings`` are the arch settings (hidden, bottleneck, activation, init, and per arch:
    channels; width, blocks; depth, growth, init_channels). For ``resnet`` and ``densenet40``
    missing keys take their value from ``RESNET_DEFAULTS`` / ``DENSENET_DEFAULTS``.
    """
    if arch == "resnet":
        settings = {**RESNET_DEFAULTS, **settings}
    elif arch == "densenet40":
        settings = {**DENSENET_DEFAULTS, **settings}
    bottleneck = int(settings["bottleneck"])
    if bottleneck < 1:
        raise ValueError(f"bottleneck width must be at least 1, got {bottleneck}")
    if arch == "mlp":
        backbone: nn.Module = nn.Flatten()
        backbone_out = math.prod(input_shape)
    elif arch == "cnn":
        backbone, backbone_out = _cnn_backbone(tuple(input_shape), list(settings["channels"]))
    elif arch == "resnet":
        backbone, backbone_out = _resnet_backbone(tuple(input_shape), int(settings["width"]),
                                                  settings["blocks"])
    elif arch == "densenet40":
        backbone, backbone_out = _densenet_backbone(
            tuple(input_shape), settings["depth"], int(settings["growth"]),
            int(settings["init_channels"]))
    else:
        raise ValueError(f"unknown arch {arch!r}; allowed: mlp, cnn, resnet, densenet40")
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
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.1)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.1)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
