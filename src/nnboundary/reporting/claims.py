"""The paper's claims, each a count over seeds with a sign test, at every depth the runs reach.

Li, Ding & Gao (arXiv 1808.05385) say that the last layer of a network trained with
cross-entropy converges in direction to a linear SVM on its last hidden layer, and that training
the network as a whole, rather than only its last layer, "may result in better bias constant
for the last weight layer". The theory speaks about the limit L → 0, so every claim is
evaluated at each loss milestone (each run's first checkpoint with train loss below it:
:func:`nnboundary.reporting.depth.at_milestones`) and at the final checkpoint: a reader sees at
which depth a claim starts to hold and at which it stops.

Per run and depth, :func:`nnboundary.reporting.findings.seeds_of` gives the measures:
``angle_nearer`` (the smallest angle to the three SVM targets, degrees) and
``bias_gap_svc_abs`` (|bias gap − the svc SVM's own|, in half gaps). Only valid seeds enter
(:mod:`nnboundary.measures.validity`).

Claims (:data:`CLAIMS`):

- ``direction`` (full): k = seeds with ``angle_nearer`` < :data:`DIRECTION_TOL_DEG`;
- ``bias_midway`` (full): k = seeds with ``bias_gap_svc_abs`` < :data:`BIAS_GAP_TOL`;
- ``retrain_direction_not_bias_absolute`` (retrain_last): the direction count *and* the count
  of seeds with ``bias_gap_svc_abs`` ≥ :data:`BIAS_GAP_TOL` must both hold (intersection–union:
  :func:`nnboundary.reporting.stats.both`, whose p is the verdict's); k is the number of seeds
  that meet both. Absolute thresholds, not the paper's comparison;
- ``direction_whole_vs_retrain`` and ``bias_whole_vs_retrain`` (full vs retrain_last, the
  paper's comparison): per seed valid in both regimes at that depth, is the whole network's
  ``angle_nearer`` (resp. ``bias_gap_svc_abs``) smaller than the retrained layer's? k = seeds
  where it is, n = seeds where the two differ (equal values are left out).

"Equal loss" pairs the whole network at its first checkpoint below the milestone with the
retrained layer at *its* first checkpoint below the same milestone; the retrained layer sits on
the whole network's final features (its run starts from them), so the two share the train loss
and the seed, not the features. At ``final`` each regime's last checkpoint is used.

Each count goes through :func:`nnboundary.reporting.stats.count_verdict` (two-sided sign test):
``holds`` / ``fails`` when p < 0.05 with at least 5 seeds, else ``undecided``; a regime the grid
did not run gives ``not run``, a depth no run reached is left out.

No torch: the aggregate step builds it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..settings.keys import EXPERIMENT_KEYS, FULL, RETRAIN_LAST
from ..settings.targets import TARGETS
from . import document, stats
from .depth import DEFAULT_MILESTONES, at_milestones
from .findings import BIAS_GAP_TOL, DIRECTION_TOL_DEG, NO_VALID, seeds_of
from .tables import final_overall_rows
from .text import number

#: The label of the final checkpoint in the ``milestone`` column.
FINAL = "final"
#: The paired claims' regime label.
PAIRED = f"{FULL} vs {RETRAIN_LAST}"
#: The measures: column of :func:`seeds_of` → what it is.
ANGLE, BIAS = "angle_nearer", "bias_gap_svc_abs"

_DIRECTION = (f"angle to the nearest SVM target ({', '.join(TARGETS)}) < "
              f"{DIRECTION_TOL_DEG:g}°")
_BIAS = f"|bias gap to the svc SVM| < {BIAS_GAP_TOL:g} half gaps"

#: claim → (regime, measure, what it says, how it is counted).
CLAIMS = {
    "direction": (FULL, ANGLE,
                  "the whole network's last layer points like an SVM", _DIRECTION),
    "bias_midway": (FULL, BIAS,
                    "the whole network puts its bias where the svc SVM puts its own", _BIAS),
    "retrain_direction_not_bias_absolute": (
        RETRAIN_LAST, BIAS,
        "a re-initialised, retrained last layer recovers the direction but not the bias "
        "(absolute thresholds)",
        f"{_DIRECTION} and |bias gap to the svc SVM| ≥ {BIAS_GAP_TOL:g}"),
    "direction_whole_vs_retrain": (
        PAIRED, ANGLE, "the whole network's direction is nearer an SVM than the retrained layer's",
        "per seed at equal train loss: whole network's nearest angle < retrained layer's"),
    "bias_whole_vs_retrain": (
        PAIRED, BIAS, "the whole network's bias is better than the retrained layer's",
        "per seed at equal train loss: whole network's |bias gap to svc| < retrained layer's"),
}
COLUMNS = [*EXPERIMENT_KEYS, "milestone", "claim", "regime", "metric", "n_seeds", "n_valid",
           "k", "statistic", "p_value", "verdict", f"median_{FULL}",
           f"median_{RETRAIN_LAST}", f"train_loss_{FULL}", f"train_loss_{RETRAIN_LAST}"]


def depths(metrics: pd.DataFrame, milestones=DEFAULT_MILESTONES) -> list[tuple[str, pd.DataFrame]]:
    """(label, :func:`seeds_of` one checkpoint per run) for each milestone any run reached,
    shallowest first (label ``f"{m:g}"``), then (:data:`FINAL`, the final checkpoints)."""
    out = []
    picked = at_milestones(metrics, milestones)
    for milestone in sorted({float(m) for m in milestones}, reverse=True):
        rows = picked[picked["milestone"] == milestone] if len(picked) else picked
        if len(rows):
            out.append((f"{milestone:g}", seeds_of(rows)))
    final = final_overall_rows(metrics)
    if len(final):
        out.append((FINAL, seeds_of(final)))
    return out


def _valid(seeds: pd.DataFrame, regime: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = seeds[seeds["regime"] == regime]
    return runs, runs[runs["valid"].astype(bool)]


def _median(values) -> float:
    return stats.describe(values)["median"]


def _threshold(valid: pd.DataFrame, measure: str, threshold: float,
               below: bool = True) -> tuple[stats.Count, str]:
    count = stats.threshold_count(valid[measure], threshold, below=below)
    summary = stats.describe(valid[measure])
    unit = "°" if measure == ANGLE else ""
    relation = "<" if below else "≥"
    text = (f"{count.k}/{count.n} seeds {relation} {threshold:g}{unit}; median "
            f"{summary['median']:.3g}{unit}, worst {summary['max']:.3g}{unit}")
    return count, text


def _absolute(claim: str, cell: pd.DataFrame) -> dict:
    regime, measure, _, metric = CLAIMS[claim]
    runs, valid = _valid(cell, regime)
    record = {"regime": regime, "metric": metric, "n_seeds": int(runs["seed"].nunique()),
              "n_valid": int(len(valid)), f"median_{regime}": _median(valid[measure]),
              f"train_loss_{regime}": _median(valid["train_loss"])}
    if claim == "direction":
        count, text = _threshold(valid, ANGLE, DIRECTION_TOL_DEG)
    elif claim == "bias_midway":
        count, text = _threshold(valid, BIAS, BIAS_GAP_TOL)
    else:
        direction, direction_text = _threshold(valid, ANGLE, DIRECTION_TOL_DEG)
        off, off_text = _threshold(valid, BIAS, BIAS_GAP_TOL, below=False)
        verdict = stats.both(direction, off)
        # k: the seeds that meet both conditions; the verdict and p: the intersection-union test.
        both = (valid[ANGLE].astype(float) < DIRECTION_TOL_DEG) & (
            valid[BIAS].astype(float) >= BIAS_GAP_TOL)
        count = stats.Count(int(both.sum()), direction.n, verdict.p, verdict.verdict)
        text = (f"direction: {direction_text} (p = {direction.p:.2g}); bias: {off_text} "
                f"(p = {off.p:.2g})")
    return _verdict(record, runs, valid, count, text, regime)


def paired_count(whole: pd.DataFrame, retrained: pd.DataFrame, measure: str) -> tuple:
    """(count, pairs): per seed valid in both frames, is ``measures`` smaller for ``whole``?
    k = seeds where it is, n = seeds where the two differ (equal values left out); ``pairs``
    holds the seed's two values (columns ``whole`` and ``retrained``)."""
    pairs = pd.merge(whole[["seed", measure]], retrained[["seed", measure]], on="seed",
                     suffixes=("_whole", "_retrained"))
    pairs = pairs.rename(columns={f"{measure}_whole": "whole",
                                  f"{measure}_retrained": "retrained"})
    pairs = pairs[np.isfinite(pairs["whole"].astype(float))
                  & np.isfinite(pairs["retrained"].astype(float))]
    difference = (pairs["retrained"] - pairs["whole"]).to_numpy(dtype=float)
    smaller, larger = int((difference > 0).sum()), int((difference < 0).sum())
    return stats.count_verdict(smaller, smaller + larger), pairs


