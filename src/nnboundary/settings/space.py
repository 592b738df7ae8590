"""What a grid writes, estimated before any job runs, against the free space where it goes.

A run writes its checkpoint file (every kept epoch's weights), one feature file per checkpoint
(every sample's bottleneck output and logits), the SVM fits, the history (a row per epoch) and
small tables; the grid adds the prepared datasets, the figures and the logs. The estimate
counts each with the settings the run will train with, on the high side (the checkpoints
kept are ``n_checkpoints`` plus one per loss milestone), as two numbers: without the
histories, whose length a stopping loss decides, and with every run's history at its epoch
cap. The sizes of a config's own datasets and the weights of networks other than the built-in
``mlp`` are not known before they run: the estimate leaves them out and says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..formats.atomic import free_bytes, human_bytes
from . import catalog
from .grid import runs
from .keys import RESULTS
from .layers import arch_settings, dataset_settings, raw_retrain_settings, train_settings

#: Bytes per sample of a feature file beside its float64 h and logits: split, index, label,
#: prediction, as Parquet stores them.
FEATURE_ROW_BYTES = 4
#: Bytes per SVM fit in svm.json (its weights, support indices and solver record).
SVM_FIT_BYTES = 15_000
#: Bytes per history row (one epoch).
HISTORY_ROW_BYTES = 80
#: A run's metrics and neural-collapse tables and its run figure, together.
RUN_TABLES_BYTES = 150_000
#: A dataset × arch × variant's convergence figure, and the grid's tables and figures.
CELL_FIGURE_BYTES = 700_000
GRID_TABLES_BYTES = 5_000_000


def _mlp_parameters(settings: dict, inputs: int, classes: int) -> int:
    """The built-in MLP's parameters (weights and biases)."""
    widths = [inputs] + ([int(settings["hidden"])] if int(settings.get("hidden") or 0) else [])
    if settings.get("bottleneck") is not None:
        widths.append(int(settings["bottleneck"]))
    widths.append(classes)
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def _run_bytes(config: dict, run) -> tuple[int, int] | None:
    """About what one run writes without its history, and its history at the epoch cap; None
    where its dataset's size is not known."""
    entry = catalog.DATASETS.get(run.dataset)
    if entry is None:
        return None
    samples, inputs, classes = entry.size
    if samples is None:
        samples = int(dataset_settings(config, run.dataset).get("n_samples", 0))
    arch = arch_settings(config, run.arch, run.variant, run.dataset)
    train = train_settings(config, run.dataset, run.arch, run.variant)
    settings = train if run.regime == "full" else raw_retrain_settings(
        config, run.dataset, run.arch, run.variant)
    kept = min(int(settings["epochs"]), int(settings["n_checkpoints"])
               + len(settings.get("loss_milestones") or []))
    width = 8 if settings.get("dtype") == "float64" else 4
    d = arch.get("bottleneck") or arch.get("hidden") or 2
    features = kept * samples * (width * (int(d) + classes) + FEATURE_ROW_BYTES)
    weights = 0
    if run.arch == "mlp":
        weights = _mlp_parameters(arch, inputs, classes) * 8
        weights *= kept if run.regime == "full" else 1
    schemes = 1 if classes == 2 else len(config.get("svm", {}).get("multiclass", [1, 2]))
    return (features + weights + kept * 3 * schemes * SVM_FIT_BYTES + RUN_TABLES_BYTES,
            int(settings["epochs"]) * HISTORY_ROW_BYTES)


def output_estimate(config: dict) -> tuple[int, int, list[str]]:
    """About how many bytes the grid writes under ``results/``: (without the histories, with
    every history at its epoch cap, what the estimate leaves out)."""
    total, histories, left_out, cells = GRID_TABLES_BYTES, 0, set(), set()
    for run in runs(config):
        size = _run_bytes(config, run)
        if size is None:
            left_out.add(f"dataset {run.dataset} (its size is known once it is prepared)")
            continue
        total, histories = total + size[0], histories + size[1]
        cells.add((run.dataset, run.arch, run.variant))
        if run.arch != "mlp":
            left_out.add(f"the checkpoints of arch {run.arch}")
    for dataset in {run.dataset for run in runs(config)}:
        entry = catalog.DATASETS.get(dataset)
        if entry is not None:
            samples = entry.size[0] or int(dataset_settings(config, dataset).get("n_samples", 0))
            copies = len(config["grid"]["seeds"]) if entry.seeded else 1
            total += copies * samples * (4 * entry.size[1] + 8)
    total += len(cells) * CELL_FIGURE_BYTES
    return total, total + histories, sorted(left_out)


def _written(folder: Path) -> int:
    """Bytes already under ``folder`` (finished outputs are not written again)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def space_report(config: dict, folder: str | os.PathLike = RESULTS) -> tuple[str, bool]:
    """(a line on what the grid writes and the room for it, whether that room is too small):
    the estimate (:func:`output_estimate`) less what ``folder`` already holds, against the free
    space of its file system. Too small: less free than the estimate without the histories."""
    low, high, left_out = output_estimate(config)
    folder = Path(folder)
    written = _written(folder) if folder.is_dir() else 0
    need, most = max(0, low - written), max(0, high - written)
    free = free_bytes(folder)
    line = (f"the grid writes about {human_bytes(low)} under {folder}/, up to "
            f"{human_bytes(high)} if every run trains to its epoch cap ({human_bytes(need)} to "
            f"{human_bytes(most)} still to write; {human_bytes(free)} free there)")
    if left_out:
        line += "; not counted: " + ", ".join(left_out)
    short = free is not None and free < need
    if short:
        line += (". Too little room: free space there, or run in a folder on a larger disk "
                 "(snakemake --directory), before the grid starts; a full disk stops its jobs")
    elif free is not None and free < most:
        line += ". That may run short if the runs train to their epoch caps"
    return line, short
