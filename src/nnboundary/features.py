"""Stage ``features``: dump the last hidden layer of every checkpoint to Parquet.

For each checkpoint epoch one file ``epoch{E:06d}.parquet`` in the output folder, one row per
train and test sample, with the bottleneck output ``h_*``, the logits and the prediction; the
run keys, the last layer's weights and the settings the run trained with (``training``, see
:func:`nnboundary.train.training_record`) are in the file's metadata (format:
:mod:`nnboundary.io`).
Each file is written in one batch, atomically.

The built-in ``mlp`` runs in numpy (:mod:`nnboundary.ptfile`) on the CPU, without importing
torch (2.3–2.6 s per job), whenever ``--device`` is ``cpu``, or ``auto`` and one checkpoint's
forward pass over the data is at most :data:`NUMPY_MULTIPLY_ADDS` multiply-adds (seconds of
CPU at most; larger ones go to torch, on a GPU where there is one). Every other network, and
a file only torch can read, goes through PyTorch on ``--device``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import io, ptfile
from .cli import per_run
from .config import to_json
from .prepare import Dataset, load_datasets

#: ``--device auto`` takes the numpy forward pass when one checkpoint's pass over the data is
#: at most this many multiply-adds (about a second of one core's BLAS in float64).
NUMPY_MULTIPLY_ADDS = 2e9


def forward_features(model, X: np.ndarray, device, batch: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Bottleneck output h and logits of a torch ``model`` for every row of ``X`` (in chunks,
    on ``device``).

    Chunks of ``batch`` rows (default 8192 vectors or 512 images, which bounds the activations
    of the image networks to a few hundred MB).
    """
    import torch

    from .models import input_dtype

    batch = batch or (8192 if X.ndim == 2 else 512)
    dtype = input_dtype(model)
    hs, logits = [], []
    with torch.no_grad():
        for lo in range(0, len(X), batch):
            xb = torch.from_numpy(X[lo:lo + batch]).to(device=device, dtype=dtype)
            h = model.features(xb).to(model.last.weight.dtype)
            hs.append(h.cpu().numpy())
            logits.append(model.last(h).cpu().numpy())
    d, k = model.last.in_features, model.last.out_features
    if not hs:
        return np.zeros((0, d), np.float32), np.zeros((0, k), np.float32)
    return np.concatenate(hs), np.concatenate(logits)


class TorchNetwork:
    """A network of a checkpoint file rebuilt in PyTorch, with :class:`ptfile.NumpyMLP`'s
    interface (``forward(X) -> (h, logits)``, last layer ``W``, ``b``)."""

    def __init__(self, checkpoints: dict, epoch: int, device):
        from .train import model_at, resolve_device

        self.device = resolve_device(str(device))
        self.model = model_at(checkpoints, epoch).to(self.device)
        self.W = self.model.last.weight.detach().cpu().numpy()
        self.b = self.model.last.bias.detach().cpu().numpy()

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return forward_features(self.model, X, self.device)


def numpy_network(checkpoints: dict, epoch: int, device="auto", rows: int = 0):
    """The network of ``checkpoints`` at ``epoch`` in numpy where it is the built-in MLP and
    ``device`` allows it (module docstring; ``rows``: the samples it will see), else None."""
    network = ptfile.numpy_network(checkpoints, epoch)
    if network is not None and (str(device) == "cpu" or (
            str(device) == "auto" and rows * network.multiply_adds() <= NUMPY_MULTIPLY_ADDS)):
        return network
    return None


def network_at(checkpoints: dict, epoch: int, device="auto", rows: int = 0):
    """The network of ``checkpoints`` at ``epoch``: :func:`numpy_network`'s where it applies,
    else torch's on ``device``."""
    network = numpy_network(checkpoints, epoch, device, rows)
    return network if network is not None else TorchNetwork(checkpoints, epoch, device)


def load_network_file(path: str | Path, device="auto", rows: int = 0) -> dict:
    """Read a checkpoint file without torch where :func:`network_at` will take numpy for all
    its networks, else with torch (whose tensors its torch networks need)."""
    try:
        checkpoints = ptfile.load(path)
    except ptfile.Unsupported:
        checkpoints = None
    if checkpoints is not None and all(
            numpy_network(checkpoints, epoch, device, rows) is not None
            for epoch in checkpoints["epochs"]):
        return checkpoints
    from .train import load_checkpoints

    return load_checkpoints(path)


def dump_run(checkpoints: dict, data: Dataset, out_dir: str | Path,
             device="auto", log=sys.stderr) -> list[Path]:
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
            network = network_at(checkpoints, epoch, device, len(data.X_train) + len(data.X_test))
            parts = {}
            for split, X, y in (("train", data.X_train, data.y_train),
                                ("test", data.X_test, data.y_test)):
                h, logits = network.forward(X)
                parts[split] = (y, h, logits)
            W, b = network.W, network.b
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
