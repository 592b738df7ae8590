"""Bias against generalisation: does a better-placed bias go with a lower test error?

The paper calls the last layer's bias "important for generalization". This table puts the
network's test error and test loss beside its bias at every depth (:mod:`nnboundary.reporting.claims`,
:func:`~nnboundary.reporting.claims.depths`: each run's first checkpoint below each loss milestone,
and its final one), over the valid seeds of each dataset × arch × variant × regime
(:mod:`nnboundary.measures.validity`).

:func:`generalisation_table` (``generalisation.csv``), one row per cell × depth:

- ``n_seeds``, ``n_valid``: the cell's runs at that depth, and the valid ones;
- ``test_error_median`` / ``_q25`` / ``_q75`` (test error = 1 − test accuracy),
  ``test_error_max``, ``seeds_test_error`` (valid seeds with a test error above 0),
  ``test_loss_median`` / ``_q25`` / ``_q75`` (mean cross-entropy on the test set);
- ``bias_gap_svc_abs_median``: |bias gap to the svc SVM| on the train features (the paper's
  "bias": :mod:`nnboundary.reporting.findings`), and ``test_bias_gap_abs_median`` with
  ``n_test_gap``: the network's bias gap on the test features, where its boundary sits
  between the test classes (:func:`nnboundary.measures.geometry.separated_bias_gap`), over the
  seeds whose test classes do not overlap along the normal (NaN elsewhere: the quantity does
  not exist);
- across the valid seeds, the Spearman rank correlation ρ of ``bias_gap_svc_abs`` with the
  test error (``spearman_error_rho``, ``spearman_error_p``) and with the test loss
  (``spearman_loss_rho``, ``spearman_loss_p``), and the same as text (``spearman_error``,
  ``spearman_loss``): ``undefined`` where either variable is constant over the seeds or fewer
  than :data:`MIN_SPEARMAN` seeds are valid (ρ and p NaN there: no rank order to correlate);
- the regimes paired per seed at equal train loss (the same on both regimes' rows of an
  experiment × depth; :func:`nnboundary.reporting.claims.paired_count`): the seeds where the whole
  network's test error is lower than the retrained layer's (``whole_lower_error_k`` of
  ``whole_lower_error_n`` seeds whose two errors differ, ``whole_lower_error_p``, two-sided sign
  test, ``whole_lower_error_verdict``: holds = the whole network generalises better, fails = the
  retrained layer does), and the same for the test loss (``whole_lower_loss_*``).

No torch: the aggregate step builds it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..settings.keys import CELL_KEYS, EXPERIMENT_KEYS, FULL, RETRAIN_LAST, regime_sort_key
from . import document, stats
from .claims import BIAS, depths, depths_order, paired_count
from .depth import DEFAULT_MILESTONES
from .text import median_iqr, number

#: The fewest valid seeds a Spearman correlation is computed on.
MIN_SPEARMAN = 3
UNDEFINED = "undefined"


def spearman(x, y) -> tuple[float, float, str]:
    """(ρ, p, text) of the Spearman rank correlation of the paired finite values of x and y,
    average ranks for ties, two-sided p from Student's t with n − 2 degrees of freedom
    (scipy.stats.spearmanr). NaN and "undefined: …" where either is constant or
    fewer than :data:`MIN_SPEARMAN` pairs are finite."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    nan = float("nan")
    if x.size < MIN_SPEARMAN:
        return nan, nan, f"{UNDEFINED}: {x.size} seeds"
    for values, name in ((y, "test value"), (x, "bias")):
        if np.all(values == values[0]):
            return nan, nan, f"{UNDEFINED}: {name} constant over {x.size} seeds"
    result = scipy_stats.spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    return rho, p, f"ρ = {rho:.2f}, p = {p:.2g} ({x.size} seeds)"


def _with_error(seeds: pd.DataFrame) -> pd.DataFrame:
    return seeds.assign(test_error=1.0 - seeds["test_acc"].astype(float))


def _paired(experiment: pd.DataFrame) -> dict:
    """The regime comparison of one experiment × depth (module docstring)."""
    full = experiment[(experiment["regime"] == FULL) & experiment["valid"].astype(bool)]
    retrained = experiment[(experiment["regime"] == RETRAIN_LAST)
                           & experiment["valid"].astype(bool)]
    out = {}
    for measure, name in (("test_error", "error"), ("test_loss", "loss")):
        count, _ = paired_count(full, retrained, measure)
        ran = (experiment["regime"] == RETRAIN_LAST).any() and (experiment["regime"] == FULL).any()
        out.update({f"whole_lower_{name}_k": count.k, f"whole_lower_{name}_n": count.n,
                    f"whole_lower_{name}_p": count.p if ran else np.nan,
                    f"whole_lower_{name}_verdict": count.verdict if ran else "not run"})
    return out


