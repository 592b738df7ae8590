"""Stage ``collapse`` (``workflow/rules/collapse.smk``): the neural-collapse geometry of every
checkpoint of a run (:mod:`nnboundary.measures.collapse`), one Parquet table per run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..formats.features import list_feature_files
from ..formats.tables import write_table
from ..measures.collapse import run_collapse
from ..settings.commandline import per_run


def main(argv: Sequence[str] | None = None) -> int:
    """``nnboundary collapse --features DIR --output neural_collapse.parquet``."""
    parser = argparse.ArgumentParser(prog="nnboundary collapse", description=__doc__.split("\n")[0])
    parser.add_argument("--features", required=True, type=Path, nargs="+",
                        help="run folder of feature files, one per run")
    parser.add_argument("--output", required=True, type=Path, nargs="+",
                        help="Parquet file to write, one per run")
    args = parser.parse_args(argv)
    for features, output in per_run(parser, args, ("features", "output")):
        frame = run_collapse(list_feature_files(features))
        write_table(output, frame, {"stage": "collapse"})
        print(f"{features}: neural collapse of {len(frame)} checkpoints", file=sys.stderr)
    return 0
