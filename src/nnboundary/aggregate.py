"""Stage ``aggregate``: collect every run's metrics into the grid's tables.

A run is identified by dataset, arch, variant, regime and seed (:data:`RUN_KEYS`; a table
without ``regime``/``variant`` columns is read as regime "full", variant "base"). Only valid rows
(:mod:`nnboundary.validity`) enter a statistic: an invalid row is counted, never averaged.

- ``metrics.parquet``: every row of every run (one per dataset, arch, variant, regime, seed,
  epoch, target, scheme and pair), the columns of :mod:`nnboundary.metrics`.
- ``summary.csv``: the final checkpoint of each run, one row per dataset × arch × variant ×
  regime × target × scheme: ``n_seeds``, ``n_valid`` (seeds whose final row is valid),
  ``n_separable``, the training settings the runs used (``optimizer``, ``loss``, ``lr``), and
  for each metric over the valid seeds ``<metric>_mean``, ``<metric>_sd`` (ddof = 1; 0 for one
  seed), ``<metric>_median``, ``<metric>_q25`` and ``<metric>_q75`` (NaN without a valid seed).
  Binary runs use their only pair; multi-class runs the ``mean`` row over class pairs.
  ``original_test_acc`` is the original study's reported test accuracy for the paper's three
  experiments (:data:`ORIGINAL_TEST_ACC`), empty elsewhere, to read next to ``test_acc_mean``.
- ``summary.md`` / ``summary.html``: the same as a table of ``mean ± sd (median)``.
- ``findings.csv`` / ``findings.md`` / ``findings.html``, ``claims.csv`` / ``claims.html``,
  ``seeds.csv``, ``excluded.csv``: per cell and per claim, with per-seed statistics
  (:mod:`nnboundary.findings`). The Markdown and HTML of one table come from the same
  :mod:`nnboundary.document` blocks; the HTML pages are what the Snakemake report shows.
- ``convergence.csv``: the 1/log t fit of the angle and margin gaps of every run and target over
  its valid checkpoints, and the median and range over seeds (``seed`` = -1)
  (:func:`nnboundary.convergence.convergence_table`).
- ``depth.csv`` / ``depth.html``: every run at the same train losses (``--milestones``), and
  whether the angle to each target falls as the loss goes to 0 (:mod:`nnboundary.depth`); also
  a section of ``findings.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import depth as depth_module
from . import findings as findings_module
from . import document, io, stats
from .convergence import RUN_KEYS, convergence_table, with_run_keys
from .metrics import NETWORK_METRICS, PAIR_METRICS
from .targets import PAIR_ANGLE_COLUMNS
from .validity import with_validity

SUMMARY_METRICS = tuple(PAIR_METRICS + NETWORK_METRICS + ["matrix_angle_deg"])
#: The statistics of each metric in the summary, over valid seeds.
SUMMARY_STATS = ("mean", "sd", "median", "q25", "q75")
GROUP = ["dataset", "arch", "variant", "regime", "target", "scheme"]

# Test accuracy the original study reports (Li, Ding & Gao, arXiv 1808.05385), per dataset × arch.
ORIGINAL_TEST_ACC = {
    ("mnist01", "resnet"): 0.998,
    ("mnist012", "densenet40"): 0.996,
    ("cifar10_0v2", "densenet40"): 0.925,
}


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run (:data:`RUN_KEYS`), one summary row per target and
    scheme (binary: the only pair; multi-class: the ``mean`` row of every scheme), with
    ``valid`` and ``invalid_reason``."""
    metrics = with_validity(with_run_keys(metrics))
    last = metrics.groupby(RUN_KEYS, dropna=False)["epoch"].transform("max")
    final = metrics[metrics["epoch"] == last]
    overall = (final["scheme"] == "binary") | (final["pair"] == "mean")
    return final[overall]


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
            record[name] = findings_module.distinct_values(group[name]) if name in group else ""
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
            cells += [findings_module.NO_VALID] + ["–"] * (len(metrics) - 1)
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


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with io.atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def _write_text(path: Path, text: str) -> None:
    with io.atomic_path(path) as tmp:
        tmp.write_text(text)


def write_document(blocks: list[document.Block], markdown_path: Path | None = None,
                   html_path: Path | None = None, title: str = "") -> None:
    """One document as Markdown and/or HTML (each written atomically)."""
    if markdown_path is not None:
        _write_text(markdown_path, document.markdown(blocks))
    if html_path is not None:
        _write_text(html_path, document.html(blocks, title))