def _paired(claim: str, cell: pd.DataFrame) -> dict:
    regime, measure, _, metric = CLAIMS[claim]
    full_runs, full = _valid(cell, FULL)
    retrain_runs, retrain = _valid(cell, RETRAIN_LAST)
    count, pairs = paired_count(full, retrain, measure)
    in_both = set(full_runs["seed"]) & set(retrain_runs["seed"])
    kept = pairs["seed"]
    record = {"regime": regime, "metric": metric, "n_seeds": len(in_both),
              "n_valid": int(len(pairs)),
              f"median_{FULL}": _median(pairs["whole"]),
              f"median_{RETRAIN_LAST}": _median(pairs["retrained"]),
              f"train_loss_{FULL}": _median(full.loc[full["seed"].isin(kept), "train_loss"]),
              f"train_loss_{RETRAIN_LAST}": _median(
                  retrain.loc[retrain["seed"].isin(kept), "train_loss"])}
    unit = "°" if measure == ANGLE else ""
    text = (f"{count.k}/{count.n} seeds whole < retrained ({len(pairs) - count.n} equal); "
            f"median {record[f'median_{FULL}']:.3g}{unit} / "
            f"{record[f'median_{RETRAIN_LAST}']:.3g}{unit}")
    # Not run when either regime is missing from the grid: name the missing one.
    missing = RETRAIN_LAST if retrain_runs.empty else FULL
    runs = full_runs if len(retrain_runs) else retrain_runs
    return _verdict(record, runs, pairs, count, text, missing)


