"""Stage ``features``: dump the last hidden layer of every checkpoint to Parquet.

For each checkpoint epoch one file ``epoch{E:06d}.parquet`` in the output folder, one row per
train and test sample, with the bottleneck output ``h_*``, the logits and the prediction; the
run keys, the last layer's weights and the settings the run trained with (``training``, see
:func:`nnboundary.train.training_record`) are in the file's metadata (format:
:mod:`nnboundary.io`).
Each file is written in one batch, atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from . import io
from .cli import per_run
from .config import to_json
from .models import input_dtype
from .prepare import Dataset, load_datasets
from .train import load_checkpoints, model_at, resolve_device


@torch.no_grad()
def forward_features(model: torch.nn.Module, X: np.ndarray, device: torch.device,
                     batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bottleneck output h and logits for every row of ``X`` (in chunks, on ``device``).

    Chunks of ``batch`` rows (default 8192 vectors or 512 images, which bounds the activations
    of the image networks to a few hundred MB).
    """
    batch = batch or (8192 if X.ndim == 2 else 512)
    dtype = input_dtype(model)
    hs, logits = [], []
    for lo in range(0, len(X), batch):
        xb = torch.from_numpy(X[lo:lo + batch]).to(device=device, dtype=dtype)
        h = model.features(xb).to(model.last.weight.dtype)
        hs.append(h.cpu().numpy())
        logits.append(model.last(h).cpu().numpy())
    d, k = model.last.in_features, model.last.out_features
    if not hs:
        return np.zeros((0, d), np.float32), np.zeros((0, k), np.float32)
    return np.concatenate(hs), np.concatenate(logits)


def dump_run(checkpoints: dict, data: Dataset, out_dir: str | Path,
             device: torch.device, log=sys.stderr) -> list[Path]:
    """Write one feature file per checkpoint epoch of ``checkpoints``; return their paths."""
    out_dir = Path(out_dir)
    keys = checkpoints["keys"]
    if keys["dataset"] != data.name:
        raise io.InputFileError(
            f"checkpoints are for dataset {keys['dataset']!r} but the data file holds {data.name!r}"
        )
    written = []
    # The folder appears under its name only once every file is in it.
    with io.atomic_dir(out_dir) as tmp:
        for epoch in checkpoints["epochs"]:
            model = model_at(checkpoints, epoch).to(device)
            parts = {}
            for split, X, y in (("train", data.X_train, data.y_train),
                                ("test", data.X_test, data.y_test)):
                h, logits = forward_features(model, X, device)
                parts[split] = (y, h, logits)
            W = model.last.weight.detach().cpu().numpy()
            b = model.last.bias.detach().cpu().numpy()
            name = io.feature_file_name(epoch)
            file_keys = dict(keys, epoch=epoch, n_classes=W.shape[0], feature_dim=W.shape[1])
            if checkpoints.get("training"):
                file_keys["training"] = to_json(checkpoints["training"])
            for shift, value in (checkpoints.get("feature_shifts") or {}).get(epoch, {}).items():
                file_keys[shift] = repr(float(value))
            io.write_features(tmp / name, file_keys, W, b, parts)
            written.append(out_dir / name)
            print(f"epoch {epoch}: wrote {name}", file=log)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary features", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", required=True, nargs="+",
                        help="checkpoint file of the train step, one per run")
    parser.add_argument("--data", required=True, nargs="+",
                        help="prepared dataset (.npz): one per run, or one for all")
    parser.add_argument("--output-dir", required=True, nargs="+",
                        help="folder for the epoch*.parquet files, one per run")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    runs = per_run(parser, args, ("checkpoints", "data", "output_dir"), shared=("data",))
    torch.set_num_threads(max(1, args.threads))
    data, device = load_datasets(args.data), resolve_device(args.device)
    for checkpoints, data_path, output_dir in runs:
        dump_run(load_checkpoints(checkpoints), data[data_path], output_dir, device)
    return 0
