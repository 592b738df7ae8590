"""Stage ``aggregate``: collect every run's metrics into the grid's tables.

A run is identified by dataset, arch, variant, regime and seed (:data:`RUN_KEYS`; a table
without ``regime``/``variant`` columns is read as regime "full", variant "base").

- ``metrics.parquet``: every row of every run (one per dataset, arch, variant, regime, seed,
  epoch, target, scheme and pair), the columns of :mod:`nnboundary.metrics`.
- ``summary.csv``: the final checkpoint of each run, one row per dataset × arch × variant ×
  regime × target × scheme, with the mean and sample standard deviation (ddof = 1; 0 for a
  single seed) over seeds of each metric (``<metric>_mean``, ``<metric>_sd``), ``n_seeds``,
  and the share of seeds whose train features were separable (``separable_share``). Binary
  runs use their only pair; multi-class runs the ``mean`` row over class pairs.
  ``original_test_acc`` is the original study's reported test accuracy for the paper's three
  experiments (:data:`ORIGINAL_TEST_ACC`), empty elsewhere, to read next to ``test_acc_mean``.
- ``summary.md``: the same as a Markdown table of ``mean ± sd``.
- ``findings.csv`` / ``findings.md``: which SVM target each dataset × arch × variant × regime
  ends closer to, and whether it got there (:func:`findings`): "direction converged" = mean
  final angle to the closer target < :data:`DIRECTION_CONVERGED_DEG` (2°); "bias at the SVM" =
  |mean final bias offset to svc| < :data:`BIAS_AT_SVM_MARGINS` (0.1 SVM margins).
- ``convergence.csv``: the 1/log t fit of the angle and margin gaps of every run and target,
  and its mean over seeds (``seed`` = -1) (:func:`nnboundary.convergence.convergence_table`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import io
from .convergence import (
    RUN_KEYS,
    convergence_table,
    overall_rows,
    regime_sort_key,
    with_run_keys,
)
from .metrics import NETWORK_METRICS, PAIR_METRICS

SUMMARY_METRICS = tuple(PAIR_METRICS + NETWORK_METRICS + ["matrix_angle_deg"])
GROUP = ["dataset", "arch", "variant", "regime", "target", "scheme"]
#: One row of the findings table per group.
FINDINGS_GROUP = ["dataset", "arch", "variant", "regime"]
#: The network ``has converged in direction`` when its mean final angle (over seeds) to the
#: closer target is below this many degrees.
DIRECTION_CONVERGED_DEG = 2.0
#: The network's bias ``sits at the SVM's`` when the mean final bias offset (over seeds) is
#: within ± this many SVM margins (1/‖u‖) of it.
BIAS_AT_SVM_MARGINS = 0.1
#: Mean angles to the two targets closer than this (degrees) are a tie.
TIE_DEG = 0.01

# Test accuracy the original study reports (Li, Ding & Gao, arXiv 1808.05385), per dataset × arch.
ORIGINAL_TEST_ACC = {
    ("mnist01", "resnet"): 0.998,
    ("mnist012", "densenet40"): 0.996,
    ("cifar10_0v2", "densenet40"): 0.925,
}


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run (:data:`RUN_KEYS`), one summary row per target and
    scheme (binary: the only pair; multi-class: the ``mean`` row of every scheme)."""
    metrics = with_run_keys(metrics)
    last = metrics.groupby(RUN_KEYS, dropna=False)["epoch"].transform("max")
    final = metrics[metrics["epoch"] == last]
    overall = (final["scheme"] == "binary") | (final["pair"] == "mean")
    return final[overall]


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each metric at the final checkpoint."""
    final = final_rows(metrics)
    grouped = final.groupby(GROUP, sort=True)
    columns: dict[str, pd.Series] = {
        "final_epoch": grouped["epoch"].max(),
        "n_seeds": grouped["seed"].nunique(),
        "separable_share": grouped["separable"].mean(),
    }
    for name in SUMMARY_METRICS:
        columns[f"{name}_mean"] = grouped[name].mean()
        columns[f"{name}_sd"] = grouped[name].std(ddof=1).fillna(0.0)
    summary = pd.DataFrame(columns).reset_index()
    summary["original_test_acc"] = [
        ORIGINAL_TEST_ACC.get((d, a), float("nan"))
        for d, a in zip(summary["dataset"], summary["arch"])
    ]
    return summary


def markdown(summary: pd.DataFrame,
             metrics=("angle_deg", "margin_ratio", "bias_offset", "midpoint_position",
                      "agreement_test", "test_acc")) -> str:
    """A Markdown table of ``mean ± sd`` per group (no extra dependency)."""
    original = bool(summary["original_test_acc"].notna().any()) if len(summary) else False
    header = GROUP + ["epoch", "seeds", "separable"] + list(metrics)
    header += ["original test_acc"] if original else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in summary.iterrows():
        cells = [str(row[g]) for g in GROUP]
        cells += [str(int(row["final_epoch"])), str(int(row["n_seeds"])),
                  f"{row['separable_share']:.2f}"]
        cells += [f"{row[m + '_mean']:.3g} ± {row[m + '_sd']:.2g}" for m in metrics]
        if original:
            value = row["original_test_acc"]
            cells.append("" if pd.isna(value) else f"{value:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------

#: Per-target metrics of the findings table: metrics column → name prefix.
FINDINGS_METRICS = {"angle_deg": "angle", "margin_ratio": "margin_ratio",
                    "bias_offset": "bias_offset"}
TARGETS = ("svc", "homog")


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    """Mean and sample sd (ddof = 1; 0 for one value; NaN for none) of the finite values."""
    values = values[pd.notna(values)]
    if values.empty:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def final_overall_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The row summarising each fit (:func:`nnboundary.convergence.overall_rows`: binary, or
    the Crammer–Singer ``mean`` row) at the last epoch of each run."""
    rows = overall_rows(metrics)
    last = rows.groupby(RUN_KEYS, dropna=False)["epoch"].transform("max")
    return rows[rows["epoch"] == last]


