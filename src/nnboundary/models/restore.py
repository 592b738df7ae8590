"""A trained network back from its checkpoint file, to run it on data: in numpy where it is the
built-in MLP and that is cheap (:mod:`nnboundary.models.numpy_mlp`, no torch), else in PyTorch.

Every network here has one interface: ``forward(X) -> (h, logits)`` for an array of inputs,
and its last layer as ``W`` (K × d) and ``b`` (K,). Importing this module imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..formats import ptfile
from ..formats.checkpoint import load_checkpoints
from .numpy_mlp import NumpyMLP
from .numpy_mlp import numpy_network as numpy_mlp

#: ``device`` ``auto`` takes the numpy forward pass when one checkpoint's pass over the data is
#: at most this many multiply-adds (about a second of one core's BLAS in float64).
NUMPY_MULTIPLY_ADDS = 2e9


def state_dtype(state: dict[str, Any], name: str):
    """The torch dtype of tensor ``name`` of a saved state (float32 if absent)."""
    import torch

    tensor = state.get(name)
    return tensor.dtype if tensor is not None and tensor.is_floating_point() else torch.float32


def model_at(checkpoints: dict[str, Any], epoch: int):
    """Rebuild the torch model of ``checkpoints`` with its weights at ``epoch``, in eval mode
    on the CPU."""
    from .networks import build_model

    keys = checkpoints["keys"]
    model = build_model(keys["arch"], tuple(checkpoints["input_shape"]), checkpoints["n_classes"],
                        checkpoints["arch_settings"])
    state = checkpoints["states"][epoch]
    # The saved dtypes: the network's, and the last layer's (a retrained one may differ).
    body = next((k for k, v in state.items() if not k.startswith("last.")
                 and v.is_floating_point()), "last.weight")
    model.to(state_dtype(state, body))
    model.last.to(state_dtype(state, "last.weight"))
    model.load_state_dict(state)
    return model.eval()


def forward_features(model, X: np.ndarray, device, batch: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Bottleneck output h and logits of a torch ``model`` for every row of ``X`` (in chunks,
    on ``device``).

    Chunks of ``batch`` rows (default 8192 vectors or 512 images, which bounds the activations
    of the image networks to a few hundred MB).
    """
    import torch

    from .networks import input_dtype

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
    """A network of a checkpoint file rebuilt in PyTorch, with :class:`NumpyMLP`'s interface
    (``forward(X) -> (h, logits)``, last layer ``W``, ``b``)."""

    def __init__(self, checkpoints: dict, epoch: int, device):
        from .networks import resolve_device

        self.device = resolve_device(str(device))
        self.model = model_at(checkpoints, epoch).to(self.device)
        self.W = self.model.last.weight.detach().cpu().numpy()
        self.b = self.model.last.bias.detach().cpu().numpy()

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return forward_features(self.model, X, self.device)


def numpy_network(checkpoints: dict, epoch: int, device="auto", rows: int = 0
                  ) -> NumpyMLP | None:
    """The network of ``checkpoints`` at ``epoch`` in numpy where it is the built-in MLP and
    ``device`` allows it: ``cpu``, or ``auto`` when its pass over ``rows`` samples is at most
    :data:`NUMPY_MULTIPLY_ADDS` multiply-adds; else None."""
    network = numpy_mlp(checkpoints, epoch)
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
        checkpoints = load_checkpoints(path, numpy=True)
    except ptfile.Unsupported:
        checkpoints = None
    if checkpoints is not None and all(
            numpy_network(checkpoints, epoch, device, rows) is not None
            for epoch in checkpoints["epochs"]):
        return checkpoints
    return load_checkpoints(path)
