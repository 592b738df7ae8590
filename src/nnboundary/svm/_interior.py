"""The exact hard margin of mid-sized problems: a dense primal-dual interior-point solve of the
whole QP, then the exact KKT point of the active set it finds (``active``).

Why: on the features of real networks early in training (a ten-class MLP at bottleneck width 32,
digits: n = 1,438, K·(d + 1) = 330 variables, 12,942 Crammer–Singer constraints) the objective
weights of the whitened problem span 1 to 6·10⁶, liblinear's dual coordinate descent does not
converge in 10⁵ sweeps, its guessed active set is thousands of constraints off, and constraint
generation with clarabel's sparse solver then costs 3–5 s per solve: 20–40 s per fit. The whole
QP is small, though: its normal matrix has K·d + (K − 1) rows.

The problem, in the block form of ``active`` (z̄ = z/√w, constraint j = (i, k) with coefficient
cⱼ: e_{yᵢ} − e_k for Crammer–Singer, sᵢ for a binary problem; b = P b′ the gauge-fixed free
biases of svc, none for homog and origin):

    min ½‖V̄‖²_F   s.t.  gⱼ(V̄, b′) = cⱼᵀ(V̄ z̄ᵢ + P b′) ≥ 1.

Mehrotra's predictor-corrector method on its KKT conditions with slacks s ≥ 0 and multipliers
λ ≥ 0 (Nocedal & Wright, "Numerical Optimization", 2nd ed., §16.6): each step solves the normal
equations (H + Gᵀ D G) Δt = r with D = diag(λ/s), H = I on V̄ and 0 on b′. Their matrix is
dense and structured: its (a, b) block of V̄ rows is δ_ab I + Z̄ᵀ diag(C_{·ab}) Z̄ with the n
small matrices Cᵢ = Σ_{j of point i} Dⱼ cⱼcⱼᵀ, so forming it is one matrix product of
n·d(d+1)/2 by n·nb(nb+1)/2 (nb = K score columns; every block is symmetric) and solving it one
Cholesky factorisation of order K·d + (K − 1) — never a sparse factorisation of all n·(K − 1)
constraint rows. Where the normal equations lose their digits (crowded, nearly collinear
features whose whitened objective weights span 10¹⁶) the primal stops moving while the
multipliers grow; the method then gives up after _STALL iterations without progress.

Nothing the interior-point method returns is taken as the answer: its multipliers name the
active set (λⱼ > 10⁻⁶ max λ, or a constraint value below 1 + 10⁻⁶), and ``active`` solves
that set's KKT system exactly and accepts the point only with its certificate (every
multiplier ≥ 0, every constraint of every train point satisfied). Without a certificate the
caller moves on to the next method.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as sla

from . import _active as active
from ._memory import check_memory

# Problems whose normal matrix costs more than this many flops to form per iteration go to
# ``active``'s liblinear start instead (n = 50,000 at d = 512 would take minutes per iteration).
MAX_FLOPS = 2e9
# Interior-point iterations at most, and iterations without halving the best of max(relative
# duality gap, largest constraint residual) after which the method gives up.
_ITERATIONS = 80
_STALL = 25
# Smallest slack and multiplier kept.
_FLOOR = 1e-150
# Fraction of the step to the boundary taken.
_STEP = 0.99
# A constraint joins the active-set guess when its multiplier exceeds this share of the largest.
_GUESS = 1e-6
# The relative duality gap at which the first active-set guess is tried.
_TRY_GAP = 1e-4
# ... and again each time the gap has fallen by this factor.
_TRY_FACTOR = 1e-2


def _flops(n: int, d: int, nb: int) -> float:
    """An upper estimate of one iteration's work: forming the normal matrix (n·d²·nb(nb+1)/2)
    and its Cholesky factorisation ((nb·d)³/3)."""
    return 0.5 * nb * (nb + 1) * n * d * d + (nb * d) ** 3 / 3.0


def suitable(n: int, d: int, blocks: int) -> bool:
    """Whether a problem of n unique points, d whitened coordinates and ``blocks`` score
    columns (K, or 1 for a binary problem) is small enough for this method."""
    return _flops(n, d, blocks) <= MAX_FLOPS


class _Form:
    """Constraint operators of the block form: margins, the adjoint and the normal matrix."""

    def __init__(self, L: active.Layout):
        self.L = L
        self.Zb = L.Zb
        self.n, self.d = L.Zb.shape
        self.nb = L.nb
        self.P = L.P
        self.q = 0 if L.P is None else L.P.shape[1]
        self.p = self.nb * self.d + self.q
        if self.nb == 1:
            self.mask = np.ones((self.n, 1), dtype=bool)
            self.sign = L.prob.s[:, None]
        else:
            self.mask = np.ones((self.n, self.nb), dtype=bool)
            self.mask[np.arange(self.n), L.y] = False
        self.m = int(self.mask.sum())
        self._outer = None  # the products z̄ᵢ z̄ᵢᵀ, formed on the first call of normal()

    def split(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        V = t[: self.nb * self.d].reshape(self.nb, self.d)
        return V, (None if self.q == 0 else t[self.nb * self.d :])

    def scores(self, t: np.ndarray) -> np.ndarray:
        """n × nb scores V̄ z̄ᵢ + P b′."""
        V, bp = self.split(t)
        S = self.Zb @ V.T
        return S if bp is None else S + self.P @ bp

    def g(self, t: np.ndarray) -> np.ndarray:
        """n × nb array of constraint values cⱼᵀ(V̄ z̄ᵢ + b) (0 where there is no constraint)."""
        S = self.scores(t)
        if self.nb == 1:
            return self.sign * S
        own = S[np.arange(self.n), self.L.y]
        return np.where(self.mask, own[:, None] - S, 0.0)

    def adjoint(self, u: np.ndarray) -> np.ndarray:
        """Gᵀu for u an n × nb array of per-constraint values (0 where there is none)."""
        if self.nb == 1:
            Gam = self.sign * u
        else:
            Gam = -u
            Gam[np.arange(self.n), self.L.y] = u.sum(axis=1)
        # (A contiguous copy of Γᵀ: numpy's product of a transposed n × nb view is 10× slower.)
        out = (np.ascontiguousarray(Gam.T) @ self.Zb).ravel()
        if self.q:
            out = np.r_[out, self.P.T @ Gam.sum(axis=0)]
        return out

    def normal(self, D: np.ndarray) -> np.ndarray:
        """H + Gᵀ diag(D) G for D an n × nb array (0 where there is no constraint).

        Block (a, b) of the V̄ rows is Z̄ᵀ diag(C_{·ab}) Z̄ (+ I on the diagonal): one matrix
        product of the n × d(d+1)/2 products z̄ᵢ z̄ᵢᵀ (their upper triangles) with the
        n × nb(nb+1)/2 weights C_{iab}, a ≤ b (every block is symmetric, and block (b, a) equals block (a, b))."""
        n, d, nb, q = self.n, self.d, self.nb, self.q
        # Weights 10³⁰ times below the largest change nothing in double precision, and their
        # products would be subnormal numbers, which the processor handles 10-100× slower.
        D = np.where(D > 1e-30 * float(D.max()), D, 0.0)
        if nb == 1:
            C = D[:, :, None]  # cⱼ = ±1
        else:
            # Cᵢ = diag(Dᵢ) + (Σ Dᵢ) e_y e_yᵀ − Dᵢ e_yᵀ − e_y Dᵢᵀ  (Dᵢ[yᵢ] = 0)
            rows = np.arange(n)
            C = np.zeros((n, nb, nb))
            C[:, np.arange(nb), np.arange(nb)] = D
            C[rows, self.L.y, self.L.y] = D.sum(axis=1)
            C[rows, self.L.y, :] -= D
            C[rows, :, self.L.y] -= D
        if self._outer is None:
            iu, ju = np.triu_indices(d)
            self._outer = self.Zb[:, iu] * self.Zb[:, ju]  # n × d(d+1)/2
            full = np.zeros((d, d), dtype=np.int64)
            full[iu, ju] = np.arange(len(iu))
            full[ju, iu] = np.arange(len(iu))
            self._full = full
            au, bu = np.triu_indices(nb)
            pair = np.zeros((nb, nb), dtype=np.int64)
            pair[au, bu] = np.arange(len(au))
            pair[bu, au] = np.arange(len(au))
            self._pairs, self._pair = (au, bu), pair
        au, bu = self._pairs
        blocks = self._outer.T @ C[:, au, bu]  # d(d+1)/2 × nb(nb+1)/2
        T = blocks[self._full][:, :, self._pair]  # d × d × nb × nb
        N = np.zeros((self.p, self.p))
        N[: nb * d, : nb * d] = T.transpose(2, 0, 3, 1).reshape(nb * d, nb * d)
        N[np.arange(nb * d), np.arange(nb * d)] += 1.0
        if q:
            CP = C @ self.P  # n × nb × q
            side = (self.Zb.T @ CP.reshape(n, nb * q)).reshape(d, nb, q)
            N[: nb * d, nb * d :] = side.transpose(1, 0, 2).reshape(nb * d, q)
            N[nb * d :, : nb * d] = N[: nb * d, nb * d :].T
            N[nb * d :, nb * d :] = self.P.T @ C.sum(axis=0) @ self.P
        return N

    def hessian(self, t: np.ndarray) -> np.ndarray:
        out = t.copy()
        out[self.nb * self.d :] = 0.0
        return out


def _cholesky(N: np.ndarray):
    """The Cholesky factor of N, with a tiny diagonal shift if rounding has made it indefinite;
    None if even that fails."""
    for shift in (0.0, 1e-13, 1e-10):
        try:
            M = N if shift == 0 else N + shift * float(np.abs(np.diag(N)).max()) * np.eye(len(N))
            return sla.cho_factor(M, lower=False, check_finite=False)
        except (sla.LinAlgError, ValueError):
            continue
    return None


def _step_to_boundary(x: np.ndarray, dx: np.ndarray) -> float:
    neg = dx < 0
    if not neg.any():
        return 1.0
    return float(min(1.0, (-x[neg] / dx[neg]).min()))


def interior_point(form: _Form, deadline: float):
    """Mehrotra's method on the block-form hard-margin QP: yields (iteration, t, λ, gap) after
    every step, gap = μ·m/(1 + ½‖V̄‖²) the relative duality gap, λ an n × nb array (0 where
    there is no constraint). Stops (returns its reason) at the deadline, when a step cannot be
    taken, or after _ITERATIONS."""
    mask = form.mask
    m = form.m
    t = np.zeros(form.p)
    s = np.where(mask, 1.0, 0.0)
    lam = np.where(mask, 1.0, 0.0)
    ones = np.where(mask, 1.0, 0.0)
    safe_s = s
    best, since = np.inf, 0
    for it in range(1, _ITERATIONS + 1):
        if time.perf_counter() > deadline:
            return f"time limit reached after {it - 1} interior-point iterations"
        rd = form.hessian(t) - form.adjoint(lam)
        rp = np.where(mask, form.g(t) - s - 1.0, 0.0)
        mu = float((s * lam).sum() / m)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            Dm = np.where(mask, lam / safe_s, 0.0)
        if not (np.all(np.isfinite(Dm)) and np.all(np.isfinite(rp))):
            return f"non-finite iterate at iteration {it}"
        factor = _cholesky(form.normal(Dm))
        if factor is None:
            # Near the optimum D spans many orders of magnitude and the normal matrix loses
            # definiteness to rounding.
            return f"normal matrix not positive definite at iteration {it} (μ = {mu:.2g})"

        @np.errstate(divide="ignore", invalid="ignore", over="ignore")
        def direction(rc: np.ndarray):
            rhs = -rd - form.adjoint(np.where(mask, rc / safe_s + Dm * rp, 0.0))
            dt = sla.cho_solve(factor, rhs, check_finite=False)
            ds = np.where(mask, form.g(dt) + rp, 0.0)  # g is linear in t
            dl = np.where(mask, -(rc + lam * ds) / safe_s, 0.0)
            return dt, ds, dl

        # Predictor (affine scaling), then the centred corrector with σ = (μ_aff/μ)³.
        dt, ds, dl = direction(s * lam)
        a_aff = min(_step_to_boundary(s[mask], ds[mask]), _step_to_boundary(lam[mask], dl[mask]))
        mu_aff = float(((s + a_aff * ds) * (lam + a_aff * dl))[mask].sum() / m)
        sigma = (mu_aff / mu) ** 3 if mu > 0 else 0.0
        dt, ds, dl = direction(s * lam + ds * dl - sigma * mu * ones)
        if not (np.all(np.isfinite(dt)) and np.all(np.isfinite(dl))):
            return f"non-finite step at iteration {it}"
        alpha = _STEP * min(_step_to_boundary(s[mask], ds[mask]),
                            _step_to_boundary(lam[mask], dl[mask]))
        t = t + alpha * dt
        # (Floors far above the subnormal range, where arithmetic is 10-100× slower.)
        s = np.where(mask, np.maximum(s + alpha * ds, _FLOOR), 0.0)
        lam = np.where(mask, np.maximum(lam + alpha * dl, _FLOOR), 0.0)
        safe_s = np.where(mask, s, 1.0)
        V = t[: form.nb * form.d]
        gap = float((s * lam).sum()) / (1.0 + 0.5 * float(V @ V))
        yield it, t, lam, gap
        # Progress: the larger of the relative gap and the largest constraint residual
        # |g − s − 1| (early on the method may reduce only the residual).
        residual = float(np.abs(np.where(mask, form.g(t) - s - 1.0, 0.0)).max())
        merit = max(gap, residual)
        best, since = (merit, 0) if merit < 0.5 * best else (best, since + 1)
        if since >= _STALL:
            # Normal equations that have lost their digits: the primal stops moving while
            # the multipliers grow without bound.
            return (f"no progress in {_STALL} iterations (relative gap {gap:.2g}, largest "
                    f"residual {residual:.2g} after {it}; best {best:.2g})")
    return f"no certified point after {_ITERATIONS} interior-point iterations"


def hard_fit(prob, deadline: float) -> tuple[np.ndarray | None, str, dict]:
    """The hard-margin optimum of a whitened problem (``Precond.binary`` or
    ``crammer_singer``) by the interior-point method and the exact active-set solve, certified
    by its KKT conditions on every constraint, or (None, why not).

    Once the relative duality gap is below _TRY_GAP, and again each time it has fallen 100×,
    the iterate's active set (multipliers λⱼ > _GUESS·max λ, or a constraint value within 10⁻⁶
    of 1) goes to ``active``'s exact solve; the first certified point is the answer. Also
    returns the solver's numbers: ``path``, ``iterations``, ``attempts`` (active-set solves
    tried), and those of the certified solve (``guess``, ``rounds``, ``active_sizes``,
    ``residual``, ``min_alpha``, ``min_margin``)."""
    info: dict = {"path": "interior-point", "iterations": 0, "attempts": 0}
    why = active.unsupported(prob)
    if why:
        return None, why, info
    L = active.Layout(prob)
    form = _Form(L)
    d = form.d
    check_memory(8.0 * (3 * form.p**2 + form.n * (d * (d + 1) // 2 + 3 * form.nb**2)),
                 f"the interior-point normal matrix of {form.p} variables")
    steps = interior_point(form, deadline)
    next_try, why = _TRY_GAP, ""
    while True:
        try:
            it, t, lam, gap = next(steps)
        except StopIteration as stop:
            why = str(stop.value)
            break
        info["iterations"] = it
        if gap > next_try:
            continue
        next_try = gap * _TRY_FACTOR
        info["attempts"] += 1
        lmax = float(lam.max())
        g = np.where(form.mask, form.g(t), np.inf)
        ai, ak = np.nonzero(form.mask & ((lam > _GUESS * lmax) | (g < 1 + 1e-6)))
        x, note, numbers = active.active_set(L, form.scores(t), deadline, guess=(ai, ak))
        if x is not None:
            info.update(numbers, guess=int(len(ai)), gap=gap)
            return x, (f"interior point: {it} iterations (relative gap {gap:.1e}), then "
                       f"{note}"), info
        why = note
    return None, f"interior point: {why}", info
