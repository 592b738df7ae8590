"""Stage ``collapse``: the neural-collapse geometry of every checkpoint (Papyan, Han & Donoho,
PNAS 2020; the ETF distance of Zhu et al., NeurIPS 2021), on the same feature files the SVMs are
fitted on.

Notation, on the train features of one checkpoint, in float64: h_i (n × d) with labels
y_i ∈ 0..K−1; class means μ_k = mean of the h_i of class k; the global mean μ_G = (1/K) Σ_k μ_k,
the mean of the class means (not of the points, so class imbalance does not move it);
M̃ = [μ_0 − μ_G, …, μ_{K−1} − μ_G] (d × K); W the last layer (K × d) and W̃ = W − 1 w̄ᵀ, W with
its row mean w̄ = (1/K) Σ_k W_k subtracted (the layer is defined only up to a common row shift,
which changes no prediction).

========================= ==================================================================
``nc1``                   Tr(Σ_W Σ_B⁺) / K: within-class variability against between-class,
                          Σ_W = (1/n) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, Σ_B = (1/K) M̃M̃ᵀ,
                          ⁺ the Moore–Penrose pseudo-inverse (:func:`nc1`)
``nc2_norm_cv_means``     std / mean over k of ‖μ_k − μ_G‖ (std with ddof 0): equinorm means
``nc2_norm_cv_weights``   std / mean over k of ‖w̃_k‖, the rows of W̃: equinorm classifiers
``nc2_cos_shift_means``   mean over k ≠ l of |cos(μ_k − μ_G, μ_l − μ_G) + 1/(K − 1)|:
                          equiangular means (0 for a simplex ETF)
``nc2_etf_distance``      ‖M̃ᵀM̃ / ‖M̃ᵀM̃‖_F − (I − 11ᵀ/K) / √(K − 1)‖_F (0 for a simplex ETF
                          of any scale)
``nc3_self_duality``      ‖W̃ / ‖W̃‖_F − M̃ᵀ / ‖M̃‖_F‖²_F: the classifier against the centred
                          means (0 when W̃ ∝ M̃ᵀ), in [0, 4]
``nc4_ncc_mismatch``      share of train points whose network prediction argmax_k (W h + b)_k
                          differs from the nearest class mean's argmin_k ‖h − μ_k‖
========================= ==================================================================

A simplex ETF needs d ≥ K − 1: with a 2-D bottleneck only K ≤ 3 can collapse fully, so NC2
cannot reach 0 for K > 3 there.

Conventions, marked and never averaged: ``nc_degenerate`` is true where a quantity has no
value, namely a class without train points, all class means equal (M̃ = 0: no between-class
spread, so NC1, NC2 of the means and NC3 are undefined) or W̃ = 0 (NC2 of the weights and
NC3 undefined); those columns are NaN there, and the aggregate step's validity rule marks the
checkpoint ``convention``.

Output: one row per checkpoint, the run keys, ``epoch``, ``step``, ``n_classes``,
``feature_dim``, the columns above and ``nc_degenerate``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import io
from .cli import per_run
from .config import BASE_VARIANT, RUN_KEYS
from .targets import TARGETS

NC_COLUMNS = ["nc1", "nc2_norm_cv_means", "nc2_norm_cv_weights", "nc2_cos_shift_means",
              "nc2_etf_distance", "nc3_self_duality", "nc4_ncc_mismatch"]
#: Relative cut-off of the pseudo-inverse in NC1 (singular values of M̃ below it count as 0).
PINV_RTOL = 1e-10
COLUMNS = list(RUN_KEYS) + ["epoch", "step", "n_classes", "feature_dim"] + NC_COLUMNS \
    + ["nc_degenerate"]


def class_means(H: np.ndarray, y: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, d) class means and the (K,) class counts; a class without points has mean NaN."""
    counts = np.bincount(y, minlength=K).astype(np.float64)
    sums = np.zeros((K, H.shape[1]))
    np.add.at(sums, y, H)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