def _verdict(record: dict, runs: pd.DataFrame, valid: pd.DataFrame, count: stats.Count,
             text: str, regime: str) -> dict:
    if runs.empty:
        return {**record, "k": 0, "statistic": f"regime {regime} not in the grid",
                "p_value": np.nan, "verdict": "not run"}
    if valid.empty:
        return {**record, "k": 0, "statistic": NO_VALID, "p_value": 1.0,
                "verdict": "undecided"}
    return {**record, "k": count.k, "statistic": text, "p_value": count.p,
            "verdict": count.verdict}


def claims(metrics: pd.DataFrame, milestones=DEFAULT_MILESTONES) -> pd.DataFrame:
    """``claims.csv``: one row per dataset × arch × variant × depth × claim (module
    docstring), depths shallowest first, then ``final``."""
    records = []
    for label, seeds in depths(metrics, milestones):
        for keys, cell in seeds.groupby(list(EXPERIMENT_KEYS), sort=True):
            for claim, (regime, *_) in CLAIMS.items():
                judge = _paired if regime == PAIRED else _absolute
                records.append({**dict(zip(EXPERIMENT_KEYS, keys)), "milestone": label,
                                "claim": claim, **judge(claim, cell)})
    if not records:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame(records).reindex(columns=COLUMNS)
    order = {label: i for i, (label, _) in enumerate(depths_order(table["milestone"]))}
    claim_order = {c: i for i, c in enumerate(CLAIMS)}
    key = table.assign(_d=table["milestone"].map(order), _c=table["claim"].map(claim_order))
    key = key.sort_values([*EXPERIMENT_KEYS, "_c", "_d"], kind="stable")
    return key.drop(columns=["_d", "_c"]).reset_index(drop=True)


