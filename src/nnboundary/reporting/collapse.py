"""The grid's neural-collapse tables (written by the aggregate stage): every checkpoint's NC
metrics (:mod:`nnboundary.measures.collapse`) with the validity of its metrics rows and its
angle to each SVM target, the final checkpoint of each cell over valid seeds, and the trends
over training, each a count over seeds with its sign test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..measures.collapse import COLUMNS, NC_COLUMNS
from ..settings.keys import CELL_KEYS, RUN_KEYS
from ..settings.targets import TARGETS
from . import document, stats
from .findings import DIRECTION_TOL_DEG
from .tables import overall_rows, with_run_keys
from .text import median_iqr, put_stats


def collapse_table(frames, metrics):
    """Every run's NC rows in one table, each checkpoint with the validity of its metrics rows
    (valid when the summary row of every SVM target with a bias, svc and homog, of that run and
    epoch is: see :mod:`nnboundary.measures.validity`; ``nc_degenerate`` adds ``convention``) and the
    angle between the centred last layer and each target's SVM, ``angle_svc_deg`` /
    ``angle_homog_deg`` / ``angle_origin_deg`` (``matrix_angle_deg`` of the Crammer–Singer fit
    for K > 2, of the binary fit for K = 2; the origin angle only where its own row is valid,
    since a separator through the origin need not exist)."""
    keys = [*RUN_KEYS, "epoch"]
    nc = with_run_keys(pd.concat(frames, ignore_index=True)) if frames else \
        pd.DataFrame(columns=COLUMNS)
    rows = overall_rows(metrics)
    if len(rows):
        judged = rows[rows["target"] != "origin"] if (rows["target"] != "origin").any() else rows
        checkpoint = judged.groupby(keys, sort=False).agg(
            valid=("valid", "all"),
            invalid_reason=("invalid_reason", lambda r: ",".join(sorted(
                {p for text in r for p in str(text).split(",") if p}))))
        usable = rows[(rows["target"] != "origin") | rows["valid"].astype(bool)]
        angles = usable.pivot_table(index=keys, columns="target", values="matrix_angle_deg",
                                    aggfunc="first", dropna=False)
        angles.columns = [f"angle_{t}_deg" for t in angles.columns]
        nc = nc.merge(checkpoint.reset_index(), on=keys, how="left").merge(
            angles.reset_index(), on=keys, how="left")
    else:
        nc["valid"], nc["invalid_reason"] = False, ""
    nc["valid"] = nc["valid"].fillna(False).astype(bool)
    nc["invalid_reason"] = nc["invalid_reason"].fillna("no_metrics").astype(str)
    degenerate = nc["nc_degenerate"].astype(bool)
    nc.loc[degenerate, "valid"] = False
    nc.loc[degenerate, "invalid_reason"] = [
        ",".join(sorted(set(filter(None, r.split(","))) | {"convention"}))
        for r in nc.loc[degenerate, "invalid_reason"]]
    return nc.sort_values(keys, kind="stable").reset_index(drop=True)


#: Checkpoints a run needs for the rank correlation between its angle and NC3.
MIN_TREND_CHECKPOINTS = 4
TARGET_ANGLES = tuple(f"angle_{t}_deg" for t in TARGETS)


def run_trends(run) -> dict[str, float]:
    """What one run's checkpoints (rows of :func:`collapse_table`, one run) show over training:

    * ``nc1_fell``: 1.0 if NC1 at the last non-degenerate checkpoint is below NC1 at the first,
      0.0 if above, NaN if equal (frozen features, as in ``retrain_last``) or with fewer than two
      (NC1 needs no SVM, so SVM validity is not required);
    * ``rho_<target>_nc3``: Spearman's rank correlation, over the run's valid checkpoints, between
      the angle to that SVM target and NC3 (ρ > 0: the angle falls as the last layer aligns with
      the class means); NaN with fewer than :data:`MIN_TREND_CHECKPOINTS` valid checkpoints or
      a constant column."""
    from scipy.stats import spearmanr

    run = run.sort_values("epoch")
    ok = run[~run["nc_degenerate"].astype(bool)]
    out: dict[str, float] = {"nc1_fell": float("nan")}
    if len(ok) >= 2 and ok["nc1"].iloc[-1] != ok["nc1"].iloc[0]:  # a tie (frozen features) is no seed
        out["nc1_fell"] = float(ok["nc1"].iloc[-1] < ok["nc1"].iloc[0])
    valid = run[run["valid"]]
    for name in TARGET_ANGLES:
        key = f"rho_{name.removeprefix('angle_').removesuffix('_deg')}_nc3"
        out[key] = float("nan")
        if name in valid and len(valid) >= MIN_TREND_CHECKPOINTS:
            a, b = valid[name].to_numpy(dtype=float), valid["nc3_self_duality"].to_numpy(dtype=float)
            if np.all(np.isfinite(a)) and np.ptp(a) > 0 and np.ptp(b) > 0:
                out[key] = float(spearmanr(a, b).statistic)
    return out


def _count_into(record: dict, prefix: str, count) -> None:
    record[f"{prefix}_k"], record[f"{prefix}_n"] = count.k, count.n
    record[f"{prefix}_p"], record[f"{prefix}_verdict"] = count.p, count.verdict


def collapse_summary(table):
    """The final checkpoint of each run, per dataset × arch × variant × regime: ``n_seeds``,
    ``n_valid``, the feature width ``feature_dim`` and K, and over valid seeds only the median
    and quartiles (``_median``, ``_q25``, ``_q75``) of each NC metric and of the angles to the
    two SVM targets. A cell without a valid seed has empty statistics.

    And counts over seeds, each with its sign test (``_k`` of ``_n`` seeds, ``_p``, ``_verdict``
    as in :func:`nnboundary.reporting.stats.count_verdict`): ``<target>_lt2`` (svc, homog, origin), the
    final angle to that target below :data:`nnboundary.reporting.findings.DIRECTION_TOL_DEG` (valid seeds
    with that angle); ``nc1_fell`` (:func:`run_trends`, seeds with two non-degenerate
    checkpoints); ``rho_<target>_pos``, a positive rank correlation between the angle and NC3
    over the run (seeds with enough valid checkpoints), with the median ρ as
    ``rho_<target>_nc3_median``."""
    if table.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "n_seeds", "n_valid"])
    last = table.groupby(list(RUN_KEYS))["epoch"].transform("max")
    final = table[table["epoch"] == last]
    measured = NC_COLUMNS + [c for c in TARGET_ANGLES if c in table]
    records = []
    for cell, group in final.groupby(list(CELL_KEYS), sort=False):
        valid = group[group["valid"]]
        record = dict(zip(CELL_KEYS, cell), n_seeds=len(group), n_valid=len(valid),
                      feature_dim=int(group["feature_dim"].iloc[0]),
                      n_classes=int(group["n_classes"].iloc[0]))
        for name in measured:
            put_stats(record, name, valid[name].to_numpy(dtype=float), ("median", "q25", "q75"))
        runs = table.set_index(list(CELL_KEYS)).loc[[cell]].reset_index() if len(table) else table
        trends = pd.DataFrame([run_trends(r) for _, r in runs.groupby(list(RUN_KEYS))])
        for name in TARGET_ANGLES:
            if name in valid:
                short = name.removeprefix("angle_").removesuffix("_deg")
                _count_into(record, f"{short}_lt2",
                            stats.threshold_count(valid[name], DIRECTION_TOL_DEG))
                rho = trends[f"rho_{short}_nc3"].to_numpy(dtype=float)
                rho = rho[np.isfinite(rho)]
                _count_into(record, f"rho_{short}_pos",
                            stats.count_verdict(int((rho > 0).sum()), len(rho)))
                record[f"rho_{short}_nc3_median"] = float(np.median(rho)) if len(rho) else np.nan
        fell = trends["nc1_fell"].to_numpy(dtype=float)
        fell = fell[np.isfinite(fell)]
        _count_into(record, "nc1_fell", stats.count_verdict(int(fell.sum()), len(fell)))
        records.append(record)
    return pd.DataFrame(records)


def collapse_document(summary):
    """collapse.html: the summary as a table, medians [q25, q75] over valid seeds."""
    names = NC_COLUMNS + [c for c in TARGET_ANGLES if f"{c}_median" in summary]
    header = [*CELL_KEYS, "d", "K", "valid/seeds"] + names
    rows = [[str(row[c]) for c in CELL_KEYS] + [str(row["feature_dim"]), str(row["n_classes"]),
                                            f"{int(row['n_valid'])}/{int(row['n_seeds'])}"]
            + [median_iqr(row, n) for n in names] for _, row in summary.iterrows()]
    caption = ("Neural collapse at the final checkpoint, median [q25, q75] over valid seeds "
               "(nnboundary.measures.collapse has the formulas): nc1 = Tr(Σ_W Σ_B⁺)/K; nc2: equinorm "
               "(std/mean of the centred means' and of the centred classifier rows' norms), "
               "equiangularity (mean |cos + 1/(K−1)|) and the distance to a simplex ETF; nc3: "
               "‖W̃/‖W̃‖ − M̃ᵀ/‖M̃‖‖²; nc4: share of train points where the network and the "
               "nearest class mean disagree; angle_*: the centred last layer against each SVM "
               "target (Crammer–Singer for K > 2; origin: over the seeds where a separator "
               "through the origin exists). A simplex ETF needs d ≥ K − 1.")
    blocks = [document.Heading("Neural collapse: final checkpoint, valid seeds only"),
              document.Table(header, rows, caption=caption)]
    if "nc1_fell_k" not in summary:
        return blocks

    def count(row, prefix):
        if f"{prefix}_k" not in row or not np.isfinite(row[f"{prefix}_n"]):
            return ""
        if int(row[f"{prefix}_n"]) == 0:
            return "no seed"
        return (f"{int(row[prefix + '_k'])}/{int(row[prefix + '_n'])} "
                f"(p = {row[prefix + '_p']:.3g}, {row[prefix + '_verdict']})")

    def rho(row, short):
        value = row.get(f"rho_{short}_nc3_median", np.nan)
        return "" if not np.isfinite(value) else f"{value:.2f}"

    targets = [t for t in TARGETS if f"{t}_lt2_k" in summary]
    header = ([*CELL_KEYS, "d"] + [f"angle_{t} < 2°" for t in targets] + ["NC1 fell"]
              + [part for t in targets for part in (f"ρ(angle_{t}, NC3) > 0", f"median ρ {t}")])
    rows = [[str(row[c]) for c in CELL_KEYS] + [str(row["feature_dim"])]
            + [count(row, f"{t}_lt2") for t in targets] + [count(row, "nc1_fell")]
            + [part for t in targets for part in (count(row, f"rho_{t}_pos"), rho(row, t))]
            for _, row in summary.iterrows()]
    caption = ("Counts over seeds with the two-sided sign test (k/n, p, verdict at α = 0.05 with ≥ 5 "
               "seeds): the final angle to each SVM target below 2° (valid seeds); NC1 lower at "
               "the last checkpoint than at the first (seeds with two non-degenerate "
               "checkpoints); Spearman's ρ between the angle and NC3 over a run's valid "
               f"checkpoints positive (seeds with ≥ {MIN_TREND_CHECKPOINTS}), and its median.")
    return blocks + [document.Heading("Neural collapse over training: counts over seeds"),
                     document.Table(header, rows, caption=caption)]
