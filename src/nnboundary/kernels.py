"""A fused CPU kernel for the full-batch step of the default MLP on low-dimensional inputs.

The default grid's 2-D sets (``blobs``, ``blobs3``, ``sectors``: 4,000 train points) train the
MLP input → 100 ReLU units → 2-unit bottleneck → K logits for thousands of full-batch float64
steps. Through PyTorch each step streams several 4,000 × 100 arrays (the hidden activations,
their gradient, the ReLU mask: 3.2 MB each, more than a core's L2 cache) through half a dozen
operations, and the products whose inner dimension is 2 run far below the BLAS's speed.
:func:`chain_step` instead goes through the samples one by one, with one sample's 100
activations in registers and L1: the forward pass, the exact-tail cross-entropy of
:func:`nnboundary.train.cross_entropy_gradient` and the backward pass, accumulating the weight
gradients. Nothing of size n × 100 is ever written. A step takes 0.29-0.38x the CPU of the
PyTorch closed form on the 2-D sets, and more once the input is wide (the first layer's
per-sample products then belong to a BLAS): ``docs/benchmarks/train_steps_cpu.json``.

The same formulas as :func:`nnboundary.train.chain_gradient`, in a different order of
summation: the loss and gradients agree with it to float64 round-off (tested), so a run's
trajectory is deterministic for a given machine, but not bit for bit that of the PyTorch path.
The sums over a sample's 100 units may be reassociated by the compiler (vectorised); exp, log
and log1p are the exact library functions, so the loss stays exact down to float64's smallest
numbers, as in the PyTorch form.

Compiled by numba on first use, and cached on disk next to this module (or in numba's user
cache when that is not writable), so later jobs load it instead of compiling again.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

# The widest input the fused kernel is used for: a sample's first-layer products cost
# input width × hidden units, which a BLAS does faster than the kernel's loops above about
# this width (at 64, digits, the kernel is 1.2x slower than PyTorch; at 784, 4x).
MAX_INPUT_WIDTH = 16


@lru_cache(maxsize=None)
def _compiled():
    """The numba-compiled kernel (imported and compiled on first use only)."""
    import numba

    # reassoc and contract let the compiler vectorise a sample's sums over the hidden units
    # and use fused multiply-adds; no approximate functions (afn), no assumption of no NaN or
    # infinity, so exp, log and log1p stay exact and a diverging run still shows as NaN.
    @numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True)
    def kernel(X, y, W1T, b1, W2, b2, relu2, W3, b3, gW1T, gb1, gW2, gb2, gW3, gb3,
               with_gradient):
        n, d = X.shape
        H, B, K = W1T.shape[1], W2.shape[0], W3.shape[0]
        a1 = np.empty(H)
        a2 = np.empty(B)
        z = np.empty(K)
        g3 = np.empty(K)
        g2 = np.empty(B)
        g1 = np.empty(H)
        if with_gradient:
            gW1T[:] = 0.0
            gb1[:] = 0.0
            gW2[:] = 0.0
            gb2[:] = 0.0
            gW3[:] = 0.0
            gb3[:] = 0.0
        total = 0.0
        correct = 0
        for i in range(n):
            # forward: a1 = relu(W1 x + b1), a2 = act(W2 a1 + b2), z = W3 a2 + b3
            for j in range(H):
                a1[j] = b1[j]
            for k in range(d):
                xk = X[i, k]
                for j in range(H):
                    a1[j] += xk * W1T[k, j]
            for j in range(H):  # a ReLU that keeps a NaN (as torch's does), not max(a, 0)
                v = a1[j]
                a1[j] = 0.0 if v < 0.0 else v
            for j in range(B):
                s = 0.0
                for k in range(H):
                    s += W2[j, k] * a1[k]
                s += b2[j]
                a2[j] = 0.0 if relu2 and s < 0.0 else s
            best = 0
            for j in range(K):
                s = b3[j]
                for k in range(B):
                    s += W3[j, k] * a2[k]
                z[j] = s
                if s > z[best]:  # the first maximum, as argmax takes it
                    best = j
            yi = y[i]
            if best == yi:
                correct += 1
            # the exact-tail cross-entropy: d_k = z_k - z_y, M = max(0, max_{k≠y} d_k),
            # e_k = exp(d_k - M), s = Σ_{k≠y} e_k, loss = log1p(s) (M = 0) or M + log(e^-M + s)
            zt = z[yi]
            top = 0.0
            for j in range(K):
                if j != yi and z[j] - zt > top:
                    top = z[j] - zt
            ssum = 0.0
            for j in range(K):
                if j != yi:
                    e = math.exp(z[j] - zt - top)
                    g3[j] = e
                    ssum += e
            below = math.exp(-top)
            total += top + math.log(below + ssum) if top > 0.0 else math.log1p(ssum)
            if not with_gradient:
                continue
            # G = (P - onehot(y)) / n with P_y - 1 = -s / (e^-M + s)
            denominator = (below + ssum) * n
            for j in range(K):
                g3[j] = (-ssum if j == yi else g3[j]) / denominator
            # backward
            for j in range(K):
                gb3[j] += g3[j]
                for k in range(B):
                    gW3[j, k] += g3[j] * a2[k]
            for k in range(B):
                s = 0.0
                for j in range(K):
                    s += g3[j] * W3[j, k]
                g2[k] = s if (not relu2 or a2[k] > 0.0) else 0.0
            # A bottleneck unit the ReLU switched off for this sample passes no gradient: its
            # row of ∇W2 and its share of G1 are skipped (adding zeros changes no sum), and
            # the first layer's backward pass too when every unit is off.
            live = False
            for j in range(B):
                if g2[j] == 0.0:
                    continue
                live = True
                gb2[j] += g2[j]
                for k in range(H):
                    gW2[j, k] += g2[j] * a1[k]
            if not live:
                continue
            for k in range(H):
                g1[k] = 0.0
            for j in range(B):
                gj = g2[j]
                if gj == 0.0:
                    continue
                for k in range(H):
                    g1[k] += gj * W2[j, k]
            for k in range(H):
                if a1[k] <= 0.0:
                    g1[k] = 0.0
                gb1[k] += g1[k]
            for k in range(d):
                xk = X[i, k]
                for j in range(H):
                    gW1T[k, j] += g1[j] * xk
        return total / n, correct

    return kernel


def fusable(layers) -> bool:
    """Whether :func:`chain_step` serves a :func:`nnboundary.train.linear_chain` network: three
    layers (hidden with ReLU, bottleneck with ReLU or none, last), float64 on the CPU, its input
    (the first layer's ``in_features``) at most :data:`MAX_INPUT_WIDTH` wide, and numba
    importable."""
    if layers is None or len(layers) != 3 or not layers[0][1] or layers[2][1]:
        return False
    if layers[0][0].in_features > MAX_INPUT_WIDTH:
        return False
    params = [p for layer, _ in layers for p in (layer.weight, layer.bias)]
    if any(p.device.type != "cpu" or p.dtype != torch.float64 for p in params):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def chain_step(X: np.ndarray, y: np.ndarray, weights: list[np.ndarray], relu2: bool,
               grads: list[np.ndarray] | None) -> tuple[float, int]:
    """The mean cross-entropy (exact-tail form) of the three-layer chain with weights
    ``[W1ᵀ (d × H), b1, W2 (B × H), b2, W3 (K × B), b3]`` on ``X`` (n × d, float64, C order)
    and labels ``y`` (int64), and the number of samples whose first largest logit is their
    label; the gradient of that loss is written into ``grads`` (same shapes, ∇W1 transposed as
    W1 is): with a1 = relu(W1 x + b1), a2 = relu(W2 a1 + b2) (or without the ReLU: ``relu2``),
    z = W3 a2 + b3 and G = (P − onehot(y)) / n per sample, ∇W3 = Σ G a2ᵀ, G2 = (W3ᵀ G) ⊙
    [a2 > 0], ∇W2 = Σ G2 a1ᵀ, G1 = (W2ᵀ G2) ⊙ [a1 > 0], ∇W1 = Σ G1 xᵀ, each bias the sum of
    its G. With ``grads`` None, the loss and count alone (the forward pass)."""
    with_gradient = grads is not None
    if grads is None:
        grads = [np.empty((0,) * w.ndim) for w in weights]
    loss, correct = _compiled()(X, y, *weights[:4], bool(relu2), *weights[4:], *grads,
                                with_gradient)
    return float(loss), int(correct)
