"""Checkpoint files read without PyTorch: what ``torch.save`` wrote, tensors as numpy arrays.

The stages that only *read* a network (``features`` and the 2-D sets' ``run`` figure) would
otherwise import torch for it, 2.3–2.6 s of CPU per job before any work: a third of a feature
dump's whole job on the default grid.

:func:`load` reads what ``torch.save`` wrote (a zip archive: ``data.pkl``, a pickle whose
tensors point at raw storages ``data/<key>``, and ``byteorder``) and allows exactly what the
train and retrain stages store and ``torch.load(weights_only=True)`` accepts of it: plain
containers, numbers, strings, ``OrderedDict`` and dense tensors, each returned as a numpy array
(views of one storage share it, as in torch). Any other class in the pickle raises
:class:`Unsupported` (the caller then loads the file with torch,
:func:`nnboundary.formats.checkpoint.load_checkpoints`), so nothing in a file can run code here.
"""

from __future__ import annotations

import collections
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError


class Unsupported(ValueError):
    """The file holds something this reader does not rebuild (load it with torch instead)."""


#: torch's storage classes as they are named in a pickle, and their numpy dtypes.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2: a strided view of ``storage`` from element ``offset``."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if math.prod(size) == 0:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= storage.size:
        raise Unsupported(f"a tensor reaches past its storage ({storage.size} elements)")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * storage.itemsize for s in stride))
    return np.array(view)  # its own, writable, contiguous copy


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self._archive, self._prefix, self._order = archive, prefix, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise Unsupported(f"the file holds a {module}.{name}, which only torch rebuilds")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise Unsupported(f"unknown storage record {pid!r:.80}")
        dtype, key = pid[1].dtype, str(pid[2])
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            order = "<" if self._order == "little" else ">"
            self._storages[key] = np.frombuffer(raw, dtype=dtype.newbyteorder(order)).astype(
                dtype, copy=False)
        return self._storages[key]


def load(path: str | Path) -> Any:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays.

    Raises :class:`Unsupported` for content only torch rebuilds and
    :class:`nnboundary.errors.InputFileError` for a missing, truncated or foreign file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")
                       and n.count("/") == 1]
            if len(pickles) != 1:
                raise ValueError("no data.pkl in the archive: not a torch.save file")
            prefix = pickles[0][:-len("data.pkl")]
            names = set(archive.namelist())
            byteorder = (archive.read(prefix + "byteorder").decode()
                         if prefix + "byteorder" in names else "little")
            if byteorder not in ("little", "big"):
                raise ValueError(f"byteorder {byteorder!r}")
            with archive.open(pickles[0]) as handle:
                return _Unpickler(handle, archive, prefix, byteorder).load()
    except Unsupported:
        raise
    except Exception as err:  # zipfile, pickle and numpy raise many kinds for a damaged file
        raise corrupt_checkpoint(path, err) from err


def corrupt_checkpoint(path: str | Path, err: Exception) -> InputFileError:
    """The error for a checkpoint file that is missing, truncated or foreign, read here or by
    torch (:func:`nnboundary.formats.checkpoint.load_checkpoints`): the file, the cause and the fix."""
    return InputFileError(
        f"checkpoint file {path} is missing or corrupt ({type(err).__name__}: {err}); rerun "
        f"the step that writes it (snakemake --forcerun {path})"
    )
