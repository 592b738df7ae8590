"""``fit_svm``: one fitted target (SVMFit) from train features and labels."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputFileError, SVMError
from ..formats.svmfile import read_svm
from ..formats.tables import finite_or_none, plain
from ..settings import schema
from . import _active as active
from . import _interior as interior
from ._memory import MEMORY_LIMIT, check_memory
from ._problems import (SCHEMES, TARGETS, CrammerSinger, Precond, functional_margins,
                        nearest_mean_margins)
from ._qp import hard_cg, initial_set, separability, soft_cg


@dataclass
class SVMFit:
    """One fitted target; the classifier is argmax(h @ W.T + b)."""

    target: str  # "svc" | "homog" | "origin"
    scheme: str  # "binary" | "crammer_singer" | "ovr"
    W: np.ndarray  # (K, d); (0, 0) when not separable and fitted with soft=False
    b: np.ndarray  # (K,); (0,) likewise
    separable: bool  # hard-margin problem feasible (ovr: every one-vs-rest problem)
    hard_margin: bool  # separable and min_margin >= 1 - tol, verified over all train points
    C: float | None  # soft-margin penalty used, None when every problem was hard
    min_margin: float  # minimum functional margin over all train points (module docstring)
    support: np.ndarray  # int train rows whose constraint is active (margin <= 1 + tol)
    seconds: float  # wall time of the fit
    status: str  # what was done and why, in words
    # How it was solved: "path" (interior-point | active-set | constraint-generation | soft |
    # unfitted | none) and that path's numbers (iterations, rounds, working-set sizes,
    # certificate).
    solver: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "scheme": self.scheme,
            "W": np.asarray(self.W, dtype=float).tolist(),
            "b": np.asarray(self.b, dtype=float).tolist(),
            "separable": bool(self.separable),
            "hard_margin": bool(self.hard_margin),
            "C": None if self.C is None else float(self.C),
            "min_margin": finite_or_none(self.min_margin),
            "support": [int(i) for i in np.asarray(self.support).ravel()],
            "seconds": float(self.seconds),
            "status": str(self.status),
            "solver": plain(self.solver),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "SVMFit":
        W = np.asarray(obj["W"], dtype=np.float64)
        if W.size == 0:  # no weights: a fit made without its soft-margin solve (soft=False)
            W = W.reshape(0, 0)
        if W.ndim != 2:
            raise InputFileError(f"SVM fit has W of shape {W.shape}; expected K×d (2-D)")
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
            solver=dict(obj.get("solver") or {}),
        )


def fit_svm(
    H: np.ndarray,
    y: np.ndarray,
    target: str,
    scheme: str,
    C: float | None = None,
    tol: float | None = None,
    n_classes: int | None = None,
    time_limit: float = 600.0,
    max_memory_gb: float | None = None,
    certificate: tuple[np.ndarray, np.ndarray] | None = None,
    soft: bool | None = None,
) -> SVMFit:
    """Fit the ``target`` SVM (svc | homog | origin) under ``scheme`` (binary | crammer_singer |
    ovr).

    H: (n, d) train features; y: (n,) integer labels in 0..K−1 with K = ``n_classes`` (default
    max(y) + 1). Hard margin when the data are separable, else the soft margin with penalty C.
    ``C``, ``tol`` and ``soft`` not given: the ``svm`` settings' defaults (the config schema's:
    C 1, tol 1e-3, soft true). ``time_limit`` (seconds) bounds the solver; a soft fit stopped by it says so in ``status``.
    ``max_memory_gb``: the memory the fit may use (default 90 % of what is available when it
    starts); a fit that would need more raises SVMMemoryError before allocating it.
    ``certificate``: a classifier (W (K, d), b (K,)), typically the network's own last layer; when
    every train point has a positive margin under it (binary and crammer_singer), the data are
    proven separable and the LP is skipped; for ``origin`` its bias is set to 0 first (only a
    separator through the origin proves that problem feasible). It is only a proof of
    feasibility: the fit does not start from it.
    ``soft=False``: when the data are found not separable (the LP, or the QP's certificate of
    infeasibility), no soft-margin fit is made: the result is marked not separable, with no
    weights (W of shape (0, 0)), no support, a NaN minimum margin and a status that says so.
    Its metrics rows are flagged ``not_separable`` like a soft fit's (and ``convention``: they
    are measured against zero weights), and no table uses a soft fit's values, so the default
    grid saves the soft solves (the dearest fits: about 0.3–1 s each against 0.05 s for a hard
    one on blobs3).
    Raises SVMError if a separable fit fails the hard-margin check over all train points.
    """
    defaults = schema.defaults("svm")  # C, tol and soft not given: the svm settings' defaults
    C = defaults["C"] if C is None else C
    tol = defaults["tol"] if tol is None else tol
    soft = defaults["soft_margin"] if soft is None else soft
    if max_memory_gb is not None and not (max_memory_gb > 0 and np.isfinite(max_memory_gb)):
        raise ValueError(f"max_memory_gb = {max_memory_gb!r}; must be a positive number or None")
    limit = None if max_memory_gb is None else int(float(max_memory_gb) * 2**30)
    token = MEMORY_LIMIT.set(limit)
    try:
        return _fit_svm(H, y, target, scheme, C, tol, n_classes, time_limit, certificate, soft)
    finally:
        MEMORY_LIMIT.reset(token)


# Copies of the features a fit holds at once (input, de-duplication key, unique rows, the
# centred or augmented matrix, its whitened image, the QR workspace), in units of n·(d + 1)
# doubles.
_FEATURE_COPIES = 6


def _checked(H, y, target: str, scheme: str, C: float, tol: float,
             n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(H as float64 (n, d), y as int64, K), or ValueError naming what is wrong."""
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
    return H, y, K


