"""The torchvision sets: the official train and test files of a ``torchvision.datasets`` class,
read from ``data_root``.

``mnist01`` / ``mnist012`` (K=2/3: MNIST classes 0/1 and 0/1/2, 1×28×28), ``fashion01`` (K=2:
Fashion-MNIST class 0, T-shirt/top, vs 1, trouser, 1×28×28), ``cifar10_0v2`` (K=2: CIFAR-10 class
0, airplane, vs 2, bird, 3×32×32), and a config's own ``torchvision:NAME`` sources. With
``download`` on, torchvision fetches missing files first. Pixel values are the raw bytes (0–255)
before standardisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetNotAvailable, SourceError
from .sources import relabel


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
    raise SourceError(
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
        raise SourceError(f"dataset {name}: torchvision.datasets has no class "
                                  f"{class_name!r}")
    if not download and _files_present(class_name, data_root) is False:
        raise DatasetNotAvailable(
            _not_available(name, class_name, data_root, f"download is off (datasets/{name}/"
                           f"download: false) and files are missing in data_root {data_root!r}")
        )
    try:
        parts = [_torchvision_part(cls, str(data_root), train, download and train)
                 for train in (True, False)]
    except SourceError:
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
            raise SourceError(
                f"dataset {name}: torchvision.datasets.{class_name} has no class {absent} "
                f"(its labels are {sorted(np.unique(y).tolist())})")
        arrays += [X[rows].astype(np.float64), relabel(y[rows], classes)]
    return tuple(arrays)