def depths_order(labels) -> list[tuple[str, float]]:
    """The distinct depth labels, shallowest first and ``final`` last, with their loss."""
    distinct = {str(label) for label in labels}
    losses = [(label, 0.0 if label == FINAL else float(label)) for label in distinct]
    return sorted(losses, key=lambda item: (item[0] == FINAL, -item[1]))


# --------------------------------------------------------------------------------------------
# The document (claims.html, and a section of findings.md)
# --------------------------------------------------------------------------------------------

CAPTION = (
    "Each claim at each depth: the runs' first checkpoint with train loss below the milestone, "
    "and their final checkpoint. Cell: k/n seeds for which the claim's condition is true, the "
    "two-sided sign test's verdict (holds / fails when p < 0.05 with at least "
    f"{stats.MIN_SEEDS} seeds; 6 agreeing seeds are the fewest that reach it) and p. The paired "
    "claims count seeds whose whole network is better than its retrained layer (fails: the "
    "retrained layer is better); the retrained layer sits on the whole network's final "
    "features, at the same train loss.")


def _cell(row: pd.Series) -> str:
    if row["verdict"] == "not run":
        return "not run"
    if row["n_valid"] == 0:
        return NO_VALID
    verdict = f"**{row['verdict']}**" if row["verdict"] in ("holds", "fails") else row["verdict"]
    return f"{int(row['k'])}/{int(row['n_valid'])} {verdict} ({number(row['p_value'], 2)})"


def _where(group: pd.DataFrame, verdict: str) -> str:
    return ", ".join(group.loc[group["verdict"] == verdict, "milestone"].astype(str)) or "–"


def claims_blocks(table: pd.DataFrame, level: int = 2) -> list[document.Block]:
    """The claims by depth: one row per dataset × arch × variant × claim, one column per
    depth, and where each claim holds and fails."""
    heading = document.Heading("The paper's claims, by depth", level)
    if table.empty:
        return [heading, document.Paragraph("No runs.")]
    labels = [label for label, _ in depths_order(table["milestone"])]
    header = [*EXPERIMENT_KEYS, "claim", *[f"< {label}" if label != FINAL else FINAL
                                           for label in labels], "holds at", "fails at"]
    rows = []
    for keys, group in table.groupby([*EXPERIMENT_KEYS, "claim"], sort=False):
        at = {str(m): row for m, (_, row) in zip(group["milestone"], group.iterrows())}
        rows.append([*map(str, keys),
                     *(_cell(at[label]) if label in at else "–" for label in labels),
                     _where(group, "holds"), _where(group, "fails")])
    return [heading, document.Paragraph(CAPTION),
            document.Bullets([f"`{claim}` ({regime}): {says}; counted: {metric}."
                              for claim, (regime, _, says, metric) in CLAIMS.items()]),
            document.Table(header, rows)]


def claims_document(table: pd.DataFrame) -> list[document.Block]:
    """claims.html: :func:`claims_blocks`, then every row with its statistic."""
    header = [*EXPERIMENT_KEYS, "depth", "claim", "regime", "valid/seeds", "statistic",
              "loss full / retrain", "p", "verdict"]
    rows = [[*(str(row[c]) for c in EXPERIMENT_KEYS), str(row["milestone"]), str(row["claim"]),
             str(row["regime"]), f"{int(row['n_valid'])}/{int(row['n_seeds'])}",
             str(row["statistic"]),
             f"{number(row[f'train_loss_{FULL}'], 2)} / "
             f"{number(row[f'train_loss_{RETRAIN_LAST}'], 2)}",
             number(row["p_value"], 2), f"**{row['verdict']}**"]
            for _, row in table.iterrows()]
    return claims_blocks(table, level=1) + [document.Heading("Every count", 2),
                                            document.Table(header, rows)]