def _cell_record(cell: pd.DataFrame) -> dict:
    valid = cell[cell["valid"].astype(bool)]
    record = {"n_seeds": int(cell["seed"].nunique()), "n_valid": int(len(valid))}
    error = stats.describe(valid["test_error"])
    loss = stats.describe(valid["test_loss"])
    for part in ("median", "q25", "q75"):
        record[f"test_error_{part}"] = error[part]
        record[f"test_loss_{part}"] = loss[part]
    record["test_error_max"] = error["max"]
    record["seeds_test_error"] = int((valid["test_error"] > 0).sum())
    record["bias_gap_svc_abs_median"] = stats.describe(valid[BIAS])["median"]
    gaps = stats.describe(valid["test_bias_gap_abs"])
    record["test_bias_gap_abs_median"], record["n_test_gap"] = gaps["median"], gaps["n"]
    for measure, name in (("test_error", "error"), ("test_loss", "loss")):
        rho, p, text = spearman(valid[BIAS], valid[measure])
        record.update({f"spearman_{name}_rho": rho, f"spearman_{name}_p": p,
                       f"spearman_{name}": text})
    return record


def generalisation_table(metrics: pd.DataFrame, milestones=DEFAULT_MILESTONES) -> pd.DataFrame:
    """The table of the module docstring: cells sorted, depths shallowest first, then final."""
    records = []
    for label, seeds in depths(metrics, milestones):
        seeds = _with_error(seeds)
        for keys, experiment in seeds.groupby(list(EXPERIMENT_KEYS), sort=True):
            paired = _paired(experiment)
            for regime, cell in experiment.groupby("regime", sort=False):
                records.append({**dict(zip(EXPERIMENT_KEYS, keys)), "regime": regime,
                                "milestone": label, **_cell_record(cell), **paired})
    if not records:
        return pd.DataFrame()
    table = pd.DataFrame(records)
    order = {label: i for i, (label, _) in enumerate(depths_order(table["milestone"]))}
    table = table.assign(_regime=table["regime"].map(regime_sort_key),
                         _depth=table["milestone"].map(order))
    table = table.sort_values([*EXPERIMENT_KEYS, "_regime", "_depth"], kind="stable")
    return table.drop(columns=["_regime", "_depth"]).reset_index(drop=True)


CAPTION = (
    "Per cell and depth (each run's first checkpoint with train loss below the milestone, and "
    "its final one), over valid seeds: test error (1 − test accuracy) and test cross-entropy, "
    "median [q25, q75], and the seeds with a test error above 0; |bias gap to svc|: the "
    "paper's bias, on the train features (0: where the free-bias SVM puts it); test |bias "
    "gap|: where the boundary sits between the test classes (over the seeds whose test classes "
    "do not overlap along the normal). Spearman: rank correlation over seeds of |bias gap to "
    "svc| with test error and with test loss (undefined where one of them is constant). whole "
    "< retrained: per seed at equal train loss, seeds whose whole network has the lower test "
    "error / loss, k/n of the seeds where the two differ, two-sided sign test (holds: the "
    "whole network generalises better; fails: the retrained layer does).")


def _paired_cell(row: pd.Series, name: str) -> str:
    if row[f"whole_lower_{name}_verdict"] == "not run":
        return "not run"
    return (f"{int(row[f'whole_lower_{name}_k'])}/{int(row[f'whole_lower_{name}_n'])} "
            f"{row[f'whole_lower_{name}_verdict']} ({number(row[f'whole_lower_{name}_p'], 2)})")


def generalisation_document(table: pd.DataFrame) -> list[document.Block]:
    """generalisation.html: the table of the module docstring."""
    header = [*CELL_KEYS, "depth", "valid/seeds", "test error", "seeds with errors",
              "test loss", "|bias gap to svc|", "test |bias gap| (n)", "Spearman: error",
              "Spearman: loss", "whole < retrained: error", "whole < retrained: loss"]
    rows = [[*(str(row[c]) for c in CELL_KEYS), str(row["milestone"]),
             f"{int(row['n_valid'])}/{int(row['n_seeds'])}", median_iqr(row, "test_error"),
             str(int(row["seeds_test_error"])), median_iqr(row, "test_loss"),
             number(row["bias_gap_svc_abs_median"]),
             f"{number(row['test_bias_gap_abs_median'])} ({int(row['n_test_gap'])})",
             str(row["spearman_error"]), str(row["spearman_loss"]), _paired_cell(row, "error"),
             _paired_cell(row, "loss")] for _, row in table.iterrows()]
    return document.titled_table("Bias against generalisation", header, rows, CAPTION)