def nc1(H: np.ndarray, y: np.ndarray, means: np.ndarray) -> float:
    """Tr(Σ_W Σ_B⁺)/K (module docstring). Computed from the SVD M̃ = U S Vᵀ: Σ_B⁺ =
    K U S⁻² Uᵀ, so Tr(Σ_W Σ_B⁺)/K = Σ_j u_jᵀ Σ_W u_j / s_j², without forming a d × d inverse.
    The pseudo-inverse keeps at most K − 1 singular values (the centred means sum to 0, so
    that is M̃'s rank) and only those above :data:`PINV_RTOL` · s_max, as ``numpy.linalg.pinv``
    with that ``rcond`` does: a direction with no between-class spread is not inverted."""
    K = means.shape[0]
    M = (means - means.mean(axis=0)).T  # d × K
    U, s, _ = np.linalg.svd(M, full_matrices=False)
    keep = (s > PINV_RTOL * (s[0] if s.size else 0.0)) & (np.arange(s.size) < K - 1)
    if not keep.any():
        return float("nan")
    centred = H - means[y]  # within-class deviations, n × d
    projected = centred @ U[:, keep]  # n × r
    within = (projected**2).sum(axis=0) / len(H)  # u_jᵀ Σ_W u_j
    return float((within / s[keep] ** 2).sum())


def _cv(values: np.ndarray) -> float:
    mean = values.mean()
    return float(values.std() / mean) if mean > 0 else float("nan")


