"""Stage ``figures`` (``workflow/rules/figures.smk``: the rules ``run_figure``,
``convergence_figure``, ``overview_figure``, ``collapse_figure`` and ``theory_figure``): one
subcommand per kind of figure (:mod:`nnboundary.figures`), each written as one PNG."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..settings.commandline import block_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nnboundary figures",
        description="Stage figures: pictures of the network's last layer against the hard-margin "
                    "SVMs.")
    commands = parser.add_subparsers(dest="command", required=True)
    settings_help = 'JSON object, e.g. {"dpi": 110, "resolution": 300} (the defaults)'

    run = commands.add_parser("run", help="one run's final checkpoint in the bottleneck space")
    run.add_argument("--features", required=True, type=Path, help="run folder of feature files")
    run.add_argument("--svm", required=True, type=Path, help="svm.json of the same run")
    run.add_argument("--checkpoints", required=True, type=Path, help="checkpoint file (.pt)")
    run.add_argument("--data", required=True, type=Path, help="prepared dataset (.npz)")
    run.add_argument("--output", required=True, type=Path, help="PNG file to write")
    run.add_argument("--settings", default="", help=settings_help)

    conv = commands.add_parser(
        "convergence", help="angles to the SVM targets and more against depth −log10(loss), "
                            "one line per seed")
    conv.add_argument("--metrics", required=True, nargs="+", type=Path,
                      help="per-run metrics files of one dataset × arch × variant: every "
                           "regime and seed")
    conv.add_argument("--collapse", nargs="*", type=Path, default=None,
                      help="the same runs' neural_collapse.parquet files (adds NC1 and NC3)")
    conv.add_argument("--output", required=True, type=Path, help="PNG file to write")
    conv.add_argument("--settings", default="", help=settings_help)

    over = commands.add_parser("overview", help="final angle and bias gap of every run")
    over.add_argument("--metrics", required=True, type=Path, help="aggregated metrics.parquet")
    over.add_argument("--output", required=True, type=Path, help="PNG file to write")
    over.add_argument("--settings", default="", help=settings_help)

    nc = commands.add_parser("collapse", help="angle to the SVM against NC3 self-duality, per run")
    nc.add_argument("--table", required=True, type=Path, help="aggregated neural_collapse.parquet")
    nc.add_argument("--output", required=True, type=Path, help="PNG file to write")
    nc.add_argument("--settings", default="", help=settings_help)

    theory = commands.add_parser("theory", help="binary retrain_last runs against the linear "
                                                "theorem, over the depth")
    theory.add_argument("--tables", required=True, nargs="+", type=Path,
                        help="linear_theory.parquet of every retrain_last seed of one dataset × "
                             "arch × variant")
    theory.add_argument("--output", required=True, type=Path, help="PNG file to write")
    theory.add_argument("--settings", default="", help=settings_help)

    args = parser.parse_args(argv)
    settings = block_settings(args.settings, "figures")
    if args.command == "run":
        from ..figures.run import run_figure

        run_figure(args.features, args.svm, args.checkpoints, args.data, args.output, settings)
    elif args.command == "convergence":
        from ..figures.convergence import convergence_figure

        convergence_figure(args.metrics, args.output, settings, args.collapse)
    elif args.command == "theory":
        from ..figures.theory import theory_figure

        theory_figure(args.tables, args.output, settings)
    elif args.command == "collapse":
        from ..figures.collapse import collapse_figure

        collapse_figure(args.table, args.output, settings)
    else:
        from ..figures.overview import overview_figure

        overview_figure(args.metrics, args.output, settings)
    return 0
