"""Numbers in the documents: one way to print a value, a median with its quartiles, and the
statistics a table's record holds for a column."""

from __future__ import annotations

import pandas as pd

from . import stats


def number(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits; a dash for NaN."""
    return "–" if pd.isna(value) else f"{value:.{digits}g}"


def median_iqr(row: pd.Series, prefix: str, unit: str = "") -> str:
    """``median [q25, q75]`` of the ``<prefix>_median`` / ``_q25`` / ``_q75`` columns of a row;
    a dash without a median."""
    if pd.isna(row[f"{prefix}_median"]):
        return "–"
    return (f"{number(row[f'{prefix}_median'])}{unit} [{number(row[f'{prefix}_q25'], 2)}, "
            f"{number(row[f'{prefix}_q75'], 2)}]")


def put_stats(record: dict, prefix: str, values,
              parts=("mean", "sd", "median", "q25", "q75")) -> None:
    """``record[<prefix>_<part>]`` for each of ``parts`` of :func:`stats.describe` of
    ``values``."""
    summary = stats.describe(values)
    for part in parts:
        record[f"{prefix}_{part}"] = summary[part]
