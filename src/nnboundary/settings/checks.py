"""The checks a JSON schema cannot express, run on a config before any job: names that are
neither built in nor the config's own, settings that do not apply to an entry, user sources that
cannot be imported or read, and settings that contradict each other.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from ..errors import SourceError
from . import catalog
from .entries import (arch_names, arch_needs_image, dataset_names, dataset_source,
                      fitting_archs, is_image_dataset, user_archs, user_datasets)
from .grid import variants
from .keys import BASE_VARIANT
from .layers import (LAYERED_ARCH_KEYS, LAYERED_DATASET_KEYS, dataset_settings,
                     raw_retrain_settings, raw_train_settings)


def entry_problems(config: dict) -> list[str]:
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
            except SourceError as err:
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
            except SourceError as err:
                problems.append(str(err))
        else:
            import torchvision.models

            model = entry["backbone"].removeprefix(catalog.TORCHVISION_PREFIX)
            if model not in torchvision.models.list_models(module=torchvision.models):
                problems.append(f"config key 'archs/{name}/backbone': {model!r} is not a "
                                f"classification model of torchvision.models (e.g. resnet18, "
                                f"mobilenet_v3_small, efficientnet_b0)")
    return problems


def name_problems(config: dict) -> list[str]:
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


def semantic_problems(config: dict) -> list[str]:
    """Everything :func:`nnboundary.settings.config.validate_config` checks after the schema:
    unknown names first (the other checks need them), then each kind of entry and every run."""
    problems = name_problems(config)
    if problems:
        return problems
    checks = (_dataset_entry_problems, _image_problems, _arch_entry_problems, _grid_problems)
    return [problem for check in checks for problem in check(config)] + _run_problems(config)


def _keys_that_do_not_apply(section: str, name: str, settings: dict, allowed: tuple):
    """A built-in entry's keys that are not among ``allowed``, each with the keys it takes."""
    for key in settings:
        if key not in allowed:
            yield (f"config key '{section}/{name}/{key}': '{key}' does not apply to {name}; "
                   f"allowed keys: {', '.join(allowed)}")


def _dataset_entry_problems(config: dict):
    """A torchvision source without classes; a built-in dataset given a key it does not take."""
    for name, settings in config.get("datasets", {}).items():
        if name in catalog.DATASETS:
            allowed = tuple(catalog.DATASETS[name].settings) + LAYERED_DATASET_KEYS
            yield from _keys_that_do_not_apply("datasets", name, settings, allowed)
        elif (catalog.source_kind(settings["source"]) == "torchvision"
                and not settings.get("classes")):
            yield (f"config key 'datasets/{name}/classes': a torchvision source needs the "
                   f"classes to keep, e.g. classes: [3, 5] (relabelled 0..K-1 in that order)")


def _image_problems(config: dict):
    """An arch that needs images listed for a dataset that is not one."""
    images = ", ".join(n for n, e in catalog.DATASETS.items() if e.image)
    for name, settings in config.get("datasets", {}).items():
        for arch in settings.get("archs", []):
            if arch_needs_image(config, arch) and is_image_dataset(config, name) is False:
                yield (f"config key 'datasets/{name}/archs': '{arch}' needs image inputs, "
                       f"{name} is not an image dataset (built-in image datasets: {images})")


def _arch_entry_problems(config: dict):
    """A built-in arch given a key it does not take, or a DenseNet depth that is not 3 L + 4."""
    for name, settings in config.get("archs", {}).items():
        if name not in catalog.ARCHS:
            continue
        allowed = tuple(catalog.ARCHS[name].defaults) + LAYERED_ARCH_KEYS
        yield from _keys_that_do_not_apply("archs", name, settings, allowed)
        depth = settings.get("depth")
        if depth is not None and (depth - 4) % 3:
            yield (f"config key 'archs/{name}/depth': {depth} is not 3 L + 4; allowed: 7, 10, "
                   f"13, ..., 40, ...")