def neural_collapse(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The NC metrics of the module docstring for train features ``H`` (n × d), labels ``y``
    and the last layer (``W`` K × d, ``b`` (K,)); ``nc_degenerate`` where one has no value."""
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    W = np.asarray(W, dtype=np.float64)
    K = W.shape[0]
    nan = float("nan")
    row = dict.fromkeys(NC_COLUMNS, nan)
    means, counts = class_means(H, y, K)
    if (counts == 0).any() or len(H) == 0:
        return {**row, "nc_degenerate": True}
    centred_means = means - means.mean(axis=0)  # K × d, rows μ_k − μ_G
    W_tilde = W - W.mean(axis=0)
    norm_M, norm_W = np.linalg.norm(centred_means), np.linalg.norm(W_tilde)
    degenerate = bool(norm_M == 0 or norm_W == 0)
    # NC4 needs neither norm: the network's prediction against the nearest class mean.
    predicted = (H @ W.T + b).argmax(axis=1)
    squared = (H**2).sum(axis=1)[:, None] - 2 * H @ means.T + (means**2).sum(axis=1)[None, :]
    row["nc4_ncc_mismatch"] = float((predicted != squared.argmin(axis=1)).mean())
    if norm_W > 0:
        row["nc2_norm_cv_weights"] = _cv(np.linalg.norm(W_tilde, axis=1))
    if norm_M == 0:
        return {**row, "nc_degenerate": True}
    row["nc1"] = nc1(H, y, means)
    lengths = np.linalg.norm(centred_means, axis=1)
    row["nc2_norm_cv_means"] = _cv(lengths)
    if (lengths > 0).all():
        unit = centred_means / lengths[:, None]
        cosines = unit @ unit.T
        off = ~np.eye(K, dtype=bool)
        row["nc2_cos_shift_means"] = float(np.abs(cosines[off] + 1.0 / (K - 1)).mean())
    else:
        degenerate = True
    gram = centred_means @ centred_means.T  # M̃ᵀM̃, K × K
    etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
    row["nc2_etf_distance"] = float(np.linalg.norm(gram / np.linalg.norm(gram) - etf))
    if norm_W > 0:
        row["nc3_self_duality"] = float(
            np.linalg.norm(W_tilde / norm_W - centred_means / norm_M) ** 2)
    return {**row, "nc_degenerate": degenerate}


def checkpoint_row(features: io.FeatureSet) -> dict[str, Any]:
    """One checkpoint's row: its keys and :func:`neural_collapse` of its train part."""
    H, y = features.part("train")
    keys = features.keys
    training = keys.get("training") or {}
    steps = int(training.get("steps_per_epoch", -1))
    return {
        "dataset": str(keys.get("dataset", "")), "arch": str(keys.get("arch", "")),
        "variant": str(keys.get("variant", BASE_VARIANT)), "regime": str(keys.get("regime", "full")),
        "seed": int(keys.get("seed", -1)), "epoch": features.epoch,
        "step": features.epoch * steps if steps > 0 else -1,
        "n_classes": features.n_classes, "feature_dim": int(features.W.shape[1]),
        **neural_collapse(H, y, features.W, features.b),
    }


def run_collapse(files: Sequence[Path]):
    """The table of one run: a row per feature file, in epoch order."""
    import pandas as pd

    return pd.DataFrame([checkpoint_row(io.read_features(path)) for path in files],
                        columns=COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    """``nnboundary collapse --features DIR --output neural_collapse.parquet``."""
    parser = argparse.ArgumentParser(prog="nnboundary collapse", description=__doc__.split("\n")[0])
    parser.add_argument("--features", required=True, type=Path, nargs="+",
                        help="run folder of feature files, one per run")
    parser.add_argument("--output", required=True, type=Path, nargs="+",
                        help="Parquet file to write, one per run")
    args = parser.parse_args(argv)
    for features, output in per_run(parser, args, ("features", "output")):
        frame = run_collapse(io.list_feature_files(features))
        io.write_table(output, frame, {"stage": "collapse"})
        print(f"{features}: neural collapse of {len(frame)} checkpoints", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# The grid's table (written by the aggregate step)
# --------------------------------------------------------------------------------------------

#: One row of the collapse summary per cell.
CELL = ["dataset", "arch", "variant", "regime"]


def collapse_table(frames, metrics):
    """Every run's NC rows in one table, each checkpoint with the validity of its metrics rows
    (valid when the summary row of every SVM target with a bias, svc and homog, of that run and
    epoch is: see :mod:`nnboundary.validity`; ``nc_degenerate`` adds ``convention``) and the
    angle between the centred last layer and each target's SVM, ``angle_svc_deg`` /
    ``angle_homog_deg`` / ``angle_origin_deg`` (``matrix_angle_deg`` of the Crammer–Singer fit
    for K > 2, of the binary fit for K = 2; the origin angle only where its own row is valid,
    since a separator through the origin need not exist)."""
    import pandas as pd

    from .convergence import overall_rows, with_run_keys

    keys = list(RUN_KEYS) + ["epoch"]
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
    as in :func:`nnboundary.stats.count_verdict`): ``<target>_lt2`` (svc, homog, origin), the
    final angle to that target below :data:`nnboundary.findings.DIRECTION_TOL_DEG` (valid seeds
    with that angle); ``nc1_fell`` (:func:`run_trends`, seeds with two non-degenerate
    checkpoints); ``rho_<target>_pos``, a positive rank correlation between the angle and NC3
    over the run (seeds with enough valid checkpoints), with the median ρ as
    ``rho_<target>_nc3_median``."""
    import pandas as pd

    from . import stats
    from .findings import DIRECTION_TOL_DEG, _put

    if table.empty:
        return pd.DataFrame(columns=CELL + ["n_seeds", "n_valid"])
    last = table.groupby(list(RUN_KEYS))["epoch"].transform("max")
    final = table[table["epoch"] == last]
    measured = NC_COLUMNS + [c for c in TARGET_ANGLES if c in table]
    records = []
    for cell, group in final.groupby(CELL, sort=False):
        valid = group[group["valid"]]
        record = dict(zip(CELL, cell), n_seeds=len(group), n_valid=len(valid),
                      feature_dim=int(group["feature_dim"].iloc[0]),
                      n_classes=int(group["n_classes"].iloc[0]))
        for name in measured:
            _put(record, name, valid[name].to_numpy(dtype=float), ("median", "q25", "q75"))
        runs = table.set_index(CELL).loc[[cell]].reset_index() if len(table) else table
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
    from . import document
    from .findings import _median_iqr

    names = NC_COLUMNS + [c for c in TARGET_ANGLES if f"{c}_median" in summary]
    header = CELL + ["d", "K", "valid/seeds"] + names
    rows = [[str(row[c]) for c in CELL] + [str(row["feature_dim"]), str(row["n_classes"]),
                                            f"{int(row['n_valid'])}/{int(row['n_seeds'])}"]
            + [_median_iqr(row, n) for n in names] for _, row in summary.iterrows()]
    caption = ("Neural collapse at the final checkpoint, median [q25, q75] over valid seeds "
               "(nnboundary.collapse has the formulas): nc1 = Tr(Σ_W Σ_B⁺)/K; nc2: equinorm "
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
    header = (CELL + ["d"] + [f"angle_{t} < 2°" for t in targets] + ["NC1 fell"]
              + [part for t in targets for part in (f"ρ(angle_{t}, NC3) > 0", f"median ρ {t}")])
    rows = [[str(row[c]) for c in CELL] + [str(row["feature_dim"])]
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
