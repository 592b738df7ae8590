"""The summary table (``summary.csv``, ``summary.md``, ``summary.html``): the final checkpoint of
each run, one row per dataset × arch × variant × regime × target × scheme, and over the valid
seeds the mean, sd, median and quartiles of every metric (:mod:`nnboundary.measures.metrics`).
Binary runs use their only pair; multi-class runs the ``mean`` row over class pairs.
"""

from __future__ import annotations

import pandas as pd

from ..measures.metrics import NETWORK_METRICS, PAIR_METRICS
from ..settings.keys import CELL_KEYS
from ..settings.targets import PAIR_ANGLE_COLUMNS
from . import document, stats
from .findings import NO_VALID, distinct_values
from .tables import final_rows

SUMMARY_METRICS = (*PAIR_METRICS, *NETWORK_METRICS, "matrix_angle_deg")
#: The statistics of each metric in the summary, over valid seeds.
SUMMARY_STATS = ("mean", "sd", "median", "q25", "q75")
GROUP = [*CELL_KEYS, "target", "scheme"]

# Test accuracy the original study reports (Li, Ding & Gao, arXiv 1808.05385), per dataset × arch.
ORIGINAL_TEST_ACC = {
    ("mnist01", "resnet"): 0.998,
    ("mnist012", "densenet40"): 0.996,
    ("cifar10_0v2", "densenet40"): 0.925,
}


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per group, the statistics over valid seeds of each metric at the final checkpoint."""
    final = final_rows(metrics)
    records = []
    for keys, group in final.groupby(GROUP, sort=True):
        valid = group[group["valid"]]
        record = dict(zip(GROUP, keys))
        record.update({
            "final_epoch": int(group["epoch"].max()),
            "final_step": int(group["step"].max()) if "step" in group else -1,
            "n_seeds": int(group["seed"].nunique()),
            "n_valid": int(valid["seed"].nunique()),
            "n_separable": int(group["separable"].astype(bool).sum()),
        })
        for name in ("optimizer", "loss", "lr"):
            record[name] = distinct_values(group[name]) if name in group else ""
        for name in SUMMARY_METRICS:
            summary = stats.describe(valid[name] if name in valid else [])
            for part in SUMMARY_STATS:
                record[f"{name}_{part}"] = summary[part]
        records.append(record)
    summary = pd.DataFrame(records)
    if summary.empty:
        return summary
    summary["original_test_acc"] = [
        ORIGINAL_TEST_ACC.get((d, a), float("nan"))
        for d, a in zip(summary["dataset"], summary["arch"])
    ]
    return summary


#: The metrics shown in summary.md.
MARKDOWN_METRICS = ("angle_deg", "margin_ratio", "bias_gap", "svm_bias_gap",
                    *PAIR_ANGLE_COLUMNS, "train_loss", "test_acc")


def summary_document(summary: pd.DataFrame, metrics=MARKDOWN_METRICS) -> list[document.Block]:
    """summary.md / summary.html: a table of ``mean ± sd (median)`` over valid seeds per group;
    a group without a valid seed says so instead of showing numbers."""
    original = bool(summary["original_test_acc"].notna().any()) if len(summary) else False
    header = GROUP + ["epoch", "valid/seeds", "lr"] + list(metrics)
    header += ["original test_acc"] if original else []
    rows = []
    for _, row in summary.iterrows():
        cells = [str(row[g]) for g in GROUP]
        cells += [str(int(row["final_epoch"])), f"{int(row['n_valid'])}/{int(row['n_seeds'])}",
                  str(row["lr"])]
        if row["n_valid"] == 0:
            cells += [NO_VALID] + ["–"] * (len(metrics) - 1)
        else:
            for m in metrics:
                mean, sd, median = row[f"{m}_mean"], row[f"{m}_sd"], row[f"{m}_median"]
                cells.append("–" if pd.isna(mean) else
                             f"{mean:.3g} ± {sd:.2g} ({median:.3g})")
        if original:
            value = row["original_test_acc"]
            cells.append("" if pd.isna(value) else f"{value:.3g}")
        rows.append(cells)
    return [document.Heading("Final checkpoint, valid seeds: mean ± sd (median)"),
            document.Table(header, rows, caption=SUMMARY_CAPTION)]


SUMMARY_CAPTION = (
    "One row per dataset × arch × variant × regime × SVM target × scheme, at the final "
    "checkpoint, over valid seeds only (valid/seeds). angle_deg: angle between the network's "
    "last-layer normal and the SVM's; margin_ratio: the network's margin over the SVM's; "
    "bias_gap: 1 − 2·midpoint (0 midway); svm_bias_gap: the SVM's own; *_angle_deg: the "
    "angles between the SVM targets svc (free bias), homog (bias penalised like a weight) and "
    "origin (no bias). summary.csv has every metric with its quartiles.")
