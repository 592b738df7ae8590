"""Stage ``theory`` (``workflow/rules/theory.smk``): every binary ``retrain_last`` run against
the linear theorem (:mod:`nnboundary.measures.linear_theory`): per checkpoint the measured
angles to ``homog`` and ``svc``, the theorem's predicted path, the regularisation path and the
numpy control, one Parquet table per run (``nnboundary theory runs``); and the grid's table,
``linear_theory.csv`` / ``.html`` (``nnboundary theory table``,
:mod:`nnboundary.reporting.theory`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..formats.checkpoint import load_checkpoints
from ..formats.features import list_feature_files, read_features
from ..formats.tables import read_table, write_csv, write_table
from ..measures.linear_theory import run_table
from ..reporting import document
from ..reporting.theory import theory_document, theory_summary
from ..settings.commandline import add_per_run, per_run
from ..settings.keys import RUN_KEYS


def _runs(args, parser) -> int:
    for features, checkpoints, output in per_run(parser, args,
                                                  ("features", "checkpoints", "output")):
        sets = [read_features(p) for p in list_feature_files(features)]
        state = load_checkpoints(checkpoints, numpy=True)
        table = run_table(sets, state)
        keys = sets[-1].row_keys
        for name in RUN_KEYS:
            table.insert(RUN_KEYS.index(name), name, keys[name])
        write_table(output, table, {"stage": "theory"})
        final = table[table["final"]] if len(table) else table
        note = ("no rows: the theorem's binary form does not apply (K > 2)" if table.empty else
                f"{len(table)} checkpoints; at the final one |measured − regularisation path| "
                f"angle to homog {abs(final['homog_error_reg_deg'].iloc[0]):.3g}°, control "
                f"{table['control_vs_measured_deg'].max():.2g}°")
        print(f"{features}: {note}", file=sys.stderr)
    return 0


def _table(args) -> int:
    import pandas as pd

    frames = [read_table(p) for p in args.inputs]
    frames = [f for f in frames if len(f)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_csv(args.csv, table)
    summary = theory_summary(table)
    document.write(theory_document(summary), None, args.html, "The linear case")
    print(f"theory: {len(table)} checkpoints of {len(frames)} binary retrain_last runs",
          file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary theory", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="one Parquet table per retrain_last run")
    add_per_run(runs, ("features", "run folder of feature files"),
                ("checkpoints", "the run's checkpoints.pt"), ("output", "Parquet file to write"))
    table = commands.add_parser("table", help="the grid's table and its summary page")
    table.add_argument("--inputs", required=True, type=Path, nargs="+",
                       help="every run's Parquet table")
    table.add_argument("--csv", required=True, type=Path, help="linear_theory.csv to write")
    table.add_argument("--html", required=True, type=Path, help="linear_theory.html to write")
    args = parser.parse_args(argv)
    return _runs(args, runs) if args.command == "runs" else _table(args)
