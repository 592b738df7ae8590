"""Stage ``aggregate``: collect every run's metrics into the grid's tables.

- ``metrics.parquet``: every row of every run (one per dataset, arch, seed, epoch, target,
  scheme and pair), the columns of :mod:`nnboundary.metrics`.
- ``summary.csv``: the final checkpoint of each run, one row per dataset × arch × target ×
  scheme, with the mean and sample standard deviation (ddof = 1; 0 for a single seed) over
  seeds of each metric (``<metric>_mean``, ``<metric>_sd``), ``n_seeds``, and the share of
  seeds whose train features were separable (``separable_share``). Binary runs use their only
  pair; multi-class runs the ``mean`` row over class pairs.
  ``original_test_acc`` is the original study's reported test accuracy for the paper's three
  experiments (:data:`ORIGINAL_TEST_ACC`), empty elsewhere, to read next to ``test_acc_mean``.
- ``summary.md``: the same as a Markdown table of ``mean ± sd``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import io
from .metrics import NETWORK_METRICS, PAIR_METRICS

SUMMARY_METRICS = tuple(PAIR_METRICS + NETWORK_METRICS + ["matrix_angle_deg"])
GROUP = ["dataset", "arch", "target", "scheme"]

# Test accuracy the original study reports (Li, Ding & Gao, arXiv 1808.05385), per dataset × arch.
ORIGINAL_TEST_ACC = {
    ("mnist01", "resnet"): 0.998,
    ("mnist012", "densenet40"): 0.996,
    ("cifar10_0v2", "densenet40"): 0.925,
}


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run, one summary row per target and scheme."""
    last = metrics.groupby(["dataset", "arch", "seed"])["epoch"].transform("max")
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


def markdown(summary: pd.DataFrame, metrics=("angle_deg", "margin_ratio", "bias_offset",
                                             "midpoint_position", "agreement_test", "test_acc")) -> str:
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


def aggregate(inputs: list[Path], metrics_out: Path, summary_csv: Path, summary_md: Path) -> pd.DataFrame:
    frames = [io.read_table(p) for p in inputs]
    if not frames:
        raise ValueError("aggregate needs at least one metrics file")
    metrics = pd.concat(frames, ignore_index=True)
    metrics = metrics.sort_values(["dataset", "arch", "seed", "epoch", "target", "scheme", "pair"],
                                  kind="stable").reset_index(drop=True)
    summary = summarise(metrics)
    io.write_table(metrics_out, metrics)
    with io.atomic_path(summary_csv) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    with io.atomic_path(summary_md) as tmp:
        tmp.write_text("# Final checkpoint, mean ± sd over seeds\n\n" + markdown(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", nargs="+", required=True, help="per-run metrics.parquet files")
    parser.add_argument("--metrics", required=True, help="combined metrics.parquet to write")
    parser.add_argument("--summary-csv", required=True)
    parser.add_argument("--summary-md", required=True)
    args = parser.parse_args(argv)
    summary = aggregate([Path(p) for p in args.inputs], Path(args.metrics),
                        Path(args.summary_csv), Path(args.summary_md))
    print(f"aggregated {len(args.inputs)} runs into {len(summary)} summary rows", file=sys.stderr)
    return 0

