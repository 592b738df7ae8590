"""The datasets and architectures a config can name: the built-in ones
(:mod:`nnboundary.settings.catalog`) and the config's own entries, and what is known of each
before anything is loaded (seeded or not, image or not, its source, which archs fit it).
"""

from __future__ import annotations

from . import catalog

#: The built-in dataset names (derived from the catalog, the one place each built-in lives).
DATASETS = tuple(catalog.DATASETS)
#: Built-in sets generated from the run's seed: prepared once per seed. Every other set is
#: prepared once.
SEEDED_DATASETS = tuple(n for n, e in catalog.DATASETS.items() if e.seeded)


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


def n_classes(config: dict, dataset: str) -> int | None:
    """The number of classes of ``dataset`` where it is known before loading (the catalog's
    built-ins), else None."""
    entry = catalog.DATASETS.get(dataset)
    return None if entry is None else int(entry.size[2])


def is_image_dataset(config: dict, dataset: str) -> bool | None:
    """True / False where known before loading (built-ins, torchvision sources), else None."""
    if dataset in catalog.DATASETS:
        return catalog.DATASETS[dataset].image
    return True if catalog.source_kind(dataset_source(config, dataset)) == "torchvision" else None


def arch_needs_image(config: dict, arch: str) -> bool:
    if arch in catalog.ARCHS:
        return catalog.ARCHS[arch].image
    return "backbone" in user_archs(config).get(arch, {})


def fitting_archs(config: dict, dataset: str) -> list[str]:
    """The architectures that fit ``dataset``: its ``archs`` list, or every arch that accepts
    it (an image-only arch needs an image dataset; a user dataset from a function or a file may
    be either, so every arch is tried on it, and an image-only arch on vectors fails its job
    with a message)."""
    declared = config.get("datasets", {}).get(dataset, {}).get("archs")
    if declared:
        return list(declared)
    if is_image_dataset(config, dataset) is False:
        return [a for a in arch_names(config) if not arch_needs_image(config, a)]
    return arch_names(config)
