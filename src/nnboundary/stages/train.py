"""Stage ``train`` (``workflow/rules/train.smk``): train the whole network of one or more runs
(:func:`nnboundary.training.train.train_run`) and write each run's checkpoint file
(:mod:`nnboundary.formats.checkpoint`) and history (:mod:`nnboundary.formats.history`).

A job of several seeds trains ``cpus // threads`` of them at a time, each in a forked process
of its own; a killed job started again resumes every seed from its resumable checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..formats.checkpoint import save_checkpoints
from ..formats.dataset import Dataset, load_datasets
from ..formats.history import write_history
from ..settings import catalog
from ..settings.commandline import (add_training_outputs, block_settings, parse_settings,
                                    per_run)
from ..settings.keys import BASE_VARIANT
from ..settings.layers import DEFAULT_ARCH
from ..training.train import train_run


def parse_arch_settings(arch: str, text: str) -> dict[str, Any]:
    """``--arch-settings`` of a built-in arch (checked against its defaults) or of a user arch
    (which must hold its ``source`` or ``backbone``)."""
    if arch in catalog.ARCHS:
        return parse_settings(text, catalog.ARCHS[arch].defaults)
    settings = parse_settings(text)
    if "source" not in settings and "backbone" not in settings:
        raise ConfigError(f"--arch {arch}: not a built-in arch ({', '.join(DEFAULT_ARCH)}), and "
                          f"--arch-settings has neither source nor backbone")
    return settings


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnboundary train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, nargs="+",
                        help="prepared dataset (.npz): one per seed, or one for all")
    parser.add_argument("--arch", required=True,
                        help=f"a built-in arch ({', '.join(DEFAULT_ARCH)}) or your own (its "
                             f"--arch-settings hold its source or backbone)")
    parser.add_argument("--seed", type=int, required=True, nargs="+",
                        help="the run's seed; several: one run each, one after the other")
    parser.add_argument("--variant", default=BASE_VARIANT, help="the run's ablation variant name")
    parser.add_argument("--arch-settings", default="", help="JSON object of arch settings")
    parser.add_argument("--settings", default="", help="JSON object of train settings")
    add_training_outputs(parser, "--checkpoints")
    parser.add_argument("--cpus", type=int, default=None,
                        help="CPUs this job may use (default: --threads): with several seeds, "
                             "cpus // threads of them train at a time, each in its own process")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _arguments()
    args = parser.parse_args(argv)
    runs = per_run(parser, args, ("seed", "data", "checkpoints", "history"), shared=("data",))
    threads = max(1, args.threads)
    torch.set_num_threads(threads)
    arch_settings = parse_arch_settings(args.arch, args.arch_settings)
    settings = block_settings(args.settings, "train")
    data = load_datasets(args.data)
    jobs = [(data[data_path], args.arch, seed, arch_settings, settings, args.variant,
             checkpoints, history, len(runs) > 1)
            for seed, data_path, checkpoints, history in runs]
    at_once = min(len(jobs), max(1, (args.cpus or threads) // threads))
    if at_once > 1:
        # Forked workers inherit the imported torch (no second import) and train one seed each,
        # single-threaded as configured: each seed's result is the one it gets alone.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(at_once, mp_context=multiprocessing.get_context("fork")) as pool:
            for done in [pool.submit(_train_and_write, *job) for job in jobs]:
                done.result()
    else:
        for job in jobs:
            _train_and_write(*job)
    for _, _, checkpoints, _ in runs:  # every output is complete: nothing to resume
        _resume_path(checkpoints).unlink(missing_ok=True)
    return 0


def _resume_path(checkpoints: str) -> Path:
    """The resumable checkpoint (:class:`nnboundary.training.resume.Resume`) kept beside a run's output."""
    return Path(f"{checkpoints}.resume")


def _train_and_write(data: Dataset, arch: str, seed: int, arch_settings: dict[str, Any],
                     settings: dict[str, Any], variant: str, checkpoints: str, history: str,
                     keep_finished: bool) -> None:
    """One seed of a train job: train it (resuming from ``<checkpoints>.resume``) and write its
    history and checkpoint file. In a job of several seeds its log lines start with
    ``[seed N]``, so that the seeds trained at the same time can be told apart."""
    log = _SeedLog(seed, sys.stderr) if keep_finished else sys.stderr
    result = train_run(data, arch, seed, arch_settings, settings, log=log, variant=variant,
                       resume_path=_resume_path(checkpoints), keep_finished=keep_finished)
    write_history(history, result["history"])
    save_checkpoints(checkpoints, result)


class _SeedLog:
    """A text stream that writes whole lines to ``stream``, each prefixed with ``[seed N]``."""

    def __init__(self, seed: int, stream):
        self.prefix, self.stream, self.pending = f"[seed {seed}] ", stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
