"""The linear case over the grid: the binary ``retrain_last`` runs against the theorem's
predictions (:mod:`nnboundary.measures.linear_theory`), one row per dataset × arch × variant.

:func:`theory_summary` (``linear_theory.html``), at each run's final checkpoint:

- ``n_runs``; ``runs_not_separable``: runs whose train features no hyperplane separates (no
  target, no prediction: counted, left out of every other column);
- ``within_tolerance``: runs whose angle to ``homog`` the regularisation path
  predicts within :data:`~nnboundary.measures.linear_theory.TOLERANCE_DEG`;
- ``reg_error_max`` / ``reg_error_median``: |measured − regularisation path| angle to ``homog``
  (degrees), the largest and the median over the runs; ``soudry_error_max``: the same for the
  theorem's asymptotic path v̂·s + ṽ; ``runs_assumptions``: runs where the theorem's
  assumptions fail (the support vectors do not span the augmented space, or α = 0 on one), so
  that ṽ is not the theorem's;
- ``control_max``: the largest angle between the numpy control and the retrained layer over
  every kept checkpoint of every run (round-off: about 1e-14°);
- ``runs_nearer_svc``: runs whose layer is nearer ``svc`` than ``homog`` at the end (the
  targets apart by more than :data:`~nnboundary.settings.targets.TIE_DEG`), and the range of
  the loss at which the regularisation path turns to ``homog`` for them (``turn_min``,
  ``turn_max``, as log10(1/L); inf: not before 1e-(10⁷/ln 10));
- for the runs outside the tolerance, the range of θ·ln(1/L) at the deepest milestone over
  the same at the milestone before (``outside_rate_min``, ``outside_rate_max``; θ the angle to
  ``homog``): near 1 where the layer is still on the theorem's 1/log(1/L) approach, its
  constant set by the start.

No torch: the theory stage builds it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..measures.linear_theory import TOLERANCE_DEG
from ..settings.keys import EXPERIMENT_KEYS
from ..settings.targets import TIE_DEG
from . import document
from .text import number


def _rate_ratio(run: pd.DataFrame) -> float:
    """θ·ln(1/L) at the run's deepest milestone checkpoint over the same at the one before
    (θ its angle to ``homog``): 1 where the angle falls exactly like 1/log(1/L), the
    theorem's rate."""
    marked = run[run["milestone"].notna()].sort_values("log10_inverse_loss")
    if len(marked) < 2:
        return float("nan")
    product = marked["angle_homog_deg"] * marked["log10_inverse_loss"]
    return float(product.iloc[-1] / product.iloc[-2])


def nearer_svc(final: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``final`` whose layer is nearer ``svc`` than ``homog``, the two targets
    apart by more than :data:`~nnboundary.settings.targets.TIE_DEG`."""
    return final[(final["angle_svc_deg"] < final["angle_homog_deg"])
                 & (final["svc_homog_angle_deg"] > TIE_DEG)]


def theory_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The summary of the module docstring, one row per dataset × arch × variant."""
    if table.empty:
        return pd.DataFrame()
    records = []
    for keys, group in table.groupby(list(EXPERIMENT_KEYS), sort=True):
        final_all = group[group["final"].astype(bool)]
        separable = group["separable"].astype(bool)
        final = final_all[final_all["separable"].astype(bool)]
        reg = final["homog_error_reg_deg"].abs()
        nearer = nearer_svc(final)
        turns = nearer["turn_log10_inverse_loss"].to_numpy(dtype=float)
        turns = turns[~np.isnan(turns)]  # NaN: the path is already nearer homog there
        rates = [_rate_ratio(run) for seed, run in group[separable].groupby("seed")
                 if not bool(run.loc[run["final"].astype(bool), "within_tolerance"].all())]
        records.append({
            **dict(zip(EXPERIMENT_KEYS, keys)), "n_runs": int(len(final_all)),
            "runs_not_separable": int(len(final_all) - len(final)),
            "within_tolerance": int(final["within_tolerance"].astype(bool).sum()),
            "reg_error_max": float(reg.max()), "reg_error_median": float(reg.median()),
            "soudry_error_max": float(final["homog_error_soudry_deg"].abs().max()),
            "runs_assumptions": int((final["assumptions"] != "").sum()),
            "control_max": float(group["control_vs_measured_deg"].max()),
            "runs_nearer_svc": int(len(nearer)),
            "nearer_svc_seeds": " ".join(str(int(s)) for s in nearer["seed"]),
            "turn_min": float(np.min(turns)) if turns.size else np.nan,
            "turn_max": float(np.max(turns)) if turns.size else np.nan,
            "outside_rate_min": float(np.nanmin(rates)) if rates else np.nan,
            "outside_rate_max": float(np.nanmax(rates)) if rates else np.nan,
        })
    return pd.DataFrame(records)


CAPTION = (
    "Binary retrain_last runs (a linear layer trained alone by gradient descent on fixed "
    "features: Soudry et al.'s setting) at their final checkpoint; runs whose train features "
    "are not separable are counted and left out of the rest. Angles to homog, the target "
    "the theorem names, in degrees. within tolerance: runs whose angle to homog the "
    f"regularisation path (Ji et al. 2020) predicts within {TOLERANCE_DEG:g}° (stated before "
    "the grid was measured); reg error: |measured − predicted|, largest and median; Soudry "
    "error: the same for the theorem's v̂·s + ṽ, whose ṽ is not the theorem's where its "
    "assumptions fail (runs listed); control: the largest angle between a numpy re-run of the "
    "layer's gradient descent and the layer, over every checkpoint; nearer svc: runs nearer "
    "svc than homog at the end, and the loss, as log10(1/L), at which the regularisation path "
    "turns to homog for them (float64 ends near 308); outside: for the runs outside the "
    "tolerance, θ·log(1/L) at the deepest milestone over the one before (1: the angle θ to "
    "homog falls exactly like 1/log(1/L), the theorem's rate).")


def theory_document(summary: pd.DataFrame) -> list[document.Block]:
    """linear_theory.html: :func:`theory_summary` as a table."""
    header = [*EXPERIMENT_KEYS, "runs", "not separable", "within tolerance",
              "reg error max (median)",
              "Soudry error max", "assumptions fail", "control max", "nearer svc (seeds)",
              "turn log10(1/L)", "outside: θ·log(1/L) ratio"]
    rows = [[*(str(r[k]) for k in EXPERIMENT_KEYS), str(r["n_runs"]),
             str(r["runs_not_separable"]),
             f"{r['within_tolerance']}/{r['n_runs'] - r['runs_not_separable']}",
             f"{number(r['reg_error_max'], 2)} ({number(r['reg_error_median'], 2)})",
             number(r["soudry_error_max"], 2), str(r["runs_assumptions"]),
             number(r["control_max"], 2),
             f"{r['runs_nearer_svc']} ({r['nearer_svc_seeds'] or '–'})",
             _range(r, "turn", 4), _range(r, "outside_rate", 3)]
            for _, r in summary.iterrows()]
    return document.titled_table("The linear case: the retrained layer against its theorem",
                                 header, rows, CAPTION, "No binary retrain_last run.")


def _range(row: pd.Series, name: str, digits: int) -> str:
    if np.isnan(row[f"{name}_min"]):
        return "–"
    return f"{number(row[f'{name}_min'], digits)}–{number(row[f'{name}_max'], digits)}"
