"""Reading metrics tables: the run keys of a table (a table written without ``variant`` or
``regime`` is a whole-network, base run), the row that summarises each fit, and a run's final
checkpoint. Every table, document and figure of the grid reads the metrics this way.
"""

from __future__ import annotations

import pandas as pd

from ..measures.validity import with_validity
from ..settings.keys import BASE_VARIANT, REGIMES, RUN_KEYS

#: Schemes that summarise a fit, by preference: binary, else the Crammer–Singer ``mean`` row,
#: else the one-vs-rest ``mean`` row.
SCHEME_PREFERENCE = {"binary": 0, "crammer_singer": 1, "ovr": 2}


def with_run_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``variant`` and ``regime`` columns: missing ones are inserted right after
    ``arch`` as "base" and "full", missing values (a table concatenated with an older one) are
    filled the same way. Returns a copy; the input is not changed."""
    frame = frame.copy()
    defaults = {"variant": BASE_VARIANT, "regime": REGIMES[0]}  # in RUN_KEYS order
    where = frame.columns.get_loc("arch") + 1 if "arch" in frame.columns else len(frame.columns)
    for name, value in defaults.items():
        if name in frame.columns:
            frame[name] = frame[name].fillna(value).astype(str)
        else:
            frame.insert(min(where, len(frame.columns)), name, value)
            where += 1
    return frame


def overall_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that summarise each fit of each run (every epoch): the ``binary`` scheme's only
    pair for K = 2; for K > 2 the ``mean`` row over class pairs of ``crammer_singer`` (of
    ``ovr`` for a run and target without a crammer_singer fit). Adds the run keys
    (:func:`with_run_keys`)."""
    frame = with_run_keys(frame)
    if frame.empty:
        return frame
    candidates = frame[(frame["scheme"] == "binary") | (frame["pair"] == "mean")]
    rank = candidates["scheme"].map(SCHEME_PREFERENCE).fillna(len(SCHEME_PREFERENCE))
    keys = [candidates[k] for k in (*RUN_KEYS, "target")]
    best = rank.groupby(keys, dropna=False, sort=False).transform("min")
    return candidates[rank == best]


def last_epoch(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of every run's last checkpoint."""
    if frame.empty:
        return frame
    last = frame.groupby(list(RUN_KEYS), dropna=False)["epoch"].transform("max")
    return frame[frame["epoch"] == last]


def final_overall_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The row summarising each fit (:func:`overall_rows`) at the last epoch of each run, with
    ``valid`` and ``invalid_reason``."""
    return last_epoch(overall_rows(with_validity(metrics)))


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run, one summary row per target and scheme (binary: the
    only pair; multi-class: the ``mean`` row of every scheme), with ``valid`` and
    ``invalid_reason``."""
    final = last_epoch(with_validity(with_run_keys(metrics)))
    return final[(final["scheme"] == "binary") | (final["pair"] == "mean")]
