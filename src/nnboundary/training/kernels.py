"""A fused CPU kernel for the full-batch step of the default MLP.

The default grid's 2-D sets (``blobs``, ``blobs3``, ``sectors``: 4,000 train points) train the
MLP input → 100 ReLU units → 2-unit bottleneck → K logits for thousands of full-batch float64
steps. Through PyTorch each step streams several 4,000 × 100 arrays (the hidden activations,
their gradient, the ReLU mask: 3.2 MB each, more than a core's L2 cache) through half a dozen
operations, and the products whose inner dimension is 2 run far below the BLAS's speed.
:func:`chain_step` instead goes through the samples one by one, with one sample's 100
activations in registers and L1: the forward pass, the exact-tail cross-entropy of
:func:`nnboundary.training.losses.cross_entropy_gradient` and the backward pass, accumulating the weight
gradients. Nothing of size n × 100 is ever written. With the 2-unit bottleneck of the default
arch, one pass over the hidden units does the first layer, the ReLU and both bottleneck sums,
and one more the whole backward pass. A step takes 0.24-0.38x the CPU of the PyTorch closed
form on the 2-D sets. An input wider than :data:`MAX_INPUT_WIDTH` (digits: 64, MNIST: 784) has
its first layer's products X W1ᵀ and G1ᵀ X taken by the BLAS before and after the per-sample
loop, which does the rest (digits: 0.38-0.47x the CPU per step; MNIST 0/1, where those
products are nearly all the work, 0.93x). ``docs/benchmarks/train_steps_cpu.json``.

The same formulas as :class:`nnboundary.training.step.ChainStep`, in a different order of
summation: the loss and gradients agree with it to float64 round-off (tested), so a run's
trajectory is deterministic for a given machine, but not bit for bit that of the PyTorch path.
The sums over a sample's 100 units may be reassociated by the compiler (vectorised); exp, log
and log1p are the exact library functions, so the loss stays exact down to float64's smallest
numbers, as in the PyTorch form.

Compiled by numba on first use (:mod:`nnboundary.training.jit_kernels`), and cached on disk next to it
(or in numba's user cache when that is not writable), so later jobs load it instead of
compiling again.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

# The widest input whose first-layer products the kernel takes itself: a sample's share costs
# input width × hidden units, which a BLAS does faster than the kernel's loops above about
# this width (at 64, digits, the kernel alone was 1.2x slower than PyTorch; at 784, 4x), so
# wider inputs have them taken by the BLAS before and after the per-sample loop.
MAX_INPUT_WIDTH = 16


@lru_cache(maxsize=None)
def _compiled():
    """The numba-compiled kernels ``(chain, linear)`` of :mod:`nnboundary.training.jit_kernels`
    (imported, and compiled or loaded from the cache, on first use only)."""
    from . import jit_kernels

    return jit_kernels.chain, jit_kernels.linear


def fusable(layers) -> bool:
    """Whether a kernel serves a :func:`nnboundary.training.step.linear_chain` network: :func:`chain_step`
    three layers (hidden with ReLU, bottleneck with ReLU or none, last), :func:`linear_step` a
    lone last layer (``retrain_last``), in float64 on the CPU, with numba importable. Inputs
    wider than :data:`MAX_INPUT_WIDTH` have their first-layer products taken by the BLAS
    (:func:`wide`)."""
    if layers is None or layers[-1][1]:
        return False
    if len(layers) not in (1, 3) or (len(layers) == 3 and not layers[0][1]):
        return False
    params = [p for layer, _ in layers for p in (layer.weight, layer.bias)]
    if any(p.device.type != "cpu" or p.dtype != torch.float64 for p in params):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def wide(width: int) -> bool:
    """Whether an input of ``width`` features has its first-layer products X W1ᵀ and Xᵀ G1
    taken by the BLAS, outside the per-sample loop: a sample's share costs width × hidden
    units, which the BLAS does faster than the kernel's loops above :data:`MAX_INPUT_WIDTH`."""
    return width > MAX_INPUT_WIDTH


_EMPTY = np.empty((0, 0))


def _gradient_arrays(weights: list[np.ndarray],
                     grads: list[np.ndarray] | None) -> tuple[bool, list[np.ndarray]]:
    """(whether the gradient is asked for, the arrays the kernel writes it into): ``grads``, or
    without it empty stand-ins of the weights' ranks (the compiled kernel's signature)."""
    if grads is not None:
        return True, grads
    return False, [np.empty((0,) * w.ndim) for w in weights]


def chain_step(X: np.ndarray, y: np.ndarray, weights: list[np.ndarray], relu2: bool,
               grads: list[np.ndarray] | None, Z: np.ndarray | None = None,
               G1: np.ndarray | None = None) -> tuple[float, int]:
    """The mean cross-entropy (exact-tail form) of the three-layer chain with weights
    ``[W1ᵀ (d × H), b1, W2 (B × H), b2, W3 (K × B), b3]`` on ``X`` (n × d, float64, C order)
    and labels ``y`` (int64), and the number of samples whose first largest logit is their
    label; the gradient of that loss is written into ``grads`` (same shapes, ∇W1 transposed as
    W1 is): with a1 = relu(W1 x + b1), a2 = relu(W2 a1 + b2) (or without the ReLU: ``relu2``),
    z = W3 a2 + b3 and G = (P − onehot(y)) / n per sample, ∇W3 = Σ G a2ᵀ, G2 = (W3ᵀ G) ⊙
    [a2 > 0], ∇W2 = Σ G2 a1ᵀ, G1 = (W2ᵀ G2) ⊙ [a1 > 0], ∇W1 = Σ G1 xᵀ, each bias the sum of
    its G. With ``grads`` None, the loss and count alone (the forward pass).

    With ``Z`` (n × H, the products X W1ᵀ taken beforehand, without the bias), the first layer
    is not recomputed; ``G1`` (n × H) then receives every sample's hidden-layer gradient and
    ``grads[0]`` is left for the caller to fill with Xᵀ G1."""
    with_gradient, grads = _gradient_arrays(weights, grads)
    Z = _EMPTY if Z is None else Z
    G1 = _EMPTY if G1 is None or not with_gradient else G1
    loss, correct = _compiled()[0](X, y, *weights[:4], bool(relu2), *weights[4:], *grads,
                                with_gradient, Z, G1)
    return float(loss), int(correct)


def linear_step(H: np.ndarray, y: np.ndarray, weights: list[np.ndarray],
                grads: list[np.ndarray] | None) -> tuple[float, int]:
    """:func:`chain_step` for a lone linear layer ``[W (K × B), b]`` on fixed features ``H``
    (n × B, float64, C order), the ``retrain_last`` regime: the mean exact-tail cross-entropy of
    z = W h + b, the number of samples whose first largest logit is their label and, into
    ``grads``, ∇W = Σ G hᵀ and ∇b = Σ G with G = (P − onehot(y)) / n per sample (with ``grads``
    None, the loss and count alone). One pass over the samples, nothing of size n × K written:
    what PyTorch's closed form (:class:`nnboundary.training.step.ChainStep`) takes in a dozen
    operations over n × K arrays."""
    with_gradient, grads = _gradient_arrays(weights, grads)
    loss, correct = _compiled()[1](H, y, *weights, *grads, with_gradient)
    return float(loss), int(correct)
