"""Each stage's settings for one run, layered from the config: the one way the Snakefile and
the command-line stages resolve them.

Settings are layered: defaults (the schema's, :func:`nnboundary.settings.schema.defaults`) <
``train`` < ``archs.<arch>.train`` < ``datasets.<dataset>.train`` < each matching entry of
``overrides``, the more specific ones later (:func:`override_specificity`: an entry naming an
ablation value beats one that does not, then more selectors beat fewer, then file order); the
training jobs' ``resources`` (gpu, threads, mem_mb, runtime) are layered the same way. Each
stage receives only its own resolved slice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import catalog, schema
from .keys import ABLATION_AXES, BASE_VARIANT, variant_values

#: Training for the max-margin experiments: no weight decay, no label smoothing, no dropout, no
#: EMA (the schema's defaults of ``train``).
DEFAULT_TRAIN: dict[str, Any] = schema.defaults("train")
#: The retrain_last regime: the full model at ``from_epoch`` (None: its last epoch), the last
#: layer re-initialised (``init``) and trained alone on the frozen features, with its own
#: optimizer (the schema's defaults of ``retrain``).
DEFAULT_RETRAIN: dict[str, Any] = schema.defaults("retrain")
#: Per training job; sized per dataset x arch in the config (see train_resources).
DEFAULT_RESOURCES: dict[str, Any] = schema.defaults("resources")
#: Every built-in arch's settings and their defaults (from the catalog).
DEFAULT_ARCH: dict[str, dict[str, Any]] = {n: e.defaults for n, e in catalog.ARCHS.items()}

# Keys every dataset accepts: the archs that fit it and its layered train settings and resources.
LAYERED_DATASET_KEYS = ("archs", "train", "retrain", "resources")
LAYERED_ARCH_KEYS = ("train", "retrain", "resources")


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
        settings.update({**schema.defaults("split"), **config.get("split", {})})
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
