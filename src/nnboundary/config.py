"""The configuration: validation against the JSON schema, defaults, and the grid of runs.

Used by the Snakefile (``workflow/rules/common.smk``) before any job is scheduled and by the
command-line stages, so both read the settings in exactly one way. Imports neither torch nor
Snakemake: parsing the workflow stays fast.

Settings are layered: built-in defaults < ``train`` < ``archs.<arch>.train`` <
``datasets.<dataset>.train`` < each matching entry of ``overrides`` (dataset × arch); the
training jobs' ``resources`` (gpu, threads, mem_mb, runtime) are layered the same way.
Each stage receives only its own resolved slice.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

DATASETS = (
    "blobs", "blobs3", "moons", "sectors", "digits01", "digits012", "mnist5k01",
    "mnist01", "mnist012", "fashion01", "cifar10_0v2",
)
IMAGE_DATASETS = (
    "digits01", "digits012", "mnist5k01", "mnist01", "mnist012", "fashion01", "cifar10_0v2",
)
# Generated from the run's seed: prepared once per seed. Every other set is prepared once.
SEEDED_DATASETS = ("blobs", "blobs3", "moons", "sectors")
# Read through torchvision.datasets from `data_root`, with their official train/test split.
TORCHVISION_DATASETS = ("mnist01", "mnist012", "fashion01", "cifar10_0v2")
ARCHS = ("mlp", "cnn", "resnet", "densenet40")
IMAGE_ONLY_ARCHS = ("cnn", "resnet", "densenet40")

# Training for the max-margin experiments: no weight decay, no label smoothing, no dropout, no EMA.
DEFAULT_TRAIN: dict[str, Any] = {
    "optimizer": "momentum",
    "lr": 0.01,
    "momentum": 0.9,
    "epochs": 1000,
    "batch_size": 0,
    "checkpoints": [],
    "n_checkpoints": 12,
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "device": "auto",
    "amp": "none",
    "compile": False,
    "channels_last": True,
    "log_every": 100,
}

# Per training job; sized per dataset x arch in the config (see train_resources).
DEFAULT_RESOURCES: dict[str, Any] = {"gpu": 1, "threads": 1, "mem_mb": 2000, "runtime": 30}

DEFAULT_ARCH: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": 2000, "bottleneck": 2, "activation": "relu", "init": "original"},
    "cnn": {
        "channels": [16, 32],
        "hidden": 64,
        "bottleneck": 2,
        "activation": "relu",
        "init": "original",
    },
    # The original study's bottleneck ResNet for MNIST; blocks: [inner, out, n_blocks, stride].
    "resnet": {
        "hidden": 200,
        "bottleneck": 2,
        "activation": "relu",
        "init": "original",
        "width": 64,
        "blocks": [[16, 64, 3, 1], [32, 128, 3, 2], [64, 256, 3, 2]],
    },
    # DenseNet-40 (growth 12, no compression); the bottleneck follows the global pool directly.
    "densenet40": {
        "depth": 40,
        "growth": 12,
        "init_channels": 16,
        "hidden": 0,
        "bottleneck": 2,
        "activation": "relu",
        "init": "original",
    },
}

DEFAULT_DATASET: dict[str, dict[str, Any]] = {
    "blobs": {"n_samples": 5000},
    "blobs3": {"n_samples": 5000},
    "moons": {"n_samples": 5000, "noise": 0.05},
    "sectors": {"n_samples": 5000},
    "digits01": {},
    "digits012": {},
    "mnist5k01": {},
    "mnist01": {"data_root": "data", "download": True},
    "mnist012": {"data_root": "data", "download": True},
    "fashion01": {"data_root": "data", "download": True},
    "cifar10_0v2": {"data_root": "data", "download": True},
}

# Keys every dataset accepts: the archs that fit it and its layered train settings and resources.
LAYERED_DATASET_KEYS = ("archs", "train", "resources")

# Settings a dataset accepts besides LAYERED_DATASET_KEYS (the schema allows the union).
DATASET_KEYS: dict[str, tuple[str, ...]] = {
    "blobs": ("n_samples",),
    "blobs3": ("n_samples",),
    "moons": ("n_samples", "noise"),
    "sectors": ("n_samples",),
    "digits01": (),
    "digits012": (),
    "mnist5k01": (),
    "mnist01": ("data_root", "download"),
    "mnist012": ("data_root", "download"),
    "fashion01": ("data_root", "download"),
    "cifar10_0v2": ("data_root", "download"),
}


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem found."""


@dataclass(frozen=True, order=True)
class Run:
    """One training run of the grid."""

    dataset: str
    arch: str
    seed: int

    @property
    def path(self) -> str:
        """Relative folder of the run under ``<results>/runs``."""
        return f"{self.dataset}/{self.arch}/seed{self.seed}"


