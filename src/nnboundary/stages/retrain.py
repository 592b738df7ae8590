"""Stage ``retrain`` (``workflow/rules/retrain.smk``): the ``retrain_last`` regime of one or more
runs (:func:`nnboundary.training.retrain.retrain_run`), written in the ``train`` stage's formats.
"""

from __future__ import annotations

import argparse

import torch

from ..formats.checkpoint import load_checkpoints, save_checkpoints
from ..formats.dataset import load_datasets
from ..formats.history import write_history
from ..settings.commandline import add_network_inputs, add_training_outputs, block_settings, per_run
from ..settings.layers import DEFAULT_TRAIN
from ..training.retrain import retrain_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary retrain", description=__doc__.split("\n")[0])
    add_network_inputs(parser, "the full run's checkpoint file, one per run")
    parser.add_argument("--settings", default="", help="JSON object of retrain settings")
    add_training_outputs(parser, "--output")
    args = parser.parse_args(argv)
    runs = per_run(parser, args, ("checkpoints", "data", "output", "history"), shared=("data",))
    torch.set_num_threads(max(1, args.threads))
    # the run's training loss, which the retrain settings carry
    settings = block_settings(args.settings, "retrain", extra={
        key: DEFAULT_TRAIN[key] for key in ("loss", "label_smoothing")})
    data = load_datasets(args.data)
    for checkpoints, data_path, output, history in runs:
        result = retrain_run(load_checkpoints(checkpoints), data[data_path], settings)
        write_history(history, result["history"])
        save_checkpoints(output, result)
    return 0
