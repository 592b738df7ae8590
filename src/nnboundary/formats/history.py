"""The per-epoch table of a training loop (``history.tsv``), tab-separated, one row per accepted
epoch, columns :data:`HISTORY_COLUMNS`:

``epoch``; ``step`` (optimizer steps so far); ``loss`` (the configured loss, the mean over the
epoch's batches weighted by batch size, before each step); ``end_loss`` (the train loss after the
epoch, measured by the ``loss_scaled`` schedule, else empty/NaN); ``train_acc`` (share of train
samples classified correctly during the epoch); ``lr`` (the step used); ``backtracks`` (epochs
undone and redone before this one was accepted); ``seconds`` since the start; ``stop`` (on the
last row, why the loop stopped: :data:`nnboundary.training.loop.STOP_REASONS`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from ..errors import InputFileError
from .atomic import write_text


class Epoch(NamedTuple):
    """One row of the history; the first four fields keep their old places."""

    epoch: int
    loss: float  # mean over the epoch's batches of the loss before each step
    train_acc: float  # share of train samples classified correctly during the epoch
    seconds: float  # since the start of training
    step: int = 0  # optimizer steps after this epoch
    end_loss: float = float("nan")  # the train loss after the epoch (loss_scaled: measured)
    lr: float = float("nan")  # the step size of the epoch
    backtracks: int = 0  # epochs undone and redone before this one was accepted
    stop: str = ""  # on the last row: why the loop stopped


HISTORY_COLUMNS = ("epoch", "step", "loss", "end_loss", "train_acc", "lr", "backtracks",
                   "seconds", "stop")


def write_history(path: str | Path, history: list) -> None:
    """The table of :class:`Epoch` rows (or the plain tuples a checkpoint file holds),
    atomically."""
    lines = ["\t".join(HISTORY_COLUMNS)]
    for row in map(lambda r: Epoch(*r), history):
        lines.append(f"{row.epoch}\t{row.step}\t{row.loss:.9e}\t{row.end_loss:.9e}\t"
                     f"{row.train_acc:.6f}\t{row.lr:.9e}\t{row.backtracks}\t"
                     f"{row.seconds:.3f}\t{row.stop}")
    write_text(path, "\n".join(lines) + "\n")


def read_history(path: str | Path) -> list[Epoch]:
    """The rows of a table written by :func:`write_history`."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as err:
        raise InputFileError(f"cannot read history file {path}: {err}") from err
    if rows and list(rows[0]) != list(HISTORY_COLUMNS):
        raise InputFileError(f"{path} is not a history file: its columns are {list(rows[0])}, "
                             f"expected {list(HISTORY_COLUMNS)}")
    return [Epoch(int(r["epoch"]), float(r["loss"]), float(r["train_acc"]), float(r["seconds"]),
                  int(r["step"]), float(r["end_loss"]), float(r["lr"]), int(r["backtracks"]),
                  r["stop"] or "") for r in rows]