def data_path(dataset: str, seed: int) -> str:
    """The prepared file of ``dataset`` for the run seed ``seed``.

    Sets generated from the seed (:data:`SEEDED_DATASETS`) have one file per seed,
    ``results/data/{dataset}/seed{seed}.npz``; every other set is prepared once,
    ``results/data/{dataset}/fixed.npz``, and shared by all seeds.
    """
    if dataset in SEEDED_DATASETS:
        return f"results/data/{dataset}/seed{int(seed)}.npz"
    return f"results/data/{dataset}/fixed.npz"


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _format_error(error) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message
    schema = error.schema
    if error.validator == "additionalProperties" and "properties" in schema:
        allowed = ", ".join(sorted(schema["properties"]))
        message += f"; allowed keys here: {allowed}"
    return f"config key '{where}': {message}"


def _fill_defaults(instance: dict, schema: dict) -> None:
    """Fill ``default`` values of the schema's top-level sections (one level of nesting)."""
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub and key not in instance:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict):
            for inner, inner_schema in sub.get("properties", {}).items():
                if "default" in inner_schema and inner not in instance[key]:
                    instance[key][inner] = copy.deepcopy(inner_schema["default"])


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Check ``config`` against the schema and the rules the schema cannot express.

    Returns a copy with defaults filled in. Raises :class:`ConfigError` naming every bad value
    and what is allowed, before any work is done.
    """
    import jsonschema

    schema = load_schema(schema_path)
    validator = jsonschema.Draft7Validator(schema)
    problems = [_format_error(e) for e in sorted(validator.iter_errors(config), key=str)]
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    config = copy.deepcopy(config)
    _fill_defaults(config, schema)
    problems = _semantic_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    grid = config["grid"]
    for name, settings in config.get("datasets", {}).items():
        allowed = DATASET_KEYS[name]
        for key in settings:
            if key not in allowed and key not in LAYERED_DATASET_KEYS:
                problems.append(
                    f"config key 'datasets/{name}/{key}': '{key}' does not apply to {name}; "
                    f"allowed keys: {', '.join(allowed + LAYERED_DATASET_KEYS)}"
                )
        for arch in settings.get("archs", []):
            if arch in IMAGE_ONLY_ARCHS and name not in IMAGE_DATASETS:
                problems.append(
                    f"config key 'datasets/{name}/archs': '{arch}' needs image inputs, "
                    f"{name} is not an image dataset (image datasets: {', '.join(IMAGE_DATASETS)})"
                )
    for name, settings in config.get("archs", {}).items():
        allowed = tuple(DEFAULT_ARCH[name]) + ("train", "resources")
        for key in settings:
            if key not in allowed:
                problems.append(
                    f"config key 'archs/{name}/{key}': '{key}' does not apply to {name}; "
                    f"allowed keys: {', '.join(allowed)}"
                )
        depth = settings.get("depth")
        if depth is not None and (depth - 4) % 3:
            problems.append(
                f"config key 'archs/{name}/depth': {depth} is not 3 L + 4; allowed: 7, 10, 13, "
                f"..., 40, ..."
            )
    for dataset in grid["datasets"]:
        if not any(arch in fitting_archs(config, dataset) for arch in grid["archs"]):
            problems.append(
                f"config key 'grid/datasets': dataset '{dataset}' fits none of grid/archs "
                f"{grid['archs']} (it fits {fitting_archs(config, dataset)}; set "
                f"datasets/{dataset}/archs or add an arch to grid/archs)"
            )
        if dataset in TORCHVISION_DATASETS:
            source = dataset_settings(config, dataset)
            root = Path(source["data_root"])
            if not source["download"] and not root.is_dir():
                problems.append(
                    f"config key 'datasets/{dataset}/data_root': folder '{root}' "
                    f"(resolved: {root.resolve()}) is not an existing folder and download is off; "
                    f"fetch {dataset} into it beforehand (see README, Datasets), point "
                    f"data_root at the folder that holds it, or set "
                    f"datasets/{dataset}/download: true"
                )
    for dataset, arch in itertools.product(grid["datasets"], grid["archs"]):
        if arch not in fitting_archs(config, dataset):
            continue
        train = raw_train_settings(config, dataset, arch)
        late = [e for e in train["checkpoints"] if e > train["epochs"]]
        if late:
            problems.append(
                f"train checkpoints {late} for {dataset}/{arch} lie beyond the last epoch "
                f"({train['epochs']}); allowed: 1..{train['epochs']}"
            )
    return problems


def fitting_archs(config: dict, dataset: str) -> list[str]:
    """The architectures that fit ``dataset``: its ``archs`` list, or every arch that accepts it."""
    declared = config.get("datasets", {}).get(dataset, {}).get("archs")
    if declared:
        return list(declared)
    if dataset in IMAGE_DATASETS:
        return list(ARCHS)
    return [a for a in ARCHS if a not in IMAGE_ONLY_ARCHS]


# --------------------------------------------------------------------------------------------
# The grid and each stage's settings
# --------------------------------------------------------------------------------------------


def runs(config: dict) -> list[Run]:
    """Every (dataset, arch, seed) of the grid whose arch fits the dataset, in a stable order."""
    grid = config["grid"]
    return [
        Run(dataset, arch, int(seed))
        for dataset in grid["datasets"]
        for arch in grid["archs"]
        if arch in fitting_archs(config, dataset)
        for seed in grid["seeds"]
    ]


def dataset_settings(config: dict, dataset: str) -> dict[str, Any]:
    """Settings of the prepare stage for ``dataset``: generation parameters (or, for the
    torchvision sets, where to read the files) and the split. The torchvision sets keep their
    official train/test split, so ``split`` does not apply to them."""
    settings = dict(DEFAULT_DATASET[dataset])
    user = config.get("datasets", {}).get(dataset, {})
    settings.update({k: v for k, v in user.items() if k not in LAYERED_DATASET_KEYS})
    if dataset not in TORCHVISION_DATASETS:
        settings.update(config.get("split", {"test_fraction": 0.2, "seed": 12345}))
    return settings


def arch_settings(config: dict, arch: str) -> dict[str, Any]:
    settings = dict(DEFAULT_ARCH[arch])
    user = config.get("archs", {}).get(arch, {})
    settings.update({k: v for k, v in user.items() if k not in ("train", "resources")})
    return settings


def _layered(config: dict, dataset: str, arch: str, key: str,
             defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` < ``config[key]`` < ``archs.<arch>.<key>`` < ``datasets.<dataset>.<key>`` <
    ``<key>`` of every entry of ``overrides`` whose datasets and archs include this run's."""
    settings = dict(defaults)
    settings.update(config.get(key, {}) or {})
    settings.update(config.get("archs", {}).get(arch, {}).get(key, {}))
    settings.update(config.get("datasets", {}).get(dataset, {}).get(key, {}))
    for override in config.get("overrides", []):
        if dataset in override.get("datasets", [dataset]) and arch in override.get("archs", [arch]):
            settings.update(override.get(key, {}))
    return settings


