"""The exact hard margin of wide features at scale (K·(d + 1) ≥ MIN_VARIABLES; measured up to
n = 50,000, d = 512, K = 10).

Constraint generation with an interior-point QP (``qp``) needs the K·d × K·d normal matrix of
every working set: minutes and gigabytes at K·d = 5,120. Here the QP is never solved by a
general solver. Instead:

1. **An approximate dual solution.** liblinear's dual coordinate descent (scikit-learn's
   ``LinearSVC``: Crammer–Singer, or the hinge loss for one binary problem), with a large
   penalty C, on the whitened features scaled to a Euclidean objective, z̄ = z/√w. For svc the
   free biases are approximated by a penalised constant feature. Its only use is to *guess the
   active set*; nothing it returns is taken as the answer.
2. **The exact KKT point of that active set**, refined by a primal-dual active-set method.
   Write every constraint j as cⱼᵀ(V̄ z̄_{iⱼ} + b) ≥ 1, with cⱼ = e_{yᵢ} − e_k for the
   Crammer–Singer constraint (i, k) and cⱼ = sᵢ (a scalar) for a binary one. The problem is
   min ½‖V̄‖²_F (b free for svc, with the gauge Σb = 0 for Crammer–Singer; no b for homog,
   whose bias is a whitened coordinate, nor for origin, which has none).
   KKT: V̄ = Σⱼ αⱼ cⱼ z̄ⱼᵀ, αⱼ ≥ 0, mⱼ ≥ 1,
   αⱼ(mⱼ − 1) = 0 and, for svc, Σⱼ αⱼcⱼ = 0. Holding the constraints of an active set A at
   equality gives the linear system

       [Q_AA  C_A P] [α_A]   [1]
       [(C_A P)ᵀ  0] [ b′] = [0],   Q_jl = (z̄ⱼ·z̄_l)(cⱼ·c_l),  b = P b′,

   (P an orthonormal basis of the gauge-fixed biases; no border for homog and origin). Each
   round solves
   it (Cholesky and its Schur complement, else a symmetric indefinite solve, else least
   squares), drops the constraints with αⱼ < 0, adds those of all n points with mⱼ < 1, and
   stops when there is nothing to drop or add.
3. **A certificate, not a status.** The answer is accepted only when the system is solved to a
   relative residual ≤ 1e-9, every α ≥ −1e-9·max α, and every constraint of *every* train point
   has margin ≥ 1 − 1e-9: these are the KKT conditions of the whole hard-margin problem, so the
   point is its unique optimum (the objective is strictly convex in V̄), and its feasibility
   proves the data separable — no LP. Anything else returns None with the reason, and the
   caller falls back to constraint generation (``qp``).

Cost: liblinear's sweeps (O(n·d·K) each) and one dense system per round of size |A|, the
active constraints (at most K·d + K in general position; 1,400–1,900 on the benchmark's
collapsed features at n = 50,000, d = 512, K = 10).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.linalg as sla

from ..errors import SVMError
from ._memory import check_memory
from ._problems import Binary, CrammerSinger

# liblinear penalties tried in turn (whitened coordinates: every objective weight is ≥ 1).
# A larger C only matters when a smaller one left the box constraint binding.
_PENALTIES = (1e2, 1e5)
# (scikit-learn passes max_iter to liblinear's binary solvers only; its Crammer–Singer solver
# stops at the tolerance or after 100,000 sweeps.)
_LIBLINEAR_TOL = 1e-4
_LIBLINEAR_MAX_ITER = 1000
# Primal-dual active-set rounds per guess, and rounds without fewer wrong constraints (α < 0 or
# violated) after which a guess is given up.
_ROUNDS = 25
_STALL = 4
# A constraint guessed active when its approximate margin is ≤ 1 + this.
_GUESS = 1e-3
# Acceptance (the same standard as qp._polish).
_RESIDUAL = 1e-9
_NEGATIVE = 1e-9
_FEASIBLE = 1e-9


# Problems with fewer variables than this (K·(d + 1), or d + 1 for a binary one) stay with
# constraint generation (qp), which is as fast there and never needs a second guess; above it,
# qp's interior-point solves of K·d × K·d normal matrices take minutes.
MIN_VARIABLES = 300


def memory_estimate(n: int, d: int, blocks: int) -> int:
    """Bytes the wide path may hold at once for n unique points in d whitened coordinates and
    ``blocks`` score columns (K, or 1 for a binary problem): the scaled copy z̄ and the scores
    (8 bytes each), liblinear's copy of the data (16 bytes per value: index and value), and the
    dense system of the largest active set allowed (``max_active``)."""
    a = max_active(d, blocks)
    return int(8 * n * d + 8 * n * blocks * 3 + 16 * n * (d + 1) + 8 * a * a * 3)


def max_active(d: int, blocks: int) -> int:
    """The largest active set solved: the number of primal variables plus the biases (a vertex
    of the dual in general position has no more), and some room for a transient overshoot."""
    return int(1.25 * blocks * (d + 1)) + 50


class Layout:
    """The block form of a whitened problem: z̄ = z/√w, labels and constraint coefficients."""

    def __init__(self, prob):
        self.prob = prob
        d = prob.d
        self.root = np.sqrt(prob.pdiag[:d])  # the objective weights of one block
        self.Zb = prob.H / self.root
        self.bias = prob.bias
        if isinstance(prob, CrammerSinger):
            self.K, self.y, self.nb = prob.K, prob.y, prob.K
            self.P = sla.null_space(np.ones((1, self.K))) if self.bias else None
        else:
            self.K, self.y, self.nb = 2, None, 1
            self.P = np.ones((1, 1)) if self.bias else None

    def margins(self, S: np.ndarray) -> np.ndarray:
        """n × nb matrix of every constraint's margin from the n × nb scores (∞ where none)."""
        if self.nb == 1:
            return (self.prob.s * S[:, 0])[:, None]
        rows = np.arange(len(self.y))
        own = S[rows, self.y]
        M = own[:, None] - S
        M[rows, self.y] = np.inf
        return M

    def coefficients(self, ai: np.ndarray, ak: np.ndarray) -> np.ndarray:
        """|A| × nb matrix whose row j is cⱼ."""
        Cm = np.zeros((len(ai), self.nb))
        if self.nb == 1:
            Cm[:, 0] = self.prob.s[ai]
        else:
            r = np.arange(len(ai))
            Cm[r, self.y[ai]] = 1.0
            Cm[r, ak] -= 1.0
        return Cm

    def to_x(self, Vb: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """The problem's variable vector from V̄ (nb × d) and the biases."""
        V = Vb / self.root
        if self.nb == 1:
            return np.r_[V[0], b] if self.bias else V[0].copy()
        return np.r_[V.ravel(), b] if self.bias else V.ravel()


def _approximate(L: Layout, C: float) -> tuple[np.ndarray, float, bool]:
    """liblinear's soft-margin fit with penalty C on z̄: its scores (n × nb), its objective
    ½(‖V̄‖² + ‖b‖²) (liblinear penalises the bias as a constant feature) and whether it
    converged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    options = dict(C=C, fit_intercept=L.bias, intercept_scaling=1.0, tol=_LIBLINEAR_TOL,
                   max_iter=_LIBLINEAR_MAX_ITER, random_state=0)
    if L.nb == 1:
        clf, labels = LinearSVC(loss="hinge", dual=True, **options), L.prob.s
    else:
        clf, labels = LinearSVC(multi_class="crammer_singer", **options), L.y
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(L.Zb, labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    S = L.Zb @ clf.coef_.T
    obj = 0.5 * float((clf.coef_**2).sum())
    if L.bias:
        S = S + clf.intercept_
        obj += 0.5 * float((clf.intercept_**2).sum())
    return S, obj, converged


def _solve_system(Q: np.ndarray, B: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Solve [Q B; Bᵀ 0][α; b′] = [1; 0] (no border when B is None); returns (α, b′, the
    relative residual)."""
    m = Q.shape[0]
    ones = np.ones(m)
    nb = 0 if B is None else B.shape[1]
    A = Q if B is None else np.block([[Q, B], [B.T, np.zeros((nb, nb))]])
    rhs = np.r_[ones, np.zeros(nb)]
    sol = None
    try:
        # Q is positive definite when the active constraints are independent: Cholesky, and
        # the Schur complement Bᵀ Q⁻¹ B (positive definite too) for the border.
        cf = sla.cho_factor(Q, lower=True, check_finite=False)
        qa = sla.cho_solve(cf, ones, check_finite=False)
        if B is None:
            sol = qa
        else:
            QB = sla.cho_solve(cf, B, check_finite=False)
            bb = np.linalg.solve(B.T @ QB, B.T @ qa)
            sol = np.r_[qa - QB @ bb, bb]
    except (sla.LinAlgError, np.linalg.LinAlgError):
        pass
    for solver in ("sym", "lstsq"):
        if sol is not None and np.all(np.isfinite(sol)):
            res = np.abs(A @ sol - rhs).max()
            scale = max(1.0, np.abs(A).max() * np.abs(sol).max())
            if res <= _RESIDUAL * scale:
                return sol[:m], sol[m:], res / scale
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sla.LinAlgWarning)
                if solver == "sym":
                    sol = sla.solve(A, rhs, assume_a="sym", check_finite=False)
                else:
                    sol = sla.lstsq(A, rhs, check_finite=False)[0]
        except (sla.LinAlgError, ValueError):
            sol = None
    if sol is None or not np.all(np.isfinite(sol)):
        return np.zeros(m), np.zeros(nb), np.inf
    res = np.abs(A @ sol - rhs).max() / max(1.0, np.abs(A).max() * np.abs(sol).max())
    return sol[:m], sol[m:], res


