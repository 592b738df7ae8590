"""Stage ``aggregate`` (``workflow/rules/aggregate.smk``): collect every run's metrics into the
grid's tables.

A run is identified by dataset, arch, variant, regime and seed (:data:`nnboundary.settings.keys.RUN_KEYS`;
a table without ``regime``/``variant`` columns is read as regime "full", variant "base"). Only valid rows
(:mod:`nnboundary.measures.validity`) enter a statistic: an invalid row is counted, never averaged.

- ``metrics.parquet``: every row of every run (one per dataset, arch, variant, regime, seed,
  epoch, target, scheme and pair), the columns of :mod:`nnboundary.measures.metrics`.
- ``summary.csv``: the final checkpoint of each run, one row per dataset × arch × variant ×
  regime × target × scheme: ``n_seeds``, ``n_valid`` (seeds whose final row is valid),
  ``n_separable``, the training settings the runs used (``optimizer``, ``loss``, ``lr``), and
  for each metric over the valid seeds ``<metric>_mean``, ``<metric>_sd`` (ddof = 1; 0 for one
  seed), ``<metric>_median``, ``<metric>_q25`` and ``<metric>_q75`` (NaN without a valid seed).
  Binary runs use their only pair; multi-class runs the ``mean`` row over class pairs.
  ``original_test_acc`` is the original study's reported test accuracy for the paper's three
  experiments, empty elsewhere, to read next to ``test_acc_mean`` (:mod:`nnboundary.reporting.summary`).
- ``summary.md`` / ``summary.html``: the same as a table of ``mean ± sd (median)``.
- ``findings.csv`` / ``findings.md`` / ``findings.html``, ``seeds.csv``, ``excluded.csv``: per
  cell, with per-seed statistics (:mod:`nnboundary.reporting.findings`).
- ``claims.csv`` / ``claims.html``: the paper's claims at every depth (``--milestones``) and
  at the final checkpoint, the regimes paired per seed (:mod:`nnboundary.reporting.claims`);
  also a section of ``findings.md``.
- ``generalisation.csv`` / ``generalisation.html``: test error and loss against the bias, per
  cell and depth (:mod:`nnboundary.reporting.generalisation`). The Markdown and HTML of one table come from the same
  :mod:`nnboundary.reporting.document` blocks; the HTML pages are what the Snakemake report shows.
- ``convergence.csv``: the 1/log t fit of the angle and margin gaps of every run and target over
  its valid checkpoints, and the median and range over seeds (``seed`` = -1)
  (:func:`nnboundary.reporting.convergence.convergence_table`).
- ``neural_collapse.parquet``, ``collapse.csv`` / ``collapse.html``: the neural-collapse tables
  (:mod:`nnboundary.reporting.collapse`).
- ``depth.csv`` / ``depth.html``: every run at the same train losses (``--milestones``), and
  whether the angle to each target falls as the loss goes to 0 (:mod:`nnboundary.reporting.depth`); also
  a section of ``findings.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ..formats.tables import read_table, write_csv, write_table
from ..measures.validity import with_validity
from ..reporting import claims as claims_table
from ..reporting import collapse, depth, document, findings, generalisation
from ..reporting.convergence import convergence_table
from ..reporting.summary import summarise, summary_document
from ..reporting.tables import with_run_keys
from ..settings.keys import RUN_KEYS


def combine(inputs: list[Path]) -> pd.DataFrame:
    """Every input table in one frame, with the run keys (:func:`with_run_keys`), sorted."""
    frames = [read_table(p) for p in inputs]
    if not frames:
        raise ValueError("aggregate needs at least one metrics file")
    metrics = with_run_keys(pd.concat(frames, ignore_index=True))
    order = [*RUN_KEYS, "epoch", "target", "scheme", "pair"]
    return metrics.sort_values(order, kind="stable").reset_index(drop=True)


def aggregate(inputs: list[Path], metrics_out: Path, summary_csv: Path, summary_md: Path,
              findings_csv: Path | None = None, findings_md: Path | None = None,
              convergence_csv: Path | None = None, claims_csv: Path | None = None,
              seeds_csv: Path | None = None, excluded_csv: Path | None = None,
              summary_html: Path | None = None, findings_html: Path | None = None,
              claims_html: Path | None = None, collapse_inputs: list[Path] | None = None,
              collapse_out: Path | None = None, collapse_csv: Path | None = None,
              collapse_html: Path | None = None, depth_csv: Path | None = None,
              depth_html: Path | None = None, generalisation_csv: Path | None = None,
              generalisation_html: Path | None = None,
              milestones=depth.DEFAULT_MILESTONES) -> pd.DataFrame:
    """Write the tables of the module docstring (the optional ones only when given); return
    the summary."""
    metrics = with_validity(combine(inputs))
    summary = summarise(metrics)
    write_table(metrics_out, metrics)
    write_csv(summary_csv, summary)
    document.write(summary_document(summary), summary_md, summary_html, "Summary")
    seeds = findings.seed_table(metrics)
    excluded = findings.excluded(seeds)
    claims = claims_table.claims(metrics, milestones)
    depths = depth.depth_table(metrics, milestones)
    if depth_csv is not None:
        write_csv(depth_csv, depths)
    document.write(depth.depth_document(depths), None, depth_html, "Depth")
    if findings_csv is not None or findings_md is not None or findings_html is not None:
        table = findings.findings(metrics)
        if findings_csv is not None:
            write_csv(findings_csv, table)
        blocks = findings.findings_document(table, claims_table.claims_blocks(claims), excluded)
        blocks += depth.depth_document(depths, level=2)
        document.write(blocks, findings_md, findings_html, "Findings")
    if claims_html is not None:
        document.write(claims_table.claims_document(claims), None, claims_html, "Claims")
    if generalisation_csv is not None or generalisation_html is not None:
        table = generalisation.generalisation_table(metrics, milestones)
        if generalisation_csv is not None:
            write_csv(generalisation_csv, table)
        document.write(generalisation.generalisation_document(table), None, generalisation_html,
                       "Generalisation")
    for path, table in ((claims_csv, claims), (seeds_csv, seeds), (excluded_csv, excluded)):
        if path is not None:
            write_csv(path, table)
    if convergence_csv is not None:
        write_csv(convergence_csv, convergence_table(metrics))
    if collapse_inputs is not None:
        table = collapse.collapse_table([read_table(p) for p in collapse_inputs], metrics)
        if collapse_out is not None:
            write_table(collapse_out, table)
        nc_summary = collapse.collapse_summary(table)
        if collapse_csv is not None:
            write_csv(collapse_csv, nc_summary)
        document.write(collapse.collapse_document(nc_summary), None, collapse_html,
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
    parser.add_argument("--generalisation-csv",
                        help="test error and loss against the bias (CSV) to write")
    parser.add_argument("--generalisation-html", help="the same (HTML page) to write")
    parser.add_argument("--milestones", type=float, nargs="+",
                        default=list(depth.DEFAULT_MILESTONES),
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
                           args.depth_html, args.generalisation_csv,
                           args.generalisation_html)), milestones=args.milestones)
    print(f"aggregated {len(args.inputs)} runs into {len(summary)} summary rows", file=sys.stderr)
    return 0
