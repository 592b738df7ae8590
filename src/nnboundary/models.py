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

Each built-in arch is declared once in :mod:`nnboundary.catalog` (its backbone builder
``name_backbone(input_shape, settings) -> (module, width)``, defaults and schema). A config's
own networks: ``backbone: torchvision:NAME`` (:func:`torchvision_backbone`, then the same head;
``bottleneck: null`` drops the bottleneck) or ``source: module:function`` (:func:`user_network`),
each checked by :func:`check_network`.

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

from . import catalog
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
    linear last layer. ``hidden`` 0 means no hidden layer (``self.hidden`` is the identity);
    ``bottleneck`` None means no bottleneck either: the last layer reads the backbone's own
    features (a ``backbone: torchvision:...`` arch with ``bottleneck: null``)."""

    def __init__(self, backbone: nn.Module, backbone_out: int, hidden: int,
                 bottleneck: int | None, n_classes: int, activation: str):
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden width must be 0 (no hidden layer) or positive, got {hidden}")
        self.backbone = backbone
        if hidden == 0:
            self.hidden: nn.Module = nn.Identity()
            hidden = backbone_out
        else:
            self.hidden = nn.Sequential(nn.Linear(backbone_out, hidden), nn.ReLU())
        if bottleneck is None:
            self.bottleneck: nn.Module = nn.Identity()
            self.activation: nn.Module = nn.Identity()
            width = hidden
        else:
            self.bottleneck = nn.Linear(hidden, bottleneck)
            self.activation = make_activation(activation)
            width = bottleneck
        self.last = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The last hidden layer h (n×d), after the bottleneck's activation.

        With ``autocast_dtype`` (e.g. ``torch.bfloat16``) the backbone runs under
        ``torch.autocast`` on x's device, its output is cast back to the head's dtype
        (float32), and hidden → bottleneck → activation run outside autocast: the features we
        measure and fit the SVM on stay in full precision.
        """
        if autocast_dtype is None:
            return self.activation(self.bottleneck(self.hidden(self.backbone(x))))
        with torch.autocast(device_type=x.device.type, dtype=autocast_dtype):
            z = self.backbone(x)
        head = self.bottleneck.weight if isinstance(self.bottleneck, nn.Linear) else self.last.weight
        z = z.to(head.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.activation(self.bottleneck(self.hidden(z)))

    def forward(self, x: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        h = self.features(x, autocast_dtype)
        return self.last(h.to(self.last.weight.dtype))  # a retrained last layer may be float64


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


# Default arch settings live with every arch's declaration in nnboundary.catalog (pure Python,
# JSON-able); build_model merges a config's settings over them.
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


def build_model(arch: str, input_shape: tuple[int, ...], n_classes: int,
                settings: dict[str, Any]) -> nn.Module:
    """Build ``arch`` for inputs of ``input_shape`` and ``n_classes`` classes.

    A built-in arch (:data:`nnboundary.catalog.ARCHS`): its backbone builder, then the shared
    head (:class:`BottleneckNet`); ``settings`` are its arch settings (hidden, bottleneck,
    activation, init and its own keys), missing keys taking the catalog's defaults. A user arch
    (``settings`` hold its entry): ``backbone: torchvision:NAME`` (:func:`torchvision_backbone`
    and the head) or ``source: module:function`` (:func:`user_network`). Every model is checked
    to have ``features`` and ``last`` with ``forward == last ∘ features``
    (:func:`check_network`).
    """
    entry = catalog.ARCHS.get(arch)
    if entry is not None:
        settings = {**entry.defaults, **settings}
        backbone, backbone_out = catalog.resolve(entry.builder, f"arch {arch}")(
            tuple(input_shape), settings)
    elif "backbone" in settings:
        settings = {**catalog.BACKBONE_HEAD_DEFAULTS, **settings}
        backbone, backbone_out = torchvision_backbone(arch, settings["backbone"],
                                                      tuple(input_shape), settings)
    elif "source" in settings:
        return user_network(arch, tuple(input_shape), n_classes, settings)
    else:
        raise ValueError(f"unknown arch {arch!r}: not built in ({', '.join(catalog.ARCHS)}) and "
                         f"its settings have neither source nor backbone")
    bottleneck = settings["bottleneck"]
    if bottleneck is not None and int(bottleneck) < 1:
        raise ValueError(f"bottleneck width must be at least 1, got {bottleneck}")
    model = BottleneckNet(backbone, backbone_out, int(settings["hidden"]),
                          None if bottleneck is None else int(bottleneck), n_classes,
                          settings["activation"])
    initialise(model, settings.get("init", "original"))
    return model


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
    """``model`` if it is what every stage needs, else :class:`nnboundary.catalog.SourceError`
    saying what was expected and what came back: an ``nn.Module`` with ``features(x)`` giving
    (n, d), ``last`` an ``nn.Linear(d, n_classes)``, and ``forward(x) == last(features(x))``
    (checked in eval mode on two inputs; the modes are restored)."""
    expected = (f"expected an nn.Module with features(x) -> (n, d) (the last hidden layer), "
                f"last = nn.Linear(d, {n_classes}) and forward(x) == last(features(x))")
    if not isinstance(model, nn.Module):
        raise catalog.SourceError(f"{where}: {expected}; got {type(model).__name__}")
    last = getattr(model, "last", None)
    if not callable(getattr(model, "features", None)) or not isinstance(last, nn.Linear):
        found = [n for n in ("features", "last") if hasattr(model, n)]
        raise catalog.SourceError(
            f"{where}: {expected}; it has {' and '.join(found) or 'neither features nor last'}"
            f"{', but last is ' + type(last).__name__ if last is not None else ''}")
    if last.out_features != n_classes:
        raise catalog.SourceError(f"{where}: {expected}; last has {last.out_features} outputs")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        parameter = next(model.parameters())
        x = torch.linspace(-1, 1, 2 * math.prod(input_shape), dtype=parameter.dtype,
                           device=parameter.device).reshape(2, *input_shape)
        h = model.features(x)
        if not isinstance(h, torch.Tensor) or h.ndim != 2 or h.shape != (2, last.in_features):
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise catalog.SourceError(
                f"{where}: {expected}; features of 2 inputs of shape {tuple(input_shape)} gave "
                f"{shape}, last takes d = {last.in_features}")
        out = model(x)
        if not isinstance(out, torch.Tensor) or not torch.allclose(
                out, last(h), rtol=1e-4, atol=1e-5):
            raise catalog.SourceError(f"{where}: {expected}; forward(x) differs from "
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
        raise catalog.SourceError(f"{where}: the model has no nn.Linear classifier to replace")
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
        raise catalog.SourceError(f"{where}: cannot take inputs of shape {input_shape} "
                                  f"({type(err).__name__}: {err})") from err
    model.train()
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise catalog.SourceError(f"{where}: without its classifier the model returns "
                                  f"{type(out).__name__}, not features of shape (n, d)")
    return model, int(out.shape[1])


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model's inputs take: that of its first floating parameter outside ``last``
    (a retrained last layer may be float64 on a float32 network), float32 if it has none."""
    for name, parameter in model.named_parameters():
        if not name.startswith("last.") and parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


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
