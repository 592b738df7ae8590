"""Exact hard- and soft-margin QPs by constraint generation (clarabel, HiGHS, NNLS).

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
  also by constraint generation: any x with every margin > 0 certifies separability. The LP is
  skipped when a given classifier (the network's own last layer) already separates every
  point, or when ``active`` has certified a hard-margin optimum, which is feasible itself.
* Duplicate (h, y) rows are merged; in the soft fit a merged row's slack is weighted by its count.

How it stays exact on network features
--------------------------------------
Last-layer features are often badly conditioned: crowded near one point far from the origin
(h ≈ 0.1 ± 1e-3), nearly collinear (a principal spread 1e-9 next to 1e-3), or large (500·h).
Solved as given, the weights are huge, the bias cancels u·h₀ to many digits, and clarabel stops
(MaxIterations, InsufficientProgress) or returns points that violate their own constraints.
* Every problem is solved in whitened coordinates (``Precond``), an exact change of variables:
  svc on the centred features (the free bias absorbs the shift), homog on the augmented
  features [h, 1], origin on h itself, all rotated to their principal axes and scaled to unit
  spread; the objective becomes a diagonal ½Σⱼ wⱼvⱼ². Same problem, same optimum, mapped back
  at the end.
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

import time

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog, nnls
from scipy.spatial import ConvexHull, QhullError

from ..errors import SVMError
from ._problems import Binary

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
        if np.isfinite(obj) and obj > 0 and status not in _INFEASIBLE:
            # This iterate's objective: a fair estimate of the optimum's. (An infeasibility
            # certificate's is not: it can be 1e-67, and the NNLS fallback below would then
            # work at that scale and fail.)
            kappa = 1.0 / obj
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
    * no free variable (homog and origin in whitened form, pdiag > 0): exact, w = √(κ pdiag)·x,
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
    if isinstance(prob, Binary) and prob.bias and prob.target == "svc" and np.all(pd[:-1] > 0):
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
    # The quadratic term carries the factor obj_scale (see Precond); scale C alike.
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


def separability(prob, init: np.ndarray) -> tuple[str, str, np.ndarray | None]:
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


def hard_cg(
    prob, init: np.ndarray, tol: float, deadline: float, feasible: bool = False,
    bound: float | None = None, info: dict | None = None,
) -> tuple[str, np.ndarray | None, str]:
    """Hard-margin QP by constraint generation; returns (verdict, x, note). ``feasible``: the
    problem is known to be feasible (the LP found a strictly separating point, or a given
    classifier separates every point), so a claim of infeasibility is a numerical failure,
    not an answer. ``bound``: the objective of a known feasible point (the LP certificate
    scaled to margin 1), an upper bound of the optimum's: the first solve is scaled by it. It
    can exceed the optimum by 1e10, so it is used only where nothing better is known: where
    the optimum is far from 1 (an objective of 1e13 when a separator through the origin must
    reach points at h ≈ 1e-9), an unscaled first solve fails outright, and so does the NNLS
    fallback at that scale. ``info`` (if given) receives ``rounds``, each round's working-set
    size in points (``working_sets``) and solve seconds (``solve_seconds``)."""
    info = {} if info is None else info
    info.update(rounds=0, working_sets=[], solve_seconds=[])
    in_ws = np.zeros(prob.n, dtype=bool)
    in_ws[init] = True
    cap = max(200, 20 * prob.p)
    threshold = 1.0 - _ADD_SLACK * tol
    obj_hint = bound
    for rounds in range(1, _CG_ROUNDS + 2):
        full = rounds > _CG_ROUNDS
        if full:
            in_ws[:] = True  # give up on the working set: one direct solve of everything
        started = time.perf_counter()
        status, x = _solve_hard(
            prob, np.flatnonzero(in_ws), deadline - time.perf_counter(), feasible, obj_hint
        )
        info["rounds"] = rounds
        info["working_sets"].append(int(in_ws.sum()))
        info["solve_seconds"].append(time.perf_counter() - started)
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


def soft_cg(
    prob, weights: np.ndarray, C: float, deadline: float, info: dict | None = None
) -> tuple[np.ndarray, str]:
    """Soft-margin QP by constraint generation. Points left out of the working set have ξ = 0;
    once none of them has margin < 1 the working-set optimum is the full optimum (the full
    objective equals the working-set objective there and bounds it from above everywhere).
    ``info`` (if given) receives ``rounds`` and ``working_sets`` (points per round)."""
    info = {} if info is None else info
    info.update(rounds=0, working_sets=[])
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
        info["rounds"] = rounds
        info["working_sets"].append(int(len(idx)))
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


def initial_set(
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