def _grid_problems(config: dict):
    """A grid dataset that no grid arch fits; a torchvision set whose files cannot be had."""
    grid = config["grid"]
    for dataset in grid["datasets"]:
        if not any(arch in fitting_archs(config, dataset) for arch in grid["archs"]):
            yield (f"config key 'grid/datasets': dataset '{dataset}' fits none of grid/archs "
                   f"{grid['archs']} (it fits {fitting_archs(config, dataset)}; set "
                   f"datasets/{dataset}/archs or add an arch to grid/archs)")
        if catalog.source_kind(dataset_source(config, dataset)) != "torchvision":
            continue
        source = dataset_settings(config, dataset)
        root = Path(source["data_root"])
        if not source["download"] and not root.is_dir():
            yield (f"config key 'datasets/{dataset}/data_root': folder '{root}' (resolved: "
                   f"{root.resolve()}) is not an existing folder and download is off; fetch "
                   f"{dataset} into it beforehand (see docs/usage.md, Datasets), point data_root at "
                   f"the folder that holds it, or set datasets/{dataset}/download: true")


def _run_problems(config: dict) -> list[str]:
    """The train and retrain settings of every dataset × arch × variant of the grid."""
    grid = config["grid"]
    retrains = "retrain_last" in grid.get("regimes", [])
    problems = []
    for (dataset, arch), variant in itertools.product(
            itertools.product(grid["datasets"], grid["archs"]), variants(config)):
        if arch not in fitting_archs(config, dataset):
            continue
        train = raw_train_settings(config, dataset, arch, variant)
        retrain = raw_retrain_settings(config, dataset, arch, variant) if retrains else None
        where = f"{dataset}/{arch}" + ("" if variant == BASE_VARIANT else f"/{variant}")
        user = "source" in user_archs(config).get(arch, {})
        problems += _train_problems(train, retrain, where, arch, user)
    return problems


def _train_problems(train: dict, retrain: dict | None, where: str, arch: str,
                    user: bool) -> list[str]:
    """The contradictions of one run's train settings, and of its retrain settings (None when
    the grid does not retrain); ``user``: the arch is the config's own network."""
    problems = []
    late = [e for e in train["checkpoints"] if e > train["epochs"]]
    if late:
        problems.append(f"train checkpoints {late} for {where} lie beyond the last epoch "
                        f"({train['epochs']}); allowed: 1..{train['epochs']}")
    if retrain is not None:
        start = retrain["from_epoch"]
        if start is not None and not 1 <= start <= train["epochs"]:
            problems.append(f"retrain from_epoch {start} for {where} is not a trained epoch; "
                            f"allowed: 1..{train['epochs']} (or null for the last)")
        late = [e for e in retrain["checkpoints"] if e > retrain["epochs"]]
        if late:
            problems.append(f"retrain checkpoints {late} for {where} lie beyond the last "
                            f"retrain epoch ({retrain['epochs']}); allowed: "
                            f"1..{retrain['epochs']}")
    if train["amp"] == "bf16" and user:
        problems.append(f"train amp bf16 for {where}: arch {arch} is your own network (source), "
                        f"whose features() the pipeline cannot split into a bf16 backbone and a "
                        f"float32 head; set amp: none")
    if train["amp"] == "bf16" and train["dtype"] == "float64":
        problems.append(f"train amp bf16 for {where} needs dtype float32 (the backbone runs in "
                        f"bf16, the head in float32), but dtype is float64; set amp: none or "
                        f"dtype: float32")
    if train["until_loss"] is not None and retrain is not None \
            and retrain["from_epoch"] is not None:
        problems.append(f"retrain from_epoch for {where} is set, but train until_loss "
                        f"{train['until_loss']} may stop the full run before it; use "
                        f"from_epoch: null (the full run's last epoch) or until_loss: null")
    if train["label_smoothing"] and train["loss"] != "cross_entropy":
        problems.append(f"train label_smoothing {train['label_smoothing']} for {where} applies "
                        f"to loss cross_entropy only, but loss is {train['loss']!r}; set "
                        f"label_smoothing: 0 or loss: cross_entropy")
    return problems
