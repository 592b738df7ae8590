"""Stage ``features`` (``workflow/rules/features.smk``): dump the last hidden layer of every
checkpoint of a run to Parquet (:mod:`nnboundary.formats.features`).

For each checkpoint epoch one file ``epoch{E:06d}.parquet`` in the output folder, one row per
train and test sample, with the bottleneck output ``h_*``, the logits and the prediction; the
run keys, the last layer's weights and the settings the run trained with are in the file's
metadata. The folder appears under its name only once every file is in it.

The built-in ``mlp`` runs in numpy (:mod:`nnboundary.models.numpy_mlp`) on the CPU, without
importing torch (2.3–2.6 s per job), whenever ``--device`` is ``cpu``, or ``auto`` and one
checkpoint's forward pass over the data is at most
:data:`nnboundary.models.restore.NUMPY_MULTIPLY_ADDS` multiply-adds (seconds of CPU at most;
larger ones go to torch, on a GPU where there is one). Every other network, and a file only
torch can read, goes through PyTorch on ``--device``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputFileError
from ..formats.atomic import atomic_dir
from ..formats.dataset import Dataset, load_datasets
from ..formats.features import feature_file_name, write_features
from ..models.restore import load_network_file, network_at
from ..settings.commandline import add_network_inputs, per_run, to_json


def dump_run(checkpoints: dict, data: Dataset, out_dir: str | Path,
             device="auto", log=sys.stderr) -> list[Path]:
    """Write one feature file per checkpoint epoch of ``checkpoints``; return their paths."""
    out_dir = Path(out_dir)
    keys = checkpoints["keys"]
    if keys["dataset"] != data.name:
        raise InputFileError(
            f"checkpoints are for dataset {keys['dataset']!r} but the data file holds {data.name!r}"
        )
    written = []
    # The folder appears under its name only once every file is in it.
    with atomic_dir(out_dir) as tmp:
        for epoch in checkpoints["epochs"]:
            network = network_at(checkpoints, epoch, device, len(data.X_train) + len(data.X_test))
            parts = {}
            for split, X, y in (("train", data.X_train, data.y_train),
                                ("test", data.X_test, data.y_test)):
                h, logits = network.forward(X)
                parts[split] = (y, h, logits)
            W, b = network.W, network.b
            name = feature_file_name(epoch)
            file_keys = dict(keys, epoch=epoch, n_classes=W.shape[0], feature_dim=W.shape[1])
            if checkpoints.get("training"):
                file_keys["training"] = to_json(checkpoints["training"])
            for shift, value in (checkpoints.get("feature_shifts") or {}).get(epoch, {}).items():
                file_keys[shift] = repr(float(value))
            write_features(tmp / name, file_keys, W, b, parts)
            written.append(out_dir / name)
            print(f"epoch {epoch}: wrote {name}", file=log)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary features", description=__doc__.split("\n")[0])
    add_network_inputs(parser, "checkpoint file of the train step, one per run")
    parser.add_argument("--output-dir", required=True, nargs="+",
                        help="folder for the epoch*.parquet files, one per run")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch's and the BLAS's)")
    args = parser.parse_args(argv)
    runs = per_run(parser, args, ("checkpoints", "data", "output_dir"), shared=("data",))
    from threadpoolctl import threadpool_limits

    data = load_datasets(args.data)
    with threadpool_limits(max(1, args.threads)):  # the numpy forward pass's BLAS
        for checkpoints, data_path, output_dir in runs:
            run_data = data[data_path]
            rows = len(run_data.X_train) + len(run_data.X_test)
            loaded = load_network_file(checkpoints, args.device, rows)
            if "torch" in sys.modules:  # a network only torch runs
                sys.modules["torch"].set_num_threads(max(1, args.threads))
            dump_run(loaded, run_data, output_dir, args.device)
    return 0
