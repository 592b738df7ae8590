"""The names of runs, cells, regimes and variants, and where a run's files live: one place for
each, read by the Snakefile, every stage and every table. No imports beyond the standard library.

A **run** is one dataset × arch × ablation variant × regime × seed (:data:`RUN_KEYS`); a **cell**
is a run without its seed (:data:`CELL_KEYS`), the unit every table summarises over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The keys that name a run, in table order (feature file metadata, svm.json, metrics columns).
RUN_KEYS = ("dataset", "arch", "variant", "regime", "seed")
#: The keys of a cell: a run without its seed.
CELL_KEYS = RUN_KEYS[:4]
#: The keys of an experiment: a dataset × arch × variant, whose regimes are compared.
EXPERIMENT_KEYS = RUN_KEYS[:3]
#: The training regimes, in the order of every table, sentence and legend: ``full`` (the whole
#: network trained) and ``retrain_last`` (the ``full`` model at ``retrain.from_epoch``, its last
#: layer re-initialised and trained alone, the rest frozen).
REGIMES = ("full", "retrain_last")
#: The two regimes by name: the whole network trained, and its last layer retrained alone.
FULL, RETRAIN_LAST = REGIMES
#: The variant of a run without ablation values.
BASE_VARIANT = "base"

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

#: Where the workflow writes (relative to its working directory).
RESULTS = "results"
#: A run's folder under ``results/runs``.
RUN_FOLDER = "{dataset}/{arch}/{variant}/{regime}/seed{seed}"
#: A prepared dataset under ``results/data``: ``<dataset>/seed<N>.npz`` for a set generated from
#: the run's seed, ``<dataset>/fixed.npz`` for one prepared once for every seed.
DATA_FILE = "{dataset}/{part}.npz"
#: The ``part`` of a set prepared once for every seed.
FIXED_PART = "fixed"


def regime_sort_key(regime: str) -> tuple[int, str]:
    """Sort key putting the regimes of :data:`REGIMES` first, in that order."""
    order = REGIMES.index(regime) if regime in REGIMES else len(REGIMES)
    return order, str(regime)


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


def data_file(dataset: str, seed: int | None) -> str:
    """The prepared file of ``dataset`` for ``seed`` under ``results/data`` (None: the file
    prepared once for every seed)."""
    part = FIXED_PART if seed is None else f"seed{int(seed)}"
    return f"{RESULTS}/data/" + DATA_FILE.format(dataset=dataset, part=part)


@dataclass(frozen=True, order=True)
class Run:
    """One run of the grid: a dataset × arch × seed, a training regime and an ablation variant.

    ``regime``: one of :data:`REGIMES`. ``variant``: ``base`` or the ablation values of the run
    (:func:`variant_name`).
    """

    dataset: str
    arch: str
    seed: int
    regime: str = "full"
    variant: str = BASE_VARIANT

    @property
    def path(self) -> str:
        """Relative folder of the run under ``results/runs`` (:data:`RUN_FOLDER`)."""
        return RUN_FOLDER.format(**self.keys)

    @property
    def keys(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "arch": self.arch, "variant": self.variant,
                "regime": self.regime, "seed": self.seed}
