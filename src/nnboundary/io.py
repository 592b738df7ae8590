"""Files are the interface between stages: atomic writers and the feature-file format.

Every writer here writes to a temporary file in the destination folder and renames it into place,
so a killed job never leaves a half-written file that a later step could take as a result.

Feature files (one per checkpoint) are Parquet tables with one row per sample and the columns
``split`` (``train``/``test``), ``index`` (position within its split), ``label``,
``h_0 … h_{d-1}`` (bottleneck output, after its activation), ``logit_0 … logit_{K-1}`` and
``pred`` (argmax of the logits). The schema metadata holds the run keys (``dataset``, ``arch``,
``variant``, ``regime``, ``seed``, ``epoch``), the settings the run trained with as JSON under
``training`` (:func:`nnboundary.train.training_record`) and the last layer as JSON under
``last_layer``: ``{"W": [[…]], "b": […]}``
with ``W`` of shape K×d, so that ``logits = h @ W.T + b`` can be recomputed from the file alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class InputFileError(RuntimeError):
    """An input file is missing, truncated or not what the step expects."""


def _ordinary_permissions(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create owner-only entries; give ``path`` the permissions an ordinary
    file (0666) or folder (0777) gets, less the umask, so others on a shared machine can read
    the results."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _ordinary_permissions(tmp_path, 0o666)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` (replacing an old one)
    only if the block succeeds, so a killed job never leaves a half-filled output folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _ordinary_permissions(tmp, 0o777)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputFileError(f"cannot read JSON file {path}: {err}") from err


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_table(path: str | os.PathLike, frame, metadata: dict[str, str] | None = None) -> None:
    """Write a pandas DataFrame to Parquet in one batch, atomically, with optional schema metadata."""
    import pyarrow as pa

    write_arrow(path, pa.Table.from_pandas(frame, preserve_index=False), metadata)


def write_arrow(path: str | os.PathLike, table, metadata: dict[str, str] | None = None) -> None:
    """Write a pyarrow Table to Parquet atomically, ``metadata`` added to its schema's."""
    import pyarrow.parquet as pq

    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike):
    """Read a Parquet file into a DataFrame, with a clear error if it is missing or corrupt."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except (OSError, ValueError) as err:
        raise InputFileError(f"cannot read Parquet file {path}: {err}") from err


# --------------------------------------------------------------------------------------------
# Feature files
# --------------------------------------------------------------------------------------------

FEATURE_FILE_PATTERN = re.compile(r"epoch(\d+)\.parquet$")


def feature_file_name(epoch: int) -> str:
    return f"epoch{epoch:06d}.parquet"


@dataclass
class FeatureSet:
    """The content of one feature file, as arrays."""

    keys: dict[str, Any]  # dataset, arch, seed, epoch (+ n_classes, feature_dim)
    W: np.ndarray  # (K, d) last layer weights
    b: np.ndarray  # (K,) last layer bias
    split: np.ndarray  # (n,) "train"/"test"
    index: np.ndarray  # (n,)
    label: np.ndarray  # (n,)
    h: np.ndarray  # (n, d) float64
    logits: np.ndarray  # (n, K) float64
    pred: np.ndarray  # (n,)

    @property
    def epoch(self) -> int:
        return int(self.keys["epoch"])

    @property
    def n_classes(self) -> int:
        return int(self.W.shape[0])

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of one split (``train`` or ``test``), in index order."""
        mask = self.split == split
        return self.h[mask], self.label[mask]

    def logits_of(self, split: str) -> np.ndarray:
        return self.logits[self.split == split]


def write_features(
    path: str | os.PathLike,
    keys: dict[str, Any],
    W: np.ndarray,
    b: np.ndarray,
    parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    """Write one checkpoint's features: ``parts`` maps split -> (labels, h, logits). Written
    with pyarrow alone (no pandas: the stages that only move features start faster)."""
    import pyarrow as pa

    columns: dict[str, list] = {}
    for split, (labels, h, logits) in parts.items():
        n = len(labels)
        # float64 networks keep float64 features: the terminal phase lives in small numbers.
        kind = np.float64 if np.asarray(h).dtype == np.float64 else np.float32
        pieces = {"split": np.full(n, split),  # fixed-width unicode: pyarrow converts it in C
                  "index": np.arange(n, dtype=np.int64),
                  "label": np.asarray(labels, dtype=np.int64)}
        for j in range(h.shape[1]):
            pieces[f"h_{j}"] = np.asarray(h[:, j], dtype=kind)
        for k in range(logits.shape[1]):
            pieces[f"logit_{k}"] = np.asarray(logits[:, k], dtype=kind)
        pieces["pred"] = np.asarray(np.asarray(logits).argmax(axis=1), dtype=np.int64)
        for name, values in pieces.items():
            columns.setdefault(name, []).append(values)
    arrays = {name: pa.array(np.concatenate(values), type=pa.string() if name == "split" else None)
              for name, values in columns.items()}
    metadata = {str(k): str(v) for k, v in keys.items()}
    metadata["last_layer"] = json.dumps({"W": np.asarray(W).tolist(), "b": np.asarray(b).tolist()})
    write_arrow(path, pa.table(arrays), metadata)


def read_features(path: str | os.PathLike) -> FeatureSet:
    """Read a feature file written by :func:`write_features`."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        raise InputFileError(
            f"feature file {path} is missing or corrupt ({err}); rerun the step that writes it "
            f"(snakemake --forcerun {Path(path).parent})"
        ) from err
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "last_layer" not in meta:
        raise InputFileError(f"feature file {path} has no 'last_layer' metadata: not a feature file")
    layer = json.loads(meta.pop("last_layer"))
    meta.pop("pandas", None)
    names = table.column_names
    h_cols = sorted((c for c in names if c.startswith("h_")), key=lambda c: int(c[2:]))
    logit_cols = sorted((c for c in names if c.startswith("logit_")), key=lambda c: int(c[6:]))

    def column(name: str, dtype=None) -> np.ndarray:
        values = table.column(name).to_numpy(zero_copy_only=False)
        return values if dtype is None else values.astype(dtype)

    def matrix(cols: list[str]) -> np.ndarray:
        if not cols:
            return np.zeros((table.num_rows, 0))
        return np.column_stack([column(c, np.float64) for c in cols])
    keys: dict[str, Any] = dict(meta)
    for name in ("seed", "epoch", "n_classes", "feature_dim"):
        if name in keys:
            keys[name] = int(keys[name])
    for name in ("bn_feature_shift", "amp_feature_shift"):
        if name in keys:
            keys[name] = float(keys[name])
    if "training" in keys:
        keys["training"] = json.loads(keys["training"])
    return FeatureSet(
        keys=keys,
        W=np.asarray(layer["W"], dtype=np.float64),
        b=np.asarray(layer["b"], dtype=np.float64),
        split=column("split", object),
        index=column("index"),
        label=column("label"),
        h=matrix(h_cols),
        logits=matrix(logit_cols),
        pred=column("pred"),
    )


def list_feature_files(folder: str | os.PathLike) -> list[Path]:
    """The feature files of one run, sorted by epoch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"feature folder {folder} does not exist; run the features step first")
    files = [p for p in folder.iterdir() if FEATURE_FILE_PATTERN.search(p.name)]
    if not files:
        raise InputFileError(f"feature folder {folder} holds no epoch*.parquet files")
    return sorted(files, key=lambda p: int(FEATURE_FILE_PATTERN.search(p.name).group(1)))
