"""Stage ``metrics`` (``workflow/rules/metrics.smk``): compare each checkpoint's last layer with
the SVM fits of its epoch (:func:`nnboundary.measures.metrics.run_metrics`) and write the run's
metrics table."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..formats.features import list_feature_files
from ..formats.tables import write_table
from ..measures.metrics import run_metrics
from ..settings.commandline import add_per_run, block_settings, per_run
from ..settings.keys import RUN_KEYS


def main(argv: Sequence[str] | None = None) -> int:
    """``nnboundary metrics --features DIR --svm svm.json --output metrics.parquet``."""
    parser = argparse.ArgumentParser(
        prog="nnboundary metrics",
        description="Compare each checkpoint's last layer with the SVM fits of its epoch.",
    )
    add_per_run(parser, ("features", "run folder of feature files"),
                ("svm", "svm.json of the same run"), ("output", "metrics Parquet file to write"))
    parser.add_argument(
        "--settings", default="", help='JSON object, e.g. {"grid_points": 200} (the default)'
    )
    args = parser.parse_args(argv)
    grid_points = block_settings(args.settings, "metrics")["grid_points"]
    for features, svm, output in per_run(parser, args, ("features", "svm", "output")):
        frame = run_metrics(list_feature_files(features), svm, grid_points)
        metadata = {"stage": "metrics", "settings": json.dumps({"grid_points": grid_points})}
        for name in RUN_KEYS:
            if len(frame):
                metadata[name] = str(frame[name].iloc[0])
        write_table(output, frame, metadata)
    return 0
