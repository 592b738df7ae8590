"""Make a dataset: call its source, check what comes back, split it into train/test and
standardise it.

Simulated sets are generated from the run's seed and prepared once per seed; every other set
is the same for all seeds and prepared once (:func:`nnboundary.settings.grid.data_path`). The
train/test split uses a fixed seed (``split.seed``) so that it does not move with the run,
except for the torchvision sets, which keep their official train/test split. Every set is
standardised with the statistics of its train part only (per feature for vectors, per channel
for images).

Each built-in is declared once in :mod:`nnboundary.settings.catalog` (kind, settings, source);
its source is a function of :mod:`nnboundary.data.sources` with the contract of a user's own
source, ``function(seed=<int>, **settings) -> (X, y)``. A config's own datasets come from a
``module:function``, a ``file:….npz`` or a ``torchvision:NAME`` class (:func:`make_dataset`);
what they return is checked (:func:`check_arrays`) before it is split. The result is a
:class:`nnboundary.formats.dataset.Dataset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, SourceError
from ..formats.dataset import Dataset
from ..settings import catalog, schema
from ..settings.entries import DATASETS
from .torchvision_sets import load_torchvision


def load_npz(name: str, path: str | Path):
    """Arrays ``X`` and ``y`` of an ``.npz`` file, and ``X_test`` / ``y_test`` when it has them
    (then they are the test part, and the split does not apply)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError) as err:
        raise InputFileError(f"dataset {name}: cannot read {path} ({err})") from err
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise SourceError(f"dataset {name}: {path} has no array {missing[0]!r} "
                                  f"(it has {sorted(arrays)}); it needs X and y, and optionally "
                                  f"X_test and y_test")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise SourceError(f"dataset {name}: {path} has only one of X_test and y_test")
    return arrays


