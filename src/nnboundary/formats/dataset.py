"""The prepared dataset: one ``.npz`` file per set (or per seed of a seeded set).

Arrays ``X_train``, ``y_train``, ``X_test``, ``y_test`` (X float32, standardised; y int64
labels 0..K−1) and a JSON ``meta`` entry: dataset, seed (seeded sets only), n_classes, classes,
input_shape, n_train, n_test, the standardisation statistics and the settings it was made
with. Written by :func:`save_dataset` (atomically), read by :func:`load_dataset`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from .atomic import write_bytes_with


@dataclass
class Dataset:
    """A prepared dataset: arrays plus what later stages need to know about them."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    meta: dict[str, Any]

    @property
    def n_classes(self) -> int:
        return int(self.meta["n_classes"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])


def save_dataset(path: str | Path, data: Dataset) -> None:
    write_bytes_with(path, lambda handle: np.savez(
        handle, X_train=data.X_train, y_train=data.y_train, X_test=data.X_test,
        y_test=data.y_test, meta=np.array(json.dumps(data.meta))))


def load_datasets(paths) -> dict[str, Dataset]:
    """Each distinct prepared file of ``paths`` loaded once, by path (a stage job covering several
    seeds of a set prepared once gets the same file for every seed)."""
    return {path: load_dataset(path) for path in dict.fromkeys(paths)}


def load_dataset(path: str | Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            return Dataset(
                meta["dataset"], f["X_train"], f["y_train"], f["X_test"], f["y_test"], meta
            )
    except (OSError, ValueError, KeyError) as err:
        raise InputFileError(
            f"prepared dataset {path} is missing or corrupt ({err}); rerun the prepare step "
            f"(snakemake --forcerun {path})"
        ) from err
