"""``nnboundary <stage> [options]``: one subcommand per pipeline stage.

Each stage lives in the module of the same name and exposes ``main(argv)``; modules are
imported only when their stage runs, so ``nnboundary svm`` never pays for importing torch.
"""

from __future__ import annotations

import importlib
import sys

STAGES = {
    "config": "check a config file, or record the validated config",
    "prepare": "make, split and standardise a dataset",
    "train": "train a bottleneck network, save checkpoints",
    "retrain": "retrain_last: re-initialise and retrain the last layer of a trained network",
    "features": "dump the last hidden layer of every checkpoint to Parquet",
    "svm": "fit the hard-margin SVM targets on each checkpoint's train features",
    "metrics": "compare the network's last layer with the SVMs",
    "collapse": "neural-collapse metrics (NC1-NC4) of every checkpoint",
    "aggregate": "collect every run's metrics into tables",
    "figures": "draw the figures",
    "benchmark": "print speed benchmarks (not tests)",
}


def per_run(parser, args, names, shared=()) -> list[tuple]:
    """The runs of one stage job: the stage's per-run arguments (``nargs="+"``), one value per
    run, zipped into one tuple per run in the order of ``names``. A job of a seed block covers
    several runs with one start of the interpreter (``grid.seeds_per_job``). An argument named
    in ``shared`` may also be given once for every run (e.g. a dataset file the seeds share);
    any other length mismatch is a usage error naming the arguments."""
    values = {name: getattr(args, name) for name in names}
    count = max(len(v) for v in values.values())
    for name, value in values.items():
        if name in shared and len(value) == 1:
            values[name] = value * count
        elif len(value) != count:
            flags = ", ".join(f"--{n.replace('_', '-')} ({len(v)})" for n, v in values.items())
            parser.error(f"give one value per run to each of {flags}")
    return list(zip(*(values[name] for name in names)))


def _expected_errors() -> tuple[type[BaseException], ...]:
    from .catalog import SourceError
    from .config import ConfigError
    from .io import InputFileError

    errors: list[type[BaseException]] = [ConfigError, InputFileError, SourceError]
    if "torch" in sys.modules:  # only stages that train import torch, and only they diverge
        from .train import TrainingDiverged

        errors.append(TrainingDiverged)
    return tuple(errors)


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
    module = importlib.import_module(f"nnboundary.{stage}")
    try:
        return int(module.main(rest) or 0)
    except _expected_errors() as err:
        # A bad input, config or run: the message says what and what to do; no traceback.
        print(f"nnboundary {stage}: error: {err}", file=sys.stderr)
        return 1
