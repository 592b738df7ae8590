"""The configuration: validation against the JSON schema, defaults, and the grid of runs.

Used by the Snakefile (``workflow/rules/common.smk``) before any job is scheduled and by the
command-line stages, so both read the settings in exactly one way. Imports neither torch nor
Snakemake: parsing the workflow stays fast.

Settings are layered: built-in defaults < ``train`` < ``archs.<arch>.train`` <
``datasets.<dataset>.train`` < each matching entry of ``overrides``, the more specific ones
later (:func:`override_specificity`: an entry naming an ablation value beats one that does not,
then more selectors beat fewer, then file order); the training jobs' ``resources`` (gpu,
threads, mem_mb, runtime) are layered the same way.
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

from . import catalog

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# Derived from the declarations in nnboundary.catalog (the one place each built-in lives).
DATASETS = tuple(catalog.DATASETS)
# Generated from the run's seed: prepared once per seed. Every other set is prepared once.
SEEDED_DATASETS = tuple(n for n, e in catalog.DATASETS.items() if e.seeded)

# Training for the max-margin experiments: no weight decay, no label smoothing, no dropout, no EMA.
DEFAULT_TRAIN: dict[str, Any] = {
    "optimizer": "momentum",
    "loss": "cross_entropy",
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
    # auto: the fused CPU kernel (nnboundary.kernels) where it serves, else PyTorch.
    "kernel": "auto",
    "channels_last": True,
    "log_every": 100,
    "resume_every": 50,
    # ...but not sooner than this many seconds after the last one (a save costs milliseconds,
    # an epoch of the default MLP a millisecond): a killed job loses at most that much work.
    "resume_min_seconds": 5.0,
    "schedule": "constant",
    "schedule_cap": 1e6,
    "until_loss": None,
    "min_epochs": 0,
    # > 0: stop a run that, at this many times its recent rate, cannot reach its next loss
    # milestone (or until_loss) by the epochs cap (nnboundary.loop: ``unreachable``).
    "stop_unreachable": 0.0,
    "dtype": "float32",
    "bn_eval_after": None,
    # Also keep the first epoch below each of these train losses (nnboundary.loop): every seed
    # is then measured at the same depths.
    "loss_milestones": [1e-2, 1e-4, 1e-8, 1e-16, 1e-32, 1e-64, 1e-100],
}

# The retrain_last regime: the full model at `from_epoch` (None: its last epoch), the last layer
# re-initialised (`init`) and trained alone on the frozen features, with its own optimizer.
DEFAULT_RETRAIN: dict[str, Any] = {
    "from_epoch": None,
    "init": "original",
    "optimizer": "sgd",
    "lr": 1.0,
    "lr_relative": True,
    **{key: DEFAULT_TRAIN[key] for key in ("momentum", "epochs", "batch_size", "checkpoints",
                                           "n_checkpoints", "weight_decay", "device",
                                           "log_every", "schedule", "schedule_cap",
                                           "until_loss", "min_epochs", "loss_milestones")},
    # The last layer is a linear model on fixed features: float64 costs nothing there.
    "dtype": "float64",
}

# Per training job; sized per dataset x arch in the config (see train_resources).
DEFAULT_RESOURCES: dict[str, Any] = {"gpu": 1, "threads": 1, "mem_mb": 2000, "runtime": 30}

DEFAULT_ARCH: dict[str, dict[str, Any]] = {n: e.defaults for n, e in catalog.ARCHS.items()}

# Keys every dataset accepts: the archs that fit it and its layered train settings and resources.
LAYERED_DATASET_KEYS = ("archs", "train", "retrain", "resources")
LAYERED_ARCH_KEYS = ("train", "retrain", "resources")


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem found."""


@dataclass(frozen=True, order=True)
class Run:
    """One run of the grid: a dataset × arch × seed, a training regime and an ablation variant.

    ``regime``: ``full`` (the whole network trained) or ``retrain_last`` (the ``full`` model at
    ``retrain.from_epoch``, its last layer re-initialised and trained alone, the rest frozen).
    ``variant``: ``base`` or the ablation values of the run (:func:`variant_name`).
    """

    dataset: str
    arch: str
    seed: int
    regime: str = "full"
    variant: str = "base"

    @property
    def path(self) -> str:
        """Relative folder of the run under ``<results>/runs``."""
        return f"{self.dataset}/{self.arch}/{self.variant}/{self.regime}/seed{self.seed}"

    @property
    def keys(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "arch": self.arch, "variant": self.variant,
                "regime": self.regime, "seed": self.seed}


REGIMES = ("full", "retrain_last")
#: The keys that name a run, in table order (feature file metadata, svm.json, metrics columns).
RUN_KEYS = ("dataset", "arch", "variant", "regime", "seed")

