"""A fused CPU kernel for the full-batch step of the default MLP.

The default grid's 2-D sets (``blobs``, ``blobs3``, ``sectors``: 4,000 train points) train the
MLP input → 100 ReLU units → 2-unit bottleneck → K logits for thousands of full-batch float64
steps. Through PyTorch each step streams several 4,000 × 100 arrays (the hidden activations,
their gradient, the ReLU mask: 3.2 MB each, more than a core's L2 cache) through half a dozen
operations, and the products whose inner dimension is 2 run far below the BLAS's speed.
:func:`chain_step` instead goes through the samples one by one, with one sample's 100
activations in registers and L1: the forward pass, the exact-tail cross-entropy of
:func:`nnboundary.train.cross_entropy_gradient` and the backward pass, accumulating the weight
gradients. Nothing of size n × 100 is ever written. With the 2-unit bottleneck of the default
arch, one pass over the hidden units does the first layer, the ReLU and both bottleneck sums,
and one more the whole backward pass. A step takes 0.24-0.38x the CPU of the PyTorch closed
form on the 2-D sets. An input wider than :data:`MAX_INPUT_WIDTH` (digits: 64, MNIST: 784) has
its first layer's products X W1ᵀ and G1ᵀ X taken by the BLAS before and after the per-sample
loop, which does the rest (digits: 0.38-0.47x the CPU per step; MNIST 0/1, where those
products are nearly all the work, 0.93x). ``docs/benchmarks/train_steps_cpu.json``.

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

# The widest input whose first-layer products the kernel takes itself: a sample's share costs
# input width × hidden units, which a BLAS does faster than the kernel's loops above about
# this width (at 64, digits, the kernel alone was 1.2x slower than PyTorch; at 784, 4x), so
# wider inputs have them taken by the BLAS before and after the per-sample loop.
MAX_INPUT_WIDTH = 16


@lru_cache(maxsize=None)
def _compiled():
    """The numba-compiled kernel (imported and compiled on first use only)."""
    import numba

    # reassoc and contract let the compiler vectorise a sample's sums over the hidden units
    # and use fused multiply-adds; no approximate functions (afn), no assumption of no NaN or
    # infinity, so exp, log and log1p stay exact and a diverging run still shows as NaN. The
    # numpy error model: a division by zero gives inf or NaN instead of a checked exception.
    @numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True,
                error_model="numpy")
    def kernel(X, y, W1T, b1, W2, b2, relu2, W3, b3, gW1T, gb1, gW2, gb2, gW3, gb3,
               with_gradient, Z, G1):
        n, d = X.shape
        H, B, K = b1.shape[0], W2.shape[0], W3.shape[0]
        # Z (n × H): the first layer's products X W1ᵀ, taken by a BLAS before the call (wide
        # inputs); G1 (n × H) then receives each sample's hidden-layer gradient, whose product
        # with X (∇W1) is left to the BLAS too. Empty: both are done here, sample by sample.
        wide = Z.shape[0] > 0
        # The default bottleneck (B = 2) and 2-D input (d = 2) take one pass over the hidden
        # units forward (first layer, ReLU, both bottleneck sums) and one backward (∇W2, the
        # hidden-layer gradient, ∇b1, ∇W1) instead of one pass per row; the same sums in the
        # same order, so the same numbers as the general loops below.
        two = B == 2
        flat = d == 2 and not wide
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
            if wide:
                for j in range(H):
                    a1[j] = Z[i, j] + b1[j]
            elif flat:
                x0 = X[i, 0]
                x1 = X[i, 1]
                for j in range(H):
                    a1[j] = b1[j] + x0 * W1T[0, j] + x1 * W1T[1, j]
            else:
                for j in range(H):
                    a1[j] = b1[j]
                for k in range(d):
                    xk = X[i, k]
                    for j in range(H):
                        a1[j] += xk * W1T[k, j]
            # a ReLU that keeps a NaN (as torch's does), not max(a, 0)
            if two:
                s0 = 0.0
                s1 = 0.0
                for j in range(H):
                    v = a1[j]
                    v = 0.0 if v < 0.0 else v
                    a1[j] = v
                    s0 += W2[0, j] * v
                    s1 += W2[1, j] * v
                s0 += b2[0]
                s1 += b2[1]
                a2[0] = 0.0 if relu2 and s0 < 0.0 else s0
                a2[1] = 0.0 if relu2 and s1 < 0.0 else s1
            else:
                for j in range(H):
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
            if top > 0.0:
                below = math.exp(-top)
                total += top + math.log(below + ssum)
            else:
                below = 1.0
                total += math.log1p(ssum)
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
            # A bottleneck unit the ReLU switched off for this sample passes no gradient: its
            # row of ∇W2 and its share of G1 are skipped (adding zeros changes no sum), and
            # the first layer's backward pass too when every unit is off.
            live = False
            for k in range(B):
                s = 0.0
                for j in range(K):
                    s += g3[j] * W3[j, k]
                g2[k] = s if (not relu2 or a2[k] > 0.0) else 0.0
                if g2[k] != 0.0:
                    live = True
                    gb2[k] += g2[k]
            if not live:
                if wide:
                    G1[i, :] = 0.0
                continue
            if two:
                c0 = g2[0]
                c1 = g2[1]
                if flat:
                    x0 = X[i, 0]
                    x1 = X[i, 1]
                    for k in range(H):
                        a = a1[k]
                        gW2[0, k] += c0 * a
                        gW2[1, k] += c1 * a
                        g = c0 * W2[0, k] + c1 * W2[1, k]
                        g = 0.0 if a <= 0.0 else g
                        gb1[k] += g
                        gW1T[0, k] += g * x0
                        gW1T[1, k] += g * x1
                    continue
                for k in range(H):
                    a = a1[k]
                    gW2[0, k] += c0 * a
                    gW2[1, k] += c1 * a
                    g = c0 * W2[0, k] + c1 * W2[1, k]
                    g1[k] = 0.0 if a <= 0.0 else g
                    gb1[k] += g1[k]
            else:
                for j in range(B):
                    gj = g2[j]
                    if gj == 0.0:
                        continue
                    for k in range(H):
                        gW2[j, k] += gj * a1[k]
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
            if wide:
                for k in range(H):
                    G1[i, k] = g1[k]
                continue
            for k in range(d):
                xk = X[i, k]
                for j in range(H):
                    gW1T[k, j] += g1[j] * xk
        return total / n, correct

    return kernel


def fusable(layers) -> bool:
    """Whether :func:`chain_step` serves a :func:`nnboundary.train.linear_chain` network: three
    layers (hidden with ReLU, bottleneck with ReLU or none, last), float64 on the CPU, and numba
    importable. Inputs wider than :data:`MAX_INPUT_WIDTH` have their first-layer products taken
    by the BLAS (:func:`wide`)."""
    if layers is None or len(layers) != 3 or not layers[0][1] or layers[2][1]:
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
    with_gradient = grads is not None
    if grads is None:
        grads = [np.empty((0,) * w.ndim) for w in weights]
    Z = _EMPTY if Z is None else Z
    G1 = _EMPTY if G1 is None or not with_gradient else G1
    loss, correct = _compiled()(X, y, *weights[:4], bool(relu2), *weights[4:], *grads,
                                with_gradient, Z, G1)
    return float(loss), int(correct)
