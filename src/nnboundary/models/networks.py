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

Each built-in arch is declared once in :mod:`nnboundary.settings.catalog` (its backbone builder
``name_backbone(input_shape, settings) -> (module, width)`` of :mod:`nnboundary.models.backbones`, defaults and schema). A config's
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

from typing import Any

import torch
from torch import nn

from ..settings import catalog
from .user import torchvision_backbone, user_network


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


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def build_model(arch: str, input_shape: tuple[int, ...], n_classes: int,
                settings: dict[str, Any]) -> nn.Module:
    """Build ``arch`` for inputs of ``input_shape`` and ``n_classes`` classes.

    A built-in arch (:data:`nnboundary.settings.catalog.ARCHS`): its backbone builder, then the shared
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


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model's inputs take: that of its first floating parameter outside ``last``
    (a retrained last layer may be float64 on a float32 network), float32 if it has none."""
    for name, parameter in model.named_parameters():
        if not name.startswith("last.") and parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


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