# Ablation axes and the settings block each one sets: a grid names the axes it varies in
# grid.ablations; every other axis keeps the value the config layers give it.
ABLATION_AXES: dict[str, str] = {
    "optimizer": "train",
    "loss": "train",
    "activation": "arch",
    "init": "arch",
    "bottleneck": "arch",
    "schedule": "train",
}
BASE_VARIANT = "base"


def variant_name(values: dict[str, Any]) -> str:
    """``base`` for no ablation values, else ``axis-value`` pairs in axis order joined by ``__``
    (e.g. ``activation-tanh__optimizer-adam``)."""
    if not values:
        return BASE_VARIANT
    return "__".join(f"{axis}-{'none' if values[axis] is None else values[axis]}"
                     for axis in sorted(values))


def variant_values(name: str) -> dict[str, Any]:
    """The inverse of :func:`variant_name` (``bottleneck`` values are integers, or ``none`` for
    no bottleneck)."""
    if name == BASE_VARIANT:
        return {}
    values: dict[str, Any] = {}
    for part in name.split("__"):
        axis, sep, value = part.partition("-")
        if not sep or axis not in ABLATION_AXES:
            raise ValueError(f"variant {name!r}: {part!r} is not axis-value with an axis among "
                             f"{', '.join(ABLATION_AXES)}")
        values[axis] = (None if value == "none" else int(value)) if axis == "bottleneck" else value
    return values


