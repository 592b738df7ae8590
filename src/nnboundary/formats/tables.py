"""Tables and JSON between stages: Parquet written in one batch, CSV and JSON, each atomically
(:mod:`nnboundary.formats.atomic`), and read back with an error that names the file and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from .atomic import atomic_path, write_text


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (numpy arrays and scalars as lists and
    numbers)."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=False, default=_json_default) + "\n")


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


def plain(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers and non-finite floats None (JSON)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(value)
    return value


def finite_or_none(value: float) -> float | None:
    # Strict JSON has no NaN/inf; None marks "undefined" (e.g. no constraint at all).
    value = float(value)
    return value if np.isfinite(value) else None


def write_csv(path: str | os.PathLike, table) -> None:
    """A pandas DataFrame as CSV, numbers with 6 significant digits, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


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
