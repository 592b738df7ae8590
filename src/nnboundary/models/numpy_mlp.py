"""The built-in MLP of a saved state, run in numpy: no torch in the stages that only read a
network (``features`` and the 2-D sets' ``run`` figure).

:func:`numpy_network` rebuilds the built-in ``mlp`` (:mod:`nnboundary.models.networks`:
flatten → Linear(·, hidden) → ReLU → Linear(hidden, d) → activation → Linear(d, K)) from a saved
state (read by :func:`nnboundary.formats.ptfile.load`): ``h = act(W2 relu(W1 x + b1) + b2)`` and
``logits = W3 h + b3``, in the dtypes the state holds (the input in the network's, h cast to the
last layer's, as ``BottleneckNet.forward`` does). Its numbers agree with PyTorch's forward pass
to round-off (the BLAS may sum in another order): tested for every activation, ``hidden: 0`` and
float32.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..settings.catalog import ARCHS


def _selu(x: np.ndarray) -> np.ndarray:
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    return np.where(x > 0, scale * x, (scale * alpha) * np.expm1(np.minimum(x, 0)))


#: The activations of :data:`nnboundary.models.networks.ACTIVATIONS`, in numpy (same formulas; a ReLU
#: keeps a NaN, as torch's does).
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.where(x < 0, 0.0, x).astype(x.dtype, copy=False),
    "leaky_relu": lambda x: np.where(x > 0, x, x * 0.01).astype(x.dtype, copy=False),
    "tanh": np.tanh,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "selu": lambda x: _selu(x).astype(x.dtype, copy=False),
    "square": lambda x: x * x,
    "identity": lambda x: x,
}


class NumpyMLP:
    """The built-in ``mlp`` at one saved state (module docstring); ``W``, ``b``: its last layer."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], activation: str,
                 last: tuple[np.ndarray, np.ndarray]):
        self.layers, self.activation = layers, ACTIVATIONS[activation]
        self.W, self.b = last

    @property
    def input_dtype(self) -> np.dtype:
        return self.layers[0][0].dtype if self.layers else self.W.dtype

    def features(self, X: np.ndarray) -> np.ndarray:
        """The bottleneck output h (n×d) after its activation, in the last layer's dtype."""
        a = np.asarray(X).reshape(len(X), -1).astype(self.input_dtype, copy=False)
        for i, (W, b) in enumerate(self.layers):
            a = a @ W.T + b
            a = self.activation(a) if i == len(self.layers) - 1 else ACTIVATIONS["relu"](a)
        return a.astype(self.W.dtype, copy=False)

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(h, logits) for every row of ``X``."""
        h = self.features(X)
        return h, h @ self.W.T + self.b

    def multiply_adds(self) -> int:
        """Multiply-adds of one sample's forward pass."""
        return sum(W.size for W, _ in self.layers) + self.W.size


def numpy_network(checkpoints: dict[str, Any], epoch: int) -> NumpyMLP | None:
    """The network of ``checkpoints`` at ``epoch`` in numpy, or None where it is not the
    built-in ``mlp`` with a bottleneck (another arch, a user network, an unknown activation or
    a state with other entries: torch rebuilds those)."""
    keys, settings = checkpoints["keys"], dict(checkpoints.get("arch_settings") or {})
    if keys.get("arch") != "mlp" or "source" in settings or "backbone" in settings:
        return None
    settings = {**ARCHS["mlp"].defaults, **settings}
    if settings.get("activation") not in ACTIVATIONS or settings.get("bottleneck") is None:
        return None
    state = {name: np.asarray(value) for name, value in checkpoints["states"][epoch].items()}
    names = (["hidden.0"] if int(settings["hidden"]) > 0 else []) + ["bottleneck", "last"]
    if set(state) != {f"{n}.{p}" for n in names for p in ("weight", "bias")}:
        return None
    layers = [(state[f"{n}.weight"], state[f"{n}.bias"]) for n in names]
    return NumpyMLP(layers[:-1], settings["activation"], layers[-1])
