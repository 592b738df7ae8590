"""The grid of runs a config expands to: dataset × fitting arch × ablation variant × regime ×
seed, the seed blocks one job covers, and the names of the jobs and files they write.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .commandline import to_json
from .entries import fitting_archs, is_seeded
from .keys import FIXED_PART, Run, data_file, variant_name
from .layers import (arch_settings, raw_retrain_settings, raw_train_settings, retrain_settings,
                     train_settings)


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
    return data_file(dataset, seed if is_seeded(config or {}, dataset) else None)


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
        return f"{dataset}/{FIXED_PART}"
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
