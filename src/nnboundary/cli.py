"""``nnboundary <stage> [options]``: one subcommand per pipeline stage.

Each stage lives in the module of the same name under :mod:`nnboundary.stages` and exposes
``main(argv)``; a stage's module is imported only when it runs, so ``nnboundary svm`` never
pays for importing torch. An expected error (:class:`nnboundary.errors.NNBoundaryError`: bad
input, config or run) ends with its message and exit status 1, without a traceback.
"""

from __future__ import annotations

import importlib
import sys

from .errors import NNBoundaryError

STAGES = {
    "config": "check a config file, or record the validated config",
    "prepare": "make, split and standardise a dataset",
    "train": "train a bottleneck network, save checkpoints",
    "retrain": "retrain_last: re-initialise and retrain the last layer of a trained network",
    "features": "dump the last hidden layer of every checkpoint to Parquet",
    "svm": "fit the hard-margin SVM targets on each checkpoint's train features",
    "metrics": "compare the network's last layer with the SVMs",
    "collapse": "neural-collapse metrics (NC1-NC4) of every checkpoint",
    "theory": "binary retrain_last runs against the linear theorem, and a numpy control",
    "aggregate": "collect every run's metrics into tables",
    "figures": "draw the figures",
    "benchmark": "print speed benchmarks (not tests)",
    "docs": "render README.md and docs/results.md from the committed result sets",
}


def usage() -> str:
    lines = ["usage: nnboundary <stage> [options]   (nnboundary <stage> --help for its options)", ""]
    lines += [f"  {name:<10} {text}" for name, text in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"nnboundary: unknown stage {stage!r}; allowed: {', '.join(STAGES)}\n", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    module = importlib.import_module(f"nnboundary.stages.{stage}")
    try:
        return int(module.main(rest) or 0)
    except NNBoundaryError as err:
        # A bad input, config or run: the message says what and what to do; no traceback.
        print(f"nnboundary {stage}: error: {err}", file=sys.stderr)
        return 1
