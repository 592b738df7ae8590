"""Any PyTorch network's last hidden layer and last weight layer, from Python.

:func:`features` returns what a model's last ``nn.Linear`` (or a named layer) receives: the
features h on which the SVM targets are fitted; :func:`last_layer` returns that layer's
(W, b). Both work on any ``torch.nn.Module``: the pipeline's own networks, a torchvision model
with its head replaced, or a network written in a notebook. With
:func:`nnboundary.measures.measure.measure` they compare a trained network with its SVMs
without the pipeline::

    H = nnboundary.features(model, X_train)
    W, b = nnboundary.last_layer(model)
    rows = nnboundary.measure(W, b, H, y_train)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def _module(model: Any):
    from torch import nn

    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return model


def find_layer(model: Any, layer: str | None = None):
    """(name, module): the model's last ``nn.Linear`` in registration order (the head of a
    classifier: ``fc`` of a torchvision ResNet, ``last`` of the pipeline's networks), or the
    module called ``layer`` (a name of ``model.named_modules()``, e.g. ``"classifier.1"``)."""
    from torch import nn

    model = _module(model)
    named = dict(model.named_modules())
    if layer is not None:
        if layer not in named or layer == "":
            shown = ", ".join(repr(n) for n in list(named)[1:21])
            raise InputError(f"layer: the model has no module {layer!r}; its modules are "
                             f"{shown}{', ...' if len(named) > 21 else ''}")
        return layer, named[layer]
    linear = [(name, module) for name, module in named.items() if isinstance(module, nn.Linear)]
    if not linear:
        raise InputError(f"model: {type(model).__name__} has no torch.nn.Linear; name the layer "
                         "whose input are the features (layer=...)")
    return linear[-1]


def last_layer(model: Any, layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of the model's last ``nn.Linear`` (or of ``layer``) as float64 arrays: W of shape
    (K, d), b of shape (K,) (zeros for a layer without bias)."""
    name, module = find_layer(model, layer)
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        raise InputError(f"layer: {name!r} ({type(module).__name__}) has no 2-D weight; "
                         "name a linear layer")
    W = weight.detach().to("cpu").double().numpy().copy()
    bias = getattr(module, "bias", None)
    b = np.zeros(W.shape[0]) if bias is None else bias.detach().to("cpu").double().numpy().copy()
    return W, b


def _batches(X: Any, batch_size: int | None):
    """The inputs as tensors, in order: a tensor or array in chunks of ``batch_size`` (all at
    once for None), or the batches of a DataLoader (a batch that is a tuple, list or dict: its
    first element, or its ``"x"``/``"input"``/``"image"`` entry)."""
    import torch

    if isinstance(X, torch.utils.data.DataLoader):
        for batch in X:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            elif isinstance(batch, dict):
                key = next((k for k in ("x", "input", "image") if k in batch), None)
                if key is None:
                    raise InputError(f"X: a batch is a dict with keys {sorted(batch)}; expected "
                                     "an 'x', 'input' or 'image' entry")
                batch = batch[key]
            yield torch.as_tensor(batch)
        return
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    if not isinstance(X, torch.Tensor):
        raise InputError(f"X: expected a torch.Tensor, a numpy array or a DataLoader, got "
                         f"{type(X).__name__}")
    if X.dim() == 0 or X.shape[0] == 0:
        raise InputError(f"X: no samples (shape {tuple(X.shape)})")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise InputError(f"batch_size: {batch_size!r}; allowed: a whole number of at least 1, "
                         "or None for all samples at once")
    step = X.shape[0] if batch_size is None else int(batch_size)
    for start in range(0, X.shape[0], step):
        yield X[start:start + step]


def features(model: Any, X: Any, *, layer: str | None = None, batch_size: int | None = None,
             device: Any = None) -> np.ndarray:
    """The input of the model's last ``nn.Linear`` (or of ``layer``) for every sample of ``X``,
    as a float64 array of shape (n, d).

    The model runs in eval mode (its mode is restored afterwards), without gradient, on
    ``device`` (default: the device of its first parameter, else the CPU), in the dtype of its
    parameters (an input of another floating dtype is cast to it). ``X``: a tensor or array of
    inputs, or a DataLoader (see :func:`_batches`); ``batch_size`` splits a tensor or array.
    The features are taken with a forward pre-hook on the layer, so the rest of the forward
    pass runs as it always does."""
    import torch

    name, module = find_layer(model, layer)
    parameter = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (
        parameter.device if parameter is not None else torch.device("cpu"))
    dtype = parameter.dtype if parameter is not None else None
    captured: list[torch.Tensor] = []

    def keep(_module, args):
        captured.append(args[0].detach())

    handle = module.register_forward_pre_hook(keep)
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for batch in _batches(X, batch_size):
                if dtype is not None and batch.is_floating_point():
                    batch = batch.to(dtype)
                captured.clear()
                model(batch.to(device))
                if len(captured) != 1:
                    raise InputError(f"layer: {name!r} ran {len(captured)} times in one forward "
                                     "pass; name a layer that runs once")
                h = captured[0]
                if h.dim() != 2 or h.shape[0] != batch.shape[0]:
                    raise InputError(f"layer: the input of {name!r} has shape "
                                     f"{tuple(h.shape)} for a batch of {batch.shape[0]}; "
                                     "expected (batch, features)")
                chunks.append(h.to("cpu").double().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    if not chunks:
        raise InputError("X: no samples (an empty DataLoader)")
    return np.concatenate(chunks, axis=0)