def findings(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × arch × variant × regime at the final epoch of each run.

    Columns, besides the keys: ``final_epoch`` (the latest), ``n_seeds``, ``scheme`` (binary or
    crammer_singer), ``separable_share`` (seeds whose svc fit found separable features);
    ``<m>_<target>_mean`` / ``_sd`` (mean and sample sd over seeds, ddof = 1, 0 for one seed)
    for m in angle (``angle_deg``), margin_ratio, bias_offset and target in svc, homog;
    ``midpoint_position_mean`` / ``_sd`` (a property of the network's boundary and the train
    points alone, the same for both targets: taken from the svc rows, else homog);

    - ``closer_target``: the target with the smaller mean final angle, "tie" when the means
      differ by at most :data:`TIE_DEG`, "none" when either target has no fit;
    - ``seeds_compared``: seeds with both targets; ``seeds_closer_svc`` /
      ``seeds_closer_homog``: those whose final angle to that target is strictly smaller;
      ``closer_share_svc`` = seeds_closer_svc / seeds_compared (NaN for none);
    - ``direction_converged``: mean angle to the closer target < :data:`DIRECTION_CONVERGED_DEG`
      (2°);
    - ``bias_at_svm``: |mean bias offset to svc| < :data:`BIAS_AT_SVM_MARGINS` (0.1 SVM
      margins), i.e. the boundary sits where the free-bias SVM puts it (midway between the
      classes' support vectors along u); ``bias_at_homog``: the same for the homog SVM.

    Multi-class rows are means over class pairs (the crammer_singer ``mean`` row), so a mean
    bias offset near 0 can hide pairs of opposite sign.
    """
    final = final_overall_rows(metrics)
    records = []
    for keys, group in final.groupby(FINDINGS_GROUP, sort=False):
        record: dict = dict(zip(FINDINGS_GROUP, keys))
        per_target = {t: group[group["target"] == t].groupby("seed") for t in TARGETS}
        record["final_epoch"] = int(group["epoch"].max())
        record["n_seeds"] = int(group["seed"].nunique())
        record["scheme"] = "/".join(sorted(set(group["scheme"].astype(str))))
        reference = "svc" if (group["target"] == "svc").any() else "homog"
        record["separable_share"] = float(
            per_target[reference]["separable"].first().astype(float).mean())
        angles = {t: per_target[t]["angle_deg"].mean() for t in TARGETS}
        for column, prefix in FINDINGS_METRICS.items():
            for target in TARGETS:
                mean, sd = _mean_sd(per_target[target][column].mean())
                record[f"{prefix}_{target}_mean"], record[f"{prefix}_{target}_sd"] = mean, sd
        midpoint = per_target[reference]["midpoint_position"].mean()
        record["midpoint_position_mean"], record["midpoint_position_sd"] = _mean_sd(midpoint)

        svc, homog = record["angle_svc_mean"], record["angle_homog_mean"]
        if pd.isna(svc) or pd.isna(homog):
            closer, closer_angle = "none", float("nan")
        elif abs(svc - homog) <= TIE_DEG:
            closer, closer_angle = "tie", min(svc, homog)
        else:
            closer, closer_angle = ("svc", svc) if svc < homog else ("homog", homog)
        both = angles["svc"].index.intersection(angles["homog"].index)
        a_svc, a_homog = angles["svc"].loc[both], angles["homog"].loc[both]
        record["closer_target"] = closer
        record["seeds_compared"] = len(both)
        record["seeds_closer_svc"] = int((a_svc < a_homog).sum())
        record["seeds_closer_homog"] = int((a_homog < a_svc).sum())
        record["closer_share_svc"] = (record["seeds_closer_svc"] / len(both) if len(both)
                                      else float("nan"))
        record["direction_converged"] = bool(closer_angle < DIRECTION_CONVERGED_DEG)
        for target, name in (("svc", "bias_at_svm"), ("homog", "bias_at_homog")):
            offset = record[f"bias_offset_{target}_mean"]
            record[name] = bool(abs(offset) < BIAS_AT_SVM_MARGINS)  # False for NaN
        records.append(record)
    table = pd.DataFrame(records)
    if table.empty:
        return table
    order = sorted(range(len(table)), key=lambda i: (
        table["dataset"].iat[i], table["arch"].iat[i], table["variant"].iat[i],
        regime_sort_key(table["regime"].iat[i])))
    return table.iloc[order].reset_index(drop=True)


def _pm(mean: float, sd: float, unit: str = "") -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.3g} ± {0.0 if pd.isna(sd) else sd:.2g}{unit}"


def _regime_sentence(row: pd.Series) -> str:
    """One clause of the comparison sentence: where a regime ends."""
    closer = row["closer_target"]
    regime = row["regime"]
    if closer == "none":
        return f"{regime} has no pair of svc and homog fits to compare"
    if closer == "tie":
        return (f"{regime} ends equally close to svc and homog, angle "
                f"{_pm(row['angle_svc_mean'], row['angle_svc_sd'], '°')}")
    seeds = int(row[f"seeds_closer_{closer}"])
    flags = ["direction converged" if row["direction_converged"] else
             f"direction not converged (≥ {DIRECTION_CONVERGED_DEG:g}°)",
             "bias at the svc SVM" if row["bias_at_svm"] else "bias off the svc SVM"]
    return (f"{regime} ends closer to {closer} ({seeds}/{int(row['seeds_compared'])} seeds), "
            f"angle {_pm(row[f'angle_{closer}_mean'], row[f'angle_{closer}_sd'], '°')}, "
            f"bias offset {_pm(row[f'bias_offset_{closer}_mean'], row[f'bias_offset_{closer}_sd'])}"
            f" [{', '.join(flags)}]")


def findings_markdown(table: pd.DataFrame) -> str:
    """The findings as a Markdown table of ``mean ± sd`` and one sentence per dataset × arch ×
    variant comparing its regimes."""
    lines = [
        "# Findings: final checkpoint, mean ± sd over seeds",
        "",
        ("closer: the SVM target with the smaller mean final angle (svc: free bias; homog: "
         "bias penalised like a weight), with the seeds closer to it. direction converged: "
         f"mean angle to the closer target < {DIRECTION_CONVERGED_DEG:g}°. bias at svc SVM: "
         f"|mean bias offset to svc| < {BIAS_AT_SVM_MARGINS:g} SVM margins. Multi-class: means "
         "over class pairs of the Crammer–Singer fit."),
        "",
    ]
    header = FINDINGS_GROUP + ["epoch", "seeds", "angle svc (°)", "angle homog (°)", "closer",
                               "bias offset svc", "bias offset homog", "margin ratio svc",
                               "margin ratio homog", "midpoint", "direction converged",
                               "bias at svc SVM"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        closer = row["closer_target"]
        if closer in TARGETS:
            closer += f" ({int(row[f'seeds_closer_{closer}'])}/{int(row['seeds_compared'])})"
        cells = [str(row[g]) for g in FINDINGS_GROUP]
        cells += [str(int(row["final_epoch"])), str(int(row["n_seeds"]))]
        cells += [_pm(row[f"angle_{t}_mean"], row[f"angle_{t}_sd"]) for t in TARGETS]
        cells.append(closer)
        cells += [_pm(row[f"bias_offset_{t}_mean"], row[f"bias_offset_{t}_sd"]) for t in TARGETS]
        cells += [_pm(row[f"margin_ratio_{t}_mean"], row[f"margin_ratio_{t}_sd"])
                  for t in TARGETS]
        cells.append(_pm(row["midpoint_position_mean"], row["midpoint_position_sd"]))
        cells += ["yes" if row["direction_converged"] else "no",
                  "yes" if row["bias_at_svm"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Regimes compared", ""]
    for keys, group in table.groupby(["dataset", "arch", "variant"], sort=False):
        clauses = [_regime_sentence(row) for _, row in group.iterrows()]
        lines.append(f"- {'/'.join(map(str, keys))}: " + "; ".join(clauses) + ".")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def combine(inputs: list[Path]) -> pd.DataFrame:
    """Every input table in one frame, with the run keys (:func:`with_run_keys`), sorted."""
    frames = [io.read_table(p) for p in inputs]
    if not frames:
        raise ValueError("aggregate needs at least one metrics file")
    metrics = with_run_keys(pd.concat(frames, ignore_index=True))
    order = RUN_KEYS + ["epoch", "target", "scheme", "pair"]
    return metrics.sort_values(order, kind="stable").reset_index(drop=True)


def aggregate(inputs: list[Path], metrics_out: Path, summary_csv: Path, summary_md: Path,
              findings_csv: Path | None = None, findings_md: Path | None = None,
              convergence_csv: Path | None = None) -> pd.DataFrame:
    """Write the tables of the module docstring (the optional ones only when given); return
    the summary."""
    metrics = combine(inputs)
    summary = summarise(metrics)
    io.write_table(metrics_out, metrics)
    with io.atomic_path(summary_csv) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    with io.atomic_path(summary_md) as tmp:
        tmp.write_text("# Final checkpoint, mean ± sd over seeds\n\n" + markdown(summary))
    if findings_csv is not None or findings_md is not None:
        table = findings(metrics)
        if findings_csv is not None:
            with io.atomic_path(findings_csv) as tmp:
                table.to_csv(tmp, index=False, float_format="%.6g")
        if findings_md is not None:
            with io.atomic_path(findings_md) as tmp:
                tmp.write_text(findings_markdown(table))
    if convergence_csv is not None:
        with io.atomic_path(convergence_csv) as tmp:
            convergence_table(metrics).to_csv(tmp, index=False, float_format="%.6g")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary aggregate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", nargs="+", required=True, help="per-run metrics.parquet files")
    parser.add_argument("--metrics", required=True, help="combined metrics.parquet to write")
    parser.add_argument("--summary-csv", required=True)
    parser.add_argument("--summary-md", required=True)
    parser.add_argument("--findings-csv", required=True, help="findings table (CSV) to write")
    parser.add_argument("--findings-md", required=True, help="findings table (Markdown) to write")
    parser.add_argument("--convergence-csv", required=True,
                        help="1/log t convergence fits per run and their means (CSV) to write")
    args = parser.parse_args(argv)
    summary = aggregate([Path(p) for p in args.inputs], Path(args.metrics),
                        Path(args.summary_csv), Path(args.summary_md), Path(args.findings_csv),
                        Path(args.findings_md), Path(args.convergence_csv))
    print(f"aggregated {len(args.inputs)} runs into {len(summary)} summary rows", file=sys.stderr)
    return 0