def _unique_rows(H: np.ndarray, y: np.ndarray):
    """The distinct (h, y) rows and their counts (which weight the slacks of the soft fit)."""
    d = H.shape[1]
    key = (
        np.ascontiguousarray(np.c_[H, y.astype(np.float64)])
        .view(np.dtype((np.void, 8 * (d + 1))))
        .ravel()
    )
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    return H[first], y[first], counts.astype(np.float64)


def _proof(certificate, Hu: np.ndarray, yu: np.ndarray, K: int, target: str,
           scheme: str) -> str | None:
    """Why the data are separable, when ``certificate`` (a classifier) separates every point
    (for ``origin``: with its bias set to 0); else None."""
    if certificate is None:
        return None
    d = Hu.shape[1]
    Wc = np.asarray(certificate[0], dtype=np.float64)
    bc = np.asarray(certificate[1], dtype=np.float64).ravel()
    if Wc.shape != (K, d) or bc.shape != (K,):
        raise ValueError(
            f"certificate has W {Wc.shape} and b {bc.shape}; expected ({K}, {d}) and ({K},)"
        )
    if target == "origin":
        bc = np.zeros(K)
    worst = float(functional_margins(Hu, yu, Wc, bc, scheme).min())
    if worst <= 0:
        return None
    through = " through the origin" if target == "origin" else ""
    return f"the given classifier{through} separates every point (minimum margin {worst:.3g})"


class _Job:
    """One fit's data in the solvers' coordinates: the distinct rows, their whitening
    (:class:`Precond`), the coordinates the starting working set is taken in, and the fit's
    settings."""

    def __init__(self, H, y, K, target, scheme, C, tol, deadline, wide, soft, prefix):
        self.H, self.y, self.K, self.target, self.scheme = H, y, K, target, scheme
        self.C, self.tol, self.deadline, self.soft, self.prefix = C, tol, deadline, soft, prefix
        self.Hu, self.yu, self.weights = _unique_rows(H, y)
        # Solve in whitened coordinates (an exact change of variables, see Precond); map back
        # at the end.
        self.pre = Precond(self.Hu, target)
        identical = bool(prefix)
        self.use_hull = H.shape[1] <= 3 and not identical
        self.X = self.pre.Z
        if self.use_hull:
            # Hull coordinates: the centred, whitened features (the svc ones; same vertices).
            self.X = self.pre.Z if target == "svc" else Precond(self.Hu, "svc").Z
            self.use_hull = self.X.shape[1] > 0
        self.wide = wide and not identical

    def initial(self, labels: np.ndarray, hull: bool) -> np.ndarray:
        return initial_set(self.X, labels, hull, nearest_mean_margins(self.pre.Z, labels))