def raw_train_settings(config: dict, dataset: str, arch: str) -> dict[str, Any]:
    """Training settings of one run, layered as in :func:`_layered` (key ``train``)."""
    return _layered(config, dataset, arch, "train", DEFAULT_TRAIN)


def train_resources(config: dict, dataset: str, arch: str) -> dict[str, Any]:
    """What a training job of dataset × arch asks the scheduler for (key ``resources``):
    ``gpu`` (count), ``threads``, ``mem_mb`` and ``runtime`` (minutes)."""
    return _layered(config, dataset, arch, "resources", DEFAULT_RESOURCES)


def train_settings(config: dict, dataset: str, arch: str) -> dict[str, Any]:
    """:func:`raw_train_settings` with the resolved checkpoint epochs under ``checkpoints``."""
    settings = raw_train_settings(config, dataset, arch)
    settings["checkpoints"] = checkpoint_epochs(
        settings["epochs"], settings["checkpoints"], settings["n_checkpoints"]
    )
    return settings


def checkpoint_epochs(epochs: int, explicit: list[int], n: int) -> list[int]:
    """Sorted checkpoint epochs: ``explicit`` if given, else ``n`` log-spaced epochs in [1, epochs].

    The last epoch is always included (the figures and summaries use it).
    """
    if explicit:
        chosen = {int(e) for e in explicit if 1 <= int(e) <= epochs}
    else:
        chosen = {int(round(x)) for x in np.logspace(0, np.log10(epochs), num=n)}
    chosen.add(int(epochs))
    return sorted(chosen)


def stage_settings(config: dict, stage: str) -> dict[str, Any]:
    """The flat settings block of a stage (``svm``, ``metrics``, ``figures``)."""
    return dict(config.get(stage, {}))


def to_json(settings: dict[str, Any]) -> str:
    """Canonical JSON of a settings block (sorted keys), as passed to a stage's ``--settings``."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def parse_settings(text: str | None, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse a stage's ``--settings`` JSON object; an empty one means defaults.

    With ``defaults``, the result is the defaults updated by the given keys, and a key that is
    not among the defaults is refused with the list of allowed keys.
    """
    value: Any = {}
    if text:
        try:
            value = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"--settings is not valid JSON ({err}): {text!r}") from err
        if not isinstance(value, dict):
            raise ConfigError(f"--settings must be a JSON object, got {text!r}")
    if defaults is None:
        return value
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise ConfigError(f"--settings has unknown keys {unknown}; allowed: {sorted(defaults)}")
    return {**defaults, **value}


def load_config(path: str | Path) -> dict:
    """Read and validate a YAML config file (for the command-line tools and tests)."""
    import yaml

    with open(path) as handle:
        return validate_config(yaml.safe_load(handle) or {})