def variants(config: dict) -> list[str]:
    """Every variant of the grid. ``grid.ablations`` is a mapping axis → values (the grid is
    their product) or a list of such mappings (the union of their products, in order, without
    repeats; ``{}`` stands for the ``base`` variant), e.g. one mapping per axis for
    one-at-a-time ablations."""
    blocks = config["grid"].get("ablations") or {}
    if isinstance(blocks, dict):
        blocks = [blocks]
    names: list[str] = []
    for axes in blocks:
        keys = sorted(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            name = variant_name(dict(zip(keys, combo)))
            if name not in names:
                names.append(name)
    return names


def data_path(dataset: str, seed: int, config: dict | None = None) -> str:
    """The prepared file of ``dataset`` for the run seed ``seed``.

    Sets generated from the seed (:func:`is_seeded`) have one file per seed,
    ``results/data/{dataset}/seed{seed}.npz``; every other set is prepared once,
    ``results/data/{dataset}/fixed.npz``, and shared by all seeds.
    """
    if is_seeded(config or {}, dataset):
        return f"results/data/{dataset}/seed{int(seed)}.npz"
    return f"results/data/{dataset}/fixed.npz"


# --------------------------------------------------------------------------------------------
# Built-in and user entries
# --------------------------------------------------------------------------------------------


def user_datasets(config: dict) -> dict[str, dict]:
    """The config's own datasets: entries under ``datasets:`` whose name is not built in."""
    return {n: e for n, e in (config.get("datasets") or {}).items() if n not in catalog.DATASETS}


def user_archs(config: dict) -> dict[str, dict]:
    """The config's own networks: entries under ``archs:`` whose name is not built in."""
    return {n: e for n, e in (config.get("archs") or {}).items() if n not in catalog.ARCHS}


def dataset_names(config: dict) -> list[str]:
    """Every dataset name a config can use: the built-in ones, then its own."""
    return list(catalog.DATASETS) + list(user_datasets(config))


def arch_names(config: dict) -> list[str]:
    """Every arch name a config can use: the built-in ones, then its own."""
    return list(catalog.ARCHS) + list(user_archs(config))


def is_seeded(config: dict, dataset: str) -> bool:
    """Whether ``dataset`` is made from the run's seed (one prepared file per seed): a built-in
    of kind ``seeded``, or a user dataset with ``seeded: true``."""
    if dataset in catalog.DATASETS:
        return catalog.DATASETS[dataset].seeded
    return bool(user_datasets(config).get(dataset, {}).get("seeded", False))


def dataset_source(config: dict, dataset: str) -> str:
    """Where ``dataset`` comes from: the built-in's source or the user entry's ``source``."""
    if dataset in catalog.DATASETS:
        return catalog.DATASETS[dataset].source
    return user_datasets(config)[dataset]["source"]


def source_files(config: dict, dataset: str) -> list[str]:
    """The file a ``file:`` source reads (as a workflow input), else nothing."""
    source = dataset_source(config, dataset)
    if catalog.source_kind(source) == "file":
        return [source.removeprefix(catalog.FILE_PREFIX)]
    return []


def _is_image_dataset(config: dict, dataset: str) -> bool | None:
    """True / False where known before loading (built-ins, torchvision sources), else None."""
    if dataset in catalog.DATASETS:
        return catalog.DATASETS[dataset].image
    return True if catalog.source_kind(dataset_source(config, dataset)) == "torchvision" else None


def _arch_needs_image(config: dict, arch: str) -> bool:
    if arch in catalog.ARCHS:
        return catalog.ARCHS[arch].image
    return "backbone" in user_archs(config).get(arch, {})


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The config schema: the YAML file, completed from :mod:`nnboundary.catalog`: the
    settings of the built-in datasets and archs (the union of their keys; which key applies to
    which entry is checked after the schema), and one entry per built-in name under
    ``datasets:`` and ``archs:`` (any other name is a user entry)."""
    import yaml

    schema = yaml.safe_load(Path(path).read_text())
    definitions = schema["definitions"]
    for table, settings in ((catalog.DATASETS, "dataset_settings"),
                            (catalog.ARCHS, "arch_settings")):
        properties = definitions[settings]["properties"]
        for entry in table.values():
            for key, (_, fragment) in entry.settings.items():
                properties.setdefault(key, fragment)
    for section, table, settings in (("datasets", catalog.DATASETS, "dataset_settings"),
                                     ("archs", catalog.ARCHS, "arch_settings")):
        schema["properties"][section]["properties"] = {
            name: {"$ref": f"#/definitions/{settings}"} for name in table}
    return schema


def _format_error(error) -> str:
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the deepest problem (e.g. the bad value inside the list form), not "matches
        # none of the alternatives".
        error = max(error.context, key=lambda e: len(e.absolute_path))
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
    problems = _entry_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    validator = jsonschema.Draft7Validator(schema)
    problems = [_format_error(e) for e in sorted(validator.iter_errors(config), key=str)]
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    config = copy.deepcopy(config)
    _fill_defaults(config, schema)
    problems = _semantic_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    problems = source_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def _entry_problems(config: dict) -> list[str]:
    """Before the schema: a user entry under a built-in name, or an entry that is neither
    built in nor has a source (the schema's own messages would not say why)."""
    problems = []
    for section, table, own, what in (("datasets", catalog.DATASETS, ("source",), "dataset"),
                                      ("archs", catalog.ARCHS, ("source", "backbone"), "arch")):
        entries = config.get(section)
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            given = [k for k in own if k in entry]
            if name in table and given:
                problems.append(
                    f"config key '{section}/{name}': '{name}' is a built-in {what}, so it takes "
                    f"no {given[0]}; give your own {what} a name of its own (built-in "
                    f"{section}: {', '.join(table)})")
            elif name not in table and not given:
                problems.append(
                    f"config key '{section}/{name}': '{name}' is not a built-in {what} "
                    f"({', '.join(table)}), so it needs a "
                    f"{' or a '.join(own)} to be one of your own")
    return problems


def source_problems(config: dict) -> list[str]:
    """Every user source that cannot be used, found before any job runs: a
    ``module:function`` whose module does not import or lacks the function, a ``file:`` that
    does not exist, a ``torchvision:`` dataset class or model that torchvision does not have."""
    problems = []
    for name, entry in user_datasets(config).items():
        where, source = f"datasets/{name}/source", entry["source"]
        kind = catalog.source_kind(source)
        if kind == "function":
            try:
                catalog.resolve(source, f"config key '{where}'")
            except catalog.SourceError as err:
                problems.append(str(err))
        elif kind == "file":
            path = Path(source.removeprefix(catalog.FILE_PREFIX))
            if not path.is_file():
                problems.append(f"config key '{where}': file {str(path)!r} (resolved: "
                                f"{path.resolve()}) does not exist; a relative path is "
                                f"relative to the working directory")
        else:
            import torchvision.datasets

            cls = source.removeprefix(catalog.TORCHVISION_PREFIX)
            if not isinstance(getattr(torchvision.datasets, cls, None), type):
                problems.append(f"config key '{where}': torchvision.datasets has no class "
                                f"{cls!r} (it has e.g. MNIST, FashionMNIST, CIFAR10, SVHN)")
    for name, entry in user_archs(config).items():
        if "source" in entry:
            try:
                catalog.resolve(entry["source"], f"config key 'archs/{name}/source'")
            except catalog.SourceError as err:
                problems.append(str(err))
        else:
            import torchvision.models

            model = entry["backbone"].removeprefix(catalog.TORCHVISION_PREFIX)
            if model not in torchvision.models.list_models(module=torchvision.models):
                problems.append(f"config key 'archs/{name}/backbone': {model!r} is not a "
                                f"classification model of torchvision.models (e.g. resnet18, "
                                f"mobilenet_v3_small, efficientnet_b0)")
    return problems


def _name_problems(config: dict) -> list[str]:
    """Dataset and arch names used by the grid, ``overrides`` and ``datasets.<d>.archs`` that
    are neither built in nor the config's own."""
    problems = []
    known = {"dataset": dataset_names(config), "arch": arch_names(config)}
    uses = [("grid/datasets", "dataset", config["grid"]["datasets"]),
            ("grid/archs", "arch", config["grid"]["archs"])]
    uses += [(f"datasets/{n}/archs", "arch", e.get("archs", []))
             for n, e in config.get("datasets", {}).items()]
    for i, override in enumerate(config.get("overrides", [])):
        uses += [(f"overrides/{i}/datasets", "dataset", override.get("datasets", [])),
                 (f"overrides/{i}/archs", "arch", override.get("archs", []))]
    for where, what, names in uses:
        for name in names:
            if name not in known[what]:
                section = what + "s"
                own = [n for n in known[what] if n not in
                       (catalog.DATASETS if what == "dataset" else catalog.ARCHS)]
                problems.append(
                    f"config key '{where}': '{name}' is not {'an' if what == 'arch' else 'a'} "
                    f"{what}; built-in {section}: "
                    f"{', '.join(catalog.DATASETS if what == 'dataset' else catalog.ARCHS)}"
                    f"{'; your own: ' + ', '.join(own) if own else ''} (your own {what} is an "
                    f"entry under {section}: with a source)")
    return problems


def _semantic_problems(config: dict) -> list[str]:
    problems = _name_problems(config)
    if problems:
        return problems
    grid = config["grid"]
    for name, settings in config.get("datasets", {}).items():
        if name not in catalog.DATASETS:
            if (catalog.source_kind(settings["source"]) == "torchvision"
                    and not settings.get("classes")):
                problems.append(
                    f"config key 'datasets/{name}/classes': a torchvision source needs the "
                    f"classes to keep, e.g. classes: [3, 5] (relabelled 0..K-1 in that order)")
            continue
        allowed = tuple(catalog.DATASETS[name].settings)
        for key in settings:
            if key not in allowed and key not in LAYERED_DATASET_KEYS:
                problems.append(
                    f"config key 'datasets/{name}/{key}': '{key}' does not apply to {name}; "
                    f"allowed keys: {', '.join(allowed + LAYERED_DATASET_KEYS)}"
                )
    for name, settings in config.get("datasets", {}).items():
        for arch in settings.get("archs", []):
            if _arch_needs_image(config, arch) and _is_image_dataset(config, name) is False:
                problems.append(
                    f"config key 'datasets/{name}/archs': '{arch}' needs image inputs, "
                    f"{name} is not an image dataset (built-in image datasets: "
                    f"{', '.join(n for n, e in catalog.DATASETS.items() if e.image)})"
                )
    for name, settings in config.get("archs", {}).items():
        if name not in catalog.ARCHS:
            continue
        allowed = tuple(catalog.ARCHS[name].defaults) + LAYERED_ARCH_KEYS
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
        if catalog.source_kind(dataset_source(config, dataset)) == "torchvision":
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
    runs_of = [(d, a, v) for d, a in itertools.product(grid["datasets"], grid["archs"])
               if a in fitting_archs(config, d) for v in variants(config)]
    for dataset, arch, variant in runs_of:
        train = raw_train_settings(config, dataset, arch, variant)
        where = f"{dataset}/{arch}" + ("" if variant == BASE_VARIANT else f"/{variant}")
        late = [e for e in train["checkpoints"] if e > train["epochs"]]
        if late:
            problems.append(
                f"train checkpoints {late} for {where} lie beyond the last epoch "
                f"({train['epochs']}); allowed: 1..{train['epochs']}"
            )
        if "retrain_last" in grid.get("regimes", []):
            retrain = raw_retrain_settings(config, dataset, arch, variant)
            start = retrain["from_epoch"]
            if start is not None and not 1 <= start <= train["epochs"]:
                problems.append(
                    f"retrain from_epoch {start} for {where} is not a trained epoch; "
                    f"allowed: 1..{train['epochs']} (or null for the last)"
                )
            late = [e for e in retrain["checkpoints"] if e > retrain["epochs"]]
            if late:
                problems.append(
                    f"retrain checkpoints {late} for {where} lie beyond the last retrain epoch "
                    f"({retrain['epochs']}); allowed: 1..{retrain['epochs']}"
                )
        if train["amp"] == "bf16" and "source" in user_archs(config).get(arch, {}):
            problems.append(
                f"train amp bf16 for {where}: arch {arch} is your own network (source), whose "
                f"features() the pipeline cannot split into a bf16 backbone and a float32 "
                f"head; set amp: none")
        if train["amp"] == "bf16" and train["dtype"] == "float64":
            problems.append(
                f"train amp bf16 for {where} needs dtype float32 (the backbone runs in bf16, the "
                f"head in float32), but dtype is float64; set amp: none or dtype: float32"
            )
        if (train["until_loss"] is not None and "retrain_last" in grid.get("regimes", [])
                and raw_retrain_settings(config, dataset, arch, variant)["from_epoch"]
                is not None):
            problems.append(
                f"retrain from_epoch for {where} is set, but train until_loss "
                f"{train['until_loss']} may stop the full run before it; use from_epoch: null "
                f"(the full run's last epoch) or until_loss: null"
            )
        if train["label_smoothing"] and train["loss"] != "cross_entropy":
            problems.append(
                f"train label_smoothing {train['label_smoothing']} for {where} applies "
                f"to loss cross_entropy only, but loss is {train['loss']!r}; set "
                f"label_smoothing: 0 or loss: cross_entropy"
            )
    return problems


def fitting_archs(config: dict, dataset: str) -> list[str]:
    """The architectures that fit ``dataset``: its ``archs`` list, or every arch that accepts
    it (an image-only arch needs an image dataset; a user dataset from a function or a file may
    be either, so every arch is tried on it, and an image-only arch on vectors fails its job
    with a message)."""
    declared = config.get("datasets", {}).get(dataset, {}).get("archs")
    if declared:
        return list(declared)
    if _is_image_dataset(config, dataset) is False:
        return [a for a in arch_names(config) if not _arch_needs_image(config, a)]
    return arch_names(config)


# --------------------------------------------------------------------------------------------
# The grid and each stage's settings
# --------------------------------------------------------------------------------------------


def run_signature(config: dict, dataset: str, arch: str, variant: str) -> str:
    """Everything a dataset × arch × variant trains with (arch, train and, when the grid
    retrains the last layer, retrain settings, all resolved), as canonical JSON: two variants
    with the same signature are the same experiment under two names."""
    parts = {"arch": arch_settings(config, arch, variant, dataset),
             "train": train_settings(config, dataset, arch, variant)}
    if "retrain_last" in config["grid"].get("regimes", ["full"]):
        parts["retrain"] = retrain_settings(config, dataset, arch, variant)
    return to_json(parts)


def pair_variants(config: dict, dataset: str, arch: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The variants that run for ``dataset`` × ``arch``, and the ones skipped as duplicates.

    A variant whose resolved settings (:func:`run_signature`) equal those of a variant earlier
    in :func:`variants` is not run a second time under another name: e.g. ``optimizer-adam`` on
    a dataset whose base run already uses Adam with the same lr. Returns (variants to run,
    [(skipped variant, the variant it equals)])."""
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for variant in variants(config):
        signature = run_signature(config, dataset, arch, variant)
        if signature in seen:
            skipped.append((variant, seen[signature]))
        else:
            seen[signature] = variant
            kept.append(variant)
    return kept, skipped


def _pairs(config: dict) -> list[tuple[str, str]]:
    grid = config["grid"]
    return [(dataset, arch) for dataset in grid["datasets"] for arch in grid["archs"]
            if arch in fitting_archs(config, dataset)]


def duplicate_variants(config: dict) -> list[tuple[str, str, str, str]]:
    """(dataset, arch, skipped variant, the variant it equals) for every duplicate of the grid
    (:func:`pair_variants`)."""
    return [(d, a, skipped, same) for d, a in _pairs(config)
            for skipped, same in pair_variants(config, d, a)[1]]


def runs(config: dict) -> list[Run]:
    """Every dataset × fitting arch × variant × regime × seed of the grid, in a stable order;
    a variant that duplicates another for a dataset × arch is run once (:func:`pair_variants`)."""
    grid = config["grid"]
    return [
        Run(dataset, arch, int(seed), regime, variant)
        for dataset, arch in _pairs(config)
        for variant in pair_variants(config, dataset, arch)[0]
        for regime in grid.get("regimes", ["full"])
        for seed in grid["seeds"]
    ]


@dataclass(frozen=True)
class SeedBlock:
    """The seeds one job of each per-seed stage covers (``grid.seeds_per_job``).

    ``seeds`` empty: the per-seed block, one job per seed, the seed a wildcard of the rule (the
    rules keep their plain names and paths). Otherwise a fixed tuple of seeds, one rule per
    block. :meth:`paths` turns a per-seed path pattern (``.../seed{seed}/...``) into the block's
    outputs; ``name`` replaces ``seed{seed}`` in the block's log and benchmark file names."""

    seeds: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        if not self.seeds:
            return "seed{seed}"
        return f"seeds{self.seeds[0]}-{self.seeds[-1]}"

    def rule(self, stage: str) -> str:
        """The name of ``stage``'s rule for this block."""
        return stage if not self.seeds else f"{stage}_seeds{self.seeds[0]}_{self.seeds[-1]}"

    def paths(self, pattern: str) -> list[str]:
        """The block's files of a pattern with ``seed{seed}`` in it (the pattern itself for the
        per-seed block)."""
        if "seed{seed}" not in pattern:
            raise ValueError(f"{pattern!r} has no seed{{seed}} to fill")
        if not self.seeds:
            return [pattern]
        return [pattern.replace("seed{seed}", f"seed{s}") for s in self.seeds]

    def named(self, pattern: str) -> str:
        """A per-block file (log, benchmark) of a pattern with ``seed{seed}`` in it."""
        return pattern.replace("seed{seed}", self.name)

    def of(self, wildcards) -> list[int]:
        """The seeds of one job of this block (the wildcard's for the per-seed block)."""
        return list(self.seeds) if self.seeds else [int(wildcards.seed)]


def seed_blocks(config: dict) -> list[SeedBlock]:
    """The seed blocks of the grid: seed s is in block s // ``grid.seeds_per_job``; with 1, the
    single per-seed block (:class:`SeedBlock`)."""
    size = int(config["grid"].get("seeds_per_job", 1))
    if size == 1:
        return [SeedBlock()]
    blocks: dict[int, list[int]] = {}
    for seed in sorted(int(s) for s in config["grid"]["seeds"]):
        blocks.setdefault(seed // size, []).append(seed)
    return [SeedBlock(tuple(seeds)) for _, seeds in sorted(blocks.items())]


def prepare_job(config: dict, dataset: str, seed: int) -> str:
    """The prepare job that writes the dataset of a run with ``seed``, as ``<dataset>/<name>``
    (its log and benchmark file names): ``fixed`` for a set prepared once for every seed,
    else the seed block's name (``seeds0-5``), or ``seed<s>`` with one seed per job."""
    if not is_seeded(config, dataset):
        return f"{dataset}/fixed"
    for block in seed_blocks(config):
        if int(seed) in block.seeds:
            return f"{dataset}/{block.name}"
    return f"{dataset}/seed{int(seed)}"


def job_names(config: dict) -> list[str]:
    """What ``seed{seed}`` becomes in the per-seed stages' log and benchmark files, one entry
    per job of a dataset × arch × variant (× regime): ``seed<s>`` per seed, or the blocks'
    names."""
    names = []
    for block in seed_blocks(config):
        if block.seeds:
            names.append(block.name)
        else:
            names += [f"seed{int(s)}" for s in config["grid"]["seeds"]]
    return names


def loss_milestones(config: dict) -> list[float]:
    """Every ``loss_milestones`` value of the grid's runs (training, and retraining for
    ``retrain_last`` runs), largest first: the depths the depth table reports."""
    values: set[float] = set()
    for run in runs(config):
        if run.regime == "retrain_last":
            settings = raw_retrain_settings(config, run.dataset, run.arch, run.variant)
        else:
            settings = raw_train_settings(config, run.dataset, run.arch, run.variant)
        values |= {float(m) for m in settings.get("loss_milestones") or []}
    return sorted(values, reverse=True)


def grid_size(config: dict) -> str:
    """One line stating how many runs the grid expands to, and why (for the dry run)."""
    grid = config["grid"]
    pairs = _pairs(config)
    n_variants, regimes = len(variants(config)), grid.get("regimes", ["full"])
    duplicates = duplicate_variants(config)
    total = len(runs(config))
    line = (f"{total} runs = {len(pairs)} dataset x arch pairs x {n_variants} variants x "
            f"{len(regimes)} regimes ({', '.join(regimes)}) x {len(grid['seeds'])} seeds")
    if duplicates:
        line += (f", less {len(duplicates)} duplicate variants run once (same settings): "
                 + "; ".join(f"{d}/{a} {skipped} = {same}" for d, a, skipped, same in duplicates))
    return line


def dataset_settings(config: dict, dataset: str) -> dict[str, Any]:
    """Settings of the prepare stage for ``dataset``: generation parameters (or, for the
    torchvision sets, where to read the files) and the split. The torchvision sets keep their
    official train/test split, so ``split`` does not apply to them."""
    user = config.get("datasets", {}).get(dataset, {})
    if dataset in catalog.DATASETS:
        settings = catalog.DATASETS[dataset].defaults
        torchvision = catalog.DATASETS[dataset].kind == "torchvision"
    else:  # a user entry: its source, seeded and its own settings, passed to the source
        settings = {}
        torchvision = catalog.source_kind(user["source"]) == "torchvision"
        if torchvision:
            settings.update(catalog.defaults_of(catalog.TORCHVISION_SETTINGS))
    settings.update({k: v for k, v in user.items() if k not in LAYERED_DATASET_KEYS})
    if not torchvision:
        settings.update(config.get("split", {"test_fraction": 0.2, "seed": 12345}))
    return settings


def arch_settings(config: dict, arch: str, variant: str = BASE_VARIANT,
                  dataset: str | None = None) -> dict[str, Any]:
    """Settings of ``arch``: defaults < ``archs.<arch>`` < the ``arch`` block of every matching
    ``overrides`` entry (for ``dataset``, more specific entries later) < the variant's arch
    axes (an ablation value always wins)."""
    settings = _arch_base(config, arch)
    if dataset is not None:
        for override in matching_overrides(config, dataset, arch, variant):
            settings.update(override.get("arch", {}))
    settings.update(_axis_values(variant, "arch"))
    return settings


def _arch_base(config: dict, arch: str) -> dict[str, Any]:
    """An arch's defaults < its ``archs.<arch>`` entry (without the layered keys). A user arch
    with a ``backbone`` starts from the head's defaults; one with a ``source`` from nothing."""
    user = config.get("archs", {}).get(arch, {})
    if arch in catalog.ARCHS:
        settings = catalog.ARCHS[arch].defaults
    else:
        settings = dict(catalog.BACKBONE_HEAD_DEFAULTS) if "backbone" in user else {}
    settings.update({k: v for k, v in user.items() if k not in LAYERED_ARCH_KEYS})
    return settings


def _axis_values(variant: str, block: str) -> dict[str, Any]:
    """The variant's ablation values that belong to settings ``block`` (train or arch)."""
    return {axis: value for axis, value in variant_values(variant).items()
            if ABLATION_AXES[axis] == block}


def _layered(config: dict, dataset: str, arch: str, key: str, defaults: dict[str, Any],
             variant: str = BASE_VARIANT, ablation_overrides: bool = True) -> dict[str, Any]:
    """``defaults`` < ``config[key]`` < ``archs.<arch>.<key>`` < ``datasets.<dataset>.<key>`` <
    ``<key>`` of every entry of ``overrides`` that matches the run, the more specific entries
    last (:func:`matching_overrides`)."""
    settings = dict(defaults)
    settings.update(config.get(key, {}) or {})
    settings.update(config.get("archs", {}).get(arch, {}).get(key, {}))
    settings.update(config.get("datasets", {}).get(dataset, {}).get(key, {}))
    for override in matching_overrides(config, dataset, arch, variant, ablation_overrides):
        settings.update(override.get(key, {}))
    return settings


#: The keys of an ``overrides`` entry that choose the runs it applies to.
OVERRIDE_SELECTORS = ("datasets", "archs", "ablation")


def override_specificity(override: dict) -> tuple[int, int, int]:
    """How specific an ``overrides`` entry is; a more specific entry is applied later, so it
    wins where two entries set the same key. In order of precedence:

    1. it names an ablation value (a non-empty ``ablation``) — it beats every entry that does not;
    2. how many of ``datasets``, ``archs`` and ``ablation`` it names (more beats fewer);
    3. how many ablation axes it names (more beats fewer).

    Between entries equal on all three, the later one in the file wins."""
    ablation = override.get("ablation") or {}
    named = sum(1 for k in OVERRIDE_SELECTORS if override.get(k))
    return int(bool(ablation)), named, len(ablation)


def matching_overrides(config: dict, dataset: str, arch: str, variant: str = BASE_VARIANT,
                       ablation_overrides: bool = True) -> list[dict]:
    """The ``overrides`` entries that apply to a run, least specific first
    (:func:`override_specificity`; file order between equals): an entry applies when its
    ``datasets`` and ``archs`` (when given) include the run's and every value of its
    ``ablation`` equals the variant's (an axis the variant does not vary matches the value the
    config gives it without ablation entries)."""
    values = variant_values(variant)
    chosen = []
    for position, override in enumerate(config.get("overrides", [])):
        if override.get("ablation") and not ablation_overrides:
            continue
        if (dataset in override.get("datasets", [dataset])
                and arch in override.get("archs", [arch])
                and all(values.get(a, _default_axis_value(config, dataset, arch, a)) == v
                        for a, v in (override.get("ablation") or {}).items())):
            chosen.append((override_specificity(override), position, override))
    return [override for _, _, override in sorted(chosen, key=lambda c: c[:2])]


def _default_axis_value(config: dict, dataset: str, arch: str, axis: str) -> Any:
    """The value an ablation axis has when the variant does not set it."""
    if ABLATION_AXES[axis] == "arch":
        settings = _arch_base(config, arch)
        for override in matching_overrides(config, dataset, arch, ablation_overrides=False):
            settings.update(override.get("arch", {}))
        return settings.get(axis)
    return _layered(config, dataset, arch, "train", DEFAULT_TRAIN, ablation_overrides=False)[axis]


def raw_train_settings(config: dict, dataset: str, arch: str,
                       variant: str = BASE_VARIANT) -> dict[str, Any]:
    """Training settings of one run, layered as in :func:`_layered` (key ``train``), then the
    variant's train axes (an ablation value always wins)."""
    settings = _layered(config, dataset, arch, "train", DEFAULT_TRAIN, variant)
    settings.update(_axis_values(variant, "train"))
    return settings


def train_resources(config: dict, dataset: str, arch: str) -> dict[str, Any]:
    """What a training job of dataset × arch asks the scheduler for (key ``resources``):
    ``gpu`` (count), ``threads``, ``mem_mb`` and ``runtime`` (minutes)."""
    return _layered(config, dataset, arch, "resources", DEFAULT_RESOURCES)


def train_settings(config: dict, dataset: str, arch: str,
                   variant: str = BASE_VARIANT) -> dict[str, Any]:
    """:func:`raw_train_settings` with the resolved checkpoint epochs under ``checkpoints``
    (including ``retrain.from_epoch`` when the grid retrains the last layer)."""
    settings = raw_train_settings(config, dataset, arch, variant)
    explicit = list(settings["checkpoints"])
    epochs = checkpoint_epochs(settings["epochs"], explicit, settings["n_checkpoints"])
    if "retrain_last" in config.get("grid", {}).get("regimes", []):
        start = raw_retrain_settings(config, dataset, arch, variant)["from_epoch"]
        if start is not None and start <= settings["epochs"]:
            epochs = sorted(set(epochs) | {int(start)})
    settings["checkpoints"] = epochs
    return settings


def raw_retrain_settings(config: dict, dataset: str, arch: str,
                         variant: str = BASE_VARIANT) -> dict[str, Any]:
    """Settings of the ``retrain_last`` step, layered as in :func:`_layered` (key ``retrain``).
    The loss and label smoothing are the run's training ones."""
    settings = _layered(config, dataset, arch, "retrain", DEFAULT_RETRAIN, variant)
    train = raw_train_settings(config, dataset, arch, variant)
    settings["loss"] = train.get("loss", "cross_entropy")
    settings["label_smoothing"] = train["label_smoothing"]
    return settings


def retrain_settings(config: dict, dataset: str, arch: str,
                     variant: str = BASE_VARIANT) -> dict[str, Any]:
    """:func:`raw_retrain_settings` with the resolved checkpoint epochs."""
    settings = raw_retrain_settings(config, dataset, arch, variant)
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


def layer_configs(base: dict, update: dict) -> dict:
    """``update`` applied on top of ``base`` as Snakemake applies a ``--configfile`` on top of the
    workflow's ``configfile:``: mappings are merged key by key, recursively; any other value
    (a list included) replaces the one below it."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = layer_configs(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(*paths: str | Path) -> dict:
    """Read YAML config files, each layered on the ones before it (:func:`layer_configs`), and
    validate the result (for the command-line tools and tests). ``load_config("config.yaml",
    "configs/regimes.yaml")`` is the config ``snakemake --configfile configs/regimes.yaml``
    runs."""
    import yaml

    config: dict = {}
    for path in paths:
        with open(path) as handle:
            config = layer_configs(config, yaml.safe_load(handle) or {})
    return validate_config(config)


def main(argv: list[str] | None = None) -> int:
    """``nnboundary config``: check a config file, or record the validated config as YAML."""
    import argparse
    import sys

    import yaml

    parser = argparse.ArgumentParser(prog="nnboundary config", description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--check", metavar="FILE", nargs="+",
                        help="YAML config files to validate, each applied on top of the ones "
                             "before it as snakemake applies --configfile on config.yaml, e.g. "
                             "--check config.yaml configs/regimes.yaml")
    source.add_argument("--config-json", help="a config as a JSON object (the workflow's)")
    parser.add_argument("--output", help="write the validated config, defaults filled in (YAML)")
    args = parser.parse_args(argv)
    try:
        config = load_config(*args.check) if args.check else validate_config(json.loads(args.config_json))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"valid: {grid_size(config)}", file=sys.stderr)
    if args.output:
        from .io import atomic_path

        with atomic_path(args.output) as tmp:
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    return 0
