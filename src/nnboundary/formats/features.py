"""Feature files: one Parquet table per checkpoint, the last hidden layer of every sample.

One row per sample with the columns ``split`` (``train``/``test``), ``index`` (position within
its split), ``label``, ``h_0 … h_{d-1}`` (bottleneck output, after its activation),
``logit_0 … logit_{K-1}`` and ``pred`` (argmax of the logits). The schema metadata holds the run
keys (``dataset``, ``arch``, ``variant``, ``regime``, ``seed``, ``epoch``), the settings the run
trained with as JSON under ``training`` (:func:`nnboundary.training.train.training_record`) and
the last layer as JSON under ``last_layer``: ``{"W": [[…]], "b": […]}`` with ``W`` of shape
K×d, so that ``logits = h @ W.T + b`` can be recomputed from the file alone. Written in one
batch, atomically (:func:`write_features`); read by :func:`read_features`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..settings.keys import BASE_VARIANT, REGIMES
from .tables import write_arrow


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

    @property
    def row_keys(self) -> dict[str, Any]:
        """The run keys, epoch and optimizer step of this checkpoint (:func:`row_keys_of`)."""
        return row_keys_of(self.keys, self.epoch)

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of one split (``train`` or ``test``), in index order."""
        mask = self.split == split
        return self.h[mask], self.label[mask]

    def logits_of(self, split: str) -> np.ndarray:
        return self.logits[self.split == split]


def row_keys_of(keys: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The run keys, epoch and optimizer step of a checkpoint as the columns of a table's rows,
    from a feature file's metadata; keys it does not hold: dataset and arch ``""``, variant
    ``base``, regime ``full``, seed −1, step −1."""
    steps = int((keys.get("training") or {}).get("steps_per_epoch", -1))
    return {"dataset": str(keys.get("dataset", "")), "arch": str(keys.get("arch", "")),
            "variant": str(keys.get("variant", BASE_VARIANT)),
            "regime": str(keys.get("regime", REGIMES[0])), "seed": int(keys.get("seed", -1)),
            "epoch": int(epoch), "step": int(epoch) * steps if steps > 0 else -1}


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