def check_arrays(where: str, X, y, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` as the pipeline needs them, else :class:`nnboundary.errors.SourceError`
    saying what was expected and what came back: X a real array of shape (n, d) or
    (n, C, H, W) with finite values, y integer labels of shape (n,), every one of 0..K−1
    present (K ≥ 2; with ``n_classes`` given, labels within 0..n_classes−1)."""
    expected = ("expected X a float array of shape (n, d) or (n, C, H, W) and y integer labels "
                "0..K-1 of shape (n,)")
    try:
        X, y = np.asarray(X), np.asarray(y)
    except Exception as err:
        raise SourceError(f"{where}: {expected}; could not make arrays of them "
                                  f"({type(err).__name__}: {err})") from err
    if X.dtype.kind not in "fiu" or X.ndim not in (2, 4):
        raise SourceError(f"{where}: {expected}; X has dtype {X.dtype} and shape "
                                  f"{X.shape}")
    if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(X):
        raise SourceError(f"{where}: {expected}; y has dtype {y.dtype} and shape "
                                  f"{y.shape} for X of shape {X.shape}")
    if not np.isfinite(X).all():
        raise SourceError(f"{where}: X has {int((~np.isfinite(X)).sum())} non-finite "
                                  f"values (NaN or inf)")
    present = np.unique(y)
    if n_classes is None:
        if len(present) < 2 or present[0] != 0 or present[-1] != len(present) - 1:
            raise SourceError(f"{where}: {expected}; the labels are "
                                      f"{present.tolist()[:20]}, not 0..K-1 with K >= 2")
    elif present.min() < 0 or present.max() >= n_classes:
        raise SourceError(f"{where}: test labels {present.tolist()[:20]} are not "
                                  f"within 0..{n_classes - 1}, the train labels' classes")
    return X.astype(np.float64), y.astype(np.int64)


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test row indices, stratified by class, from a fixed seed.

    Each class c with n_c rows gives round(test_fraction · n_c) rows (at least 1 when n_c > 1)
    to the test set, drawn by a permutation from ``seed``.
    """
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_test = round(test_fraction * len(rows))
        if len(rows) > 1:
            n_test = min(max(n_test, 1), len(rows) - 1)
        test.append(rows[:n_test])
    test_rows = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test_rows), test_rows


def standardise(X_train: np.ndarray, X_test: np.ndarray):
    """Subtract the train mean and divide by the train std (per feature, or per image channel)."""
    axes = (0,) if X_train.ndim == 2 else (0, 2, 3)
    mean = X_train.mean(axis=axes, keepdims=True)
    std = X_train.std(axis=axes, keepdims=True)
    std = np.where(std > 0, std, 1.0)  # constant features stay 0 instead of dividing by 0
    return (X_train - mean) / std, (X_test - mean) / std, mean.ravel(), std.ravel()


#: Settings of the split, not of the source.
SPLIT_KEYS = ("test_fraction", "seed")


def _source_of(name: str, settings: dict[str, Any]) -> tuple[str, bool, dict[str, Any]]:
    """(source, seeded, the arguments of the source) of dataset ``name``."""
    builtin = catalog.DATASETS.get(name)
    if builtin is not None:
        return builtin.source, builtin.seeded, {**builtin.fixed, **settings}
    if "source" in settings:
        arguments = dict(settings)
        return arguments.pop("source"), bool(arguments.pop("seeded", False)), arguments
    raise ValueError(f"unknown dataset {name!r}: not built in ({', '.join(DATASETS)}) and "
                     f"its settings have no source")


def _call_source(name: str, source: str, seed: int, arguments: dict[str, Any]):
    """(X, y, test part or None) of a source: a torchvision class (its official split), a
    ``file:`` (with its own test part when it has one) or a ``module:function``."""
    kind = catalog.source_kind(source)
    if kind == "torchvision":
        arguments = dict(arguments)
        classes = arguments.pop("classes")
        X_train, y_train, X_test, y_test = load_torchvision(
            name, source.removeprefix(catalog.TORCHVISION_PREFIX), classes,
            arguments.get("data_root", "data"), arguments.get("download", True))
        return X_train, y_train, (X_test, y_test)
    if kind == "file":
        arrays = load_npz(name, source.removeprefix(catalog.FILE_PREFIX))
        test_part = (arrays["X_test"], arrays["y_test"]) if "X_test" in arrays else None
        return arrays["X"], arrays["y"], test_part
    returned = catalog.resolve(source, f"dataset {name}")(seed=seed, **arguments)
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise SourceError(f"dataset {name} (source {source!r}): expected the function to "
                          f"return a tuple (X, y), got {type(returned).__name__}")
    return returned[0], returned[1], None


def _train_test(where: str, X, y, test_part, split: dict[str, Any]):
    """(X_train, y_train, X_test, y_test): the source's own test part, checked against the train
    part, or a stratified split with ``split``'s fraction and seed."""
    X, y = check_arrays(where, X, y)
    if test_part is None:
        train, test = stratified_split(y, split["test_fraction"], split["seed"])
        return X[train], y[train], X[test], y[test]
    X_test, y_test = check_arrays(f"{where}, test part", *test_part, n_classes=int(y.max()) + 1)
    if X_test.shape[1:] != X.shape[1:]:
        raise SourceError(f"{where}: the test part's X has shape {X_test.shape}, the train "
                          f"part's {X.shape}")
    return X, y, X_test, y_test


def make_dataset(name: str, seed: int | None, settings: dict[str, Any]) -> Dataset:
    """Make, split and standardise dataset ``name``, built in or the user's own (``settings``
    holds a user entry's ``source`` and ``seeded``, as
    :func:`nnboundary.settings.layers.dataset_settings` gives them).

    A ``module:function`` source is called as ``function(seed=<int>, **settings)`` with the
    run's ``seed`` for a seeded set and ``split.seed`` otherwise; a ``file:`` source is read
    (:func:`load_npz`); a ``torchvision:`` source keeps its official split. What comes back is
    checked (:func:`check_arrays`), split with ``split.seed`` (unless it brought its own test
    part) and standardised with train statistics.
    """
    settings = dict(settings)
    source, seeded, arguments = _source_of(name, settings)
    if seeded and seed is None:
        raise ValueError(f"dataset {name} is generated from the run's seed; give a seed")
    split = {**schema.defaults("split"),
             **{key: arguments.pop(key) for key in SPLIT_KEYS if key in arguments}}
    classes = arguments.get("classes")
    X, y, test_part = _call_source(name, source, int(seed) if seeded else int(split["seed"]),
                                   arguments)
    X_train, y_train, X_test, y_test = _train_test(f"dataset {name} (source {source!r})", X, y,
                                                   test_part, split)
    n_classes = int(y_train.max()) + 1
    X_train, X_test, mean, std = standardise(X_train, X_test)
    meta = {
        "dataset": name,
        **({"seed": int(seed)} if seeded else {}),
        "n_classes": n_classes,
        "classes": list(classes) if classes is not None else list(range(n_classes)),
        "input_shape": list(X_train.shape[1:]),
        "n_train": len(X_train),
        "n_test": len(X_test),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "settings": settings,
    }
    return Dataset(name, X_train.astype(np.float32), y_train.astype(np.int64),
                   X_test.astype(np.float32), y_test.astype(np.int64), meta)
