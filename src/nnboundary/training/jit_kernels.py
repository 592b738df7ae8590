"""The numba-compiled loops behind :mod:`nnboundary.training.kernels` (imported on first use
only).

Top-level functions, so that numba's on-disk cache finds them again in the next process (a
function defined inside another, or one that calls a closure's function, is compiled anew in
every process: 4 s per job).
"""
from __future__ import annotations

import math

import numba
import numpy as np

# reassoc and contract let the compiler vectorise a sample's sums over the hidden units
# and use fused multiply-adds; no approximate functions (afn), no assumption of no NaN or
# infinity, so exp, log and log1p stay exact and a diverging run still shows as NaN. The
# numpy error model: a division by zero gives inf or NaN instead of a checked exception.
jit = numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True,
                 error_model="numpy")


@jit
def exact_tail(z, yi, n, g, with_gradient):
    # One sample's exact-tail cross-entropy from its logits z and label yi: d_k = z_k - z_y,
    # M = max(0, max_{k≠y} d_k), e_k = exp(d_k - M), s = Σ_{k≠y} e_k, loss = log1p(s)
    # (M = 0) or M + log(e^-M + s); with the gradient, g receives its share of the mean's
    # gradient G = (P - onehot(y)) / n, with P_y - 1 = -s / (e^-M + s).
    K = z.shape[0]
    zt = z[yi]
    top = 0.0
    for j in range(K):
        if j != yi and z[j] - zt > top:
            top = z[j] - zt
    ssum = 0.0
    for j in range(K):
        if j != yi:
            e = math.exp(z[j] - zt - top)
            g[j] = e
            ssum += e
    if top > 0.0:
        below = math.exp(-top)
        loss = top + math.log(below + ssum)
    else:
        below = 1.0
        loss = math.log1p(ssum)
    if with_gradient:
        denominator = (below + ssum) * n
        for j in range(K):
            g[j] = (-ssum if j == yi else g[j]) / denominator
    return loss


@jit
def last_layer(W, b, a, z):
    # The logits z = W a + b of one sample (each z_j summed from b_j over a's units in order);
    # returns the index of the first largest one, as argmax takes it.
    best = 0
    for j in range(W.shape[0]):
        s = b[j]
        for k in range(W.shape[1]):
            s += W[j, k] * a[k]
        z[j] = s
        if s > z[best]:
            best = j
    return best


@jit
def last_layer_gradient(g, a, gW, gb):
    # One sample's share of the last layer's gradient: ∇b += g, ∇W += g aᵀ.
    for j in range(gW.shape[0]):
        gb[j] += g[j]
        for k in range(gW.shape[1]):
            gW[j, k] += g[j] * a[k]


@jit
def linear(H, y, W, b, gW, gb, with_gradient):
    # The lone last layer z = W h + b on fixed features H (n × B): loss, correct count and,
    # with the gradient, ∇W = Σ G hᵀ and ∇b = Σ G, the same sums in the same order as the
    # chain kernel's last layer below.
    n = H.shape[0]
    K = W.shape[0]
    z = np.empty(K)
    g = np.empty(K)
    if with_gradient:
        gW[:] = 0.0
        gb[:] = 0.0
    total = 0.0
    correct = 0
    for i in range(n):
        h = H[i]
        yi = y[i]
        if last_layer(W, b, h, z) == yi:
            correct += 1
        total += exact_tail(z, yi, n, g, with_gradient)
        if with_gradient:
            last_layer_gradient(g, h, gW, gb)
    return total / n, correct


# Longer than 80 lines on purpose: one loop over the samples runs each one's forward and
# backward pass while its activations sit in registers and cache; split into functions, each
# would take a dozen of these arrays, and the loop would pass every sample's activations
# through memory between them.
@jit
def chain(X, y, W1T, b1, W2, b2, relu2, W3, b3, gW1T, gb1, gW2, gb2, gW3, gb3,
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
        yi = y[i]
        if last_layer(W3, b3, a2, z) == yi:
            correct += 1
        total += exact_tail(z, yi, n, g3, with_gradient)
        if not with_gradient:
            continue
        # backward
        last_layer_gradient(g3, a2, gW3, gb3)
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
