"""Hard-margin linear SVM targets for a network's last layer, and the ``svm`` pipeline stage.

The theory (Soudry et al., JMLR 2018) says gradient descent on a separable cross-entropy problem
converges in *direction* to a hard-margin SVM; which SVM depends on how the bias is treated.
This module fits those targets on the last hidden layer's features ``h`` (one row per train
sample) and writes them to ``svm.json`` for the metrics step. Pure numpy/scipy/clarabel: no torch.

Targets (binary, labels y ∈ {−1, +1}, +1 for the larger class label)
-------------------------------------------------------------------
``svc``   (free bias)       min ½‖u‖²          s.t. yᵢ(u·hᵢ + c) ≥ 1  ∀i
``homog`` (penalised bias)  min ½(‖u‖² + c²)   s.t. yᵢ(u·hᵢ + c) ≥ 1  ∀i
          — the SVM without intercept on the augmented features [h, 1].

Schemes
-------
``binary``          K = 2 only. Stored in centred form W = [−u/2, u/2], b = [−c/2, c/2], so that
                    W₁ − W₀ = u, b₁ − b₀ = c and argmax(h Wᵀ + b) is the SVM's decision.
``crammer_singer``  min ½Σₖ‖wₖ‖² (+ ½Σₖbₖ² for homog)
                    s.t. (w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1  ∀i, ∀k ≠ yᵢ;
                    for svc the biases are free and their gauge is fixed by Σₖbₖ = 0.
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

How it is solved quickly
------------------------
* A linear constraint that holds at the vertices of a class's convex hull holds on the whole hull,
  so for d ≤ 3 the hull vertices of each class (scipy.spatial.ConvexHull) are the only possible
  support vectors in every scheme; they start the working set.
* Constraint generation: solve the QP (clarabel) on a working set, compute the margins of all
  points, add the violated ones, repeat. A working-set optimum that satisfies every constraint is
  the full optimum (it minimises a relaxation and is feasible for the full problem). A working
  set that is infeasible proves the full problem infeasible. After ``_CG_ROUNDS`` rounds the
  full problem is solved directly, so the loop cannot run away.
* Separability is decided first by an LP feasibility problem (HiGHS via scipy.optimize.linprog),
  also by constraint generation: any x with every margin > 0 certifies separability.
* Duplicate (h, y) rows are merged; in the soft fit a merged row's slack is weighted by its count.

How it stays exact on network features
--------------------------------------
Last-layer features are often badly conditioned: crowded near one point far from the origin
(h ≈ 0.1 ± 1e-3), nearly collinear (a principal spread 1e-9 next to 1e-3), or large (500·h).
Solved as given, the weights are huge, the bias cancels u·h₀ to many digits, and clarabel stops
(MaxIterations, InsufficientProgress) or returns points that violate their own constraints.
* Every problem is solved in whitened coordinates (``_Precond``), an exact change of variables:
  svc on the centred features (the free bias absorbs the shift), homog on the augmented
  features [h, 1], both rotated to their principal axes and scaled to unit spread; the objective
  becomes a diagonal ½Σⱼ wⱼvⱼ². Same problem, same optimum, mapped back at the end.
* Each hard QP is rescaled so that its optimal objective (and the duals) are O(1); otherwise
  clarabel's static regularisation or its absolute gap tolerance spoils the answer.
* No solver status is trusted: an answer counts when its active set's KKT system, solved exactly,
  has non-negative multipliers and satisfies every working-set constraint (``_polish``), or when
  clarabel says Solved at a sane scale with every working-set margin ≥ 1 − 1e-6. Otherwise
  clarabel is retried (rescaled, then with less regularisation), then the working set is solved
  by NNLS as a least-distance problem (``_ldp_fallback``) and polished.
* A problem the LP has proven separable never silently becomes a soft fit: a hard QP that cannot
  be solved raises SVMError.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog, nnls
from scipy.spatial import ConvexHull, QhullError

from . import io as fio
from .config import RUN_KEYS, ConfigError, parse_settings

TARGETS = ("svc", "homog")
SCHEMES = ("binary", "crammer_singer", "ovr")
DEFAULT_SETTINGS: dict[str, Any] = {"C": 1.0, "tol": 1e-3, "multiclass": ["crammer_singer", "ovr"]}

# Constraint generation limits. Rounds are capped so that a pathological problem falls back to
# one direct solve of the full problem instead of looping.
_CG_ROUNDS = 40
_LP_ROUNDS = 30
# Soft fits on more unique points than this start from a fit on a random subsample.
_SOFT_DIRECT_MAX = 4000
_SOFT_SUBSAMPLE = 2000
# A hard working-set optimum is accepted once no outside point is below 1 − _ADD_SLACK·tol;
# stricter than tol so that the final check (≥ 1 − tol) passes with room to spare.
_ADD_SLACK = 1e-2
# At most this many hull vertices per class start the working set.
_HULL_START_MAX = 200
# Skip the LP if its constraint matrix would exceed this many non-zeros (the QP decides instead).
_LP_MAX_NNZ = 20_000_000


class SVMError(RuntimeError):
    """A fit that cannot be trusted (a claimed hard margin that fails its check, a solver failure)."""


@dataclass
class SVMFit:
    """One fitted target; the classifier is argmax(h @ W.T + b)."""

    target: str  # "svc" | "homog"
    scheme: str  # "binary" | "crammer_singer" | "ovr"
    W: np.ndarray  # (K, d)
    b: np.ndarray  # (K,)
    separable: bool  # hard-margin problem feasible (ovr: every one-vs-rest problem)
    hard_margin: bool  # separable and min_margin >= 1 - tol, verified over all train points
    C: float | None  # soft-margin penalty used, None when every problem was hard
    min_margin: float  # minimum functional margin over all train points (module docstring)
    support: np.ndarray  # int train rows whose constraint is active (margin <= 1 + tol)
    seconds: float  # wall time of the fit
    status: str  # what was done and why, in words

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "scheme": self.scheme,
            "W": np.asarray(self.W, dtype=float).tolist(),
            "b": np.asarray(self.b, dtype=float).tolist(),
            "separable": bool(self.separable),
            "hard_margin": bool(self.hard_margin),
            "C": None if self.C is None else float(self.C),
            "min_margin": _finite_or_none(self.min_margin),
            "support": [int(i) for i in np.asarray(self.support).ravel()],
            "seconds": float(self.seconds),
            "status": str(self.status),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "SVMFit":
        W = np.asarray(obj["W"], dtype=np.float64)
        if W.ndim != 2:
            raise fio.InputFileError(f"SVM fit has W of shape {W.shape}; expected K×d (2-D)")
        min_margin = obj.get("min_margin")
        return cls(
            target=str(obj["target"]),
            scheme=str(obj["scheme"]),
            W=W,
            b=np.asarray(obj["b"], dtype=np.float64).reshape(W.shape[0]),
            separable=bool(obj["separable"]),
            hard_margin=bool(obj["hard_margin"]),
            C=None if obj.get("C") is None else float(obj["C"]),
            min_margin=float("nan") if min_margin is None else float(min_margin),
            support=np.asarray(obj.get("support", []), dtype=np.int64),
            seconds=float(obj.get("seconds", 0.0)),
            status=str(obj.get("status", "")),
        )


def _finite_or_none(value: float) -> float | None:
    # Strict JSON has no NaN/inf; None marks "undefined" (e.g. no constraint at all).
    value = float(value)
    return value if np.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# Problem descriptions: variables x ∈ R^p, constraints rows·x ≥ 1 grouped by point
# --------------------------------------------------------------------------------------------


class _Binary:
    """x = [u (d) [, c]]; constraint of point i: sᵢ[hᵢ, 1]·x ≥ 1 (sᵢ hᵢ·x ≥ 1 without a bias);
    objective ½ xᵀ diag(pdiag) x.

    ``weight`` (d,) is the objective weight of each coordinate of u (default 1) and ``obj_scale``
    a positive factor of the whole quadratic term (the soft fit scales C by it): the
    preconditioned problems of ``_Precond`` use them. ``bias=False`` drops c (homog on features
    that already carry the constant direction)."""

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
        self.bias = bool(bias)
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


class _CrammerSinger:
    """x = [w₀ … w_{K−1} (K·d) [, b (K)]]; point i has K − 1 constraints
    (w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1; for svc the gauge Σₖbₖ = 0 is an equality row.
    ``weight``, ``bias`` and ``obj_scale`` as for ``_Binary``."""

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
        self.bias = bool(bias)
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

    A full SVD of A, not an eigendecomposition of AᵀA: the Gram matrix squares the condition
    number, and its inaccurate small eigenvectors would leak real directions into dropped ones
    (then the problem solved is not the same one)."""
    n, p = A.shape
    _, S, Vt = np.linalg.svd(A, full_matrices=False)
    sigma = S / np.sqrt(n)
    if not (len(sigma) and sigma[0] > 0):
        return np.zeros((p, 0)), np.zeros(0)
    keep = sigma > _RANK_RTOL * sigma[0]
    return Vt[keep].T.copy(), 1.0 / sigma[keep]


class _Precond:
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
    The quadratic term is divided by min sⱼ² (``obj_scale``; the soft fit scales C alike), so
    pdiag ≥ 1. Directions without spread carry no information and are dropped (their weight
    could only grow the norm)."""

    def __init__(self, H: np.ndarray, target: str):
        n, d = H.shape
        self.target, self.d = target, d
        if target == "svc":
            self.mu = H.mean(axis=0)
            A = H - self.mu
        else:
            self.mu = np.zeros(d)
            A = np.c_[H, np.ones(n)]
        self.U, s = _whitening(A)
        self.r = len(s)
        self.Z = (A @ self.U) * s
        self.obj_scale = 1.0 / float(s.min() ** 2) if self.r else 1.0
        self.weight = s**2 * self.obj_scale
        self.T = self.U * s  # x = T v
        self.bias = target == "svc"

    def binary(self, s: np.ndarray) -> _Binary:
        return _Binary(self.Z, s, self.target, self.weight, self.bias, self.obj_scale)

    def crammer_singer(self, y: np.ndarray, K: int) -> _CrammerSinger:
        return _CrammerSinger(self.Z, y, K, self.target, self.weight, self.bias, self.obj_scale)

    def binary_back(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(u, c) of the original problem from x = [v [, c′]]."""
        xo = self.T @ x[: self.r]
        if self.bias:
            return xo, float(x[self.r] - xo @ self.mu)
        return xo[: self.d], float(xo[self.d])

    def cs_back(self, Wz: np.ndarray, bz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) of the original problem from the rows v_k (and biases c′_k)."""
        Xo = Wz @ self.T.T
        if self.bias:
            b = bz - Xo @ self.mu
            return Xo, b - b.mean()  # the gauge Σb = 0 (scores shift by a constant)
        return Xo[:, : self.d].copy(), Xo[:, self.d].copy()


def _nearest_mean_margins(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# clarabel / HiGHS calls
# --------------------------------------------------------------------------------------------

_OK = ("Solved", "AlmostSolved")
_INFEASIBLE = ("PrimalInfeasible", "AlmostPrimalInfeasible")


def _clarabel(pdiag, q, A, b, cones, time_limit: float, **options):
    """Solve min ½ xᵀ diag(pdiag) x + qᵀx s.t. A x + s = b, s ∈ cones; returns (status, x, z).
    ``options`` override clarabel settings."""
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.time_limit = max(float(time_limit), 1.0)
    for key, value in options.items():
        setattr(settings, key, value)
    P = sp.diags(np.asarray(pdiag, dtype=float)).tocsc()  # diagonal, so already upper triangular
    solver = clarabel.DefaultSolver(
        P, np.asarray(q, dtype=float), sp.csc_matrix(A), np.asarray(b, dtype=float), cones, settings
    )
    sol = solver.solve()
    return str(sol.status).split(".")[-1], np.asarray(sol.x), np.asarray(sol.z)


# Hard working-set QP: clarabel attempts, in turn, until one gives a verified optimum.
# Before each, the objective is multiplied by κ = 1/(the objective of the last iterate, or the
# caller's estimate) so that the optimum is O(1): the argmin is unchanged, but the duals become
# O(1) too. With a large objective (1e9 on whitened network features) clarabel's static
# regularisation (1e-8 on the KKT diagonal) shifts the constraints by ~1e-8·‖z‖ — the cause of
# InsufficientProgress/MaxIterations and of "solutions" violating their own constraints by
# 10 %; with a tiny one, its absolute gap tolerance (1e-8) stops it far from the optimum.
# The last attempt also lowers the regularisation. Then the exact NNLS fallback (_ldp_fallback).
_HARD_ATTEMPTS = (
    {},
    {},
    {},
    {"static_regularization_constant": 1e-12, "max_iter": 400},
)
# An unpolished "Solved" answer is accepted only if its scaled objective lies in this range
# (else the gap tolerances were meaningless at that scale).
_SANE_OBJ = (1e-2, 1e2)
# An unpolished solver answer is accepted only if no working-set margin is below 1 − this.
_WS_FEAS = 1e-6


def _objective(prob, x: np.ndarray) -> float:
    return float(0.5 * x @ (prob.pdiag * x))


def _solve_hard(
    prob,
    idx: np.ndarray,
    time_limit: float,
    feasible: bool = False,
    obj_hint: float | None = None,
) -> tuple[str, np.ndarray]:
    """min ½ xᵀ diag(pdiag) x  s.t. R x ≥ 1 (R: the rows of the points idx) [, eq x = 0].

    Returns ("Solved", x) only for a verified optimum: the KKT system of its active set solved
    exactly with non-negative multipliers (_polish), or a solver "Solved"/"AlmostSolved" answer
    that satisfies every working-set constraint; a solver status is never trusted alone.
    ("PrimalInfeasible", x) when clarabel proves the working set infeasible — ignored when
    ``feasible`` (the LP has certified a strictly separating x, so such a claim is numerical).
    ``obj_hint``: the expected optimal objective (scales the problem). Otherwise the last status."""
    t_end = time.perf_counter() + max(float(time_limit), 1.0)
    R, _ = prob.rows(idx)
    # clarabel form: A x + s = b with s in the cones; R x ≥ 1  ⇔  −R x + s = −1, s ≥ 0.
    A, b, cones = -R, -np.ones(R.shape[0]), [clarabel.NonnegativeConeT(R.shape[0])]
    n_eq = 0 if prob.eq is None else prob.eq.shape[0]
    if n_eq:
        A = sp.vstack([prob.eq, A])
        b = np.r_[np.zeros(n_eq), b]
        cones = [clarabel.ZeroConeT(n_eq)] + cones
    ok_hint = obj_hint is not None and np.isfinite(obj_hint) and obj_hint > 0
    kappa = 1.0 / obj_hint if ok_hint else 1.0
    last, x_last = "NotRun", np.zeros(prob.p)
    for options in _HARD_ATTEMPTS:
        remaining = t_end - time.perf_counter()
        if remaining <= 0:
            break
        status, x, z = _clarabel(
            kappa * prob.pdiag, np.zeros(prob.p), A, b, cones, remaining, **options
        )
        last, x_last = status, x
        if status in _INFEASIBLE and not feasible:
            return status, x
        if not np.all(np.isfinite(x)):
            continue
        xp, certified = _polish(prob, R, z[n_eq:], x, kappa)
        if certified:
            return "Solved", xp
        obj = _objective(prob, x)
        sane = _SANE_OBJ[0] <= kappa * obj <= _SANE_OBJ[1]
        if status in _OK and sane and (R @ x).min() >= 1 - _WS_FEAS:
            return "Solved", x
        if np.isfinite(obj) and obj > 0:
            kappa = 1.0 / obj  # this iterate's objective: a fair estimate of the optimum's
    for x, exact, zl in _ldp_fallback(prob, idx, R, kappa):
        kx = 1.0 / max(_objective(prob, x), 1e-300)
        xp, certified = _polish(prob, R, zl, x, kx)
        if certified:
            return "Solved", xp
        if exact and (R @ x).min() >= 1 - _WS_FEAS:
            return "Solved", x
    return last, x_last


def _ldp(G: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Least-distance programming, min ½‖w‖² s.t. G w ≥ 1, exactly by NNLS (Lawson & Hanson,
    "Solving Least Squares Problems", ch. 23): with E = [Gᵀ; 1ᵀ], f = [0, …, 0, 1] and z ≥ 0
    minimising ‖E z − f‖, r = E z − f, w = −r[:p]/r[p]; r = 0 means infeasible (None)."""
    m, p = G.shape
    E = np.vstack([G.T, np.ones((1, m))])
    f = np.r_[np.zeros(p), 1.0]
    try:
        z, _ = nnls(E, f, maxiter=max(100, 10 * (m + p)))
    except (RuntimeError, ValueError, np.linalg.LinAlgError):  # iteration limit, bad input
        return None, np.zeros(m)
    r = E @ z - f
    if not abs(r[p]) > 1e-12:
        return None, z
    return -r[:p] / r[p], z


# The svc pairwise form has one row per (positive, negative) pair; above this, no pairwise form.
_PAIRS_MAX = 200_000
# Relative objective weights given to free variables (svc biases) in the approximate LDP.
_FREE_WEIGHTS = (1e-4, 1e-8)


def _ldp_fallback(prob, idx: np.ndarray, R: sp.csr_matrix, kappa: float = 1.0):
    """Working-set solutions by NNLS (least-distance programming), yielded as (x, exact, z), z the
    NNLS multipliers of the rows of R (their support is the active set), or None:
    * no free variable (homog in whitened form, pdiag > 0): exact, w = √(κ pdiag)·x,
      G = R/√(κ pdiag);
    * binary svc (free bias c): exact by eliminating c — u·(hᵢ − hⱼ) ≥ 2 for every positive i and
      negative j — then c = −(min₊ u·h + max₋ u·h)/2 (when there are at most _PAIRS_MAX pairs);
    * otherwise (Crammer–Singer svc; its gauge Σb = 0 holds by itself once the biases carry a
      weight): approximate, the free variables given small weights _FREE_WEIGHTS; the optimum
      moves a little but keeps its active set, which _polish then solves exactly.
    κ ≈ 1/optimum keeps ‖w‖ = O(1) (_ldp reads "infeasible" off a tiny residual, which a huge ‖w‖
    would imitate)."""
    pd = kappa * prob.pdiag
    if prob.eq is None and np.all(pd > 0):
        root = np.sqrt(pd)
        w, z = _ldp(R.toarray() / root)
        if w is not None:
            yield w / root, True, z
        return
    if isinstance(prob, _Binary) and prob.bias and prob.target == "svc" and np.all(pd[:-1] > 0):
        d = prob.d
        root = np.sqrt(pd[:d])
        s = prob.s[idx]
        Zp, Zn = prob.H[idx][s > 0], prob.H[idx][s < 0]
        if len(Zp) == 0 or len(Zn) == 0:
            yield np.r_[np.zeros(d), 1.0 if len(Zp) else -1.0], True, None
            return
        if len(Zp) * len(Zn) <= _PAIRS_MAX:
            G = (Zp[:, None, :] - Zn[None, :, :]).reshape(-1, d) / (2.0 * root)
            w, _ = _ldp(G)
            if w is not None:
                u = w / root
                c = -((Zp @ u).min() + (Zn @ u).max()) / 2
                yield np.r_[u, c], True, None
                return
    free = pd == 0
    if not free.any() or free.all():
        return
    Rd = R.toarray()
    for rel in _FREE_WEIGHTS:
        pd2 = pd.copy()
        pd2[free] = rel * pd[~free].min()
        root = np.sqrt(pd2)
        w, z = _ldp(Rd / root)
        if w is not None:
            yield w / root, False, z


def _polish(
    prob, R: sp.csr_matrix, z: np.ndarray | None, x: np.ndarray, kappa: float = 1.0
) -> tuple[np.ndarray, bool]:
    """Refine an approximate solution to machine precision by solving the KKT system of its
    active set: κP x − R_Aᵀ α + eqᵀ μ = 0, R_A x = 1, eq x = 0, for the active set A read off the
    duals z (rows with z > 0) or, failing that, off the margins (rows with R x ≤ 1 + δ).
    Returns (x′, True) when x′ is certified optimal — the system solved exactly, α ≥ 0 and
    R x′ ≥ 1 (KKT holds, so x′ is the optimum of the convex QP) — else (x, False)."""
    sets = []
    if z is not None and len(z):
        zmax = float(z.max())
        if zmax > 0:
            sets.append(np.flatnonzero(z > 1e-7 * zmax))
    if np.all(np.isfinite(x)):
        m = R @ x
        for delta in (1e-7, 1e-5, 1e-3):
            sets.append(np.flatnonzero(m <= 1 + delta))
    E = np.zeros((0, prob.p)) if prob.eq is None else prob.eq.toarray()
    Pd = kappa * prob.pdiag
    tried = set()
    for act in sets:
        key = act.tobytes()
        if len(act) == 0 or len(act) > 2000 or key in tried:  # 2000+: a dense solve costs too much
            continue
        tried.add(key)
        RA = R[act].toarray()
        na, ne, p = len(act), E.shape[0], prob.p
        K = np.zeros((p + na + ne, p + na + ne))
        K[:p, :p] = np.diag(Pd)
        K[:p, p : p + na] = -RA.T
        K[:p, p + na :] = E.T
        K[p : p + na, :p] = RA
        K[p + na :, :p] = E
        rhs = np.r_[np.zeros(p), np.ones(na), np.zeros(ne)]
        try:
            sol = np.linalg.lstsq(K, rhs, rcond=None)[0]
        except np.linalg.LinAlgError:
            continue
        if not np.all(np.isfinite(sol)):
            continue
        xp, alpha = sol[:p], sol[p : p + na]
        if np.abs(K @ sol - rhs).max() > 1e-9 * max(1.0, np.abs(K).max() * np.abs(sol).max()):
            continue  # singular KKT system without an exact solution
        if alpha.min() < -1e-9 * max(1.0, alpha.max()) or (R @ xp).min() < 1 - 1e-9:
            continue
        return xp, True
    return x, False


def _solve_soft(prob, idx: np.ndarray, weights: np.ndarray, C: float, time_limit: float):
    """min ½ xᵀ diag(pdiag) x + C Σⱼ weightⱼ ξⱼ  s.t. R x + ξ_owner ≥ 1, ξ ≥ 0 [, eq x = 0]."""
    R, owner = prob.rows(idx)
    M, m = R.shape[0], len(idx)
    E = sp.csr_matrix((np.ones(M), (np.arange(M), owner)), shape=(M, m))
    A = sp.vstack(
        [
            sp.hstack([-R, -E]),
            sp.hstack([sp.csr_matrix((m, prob.p)), -sp.identity(m, format="csr")]),
        ]
    )
    b = np.r_[-np.ones(M), np.zeros(m)]
    cones = [clarabel.NonnegativeConeT(M + m)]
    if prob.eq is not None:
        A = sp.vstack([sp.hstack([prob.eq, sp.csr_matrix((prob.eq.shape[0], m))]), A])
        b = np.r_[np.zeros(prob.eq.shape[0]), b]
        cones = [clarabel.ZeroConeT(prob.eq.shape[0])] + cones
    pdiag = np.r_[prob.pdiag, np.zeros(m)]
    # The quadratic term carries the factor obj_scale (see _Precond); scale C alike.
    q = np.r_[np.zeros(prob.p), C * prob.obj_scale * np.asarray(weights, dtype=float)]
    status, z, _ = _clarabel(pdiag, q, A, b, cones, time_limit)
    return status, z[: prob.p]


def _lp_feasible(prob, idx: np.ndarray) -> tuple[str, np.ndarray | None]:
    """Is {x : R x ≥ 1} non-empty for the rows of idx? ("feasible" | "infeasible" | "unknown")."""
    R, _ = prob.rows(idx)
    if R.nnz > _LP_MAX_NNZ:
        return "unknown", None
    res = linprog(
        np.zeros(prob.p), A_ub=-R, b_ub=-np.ones(R.shape[0]), bounds=(None, None), method="highs"
    )
    if res.status == 0:
        return "feasible", res.x
    if res.status == 2:
        return "infeasible", None
    return "unknown", None


# --------------------------------------------------------------------------------------------
# Constraint generation drivers
# --------------------------------------------------------------------------------------------


def _add_worst(in_ws: np.ndarray, margins: np.ndarray, threshold: float, cap: int) -> np.ndarray:
    """Indices of up to ``cap`` points outside the working set with margin < threshold, worst first."""
    cand = np.flatnonzero((margins < threshold) & ~in_ws)
    if len(cand) > cap:
        cand = cand[np.argpartition(margins[cand], cap)[:cap]]
    return cand


def _separability(prob, init: np.ndarray) -> tuple[str, str, np.ndarray | None]:
    """LP feasibility by constraint generation. Any x whose margins are all > 0 certifies
    separability (scaling x makes every margin ≥ 1); an infeasible subset certifies the opposite.
    Returns (verdict, note, x): x is the certificate, scaled so that its minimum margin over all
    points is 1 (a feasible point of the hard QP), when the verdict is "feasible"."""
    in_ws = np.zeros(prob.n, dtype=bool)
    in_ws[init] = True
    cap = max(1000, 20 * prob.p)
    for rounds in range(1, _LP_ROUNDS + 2):
        if rounds > _LP_ROUNDS:
            in_ws[:] = True
        verdict, x = _lp_feasible(prob, np.flatnonzero(in_ws))
        if verdict == "infeasible":
            return "infeasible", f"LP infeasible on {in_ws.sum()} of {prob.n} unique points", None
        if verdict == "unknown":
            return "unknown", "LP inconclusive", None
        m = prob.margins(x)
        new = _add_worst(in_ws, m, 0.5, cap)
        if len(new) == 0 and m.min() > 0:
            note = f"LP feasible ({rounds} round(s), {in_ws.sum()} points)"
            return "feasible", note, x / m.min()
        if len(new) == 0:  # only working-set points misbehave: numerical trouble, let the QP decide
            return "unknown", "LP solution fails its own constraints", None
        in_ws[new] = True
    raise AssertionError("unreachable: the last round solves the full LP")


def _hard_cg(
    prob, init: np.ndarray, tol: float, deadline: float, x_feasible: np.ndarray | None = None
) -> tuple[str, np.ndarray | None, str]:
    """Hard-margin QP by constraint generation; returns (verdict, x, note). ``x_feasible``: a
    point with every margin ≥ 1 (the LP certificate), if known: the problem is then feasible and
    a claim of infeasibility is a numerical failure, not an answer."""
    in_ws = np.zeros(prob.n, dtype=bool)
    in_ws[init] = True
    cap = max(200, 20 * prob.p)
    threshold = 1.0 - _ADD_SLACK * tol
    feasible = x_feasible is not None
    obj_hint = None  # (the LP certificate's objective can exceed the optimum by 1e10)
    for rounds in range(1, _CG_ROUNDS + 2):
        full = rounds > _CG_ROUNDS
        if full:
            in_ws[:] = True  # give up on the working set: one direct solve of everything
        status, x = _solve_hard(
            prob, np.flatnonzero(in_ws), deadline - time.perf_counter(), feasible, obj_hint
        )
        if status in _INFEASIBLE and not feasible:
            return (
                "infeasible",
                None,
                f"hard QP infeasible on {in_ws.sum()} of {prob.n} unique points",
            )
        if status != "Solved":
            claim = (
                " although an LP solution separates every point (so the data are separable)"
                if feasible
                else ""
            )
            raise SVMError(
                f"the hard-margin QP on {in_ws.sum()} points has no verified solution{claim}: "
                f"clarabel status {status} after {len(_HARD_ATTEMPTS)} attempts, and "
                f"the NNLS fallback failed too"
            )
        obj_hint = _objective(prob, x)
        m = prob.margins(x)
        new = _add_worst(in_ws, m, threshold, cap)
        if len(new) == 0:
            return (
                "solved",
                x,
                f"hard QP solved on {in_ws.sum()} of {prob.n} unique points in {rounds} round(s)",
            )
        in_ws[new] = True
    raise AssertionError("unreachable: the last round solves the full problem")


def _soft_cg(prob, weights: np.ndarray, C: float, deadline: float) -> tuple[np.ndarray, str]:
    """Soft-margin QP by constraint generation. Points left out of the working set have ξ = 0;
    once none of them has margin < 1 the working-set optimum is the full optimum (the full
    objective equals the working-set objective there and bounds it from above everywhere)."""
    n = prob.n
    in_ws = np.zeros(n, dtype=bool)
    notes = []
    x = np.zeros(prob.p)  # the zero classifier, if not even one solve finishes in time
    if n <= _SOFT_DIRECT_MAX:
        in_ws[:] = True
    else:
        # A subsample fit (slack weights scaled up to the full count) predicts which points will
        # end inside the margin; take those with a buffer.
        sub = np.random.default_rng(0).choice(n, _SOFT_SUBSAMPLE, replace=False)
        scale = weights.sum() / weights[sub].sum()
        status, x0 = _solve_soft(prob, sub, weights[sub] * scale, C, deadline - time.perf_counter())
        in_ws[sub] = True
        if status in _OK:
            x = x0
            in_ws |= prob.margins(x0) < 1.5
        else:
            in_ws[:] = True
    threshold = 1.0 - 1e-9
    for rounds in range(1, _CG_ROUNDS + 2):
        if rounds > _CG_ROUNDS:
            in_ws[:] = True
        idx = np.flatnonzero(in_ws)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            notes.append("time limit reached; last iterate kept")
            break
        status, x_new = _solve_soft(prob, idx, weights[idx], C, remaining)
        if status not in _OK:
            # Bounded in time by design: report the last usable iterate rather than hang or crash.
            if np.all(np.isfinite(x_new)):
                x = x_new
            notes.append(f"soft QP stopped with status {status} on {len(idx)} points; not optimal")
            break
        x = x_new
        new = np.flatnonzero((prob.margins(x) < threshold) & ~in_ws)
        if len(new) == 0:
            notes.append(f"soft QP solved on {len(idx)} of {n} unique points in {rounds} round(s)")
            break
        in_ws[new] = True
    return x, "; ".join(notes)


def _fit_problem(
    prob, init: np.ndarray, weights: np.ndarray, C: float, tol: float, deadline: float
):
    """Separability check, then the hard fit if separable, else the soft fit.
    Returns (x, separable, note)."""
    verdict, lp_note, x_lp = _separability(prob, init)
    if verdict != "infeasible":
        hv, x, note = _hard_cg(prob, init, tol, deadline, x_lp)
        if hv == "solved":
            return x, True, f"separable ({lp_note}); {note}"
        # The LP could not tell but the QP found a certificate of infeasibility: the margin is
        # too small to resolve numerically. Say so, go soft.
        lp_note = f"{lp_note}, but {note}"
    x, note = _soft_cg(prob, weights, C, deadline)
    return x, False, f"not separable ({lp_note}); soft margin C={C:g}: {note}"


# --------------------------------------------------------------------------------------------
# Candidate support vectors
# --------------------------------------------------------------------------------------------


def _hull_vertices(P: np.ndarray) -> np.ndarray:
    """Indices of the convex-hull vertices of the rows of P (d ≤ 3), with fallbacks."""
    n, d = P.shape
    if n <= d + 1:
        return np.arange(n)
    if d == 1:
        return np.unique([P[:, 0].argmin(), P[:, 0].argmax()])
    try:
        return ConvexHull(P).vertices
    except (QhullError, ValueError):
        # Collinear/coplanar/duplicate points: take the extremes along the axes and the principal
        # directions (the exact hull of a collinear set). Constraint generation covers any miss.
        centred = P - P.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        dirs = np.vstack([np.eye(d), vt])
        proj = centred @ dirs.T
        return np.unique(np.r_[proj.argmin(axis=0), proj.argmax(axis=0)])


def _initial_set(
    X: np.ndarray, groups: np.ndarray, use_hull: bool, margins: np.ndarray
) -> np.ndarray:
    """Hull vertices of every group (d ≤ 3) plus, per group, the points with the smallest guessed
    ``margins`` (for any d). X: coordinates of the points (any affine image of the features has
    the same hull vertices; the whitened ones suit qhull best)."""
    picks = []
    m0 = min(50, 5 * (X.shape[1] + 1))
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if use_hull:
            vertices = members[_hull_vertices(X[members])]
            if len(vertices) > _HULL_START_MAX:
                # Curved classes (e.g. points on a circle) can have thousands of hull vertices;
                # start from those nearest the guessed boundary and let constraint generation
                # add the rest (the worst violator of a linear constraint is always a vertex).
                vertices = vertices[
                    np.argpartition(margins[vertices], _HULL_START_MAX)[:_HULL_START_MAX]
                ]
            picks.append(vertices)
        k = min(m0, len(members))
        picks.append(members[np.argpartition(margins[members], k - 1)[:k]])
    return np.unique(np.concatenate(picks))


# --------------------------------------------------------------------------------------------
# Public fit
# --------------------------------------------------------------------------------------------


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


def fit_svm(
    H: np.ndarray,
    y: np.ndarray,
    target: str,
    scheme: str,
    C: float = 1.0,
    tol: float = 1e-3,
    n_classes: int | None = None,
    time_limit: float = 600.0,
) -> SVMFit:
    """Fit the ``target`` SVM (svc | homog) under ``scheme`` (binary | crammer_singer | ovr).

    H: (n, d) train features; y: (n,) integer labels in 0..K−1 with K = ``n_classes`` (default
    max(y) + 1). Hard margin when the data are separable, else the soft margin with penalty C.
    ``time_limit`` (seconds) bounds the solver; a soft fit stopped by it says so in ``status``.
    Raises SVMError if a separable fit fails the hard-margin check over all train points.
    """
    t0 = time.perf_counter()
    deadline = t0 + float(time_limit)
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is not one of {TARGETS}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not one of {SCHEMES}")
    if not (C > 0 and np.isfinite(C)):
        raise ValueError(f"C = {C!r}; the soft-margin penalty must be a positive finite number")
    if not (0 < tol < 1):
        raise ValueError(f"tol = {tol!r}; the margin tolerance must lie in (0, 1)")
    # "+ 0.0" turns −0.0 into 0.0 so that byte-wise de-duplication treats them as equal.
    H = np.array(H, dtype=np.float64, ndmin=2) + 0.0
    y = np.asarray(y)
    if H.ndim != 2 or y.ndim != 1 or len(y) != H.shape[0]:
        raise ValueError(f"H has shape {H.shape} and y {y.shape}; expected (n, d) and (n,)")
    n, d = H.shape
    if n == 0 or d == 0:
        raise ValueError(f"H has shape {H.shape}; need at least one train point and one feature")
    if not np.all(np.isfinite(H)):
        raise ValueError(
            f"H holds {np.size(H) - np.isfinite(H).sum()} NaN/inf values; features must be finite"
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"labels must be integers 0..K-1, got dtype {y.dtype}")
        y = y.astype(np.int64)
    y = y.astype(np.int64)
    K = int(n_classes) if n_classes is not None else int(y.max()) + 1
    if y.min() < 0 or y.max() >= K:
        raise ValueError(f"labels span {y.min()}..{y.max()}; allowed 0..{K - 1} (K = {K})")
    if scheme == "binary" and K != 2:
        raise ValueError(
            f"scheme 'binary' needs K = 2 classes, got K = {K}; use crammer_singer or ovr"
        )
    if K < 2:
        raise ValueError(f"K = {K}; an SVM needs at least 2 classes")

    present = np.unique(y)
    prefix = ""
    if len(present) < 2:
        # Nothing to separate: return the zero classifier and say why.
        W, b = np.zeros((K, d)), np.zeros(K)
        status = f"degenerate: only class {present.tolist()} present among {n} train points; no boundary fitted"
        return _finish(H, y, W, b, target, scheme, False, C, tol, status, t0)
    identical = bool(np.all(H == H[0]))
    if identical:
        prefix = (
            f"degenerate: all {n} train features are identical ({H[0][:4].tolist()}...; a dead "
            f"bottleneck?), so no boundary can separate them; "
        )

    # Merge duplicate (h, y) rows; counts weight the slacks of the soft fit.
    key = (
        np.ascontiguousarray(np.c_[H, y.astype(np.float64)])
        .view(np.dtype((np.void, 8 * (d + 1))))
        .ravel()
    )
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    Hu, yu, weights = H[first], y[first], counts.astype(np.float64)
    # Solve in whitened coordinates (an exact change of variables, see _Precond); map back at the end.
    pre = _Precond(Hu, target)
    use_hull = d <= 3 and not identical
    if use_hull:
        # Hull coordinates: the centred, whitened features (the svc ones; same hull vertices).
        X = pre.Z if target == "svc" else _Precond(Hu, "svc").Z
        use_hull = X.shape[1] > 0
    else:
        X = pre.Z

    if scheme in ("binary", "crammer_singer"):
        if scheme == "binary":
            s = np.where(yu == 1, 1.0, -1.0)
            prob = pre.binary(s)
        else:
            prob = pre.crammer_singer(yu, K)
        init = _initial_set(X, yu, use_hull, _nearest_mean_margins(pre.Z, yu))
        x, separable, note = _fit_problem(prob, init, weights, C, tol, deadline)
        if scheme == "binary":
            u, c = pre.binary_back(x)
            # Centred form: W₁ − W₀ = u, b₁ − b₀ = c.
            W, b = np.vstack([-u / 2, u / 2]), np.array([-c / 2, c / 2])
        else:
            W, b = pre.cs_back(*prob.unpack(x))
        return _finish(H, y, W, b, target, scheme, separable, C, tol, prefix + note, t0)

    # One-vs-rest: K independent binary problems.
    W, b = np.zeros((K, d)), np.zeros(K)
    seps, notes = [], []
    class_init = None
    for k in range(K):
        s = np.where(yu == k, 1.0, -1.0)
        if np.all(s < 0) and target == "svc":
            # Class k absent: min ½‖u‖² s.t. −(u·h + c) ≥ 1 has the unbounded optimal face u = 0,
            # c ≤ −1; take its point nearest 0.
            W[k], b[k] = 0.0, -1.0
            seps.append(True)
            notes.append(f"class {k}: absent, constant −1")
            continue
        prob = pre.binary(s)
        if class_init is None:
            # The hull of "the rest" has its vertices among the union of the per-class hull
            # vertices, so one union serves every k.
            class_init = _initial_set(X, yu, use_hull, _nearest_mean_margins(pre.Z, yu))
        init = np.unique(
            np.r_[class_init, _initial_set(X, s, False, _nearest_mean_margins(pre.Z, s))]
        )
        x, separable, note = _fit_problem(prob, init, weights, C, tol, deadline)
        W[k], b[k] = pre.binary_back(x)
        seps.append(separable)
        notes.append(f"class {k}: {note}")
    return _finish(
        H,
        y,
        W,
        b,
        target,
        scheme,
        all(seps),
        C,
        tol,
        prefix + " | ".join(notes),
        t0,
        any_soft=not all(seps),
    )


def _finish(H, y, W, b, target, scheme, separable, C, tol, status, t0, any_soft=None) -> SVMFit:
    """Margins over all train points, the hard-margin verification and the support set."""
    m = functional_margins(H, y, W, b, scheme)
    min_margin = float(m.min())
    hard = bool(separable and min_margin >= 1 - tol)
    if separable and not hard:
        raise SVMError(
            f"{target}/{scheme} fit claims separable data but its minimum functional margin over "
            f"all {len(y)} train points is {min_margin:.6g} < 1 − tol = {1 - tol:.6g}; refusing to "
            f"return an unverified hard-margin fit ({status})"
        )
    if scheme == "ovr":
        # A point is support if it is on or inside the margin of any one-vs-rest problem.
        # (A class absent from y has the constant row u = 0, c = −1 with every margin exactly 1:
        # no information, so it is left out here.)
        present = np.isin(np.arange(W.shape[0]), y)
        S = H @ W[present].T + b[present]
        sign = np.where(y[:, None] == np.flatnonzero(present)[None, :], 1.0, -1.0)
        support = np.flatnonzero(((sign * S) <= 1 + tol).any(axis=1))
    else:
        support = np.flatnonzero(m <= 1 + tol)
    soft = (not separable) if any_soft is None else any_soft
    return SVMFit(
        target=target,
        scheme=scheme,
        W=np.asarray(W, dtype=np.float64),
        b=np.asarray(b, dtype=np.float64),
        separable=bool(separable),
        hard_margin=hard,
        C=float(C) if soft else None,
        min_margin=min_margin,
        support=support.astype(np.int64),
        seconds=time.perf_counter() - t0,
        status=status,
    )


# --------------------------------------------------------------------------------------------
# The pipeline stage
# --------------------------------------------------------------------------------------------


def _parse_settings(text: str | None) -> dict[str, Any]:
    try:
        settings = parse_settings(text, DEFAULT_SETTINGS)
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    settings["C"], settings["tol"] = float(settings["C"]), float(settings["tol"])
    if isinstance(settings["multiclass"], str):
        settings["multiclass"] = [settings["multiclass"]]
    bad = [s for s in settings["multiclass"] if s not in ("crammer_singer", "ovr")]
    if bad:
        raise SystemExit(f"--settings multiclass has {bad}; allowed: ['crammer_singer', 'ovr']")
    return settings


def fit_run(features_dir, settings: dict[str, Any], log=None) -> dict[str, Any]:
    """Fit every target and scheme for every checkpoint of one run; the svm.json content."""
    log = sys.stderr if log is None else log  # looked up at call time (pytest swaps it)
    files = fio.list_feature_files(features_dir)
    keys: dict[str, Any] = {}
    fits = []
    for path in files:
        fs = fio.read_features(path)
        keys = {k: fs.keys[k] for k in RUN_KEYS if k in fs.keys}
        H, y = fs.part("train")
        K = fs.n_classes
        schemes = ["binary"] if K == 2 else list(settings["multiclass"])
        for target in TARGETS:
            for scheme in schemes:
                fit = fit_svm(
                    H, y, target, scheme, C=settings["C"], tol=settings["tol"], n_classes=K
                )
                print(
                    f"svm: epoch {fs.epoch} {target}/{scheme}: separable={fit.separable} "
                    f"hard={fit.hard_margin} min_margin={fit.min_margin:.4g} "
                    f"support={len(fit.support)} {fit.seconds:.3f}s",
                    file=log,
                    flush=True,
                )
                fits.append({"epoch": fs.epoch, **fit.to_json()})
    return {"keys": keys, "fits": fits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nnboundary svm",
        description="Fit hard-margin SVM targets (svc, homog) on the last hidden layer of every checkpoint.",
    )
    parser.add_argument(
        "--features", required=True, help="a run's folder of epoch*.parquet feature files"
    )
    parser.add_argument("--output", required=True, help="svm.json to write")
    parser.add_argument(
        "--settings",
        default=None,
        help='JSON object, keys C (1.0), tol (1e-3), multiclass (["crammer_singer","ovr"])',
    )
    args = parser.parse_args(argv)
    settings = _parse_settings(args.settings)
    result = fit_run(args.features, settings)
    fio.write_json(args.output, result)
    return 0


def load_fits(path) -> list[tuple[int, SVMFit]]:
    """The fits of an svm.json, as (epoch, SVMFit) pairs in file order."""
    obj = fio.read_json(path)
    if not isinstance(obj, dict) or "fits" not in obj:
        raise fio.InputFileError(f"{path} is not an svm.json (no 'fits' list); rerun the svm step")
    out = []
    for entry in obj["fits"]:
        entry = dict(entry)
        epoch = int(entry.pop("epoch"))
        out.append((epoch, SVMFit.from_json(entry)))
    return out


# --------------------------------------------------------------------------------------------
# Benchmark (printed, never a timed test)
# --------------------------------------------------------------------------------------------


def _bench_sets(n: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    half = n // 2
    out = {}
    # Separable: two unit Gaussians, points within 0.5 of the bisector dropped, refilled to n.
    X = np.r_[rng.normal(0, 1, (2 * half, 2)) + 3, rng.normal(0, 1, (2 * half, 2)) - 3]
    yy = np.r_[np.ones(2 * half, int), np.zeros(2 * half, int)]
    keep = np.abs(X.sum(axis=1)) / np.sqrt(2) > 0.5
    keep &= np.where(yy == 1, X.sum(axis=1) > 0, X.sum(axis=1) < 0)
    idx = np.r_[np.flatnonzero(keep & (yy == 1))[:half], np.flatnonzero(keep & (yy == 0))[:half]]
    out["separable"] = (X[idx], yy[idx])
    # Overlapping: unit Gaussians at ±(1, 1).
    X = np.r_[rng.normal(0, 1, (half, 2)) + 1, rng.normal(0, 1, (half, 2)) - 1]
    out["overlap"] = (X, np.r_[np.ones(half, int), np.zeros(half, int)])
    # Nearly separable: the separable set with 10 labels flipped.
    Xs, ys = out["separable"]
    ys = ys.copy()
    ys[rng.choice(len(ys), 10, replace=False)] ^= 1
    out["10 flipped"] = (Xs, ys)
    return out


def benchmark(n: int = 60000, n_multi: int | None = None, file=None) -> list[dict[str, Any]]:
    """Time fit_svm on 2-D sets of n points (binary) and n_multi points (3 classes); print a table."""
    file = sys.stdout if file is None else file
    rng = np.random.default_rng(0)
    n_multi = n if n_multi is None else n_multi
    rows = []
    cases = []
    for name, (X, y) in _bench_sets(n, rng).items():
        for target in TARGETS:
            cases.append((name, X, y, target, "binary"))
    # Three classes: Gaussians at the vertices of a triangle (radius 6: separable; 1.5: overlap).
    third = n_multi // 3
    for name, radius, gap in (("3-class separable", 6.0, True), ("3-class overlap", 1.5, False)):
        centres = radius * np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * np.arange(3) / 3])
        X = np.concatenate([rng.normal(0, 1, (2 * third, 2)) + c for c in centres])
        y = np.repeat(np.arange(3), 2 * third)
        if gap:
            # Keep points nearer their own centre by a clear gap.
            dist = np.linalg.norm(X[:, None, :] - centres[None], axis=2)
            own = dist[np.arange(len(y)), y]
            dist[np.arange(len(y)), y] = np.inf
            ok = dist.min(axis=1) - own > 1.0
            idx = np.concatenate([np.flatnonzero(ok & (y == k))[:third] for k in range(3)])
        else:
            idx = np.concatenate([np.flatnonzero(y == k)[:third] for k in range(3)])
        for target in TARGETS:
            for scheme in ("crammer_singer", "ovr"):
                cases.append((name, X[idx], y[idx], target, scheme))
    header = f"{'data':<18} {'n':>7} {'scheme':<15} {'target':<6} {'separable':>9} {'hard':>5} {'support':>8} {'seconds':>8}"
    print(header, file=file)
    print("-" * len(header), file=file)
    for name, X, y, target, scheme in cases:
        fit = fit_svm(X, y, target, scheme)
        row = {
            "data": name,
            "n": len(y),
            "scheme": scheme,
            "target": target,
            "separable": fit.separable,
            "hard": fit.hard_margin,
            "support": len(fit.support),
            "seconds": fit.seconds,
        }
        rows.append(row)
        print(
            f"{name:<18} {len(y):>7} {scheme:<15} {target:<6} {str(fit.separable):>9} "
            f"{str(fit.hard_margin):>5} {len(fit.support):>8} {fit.seconds:>8.3f}",
            file=file,
            flush=True,
        )
    return rows