def aggregate(inputs: list[Path], metrics_out: Path, summary_csv: Path, summary_md: Path,
              findings_csv: Path | None = None, findings_md: Path | None = None,
              convergence_csv: Path | None = None, claims_csv: Path | None = None,
              seeds_csv: Path | None = None, excluded_csv: Path | None = None,
              summary_html: Path | None = None, findings_html: Path | None = None,
              claims_html: Path | None = None, collapse_inputs: list[Path] | None = None,
              collapse_out: Path | None = None, collapse_csv: Path | None = None,
              collapse_html: Path | None = None, depth_csv: Path | None = None,
              depth_html: Path | None = None,
              milestones=depth_module.DEFAULT_MILESTONES) -> pd.DataFrame:
    """Write the tables of the module docstring (the optional ones only when given); return
    the summary."""
    metrics = with_validity(combine(inputs))
    summary = summarise(metrics)
    io.write_table(metrics_out, metrics)
    _write_csv(summary_csv, summary)
    write_document(summary_document(summary), summary_md, summary_html, "Summary")
    seeds = findings_module.seed_table(metrics)
    excluded = findings_module.excluded(seeds)
    claims = findings_module.claims(metrics)
    depth = depth_module.depth_table(metrics, milestones)
    if depth_csv is not None:
        _write_csv(depth_csv, depth)
    write_document(depth_module.depth_document(depth), None, depth_html, "Depth")
    if findings_csv is not None or findings_md is not None or findings_html is not None:
        table = findings_module.findings(metrics)
        if findings_csv is not None:
            _write_csv(findings_csv, table)
        blocks = findings_module.findings_document(table, claims, excluded)
        blocks += depth_module.depth_document(depth, level=2)
        write_document(blocks, findings_md, findings_html, "Findings")
    if claims_html is not None:
        write_document(findings_module.claims_document(claims), None, claims_html, "Claims")
    for path, table in ((claims_csv, claims), (seeds_csv, seeds), (excluded_csv, excluded)):
        if path is not None:
            _write_csv(path, table)
    if convergence_csv is not None:
        _write_csv(convergence_csv, convergence_table(metrics))
    if collapse_inputs is not None:
        from . import collapse

        table = collapse.collapse_table([io.read_table(p) for p in collapse_inputs], metrics)
        if collapse_out is not None:
            io.write_table(collapse_out, table)
        nc_summary = collapse.collapse_summary(table)
        if collapse_csv is not None:
            _write_csv(collapse_csv, nc_summary)
        write_document(collapse.collapse_document(nc_summary), None, collapse_html,
                       "Neural collapse")
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
    parser.add_argument("--summary-html", help="summary table (HTML page) to write")
    parser.add_argument("--findings-html", help="findings (HTML page) to write")
    parser.add_argument("--claims-html", help="the paper's claims (HTML page) to write")
    parser.add_argument("--collapse-inputs", nargs="*", default=None,
                        help="per-run neural_collapse.parquet files")
    parser.add_argument("--collapse", help="combined neural_collapse.parquet to write")
    parser.add_argument("--collapse-csv", help="neural-collapse summary (CSV) to write")
    parser.add_argument("--collapse-html", help="neural-collapse summary (HTML page) to write")
    parser.add_argument("--convergence-csv", required=True,
                        help="1/log t convergence fits per run and their medians (CSV) to write")
    parser.add_argument("--claims-csv", required=True, help="the paper's claims (CSV) to write")
    parser.add_argument("--seeds-csv", required=True,
                        help="every run's final values and validity (CSV) to write")
    parser.add_argument("--excluded-csv", required=True,
                        help="the invalid seeds and their reasons (CSV) to write")
    parser.add_argument("--depth-csv", help="every run at the same train losses (CSV) to write")
    parser.add_argument("--depth-html", help="the depth table (HTML page) to write")
    parser.add_argument("--milestones", type=float, nargs="+",
                        default=list(depth_module.DEFAULT_MILESTONES),
                        help="train losses of the depth table (default: %(default)s)")
    args = parser.parse_args(argv)
    summary = aggregate([Path(p) for p in args.inputs], Path(args.metrics),
                        Path(args.summary_csv), Path(args.summary_md), Path(args.findings_csv),
                        Path(args.findings_md), Path(args.convergence_csv),
                        Path(args.claims_csv), Path(args.seeds_csv), Path(args.excluded_csv),
                        *(None if a is None else Path(a) for a in
                          (args.summary_html, args.findings_html, args.claims_html)),
                        None if args.collapse_inputs is None else
                        [Path(p) for p in args.collapse_inputs],
                        *(None if a is None else Path(a) for a in
                          (args.collapse, args.collapse_csv, args.collapse_html, args.depth_csv,
                           args.depth_html)), milestones=args.milestones)
    print(f"aggregated {len(args.inputs)} runs into {len(summary)} summary rows", file=sys.stderr)
    return 0
