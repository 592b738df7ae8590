"""Stage ``prepare`` (``workflow/rules/prepare.smk``): make a dataset, split it into train/test
and standardise it (:func:`nnboundary.data.make.make_dataset`), and write it
(:mod:`nnboundary.formats.dataset`).

A set generated from the run's seed is written once per seed (several ``--seed`` and
``--output``: one job prepares a seed block's files); every other set once for every seed.
"""

from __future__ import annotations

import argparse
import sys

from ..data.make import make_dataset
from ..errors import ConfigError
from ..formats.dataset import save_dataset
from ..settings import catalog
from ..settings.commandline import parse_settings
from ..settings.entries import DATASETS, SEEDED_DATASETS
from ..settings.layers import dataset_settings


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnboundary prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True,
                        help=f"a built-in dataset ({', '.join(DATASETS)}) or your own (its "
                             f"--settings hold its source)")
    parser.add_argument(
        "--seed", type=int, nargs="+", default=None,
        help=f"the run's seed; needed by {', '.join(SEEDED_DATASETS)} and your own sets with "
             f"seeded: true, ignored by the others. Several: one --output per seed, in order "
             f"(one job prepares a seed block's files)",
    )
    parser.add_argument(
        "--settings", default="", help="JSON object of dataset and split settings (default: built-in)"
    )
    parser.add_argument("--output", required=True, nargs="+",
                        help="the .npz file to write (one per --seed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _arguments()
    args = parser.parse_args(argv)
    if args.dataset in catalog.DATASETS:
        settings = parse_settings(args.settings, dataset_settings({}, args.dataset))
        seeded = catalog.DATASETS[args.dataset].seeded
    else:
        settings = parse_settings(args.settings)
        if "source" not in settings:
            raise ConfigError(f"--dataset {args.dataset}: not a built-in dataset "
                              f"({', '.join(DATASETS)}), and --settings has no source")
        seeded = bool(settings.get("seeded", False))
    if seeded and args.seed is None:
        parser.error(f"--seed is required for {args.dataset} (it is generated from the seed)")
    seeds = args.seed if seeded else [None]
    if len(args.output) != len(seeds):
        parser.error(f"{len(args.output)} --output files for {len(seeds)} "
                     + (f"seeds ({' '.join(map(str, seeds))}): give one per seed" if seeded
                        else f"dataset ({args.dataset} is the same for every seed): give one"))
    for seed, output in zip(seeds, args.output):
        data = make_dataset(args.dataset, seed, settings)
        save_dataset(output, data)
        which = f"seed {seed}" if seeded else "(the same for every seed)"
        print(
            f"prepared {args.dataset} {which}: {data.meta['n_train']} train, "
            f"{data.meta['n_test']} test, {data.n_classes} classes, input {data.input_shape}",
            file=sys.stderr,
        )
    return 0
