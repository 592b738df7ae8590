"""Convergence rates of the last layer towards the SVM, in the style of Soudry et al. (JMLR 2018).

Soudry et al. show that gradient descent on separable data with an exponentially tailed loss
(logistic, cross-entropy) gives w(t) = ŵ·log t + ρ(t) with ρ(t) bounded, ŵ the hard-margin SVM
normal. Hence the *direction* converges only logarithmically: the angle θ(t) between w(t) and ŵ,
and the normalised margin gap, fall like 1/log t. They plot these gaps on log-log axes against
the iteration t. The gaps used here:

- angle gap      g_θ(t) = 1 − cos θ(t)        (:func:`angle_gap`; θ = ``angle_deg``)
- margin gap     g_γ(t) = 1 − γ_NN/γ_SVM      (:func:`margin_gap`; ratio = ``margin_ratio``)

t is the number of optimizer steps (the metrics table's ``step``: epoch × steps per epoch, so
mini-batch runs are not compressed by their epoch count), and only valid checkpoints
(:mod:`nnboundary.measures.validity`) enter a fit: a checkpoint where the network still misclassifies a
train point or the features are not separable has no max-margin target to converge to.

For a linear model on fixed features (``retrain_last``) the SVM is fixed and the 1/log t law is
the theory's. For ``full`` the features, and with them the SVM target, move with t: the fit is
then only a reference curve, not a test of the law.

Note: 1 − cos θ ≈ θ²/2 for small θ, so where θ falls like 1/log t the angle gap falls like
1/log² t; it is still monotone in θ and is what Soudry et al. draw. The table therefore also
fits θ itself (radians, :func:`angle_rad`) and the margin gap. A fit of g ≈ a + s/log t
(:func:`slope_vs_inverse_log`) then reads: a ≈ 0 and s > 0 for a gap still closing at the
logarithmic rate (s is the rate constant; a curve bending towards 1/log² t gives a smaller s
and a slightly negative a), a > 0 for a gap that levels off above 0 (not converging to that
target), s < 0 for a gap that grows.

:func:`convergence_table` applies the fit to every run of a metrics table (per target, both
gaps) and adds the mean over seeds. No torch: the aggregate stage builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..measures.validity import with_validity
from ..settings.keys import CELL_KEYS
from .tables import overall_rows

#: Only valid checkpoints with t ≥ MIN_STEP optimizer steps enter the fit: the 1/log t law is
#: asymptotic, and early steps (log t ≈ 0) would dominate it.
MIN_STEP = 10
#: A run is long enough for a fit with at least MIN_FIT_POINTS such checkpoints ...
MIN_FIT_POINTS = 4
#: ... and a last checkpoint at t ≥ MIN_LAST_STEP (1/log t spans 0.43 → 0.22 from 10 to 100).
MIN_LAST_STEP = 100

# --------------------------------------------------------------------------------------------
# Gaps and the 1/log t fit
# --------------------------------------------------------------------------------------------


def angle_gap(angle_deg: Any) -> Any:
    """1 − cos θ for θ in degrees (0 when aligned, 1 at 90°, 2 when opposite)."""
    return 1.0 - np.cos(np.radians(angle_deg))


def margin_gap(margin_ratio: Any) -> Any:
    """1 − γ_NN/γ_SVM: 0 at the SVM's margin; above 1 when the network's margin is negative (a
    training point misclassified); it may dip below 0 for a soft-margin fit on non-separable
    features, whose margin a network can exceed."""
    return 1.0 - np.asarray(margin_ratio, dtype=np.float64)


@dataclass(frozen=True)
class SlopeFit:
    """gap ≈ intercept + slope · (1/log t), least squares over ``n_points`` checkpoints."""

    slope: float
    intercept: float
    r2: float
    n_points: int


def slope_vs_inverse_log(steps: Any, gap: Any, keep: Any = None) -> SlopeFit | None:
    """Least-squares fit of gap(t) ≈ a + s · x with x = 1/log t (natural log, t in optimizer
    steps), over the checkpoints with t ≥ :data:`MIN_STEP`, a finite gap and ``keep`` (default:
    all; the table passes the checkpoints' validity).

    With x̄, ḡ the means: s = Σ(x − x̄)(g − ḡ) / Σ(x − x̄)², a = ḡ − s·x̄, and
    r² = 1 − Σ(g − a − s·x)² / Σ(g − ḡ)² (1 when the gap is constant: the fit is exact).

    Returns None when the run is not long enough: fewer than :data:`MIN_FIT_POINTS` such
    checkpoints, or none at t ≥ :data:`MIN_LAST_STEP`.
    """
    t = np.asarray(steps, dtype=np.float64).ravel()
    g = np.asarray(gap, dtype=np.float64).ravel()
    if t.shape != g.shape:
        raise ValueError(f"slope_vs_inverse_log: {t.size} steps against {g.size} gap values")
    chosen = np.ones(t.shape, bool) if keep is None else np.asarray(keep, bool).ravel()
    chosen = chosen & (t >= MIN_STEP) & np.isfinite(g)
    if not chosen.any() or np.max(t[chosen]) < MIN_LAST_STEP:
        return None
    x, g = 1.0 / np.log(t[chosen]), g[chosen]  # t ≥ MIN_STEP > 1: log t > 0
    if np.unique(x).size < MIN_FIT_POINTS:
        return None
    x_centred, g_centred = x - x.mean(), g - g.mean()
    slope = float(np.sum(x_centred * g_centred) / np.sum(x_centred**2))
    intercept = float(g.mean() - slope * x.mean())
    residual = float(np.sum((g - intercept - slope * x) ** 2))
    total = float(np.sum(g_centred**2))
    if total <= 1e-300:
        r2 = 1.0
    else:
        r2 = 1.0 - residual / total
    return SlopeFit(slope=slope, intercept=intercept, r2=r2, n_points=int(x.size))


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

def angle_rad(angle_deg: Any) -> Any:
    """θ in radians: the direction error ‖w/‖w‖ − û‖ ≈ θ that Soudry et al. bound by 1/log t."""
    return np.radians(np.asarray(angle_deg, dtype=np.float64))


#: The quantities fitted per run: column prefix → (metrics column, function of it). The angle
#: gap is the one drawn; θ itself and the margin gap are the ones the theory gives as 1/log t.
GAPS = {"angle_gap": ("angle_deg", angle_gap), "angle_rad": ("angle_deg", angle_rad),
        "margin_gap": ("margin_ratio", margin_gap)}
FIT_PARTS = ("slope", "intercept", "r2")
#: Columns of :func:`convergence_table`, in order. Per-seed rows hold one fit; the rows with
#: seed = MEAN_SEED hold the median over the fitted seeds and, for the slope, its range.
CONVERGENCE_COLUMNS = (
    [*CELL_KEYS, "target", "seed", "scheme", "last_epoch", "last_step", "n_checkpoints",
                    "n_valid_checkpoints", "final_valid", "n_seeds", "n_valid", "n_fitted",
                    "long_enough", "final_angle_deg", "final_angle_gap", "final_margin_gap"]
    + [f"{gap}_{part}" for gap in GAPS for part in FIT_PARTS]
    + [f"{gap}_slope_{end}" for gap in GAPS for end in ("min", "max")]
    + ["n_fit_points"]
)
#: ``seed`` of the rows holding the median over seeds.
MEAN_SEED = -1


def _run_row(run: pd.DataFrame) -> dict[str, Any]:
    run = run.sort_values("epoch")
    last = run.iloc[-1]
    valid = run["valid"].astype(bool).to_numpy() if "valid" in run else np.ones(len(run), bool)
    steps = run["step"].to_numpy(dtype=float) if "step" in run else np.full(len(run), -1.0)
    final_valid = bool(valid[-1])
    nan = float("nan")
    row: dict[str, Any] = {
        "scheme": "/".join(sorted(set(run["scheme"].astype(str)))),
        "last_epoch": int(last["epoch"]),
        "last_step": int(steps[-1]),
        "n_checkpoints": int(run["epoch"].nunique()),
        "n_valid_checkpoints": int(valid.sum()),
        "final_valid": final_valid,
        "n_seeds": 1,
        "n_valid": int(final_valid),
        # The final values are measurements only at a valid final checkpoint.
        "final_angle_deg": float(last["angle_deg"]) if final_valid else nan,
        "final_angle_gap": float(angle_gap(last["angle_deg"])) if final_valid else nan,
        "final_margin_gap": float(margin_gap(last["margin_ratio"]))
        if final_valid and "margin_ratio" in run else nan,
    }
    angle_fit = None
    for prefix, (column, gap_of) in GAPS.items():
        fit = None
        if column in run:
            fit = slope_vs_inverse_log(steps, gap_of(run[column].to_numpy(dtype=float)), valid)
        if prefix == "angle_gap":
            angle_fit = fit
        for part in FIT_PARTS:
            row[f"{prefix}_{part}"] = getattr(fit, part) if fit else nan
        for end in ("min", "max"):
            row[f"{prefix}_slope_{end}"] = fit.slope if fit else nan
    row["long_enough"] = angle_fit is not None
    row["n_fitted"] = int(angle_fit is not None)
    row["n_fit_points"] = angle_fit.n_points if angle_fit else 0
    return row


def convergence_table(metrics: pd.DataFrame, with_means: bool = True) -> pd.DataFrame:
    """One row per dataset, arch, variant, regime, target and seed (the fit's summarising rows,
    :func:`overall_rows`): the run's last epoch and step, its checkpoints and how many are valid,
    the final angle and gaps (NaN when the final checkpoint is invalid), and the 1/log t fit
    (:func:`slope_vs_inverse_log`) over its valid checkpoints, x = optimizer steps, of the angle
    gap 1 − cos θ, of θ in radians and of the margin gap (``<name>_slope``, ``_intercept``,
    ``_r2`` for name in :data:`GAPS`; NaN with ``long_enough`` False when the run has too few
    valid checkpoints for the angle fit; ``n_fit_points``: checkpoints in it).

    With ``with_means``, each dataset × arch × variant × regime × target also gets a row with
    ``seed`` = :data:`MEAN_SEED` (-1): ``n_seeds`` seeds in all, ``n_valid`` with a valid final
    checkpoint, ``n_fitted`` long enough; the final values are the median over the valid
    seeds, the fit columns the median over the fitted seeds and ``<name>_slope_min`` /
    ``_slope_max`` their range (NaN when none): a median, so that one bad seed cannot dominate.
    A seed whose final checkpoint is invalid still has a fit when enough of its earlier
    checkpoints are valid: the fit uses only those, which are measurements.
    """
    rows = overall_rows(with_validity(metrics))
    records = []
    for keys, run in rows.groupby([*CELL_KEYS, "target", "seed"], sort=True):
        record = dict(zip([*CELL_KEYS, "target", "seed"], keys))
        record.update(_run_row(run))
        records.append(record)
    table = pd.DataFrame(records, columns=CONVERGENCE_COLUMNS)
    if with_means and len(table):
        table = pd.concat([table, _medians(table)], ignore_index=True)
    if len(table):
        table["seed"] = table["seed"].astype(int)
        table["long_enough"] = table["long_enough"].astype(bool)
        table["final_valid"] = table["final_valid"].astype(bool)
        table = table.sort_values([*CELL_KEYS, "target", "seed"], kind="stable")
    return table.reset_index(drop=True)


def _medians(table: pd.DataFrame) -> pd.DataFrame:
    fit_columns = [f"{gap}_{part}" for gap in GAPS for part in FIT_PARTS]
    final_columns = ["final_angle_deg", "final_angle_gap", "final_margin_gap"]
    records = []
    for keys, group in table.groupby([*CELL_KEYS, "target"], sort=True):
        fitted = group[group["long_enough"].astype(bool)]
        valid = group[group["final_valid"].astype(bool)]
        record = dict(zip([*CELL_KEYS, "target"], keys))
        record.update({
            "seed": MEAN_SEED,
            "scheme": "/".join(sorted(set("/".join(group["scheme"]).split("/")))),
            "last_epoch": int(group["last_epoch"].max()),
            "last_step": int(group["last_step"].max()),
            "n_checkpoints": int(group["n_checkpoints"].max()),
            "n_valid_checkpoints": int(group["n_valid_checkpoints"].sum()),
            "final_valid": bool(len(valid)),
            "n_seeds": len(group),
            "n_valid": len(valid),
            "n_fitted": len(fitted),
            "long_enough": bool(len(fitted)),
            "n_fit_points": int(fitted["n_fit_points"].max()) if len(fitted) else 0,
        })
        record.update({c: float(valid[c].median()) if len(valid) else float("nan")
                       for c in final_columns})
        record.update({c: float(fitted[c].median()) if len(fitted) else float("nan")
                       for c in fit_columns})
        for gap in GAPS:
            slopes = fitted[f"{gap}_slope"].dropna()
            record[f"{gap}_slope_min"] = float(slopes.min()) if len(slopes) else float("nan")
            record[f"{gap}_slope_max"] = float(slopes.max()) if len(slopes) else float("nan")
        records.append(record)
    return pd.DataFrame(records, columns=CONVERGENCE_COLUMNS)