def _smallest(M: np.ndarray, mask: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the entries of M under ``mask``, at most ``cap``, smallest first."""
    ri, ci = np.nonzero(mask)
    if len(ri) > cap:
        order = np.argpartition(M[ri, ci], cap - 1)[:cap]
        ri, ci = ri[order], ci[order]
    return ri, ci


def active_set(
    L: Layout, S: np.ndarray, deadline: float,
    guess: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray | None, str, dict]:
    """Primal-dual active-set rounds from the active set ``guess`` (constraint rows and
    columns), else the one guessed off the scores S; returns (x, note, numbers) with x
    certified optimal, or (None, why not, numbers). The numbers: ``rounds`` and the size of
    each round's active set (``active_sizes``)."""
    n, nb = L.Zb.shape[0], L.nb
    M = L.margins(S)
    cap = max_active(L.Zb.shape[1], nb)
    if guess is None:
        ai, ak = _smallest(M, M <= 1 + _GUESS, cap)
    else:
        ai, ak = guess
        if len(ai) > cap:
            mask = np.zeros(M.shape, dtype=bool)
            mask[ai, ak] = True
            ai, ak = _smallest(M, mask, cap)
    best, stalled = np.inf, 0
    info: dict = {"rounds": 0, "active_sizes": []}
    for rounds in range(1, _ROUNDS + 1):
        info["rounds"] = rounds
        info["active_sizes"].append(int(len(ai)))
        if len(ai) == 0:
            return None, "no constraint near margin 1 in the approximate fit", info
        if time.perf_counter() > deadline:
            return None, "time limit reached", info
        check_memory(24.0 * len(ai) ** 2, f"the KKT system of {len(ai)} active constraints")
        Cm = L.coefficients(ai, ak)
        Za = L.Zb[ai]
        Q = (Za @ Za.T) * (Cm @ Cm.T)
        B = None if L.P is None else Cm @ L.P
        alpha, bp, res = _solve_system(Q, B)
        if not np.isfinite(res):
            return None, f"the KKT system of {len(ai)} active constraints has no solution", info
        b = L.P @ bp if L.P is not None else None
        Vb = Cm.T @ (alpha[:, None] * Za)
        S = L.Zb @ Vb.T
        if b is not None:
            S = S + b
        M = L.margins(S)
        amax = max(float(np.abs(alpha).max()), 1e-300)
        negative = alpha < -_NEGATIVE * amax
        in_a = np.zeros(M.shape, dtype=bool)
        in_a[ai, ak] = True
        vi, vk = np.nonzero((M < 1 - _FEASIBLE) & ~in_a)
        if res <= _RESIDUAL and not negative.any() and len(vi) == 0:
            x = L.to_x(Vb, b)
            worst = float(L.prob.margins(x).min())
            if worst < 1 - 1e-7:  # the problem's own margins (another basis) must agree
                why = f"certified point has margin {worst:.3g} in the problem's own form"
                return None, why, info
            note = (
                f"exact KKT point of {len(ai)} active constraints ({int((alpha > 0).sum())} with "
                f"α > 0) after {rounds} active-set round(s), verified on all {n} unique points"
            )
            info["residual"], info["min_alpha"] = float(res), float(alpha.min() / amax)
            info["min_margin"] = worst
            return x, note, info
        wrong = int(negative.sum()) + len(vi)
        best, stalled = (wrong, 0) if wrong < best else (best, stalled + 1)
        if stalled >= _STALL:
            why = f"no progress in {_STALL} active-set rounds ({wrong} wrong constraints)"
            return None, why, info
        keep = ~negative
        # Add the worst violations first: a huge batch only overshoots; stay within the cap.
        room = min(max(100, len(ai)), cap - int(keep.sum()))
        if room <= 0:
            return None, f"the active set would exceed {cap} constraints", info
        vmask = np.zeros(M.shape, dtype=bool)
        vmask[vi, vk] = True
        vi, vk = _smallest(M, vmask, room)
        ai, ak = np.r_[ai[keep], vi], np.r_[ak[keep], vk]
    return None, f"no certified point after {_ROUNDS} active-set rounds", info


def unsupported(prob) -> str | None:
    """Why the block form (``Layout``) cannot hold a whitened problem, or None: a penalised
    bias variable, or a class without points."""
    n_bias = (prob.K if isinstance(prob, CrammerSinger) else 1) if prob.bias else 0
    if n_bias and np.any(prob.pdiag[prob.p - n_bias :] != 0):
        return "penalised bias variables are not handled here"
    if isinstance(prob, CrammerSinger) and len(np.unique(prob.y)) < prob.K:
        return "a class is absent"
    if isinstance(prob, Binary) and len(np.unique(prob.s)) < 2:
        return "one class only"
    return None


def hard_fit(prob, deadline: float) -> tuple[np.ndarray | None, str, dict]:
    """The hard-margin optimum of a whitened problem (``Precond.binary`` or ``crammer_singer``),
    certified by its KKT conditions on every constraint, or (None, why not).

    The first guess comes from liblinear with C = _PENALTIES[0]. If that fails and the guess
    separates every point (minimum margin m > 0), the scaled guess is a feasible point, so
    its objective bounds the optimum's, and at the optimum Σα = ‖V̄‖² = 2·objective: with
    C ≥ 2·obj/m² no dual variable can reach the box, and liblinear's soft problem *is* the
    hard one. The second guess uses that C (at least _PENALTIES[1]).

    Also returns the solver's numbers: ``path`` ("active-set"), ``liblinear`` (one entry per
    guess: C, converged, seconds) and the last guess's active-set ``rounds`` and sizes."""
    info: dict = {"path": "active-set", "liblinear": []}
    why = unsupported(prob)
    if why:
        return None, why, info
    L = Layout(prob)
    notes = []
    C = _PENALTIES[0]
    for attempt in range(2):
        started = time.perf_counter()
        try:
            S, obj, converged = _approximate(L, C)
        except MemoryError as err:
            raise SVMError(f"liblinear ran out of memory on {prob.n} points × {prob.d}") from err
        except ValueError as err:
            raise SVMError(f"liblinear failed on {prob.n} points: {err}") from err
        info["liblinear"].append({"C": C, "converged": bool(converged),
                                  "seconds": time.perf_counter() - started})
        x, note, rounds = active_set(L, S, deadline)
        info.update(rounds)
        start = f"liblinear C={C:.3g}{'' if converged else ' (not converged)'}"
        if x is not None:
            return x, f"{start} start; {note}", info
        notes.append(f"{start}: {note}")
        m = float(L.margins(S).min())
        safe = 2.0 * obj / m**2 * 1.01 if m > 0 else np.inf
        if attempt or (m > 0 and safe <= C and converged):
            break  # the box did not bind, and liblinear converged: a larger C changes nothing
        C = max(_PENALTIES[1], safe) if np.isfinite(safe) else _PENALTIES[1]
    return None, "; ".join(notes), info