def _fit_joint(job: _Job, certificate, t0: float) -> SVMFit:
    """The ``binary`` or ``crammer_singer`` fit: one problem over all classes."""
    proof = _proof(certificate, job.Hu, job.yu, job.K, job.target, job.scheme)
    if job.scheme == "binary":
        prob = job.pre.binary(np.where(job.yu == 1, 1.0, -1.0))
    else:
        prob = job.pre.crammer_singer(job.yu, job.K)
    x, separable, note, solver = _fit_problem(
        prob, job.initial(job.yu, job.use_hull), job.weights, job.C, job.tol, job.deadline,
        job.wide, proof, job.soft
    )
    if x is None:
        return _unfitted(job.target, job.scheme, job.prefix + note, t0, solver)
    if job.scheme == "binary":
        u, c = job.pre.binary_back(x)
        # Centred form: W₁ − W₀ = u, b₁ − b₀ = c.
        W, b = np.vstack([-u / 2, u / 2]), np.array([-c / 2, c / 2]) + 0.0  # no −0.0
    else:
        W, b = job.pre.cs_back(*prob.unpack(x))
    return _finish(job.H, job.y, W, b, job.target, job.scheme, separable, job.C, job.tol,
                   job.prefix + note, t0, solver=solver)


def _fit_ovr(job: _Job, t0: float) -> SVMFit:
    """One-vs-rest: K independent binary problems."""
    K, d = job.K, job.H.shape[1]
    W, b = np.zeros((K, d)), np.zeros(K)
    seps, notes, solvers = [], [], []
    class_init = None
    for k in range(K):
        s = np.where(job.yu == k, 1.0, -1.0)
        if np.all(s < 0) and job.target == "svc":
            # Class k absent: min ½‖u‖² s.t. −(u·h + c) ≥ 1 has the unbounded optimal face u = 0,
            # c ≤ −1; take its point nearest 0.
            W[k], b[k] = 0.0, -1.0
            seps.append(True)
            notes.append(f"class {k}: absent, constant −1")
            solvers.append({"path": "none"})
            continue
        prob = job.pre.binary(s)
        if class_init is None:
            # The hull of "the rest" has its vertices among the union of the per-class hull
            # vertices, so one union serves every k.
            class_init = job.initial(job.yu, job.use_hull)
        init = np.unique(np.r_[class_init, job.initial(s, False)])
        x, separable, note, solver = _fit_problem(prob, init, job.weights, job.C, job.tol,
                                                  job.deadline, job.wide, soft=job.soft)
        if x is None:  # one class not separable from the rest: the scheme has no hard fit
            return _unfitted(job.target, job.scheme, f"{job.prefix}class {k}: {note}", t0,
                             {"path": "ovr", "classes": solvers + [solver]})
        W[k], b[k] = job.pre.binary_back(x)
        seps.append(separable)
        solvers.append(solver)
        notes.append(f"class {k}: {note}")
    return _finish(job.H, job.y, W, b, job.target, job.scheme, all(seps), job.C, job.tol,
                   job.prefix + " | ".join(notes), t0, any_soft=not all(seps),
                   solver={"path": "ovr", "classes": solvers})


def _fit_svm(H, y, target, scheme, C, tol, n_classes, time_limit, certificate,
             soft=True) -> SVMFit:
    t0 = time.perf_counter()
    deadline = t0 + float(time_limit)
    H, y, K = _checked(H, y, target, scheme, C, tol, n_classes)
    n, d = H.shape
    blocks = K if scheme == "crammer_singer" else 1
    wide = d > 3 and blocks * (d + 1) >= active.MIN_VARIABLES
    need = 8.0 * n * (d + 1) * _FEATURE_COPIES
    if wide:
        need += active.memory_estimate(n, d + 1, blocks)
    check_memory(need, f"the {target}/{scheme} fit of {n} points × {d} features (K = {K})")

    present = np.unique(y)
    if len(present) < 2:
        # Nothing to separate: return the zero classifier and say why.
        W, b = np.zeros((K, d)), np.zeros(K)
        status = (f"degenerate: only class {present.tolist()} present among {n} train points; "
                  f"no boundary fitted")
        return _finish(H, y, W, b, target, scheme, False, C, tol, status, t0)
    prefix = ""
    if bool(np.all(H == H[0])):
        prefix = (
            f"degenerate: all {n} train features are identical ({H[0][:4].tolist()}...; a dead "
            f"bottleneck?), so no boundary can separate them; "
        )
    job = _Job(H, y, K, target, scheme, C, tol, deadline, wide, soft, prefix)
    if scheme in ("binary", "crammer_singer"):
        return _fit_joint(job, certificate, t0)
    return _fit_ovr(job, t0)


