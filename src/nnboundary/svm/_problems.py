"""The SVM problems: targets, schemes, their constraint rows and the exact change of variables.

Targets (binary, labels y ∈ {−1, +1}, +1 for the larger class label)
-------------------------------------------------------------------
``svc``   (free bias)       min ½‖u‖²          s.t. yᵢ(u·hᵢ + c) ≥ 1  ∀i
``homog`` (penalised bias)  min ½(‖u‖² + c²)   s.t. yᵢ(u·hᵢ + c) ≥ 1  ∀i
          — the SVM without intercept on the augmented features [h, 1].
``origin`` (no bias)        min ½‖u‖²          s.t. yᵢ u·hᵢ ≥ 1        ∀i
          — the separator through the origin of feature space (c = 0); the limit of homog
          as the features are scaled up (:mod:`nnboundary.settings.targets`).

Schemes
-------
``binary``          K = 2 only. Stored in centred form W = [−u/2, u/2], b = [−c/2, c/2], so that
                    W₁ − W₀ = u, b₁ − b₀ = c and argmax(h Wᵀ + b) is the SVM's decision.
``crammer_singer``  min ½Σₖ‖wₖ‖² (+ ½Σₖbₖ² for homog)
                    s.t. (w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1  ∀i, ∀k ≠ yᵢ;
                    for svc the biases are free and their gauge is fixed by Σₖbₖ = 0;
                    for origin every bₖ = 0.
                    (For homog the optimum is automatically centred: Σₖwₖ = 0 and Σₖbₖ = 0.)
                    With K = 2 it has the same optimum as ``binary`` (u = w₁ − w₀, c = b₁ − b₀).
``ovr``             K binary problems, class k (+1) against the rest (−1); row k of (W, b) is
                    (u_k, c_k) of problem k itself (not centred).

Not separable: the soft-margin version with hinge slacks ξᵢ ≥ 0 and penalty C,
    min ½‖u‖² (+ ½c² for homog) + C Σᵢ ξᵢ   s.t. yᵢ(u·hᵢ + c) ≥ 1 − ξᵢ,
    Crammer–Singer: one slack per point shared by its K − 1 constraints,
    (w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1 − ξᵢ.

Functional margins, reported over *all* train points from the returned (W, b):
    binary:          mᵢ = yᵢ((W₁ − W₀)·hᵢ + b₁ − b₀)
    crammer_singer:  mᵢ = min_{k≠yᵢ} (W_{yᵢ} − Wₖ)·hᵢ + b_{yᵢ} − bₖ
    ovr:             mᵢ = min_k  s_{ik}(Wₖ·hᵢ + bₖ),  s_{ik} = +1 if yᵢ = k else −1
``min_margin = minᵢ mᵢ`` and ``hard_margin = separable and min_margin ≥ 1 − tol``. The
geometric margin of a binary fit is 1/‖u‖.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..settings.targets import TARGETS as _TARGETS

TARGETS = tuple(_TARGETS)
SCHEMES = ("binary", "crammer_singer", "ovr")


# --------------------------------------------------------------------------------------------
# Problem descriptions: variables x ∈ R^p, constraints rows·x ≥ 1 grouped by point
# --------------------------------------------------------------------------------------------


class Binary:
    """x = [u (d) [, c]]; constraint of point i: sᵢ[hᵢ, 1]·x ≥ 1 (sᵢ hᵢ·x ≥ 1 without a bias);
    objective ½ xᵀ diag(pdiag) x.

    ``weight`` (d,) is the objective weight of each coordinate of u (default 1) and ``obj_scale``
    a positive factor of the whole quadratic term (the soft fit scales C by it): the
    preconditioned problems of ``Precond`` use them. ``bias=False`` drops c (homog on features
    that already carry the constant direction; always for origin)."""

    def __init__(
        self,
        H: np.ndarray,
        s: np.ndarray,
        target: str,
        weight: np.ndarray | None = None,
        bias: bool = True,
        obj_scale: float = 1.0,
    ):
        self.H, self.s = H, s
        self.n, self.d = H.shape
        self.bias = bool(bias) and target != "origin"
        self.p = self.d + int(self.bias)
        self.target = target
        self.obj_scale = float(obj_scale)
        weight = np.ones(self.d) if weight is None else np.asarray(weight, dtype=float)
        # svc: the bias has no weight in the objective (free); homog: it counts like a weight.
        bias_weight = [self.obj_scale if target == "homog" else 0.0] if self.bias else []
        self.pdiag = np.r_[weight, bias_weight]
        self.eq = None
        self.group = (s > 0).astype(np.int64)

    def rows(self, idx: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        R = self.H[idx]
        if self.bias:
            R = np.c_[R, np.ones(len(idx))]
        return sp.csr_matrix(R * self.s[idx, None]), np.arange(len(idx))

    def margins(self, x: np.ndarray) -> np.ndarray:
        return self.s * (self.H @ x[: self.d] + (x[self.d] if self.bias else 0.0))


class CrammerSinger:
    """x = [w₀ … w_{K−1} (K·d) [, b (K)]]; point i has K − 1 constraints
    (w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1; for svc the gauge Σₖbₖ = 0 is an equality row.
    ``weight``, ``bias`` and ``obj_scale`` as for ``Binary``."""

    def __init__(
        self,
        H: np.ndarray,
        y: np.ndarray,
        K: int,
        target: str,
        weight: np.ndarray | None = None,
        bias: bool = True,
        obj_scale: float = 1.0,
    ):
        self.H, self.y, self.K = H, y, K
        self.n, self.d = H.shape
        self.bias = bool(bias) and target != "origin"
        self.p = K * (self.d + int(self.bias))
        self.target = target
        self.obj_scale = float(obj_scale)
        weight = np.ones(self.d) if weight is None else np.asarray(weight, dtype=float)
        bias_weight = self.obj_scale if target == "homog" else 0.0
        self.pdiag = np.r_[np.tile(weight, K), np.full(K if self.bias else 0, bias_weight)]
        if target == "svc" and self.bias:
            # Scores are invariant to adding one constant to every bias; fix it with Σb = 0.
            self.eq = sp.csr_matrix(np.r_[np.zeros(K * self.d), np.ones(K)][None, :])
        else:
            self.eq = None
        self.group = y

    def rows(self, idx: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        K, d = self.K, self.d
        yi = self.y[idx]
        m = len(idx)
        ks = (yi[:, None] + np.arange(1, K)[None, :]) % K  # every k ≠ yᵢ
        owner = np.repeat(np.arange(m), K - 1)
        yy, kk = np.repeat(yi, K - 1), ks.ravel()
        hh = self.H[idx][owner]
        M = len(owner)
        r = np.arange(M)
        j = np.arange(d)[None, :]
        rows = [np.repeat(r, d), np.repeat(r, d)]
        cols = [(yy[:, None] * d + j).ravel(), (kk[:, None] * d + j).ravel()]
        vals = [hh.ravel(), -hh.ravel()]
        if self.bias:
            rows += [r, r]
            cols += [K * d + yy, K * d + kk]
            vals += [np.ones(M), -np.ones(M)]
        R = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(M, self.p)
        )
        return R, owner

    def margins(self, x: np.ndarray) -> np.ndarray:
        W, b = self.unpack(x)
        return _cs_margins(self.H, self.y, W, b)

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K, d = self.K, self.d
        b = x[K * d :].copy() if self.bias else np.zeros(K)
        return x[: K * d].reshape(K, d).copy(), b


def _cs_margins(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """mᵢ = min_{k≠yᵢ} (s_{i,yᵢ} − s_{i,k}) with scores s = H Wᵀ + b."""
    S = H @ W.T + b
    rows = np.arange(len(y))
    own = S[rows, y].copy()
    S[rows, y] = -np.inf  # min_k (own − s_k) = own − max_{k≠y} s_k
    return own - S.max(axis=1)


# --------------------------------------------------------------------------------------------
# Preconditioning: an exact change of variables
# --------------------------------------------------------------------------------------------

# Whitening: a direction whose RMS spread is below this fraction of the largest is rounding noise
# of a constant direction (e.g. a dead unit) and is left out.
_RANK_RTOL = 1e-12


def _whitening(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, s): U (p×r) orthonormal, s (r,) > 0, such that Z = (A U)·s has uncorrelated columns of
    RMS 1 — the principal axes of A (right singular vectors) and their inverse RMS spreads.
    Directions with spread ≤ _RANK_RTOL of the largest are left out (r ≤ p).

    An SVD of A (through its QR factor), not an eigendecomposition of AᵀA: the Gram matrix squares the condition
    number, and its inaccurate small eigenvectors would leak real directions into dropped ones
    (then the problem solved is not the same one)."""
    n, p = A.shape
    # For a tall A, the SVD of its triangular QR factor R has the same singular values and
    # right vectors (A = Q R, Householder QR is backward stable): 3× faster at 50,000 × 513.
    core = np.linalg.qr(A, mode="r") if n >= 2 * p else A
    _, S, Vt = np.linalg.svd(core, full_matrices=False)
    sigma = S / np.sqrt(n)
    if not (len(sigma) and sigma[0] > 0):
        return np.zeros((p, 0)), np.zeros(0)
    keep = sigma > _RANK_RTOL * sigma[0]
    return Vt[keep].T.copy(), 1.0 / sigma[keep]


class Precond:
    """An exact change of variables that makes the QP well conditioned (same problem, same optimum).

    Network features can be large (norms 1e2–1e3) or tiny, far from the origin relative to their
    spread (all points near one h₀), or nearly collinear (a ReLU unit dead on most points); solved
    as given, the weights are huge, the bias cancels u·h₀ to many digits and clarabel stops with
    MaxIterations/InsufficientProgress or returns points that violate their own constraints.

    svc:   h − μ = Z diag(1/s) Uᵀ (μ the mean, U the principal axes of the centred features),
           u = U diag(s) v, c = c′ − u·μ  ⇒  u·h + c = v·z + c′ and ‖u‖² = Σⱼ sⱼ² vⱼ².
           The free bias absorbs the shift, so c′ stays free: the same problem in (v, c′).
    homog: [h, 1] = Z diag(1/s) Uᵀ (principal axes of the augmented, uncentred features),
           [u, c] = U diag(s) v  ⇒  [u, c]·[h, 1] = v·z and ‖u‖² + c² = Σⱼ sⱼ² vⱼ²: the SVM without
           intercept on z with objective weights sⱼ² (no separate bias variable).
    origin: the same on h itself (principal axes of the uncentred features about the origin),
           u = U diag(s) v, c = 0.
    The quadratic term is divided by min sⱼ² (``obj_scale``; the soft fit scales C alike), so
    pdiag ≥ 1. Directions without spread carry no information and are dropped (their weight
    could only grow the norm)."""

    def __init__(self, H: np.ndarray, target: str):
        n, d = H.shape
        self.target, self.d = target, d
        self.mu = np.zeros(d)
        if target == "svc":
            self.mu = H.mean(axis=0)
            A = H - self.mu
        elif target == "homog":
            A = np.c_[H, np.ones(n)]
        else:  # origin: no bias at all
            A = H
        self.U, s = _whitening(A)
        self.r = len(s)
        self.Z = (A @ self.U) * s
        self.obj_scale = 1.0 / float(s.min() ** 2) if self.r else 1.0
        self.weight = s**2 * self.obj_scale
        self.T = self.U * s  # x = T v
        self.bias = target == "svc"

    def binary(self, s: np.ndarray) -> Binary:
        return Binary(self.Z, s, self.target, self.weight, self.bias, self.obj_scale)

    def crammer_singer(self, y: np.ndarray, K: int) -> CrammerSinger:
        return CrammerSinger(self.Z, y, K, self.target, self.weight, self.bias, self.obj_scale)

    def binary_back(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(u, c) of the original problem from x = [v [, c′]]."""
        xo = self.T @ x[: self.r]
        if self.bias:
            return xo, float(x[self.r] - xo @ self.mu)
        if self.target == "origin":
            return xo, 0.0
        return xo[: self.d], float(xo[self.d])

    def cs_back(self, Wz: np.ndarray, bz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) of the original problem from the rows v_k (and biases c′_k)."""
        Xo = Wz @ self.T.T
        if self.bias:
            b = bz - Xo @ self.mu
            return Xo, b - b.mean()  # the gauge Σb = 0 (scores shift by a constant)
        if self.target == "origin":
            return Xo.copy(), np.zeros(Xo.shape[0])
        return Xo[:, : self.d].copy(), Xo[:, self.d].copy()


def nearest_mean_margins(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Margins of the nearest-mean classifier (score_g(x) = μ_g·x − ½‖μ_g‖²), each point's own score
    minus the best other: a cheap guess of which points lie near the boundary."""
    labels = np.unique(groups)
    mu = np.array([X[groups == g].mean(axis=0) for g in labels])
    S = X @ mu.T - 0.5 * (mu**2).sum(axis=1)
    if len(labels) == 1:
        return S[:, 0]
    own_col = np.searchsorted(labels, groups)
    rows = np.arange(len(X))
    own = S[rows, own_col].copy()
    S[rows, own_col] = -np.inf
    return own - S.max(axis=1)


def functional_margins(
    H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, scheme: str
) -> np.ndarray:
    """Per-point functional margin of the classifier (W, b) under ``scheme`` (module docstring).

    binary: yᵢ((W₁ − W₀)·hᵢ + b₁ − b₀) with yᵢ = ±1; crammer_singer: min_{k≠yᵢ} score difference;
    ovr: min_k s_{ik}(Wₖ·hᵢ + bₖ)."""
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if scheme == "binary":
        s = np.where(y == 1, 1.0, -1.0)
        return s * (H @ (W[1] - W[0]) + b[1] - b[0])
    if scheme == "crammer_singer":
        return _cs_margins(H, y, W, b)
    if scheme == "ovr":
        S = H @ W.T + b
        sign = np.where(y[:, None] == np.arange(W.shape[0])[None, :], 1.0, -1.0)
        return (sign * S).min(axis=1)
    raise ValueError(f"scheme {scheme!r} is not one of {SCHEMES}")