def _fit_problem(
    prob, init, weights, C: float, tol: float, deadline: float, wide: bool,
    proof: str | None = None, soft: bool = True,
):
    """The verified hard-margin point of ``interior`` (mid-sized wide problems) or ``active``
    (wide features), else the hard fit by constraint generation: a certified optimum is
    feasible, so it proves the data separable itself and no LP runs. Only when that finds no
    optimum (a working set clarabel calls infeasible, or no verified solution) does the
    separability LP decide (unless ``proof`` already says why the data are separable):
    separable, the hard fit again, told so; not, the soft fit. Returns (x, separable, note,
    solver): ``solver`` names the path that gave x and its numbers, with the seconds and
    reasons of the paths that declined before it (``declined``). Not separable and ``soft``
    false: x is None (path ``unfitted``)."""
    tried = []
    if wide:
        methods = []
        blocks = prob.K if isinstance(prob, CrammerSinger) else 1
        if interior.suitable(prob.n, prob.d, blocks):
            methods.append(interior.hard_fit)
        methods.append(active.hard_fit)
        for method in methods:
            started = time.perf_counter()
            x, note, info = method(prob, deadline)
            info["seconds"] = time.perf_counter() - started
            if x is not None:
                if tried:
                    info["declined"] = tried
                why = "a verified hard-margin point exists"
                return x, True, f"{_declined(tried)}separable ({why}); {note}", info
            tried.append({"path": info["path"], "seconds": info["seconds"], "why": note})
    declined = _declined(tried)
    solver: dict = {"path": "constraint-generation"}
    if tried:
        solver["declined"] = tried
    first = ""
    try:
        hv, x, note = hard_cg(prob, init, tol, deadline, proof is not None, info=solver)
    except SVMError as err:
        if proof is not None:
            raise
        hv, x, note = "failed", None, str(err)
    if hv == "solved":
        why = proof or "a verified hard-margin point exists"
        return x, True, f"{declined}separable ({why}); {note}", solver
    first = f"constraint generation without a proof of separability: {note}; "
    bound = None
    if proof is None:
        verdict, lp_note, certificate = separability(prob, init)
        solver["lp"] = lp_note
        if certificate is not None:
            bound = float(0.5 * certificate @ (prob.pdiag * certificate))
    else:
        verdict, lp_note = "feasible", proof
    if verdict == "feasible":
        hv, x, note = hard_cg(prob, init, tol, deadline, True, bound, info=solver)
        if hv == "solved":
            return x, True, f"{declined}{first}separable ({lp_note}); {note}", solver
    if verdict != "infeasible":
        # The LP could not tell but the QP found a certificate of infeasibility: the margin is
        # too small to resolve numerically. Say so, go soft.
        lp_note = f"{lp_note}, but {note}"
    info = {"path": "soft" if soft else "unfitted", "lp": lp_note}
    if tried:
        info["declined"] = tried
    if not soft:
        return None, False, f"{declined}not separable ({lp_note}); soft margin not fitted", info
    x, note = soft_cg(prob, weights, C, deadline, info=info)
    return x, False, f"{declined}not separable ({lp_note}); soft margin C={C:g}: {note}", info


def _unfitted(target: str, scheme: str, status: str, t0: float, solver: dict) -> SVMFit:
    """A fit of data that are not separable, made without the soft-margin solve: no weights."""
    return SVMFit(target=target, scheme=scheme, W=np.zeros((0, 0)), b=np.zeros(0),
                  separable=False, hard_margin=False, C=None, min_margin=float("nan"),
                  support=np.zeros(0, dtype=np.int64), seconds=time.perf_counter() - t0,
                  status=status, solver=solver)


def _declined(tried: list[dict]) -> str:
    """The status prefix naming each path that declined and why."""
    return "".join(f"{t['path']} path declined: {t['why']}; " for t in tried)


def _finish(
    H, y, W, b, target, scheme, separable, C, tol, status, t0, any_soft=None, solver=None
) -> SVMFit:
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
        solver={"path": "none"} if solver is None else solver,
    )


def load_fits(path) -> list[tuple[int, SVMFit]]:
    """The fits of an svm.json (:mod:`nnboundary.formats.svmfile`), as (epoch, SVMFit) pairs in
    file order."""
    out = []
    for entry in read_svm(path).fits:
        entry = dict(entry)
        epoch = int(entry.pop("epoch"))
        out.append((epoch, SVMFit.from_json(entry)))
    return out
