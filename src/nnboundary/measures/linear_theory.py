"""The retrained last layer against its theorem: the predicted path of gradient descent on a
linear layer, and an independent numpy control of the run.

``retrain_last`` trains a lone linear layer (W, b) by gradient descent on fixed features. For a
binary problem the cross-entropy depends only on v = [w, β] = [W₁ − W₀, b₁ − b₀]: with the
augmented points xₙ = yₙ·[hₙ, 1] (yₙ = ±1, +1 for class 1) it is the logistic loss

    L(v) = (1/n) Σₙ log(1 + exp(−xₙ·v)),

and gradient descent on (W, b) with step η is gradient descent on v with step 2η (the gradient
of W₁ is minus that of W₀; W₀ + W₁ never moves).

**Soudry et al. (JMLR 2018), Theorem 3**: on separable data, v(t) = v̂·log t + ṽ + ρ(t) with
ρ(t) → 0 (for almost all data), where v̂ is the max-margin separator of the xₙ through the origin
(min ‖v‖² s.t. xₙ·v ≥ 1: the ``homog`` target, the bias penalised like a weight) with dual
v̂ = Σ_{n∈S} αₙ xₙ over the support vectors S, and ṽ solves η·exp(−xₙ·ṽ) = αₙ on S. The step
only adds a multiple of v̂ to ṽ (xₙ·v̂ = 1 on S), which moves log t, not the path: as a function
of the loss the predicted path does not depend on η, nor on a step that changes with time
(the loss-scaled schedule; :func:`predicted_path` takes the loss, and the test checks it on runs
with a constant and a loss-scaled step). Along v = v̂·s + ṽ the loss is (1/n)·Σ ℓ(xₙ·v), about
(1/n)·e^(−s)·Σ_S e^(−xₙ·ṽ); :func:`predicted_path` solves it for s exactly. The component of ṽ
outside the span of the support vectors is not fixed by those equations: it is taken from the
run's initial layer (the gradient of the support vectors never moves it; what the other points
add is part of the transient), and :func:`assumptions` says per run where it matters and where
αₙ = 0 on a support vector (a degenerate case, rate log log t / log t).

**Regularisation path** (Ji, Dudík, Schapire & Telgarsky, COLT 2020: gradient descent follows
it in direction): v_λ = argmin L(v) + λ‖v‖²/2, at the λ whose minimiser has the run's loss
(:func:`regularised`); solved by Newton's method, exactly up to float64, independent of any step
schedule and of ṽ.

**Control** (:func:`control_run`): the retrained layer's gradient descent written again in numpy
from its documented rules (full-batch steps on (W, b), the loss-scaled schedule of
:mod:`nnboundary.training.schedule` with its rejected epochs), from the run's recorded initial
layer and step, apart from the pipeline's training code; it must reproduce the run's layer at
every kept epoch to round-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq, nnls
from scipy.special import expit, log_expit

from ..settings.targets import TIE_DEG

#: A point is a support vector of v̂ when its margin xₙ·v̂ is within this of 1 (v̂ scaled so that
#: the smallest margin is exactly 1).
SUPPORT_TOL = 1e-6
#: Newton's method of the regularisation path stops when a step changes v by less than this,
#: relative to ‖v‖.
NEWTON_TOL = 1e-13


def augmented(H: np.ndarray, y: np.ndarray) -> np.ndarray:
    """xₙ = yₙ·[hₙ, 1] with yₙ = +1 for class 1 and −1 for class 0 (the pipeline's binary
    convention: w = W₁ − W₀)."""
    sign = np.where(np.asarray(y) == 1, 1.0, -1.0)
    H = np.asarray(H, dtype=np.float64)
    return sign[:, None] * np.hstack([H, np.ones((H.shape[0], 1))])


def log_loss(X: np.ndarray, v: np.ndarray) -> float:
    """log L(v), L the mean logistic loss (module docstring), exact far below float64's
    smallest number: log ℓ(m) = log log1p(e^(−m)) is taken as −m − e^(−m)/2 where m > 30
    (relative error below e^(−2m)), so a loss of 1e-1000 still has its logarithm."""
    m = X @ v
    far = m > 30.0
    per = np.empty_like(m)
    per[far] = -m[far] - 0.5 * np.exp(-m[far])
    per[~far] = np.log(np.logaddexp(0.0, -m[~far]))
    top = float(per.max())
    return top + math.log(float(np.exp(per - top).sum())) - math.log(m.size)


def max_margin(H: np.ndarray, y: np.ndarray) -> np.ndarray:
    """v̂ = [u, c]: the ``homog`` SVM of (H, y) (the hard-margin separator of the augmented
    points through the origin, the bias penalised like a weight) from the pipeline's exact
    solver (:func:`nnboundary.svm.fit_svm`), scaled so that its smallest margin on the xₙ is
    exactly 1."""
    from ..svm import fit_svm

    fit = fit_svm(H, y, "homog", "binary", n_classes=2)
    if not fit.hard_margin:
        raise ValueError("the features are not separable: no max-margin separator")
    W, b = np.asarray(fit.W, dtype=np.float64), np.asarray(fit.b, dtype=np.float64).ravel()
    v = np.r_[W[1] - W[0], b[1] - b[0]]
    return v / float(np.min(augmented(H, y) @ v))


@dataclass
class Dual:
    """The support vectors of v̂, as distinct points (``points``, rows of augmented features;
    ``count``: how many train points each stands for), their dual coefficients per point
    (v̂ = Σₙ αₙ xₙ over every support point, a repeated point sharing its coefficient equally,
    by non-negative least squares over the distinct points), and ‖v̂ − Σ αₙ xₙ‖ / ‖v̂‖."""

    points: np.ndarray
    count: np.ndarray
    alpha: np.ndarray
    residual: float

    @property
    def n_support(self) -> int:
        return int(self.count.sum())


def dual_of(X: np.ndarray, v_hat: np.ndarray) -> Dual:
    margins = X @ v_hat
    points, count = np.unique(X[margins <= 1.0 + SUPPORT_TOL], axis=0, return_counts=True)
    total, _ = nnls(points.T, v_hat)
    residual = float(np.linalg.norm(points.T @ total - v_hat) / np.linalg.norm(v_hat))
    return Dual(points, count, total / count, residual)


def correction(dual: Dual, v0: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(ṽ, free, zero): ṽ solves xₙ·ṽ = −log αₙ on the support vectors with αₙ > 0 (least
    squares over the distinct points), plus the part of the initial layer v0 outside their
    span; ``free``: the dimensions of that complement (0 when the support vectors span the
    space), ``zero``: the distinct support vectors with αₙ = 0, left out (a degenerate case of
    the theorem)."""
    positive = dual.alpha > 0
    rows = dual.points[positive]
    dim = v0.size
    if not len(rows):
        return np.array(v0, dtype=np.float64), dim, int((~positive).sum())
    v_tilde, *_ = np.linalg.lstsq(rows, -np.log(dual.alpha[positive]), rcond=None)
    rank = int(np.linalg.matrix_rank(rows))
    if rank < dim:
        null = np.linalg.svd(rows)[2][rank:]
        v_tilde = v_tilde + null.T @ (null @ v0)
    return v_tilde, dim - rank, int((~positive).sum())


def predicted_path(X: np.ndarray, v_hat: np.ndarray, v_tilde: np.ndarray,
                   log_target: float) -> np.ndarray:
    """v̂·s + ṽ at the s where its loss is e^log_target (module docstring)."""
    def gap(s):
        return log_loss(X, v_hat * s + v_tilde) - log_target

    low, high = 0.0, 1.0
    while gap(low) < 0:
        low -= 1.0 + abs(low)
    while gap(high) > 0:
        high += 1.0 + abs(high)
    return v_hat * brentq(gap, low, high, xtol=1e-14, rtol=1e-15, maxiter=500) + v_tilde


def _log_weights(X: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(log L, the per-point weights of ∇L/L and of ∇²L/L), all from logarithms, so that a loss
    far below float64's range keeps its derivatives: ∇L/L = −Σ aₙ xₙ and ∇²L/L = Σ cₙ xₙxₙᵀ
    with aₙ = σ(−mₙ)/(nL), cₙ = σ(mₙ)σ(−mₙ)/(nL)."""
    m = X @ v
    log_l = log_loss(X, v)
    shift = log_l + math.log(m.size)
    a = np.exp(log_expit(-m) - shift)
    c = np.exp(log_expit(m) + log_expit(-m) - shift)
    return log_l, a, c


def regularised(X: np.ndarray, log_target: float, start: np.ndarray) -> np.ndarray:
    """v_λ at the λ whose minimiser has the loss e^log_target (module docstring). The
    minimiser of L + λ‖v‖²/2 with L(v_λ) = L_t is the point of least norm with loss L_t (the
    two problems share their optimality conditions v = μ·(−∇L/L), log L(v) = log L_t, with
    μ = L_t/λ), so Newton's method solves that system in (v, μ) directly, from ``start`` (a
    point of about that loss, e.g. on the predicted path), in log space: any depth."""
    v = np.array(start, dtype=np.float64)
    dim = X.shape[1]
    log_l, a, c = _log_weights(X, v)
    g = -(X.T @ a)  # ∇ log L
    mu = max(-float(v @ g) / max(float(g @ g), 1e-300), 1e-300)

    def residual_of(v_, mu_, log_, g_):
        return np.r_[v_ + mu_ * g_, log_ - log_target]

    residual = residual_of(v, mu, log_l, g)
    for _ in range(200):
        hess = (X.T * c) @ X - np.outer(g, g)  # ∇² log L
        jacobian = np.block([[np.eye(dim) + mu * hess, g[:, None]],
                             [g[None, :], np.zeros((1, 1))]])
        step = np.linalg.solve(jacobian, -residual)
        t, norm = 1.0, np.linalg.norm(residual)
        while True:
            v_new, mu_new = v + t * step[:dim], mu + t * step[dim]
            log_new, a_new, c_new = _log_weights(X, v_new)
            g_new = -(X.T @ a_new)
            new_residual = residual_of(v_new, mu_new, log_new, g_new)
            if (mu_new > 0 and np.linalg.norm(new_residual) <= (1 - 1e-4 * t) * norm) \
                    or t < 1e-12:
                break
            t *= 0.5
        moved = np.linalg.norm(v_new - v)
        v, mu, log_l, c, g, residual = v_new, mu_new, log_new, c_new, g_new, new_residual
        if moved <= NEWTON_TOL * np.linalg.norm(v):
            break
    return v


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors in degrees, from atan2 (accurate near 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cross = np.linalg.norm(np.outer(a, b) - np.outer(b, a)) / math.sqrt(2.0)
    return math.degrees(math.atan2(cross, float(a @ b)))


# --------------------------------------------------------------------------------------------
# The control: the retrained layer's gradient descent again, in numpy
# --------------------------------------------------------------------------------------------


def _loss_and_gradient(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray,
                       gradient: bool = True):
    """The mean two-class cross-entropy in its exact tail form, log(1 + e^(−m)) with m the
    true class's logit minus the other's, and its gradient in (W, b)."""
    z = H @ W.T + b
    sign = np.where(y == 1, 1.0, -1.0)
    m = sign * (z[:, 1] - z[:, 0])
    loss = float(np.mean(np.logaddexp(0.0, -m)))
    if not gradient:
        return loss, None, None
    g1 = -sign * expit(-m) / len(y)  # ∂loss/∂z₁ per sample; ∂/∂z₀ is its negative
    G = np.stack([-g1, g1], axis=1)
    return loss, G.T @ H, G.sum(axis=0)


def replicable(settings: dict[str, Any], training: dict[str, Any]) -> str:
    """Why :func:`control_run` cannot re-run a run's training (empty: it can): it re-runs
    plain full-batch gradient descent, with a constant or a loss-scaled step."""
    if training.get("optimizer") != "sgd" or float(training.get("momentum") or 0.0):
        return f"optimizer {training.get('optimizer')} (the control runs plain gradient descent)"
    if int(training.get("steps_per_epoch", 1)) != 1:
        return "mini-batches (the control runs full-batch steps)"
    if float(training.get("weight_decay") or 0.0):
        return "weight decay (the control runs none)"
    if settings.get("schedule", "constant") not in ("constant", "loss_scaled"):
        return f"schedule {settings.get('schedule')}"
    return ""


def control_run(H: np.ndarray, y: np.ndarray, W0: np.ndarray, b0: np.ndarray, lr: float,
                settings: dict[str, Any], keep: set[int]) -> dict[int, tuple]:
    """Full-batch gradient descent on (W, b) from (W0, b0) with base step ``lr`` (absolute),
    the schedule of ``settings`` (``schedule``, ``schedule_cap``, ``until_loss``, ``epochs``).
    ``constant``: the step is lr, and the run stops after the first epoch whose loss before its
    step is below until_loss. ``loss_scaled``: η_e = min(lr·g·L₀/L_{e−1}, lr·cap, 2·η_{e−1}, and
    half a rejected epoch's step), an epoch rejected when its loss exceeds the last accepted one
    by more than 1e-3 (relative), g halved then and grown by 2^(1/5) after an accepted epoch
    whose step it set (at most 1 while the loss is at least log(2)/n); it stops after the first
    epoch whose loss after its step is below until_loss. Returns {epoch: (W, b, loss after the
    epoch)} for the accepted epochs in ``keep``."""
    W, b = np.array(W0, dtype=np.float64), np.array(b0, dtype=np.float64)
    scaled = settings.get("schedule", "constant") == "loss_scaled"
    cap, until = float(settings.get("schedule_cap", 1e6)), settings.get("until_loss")
    until = math.inf * -1 if until is None else float(until)
    terminal = math.log(2.0) / len(y)
    loss, gW, gb = _loss_and_gradient(H, y, W, b)
    reference = previous = loss
    factor, last_rate, ceiling = 1.0, None, None
    kept, epoch = {}, 1
    while epoch <= int(settings["epochs"]):
        adaptive = lr * factor * max(reference / previous, 0.0) if previous > 0 else math.inf
        rate = min(adaptive, lr * cap) if scaled else lr
        if scaled and last_rate is not None:
            rate = min(rate, 2.0 * last_rate)
        if scaled and ceiling is not None:
            rate = min(rate, ceiling)
        W_new, b_new = W - rate * gW, b - rate * gb
        after, gW_new, gb_new = _loss_and_gradient(H, y, W_new, b_new)
        if scaled and not (np.isfinite(after) and after <= previous * (1.0 + 1e-3)):
            factor *= 0.5
            ceiling = rate * 0.5
            if factor < 1e-12:
                break
            continue
        if scaled and rate >= adaptive * (1.0 - 1e-12):
            factor *= 2.0 ** 0.2
            if after >= terminal:
                factor = min(factor, 1.0)
        before = previous if scaled else loss
        previous, last_rate, ceiling, loss = after, rate, None, after
        W, b, gW, gb = W_new, b_new, gW_new, gb_new
        if epoch in keep:
            kept[epoch] = (W.copy(), b.copy(), after)
        if (after if scaled else before) < until:
            break
        epoch += 1
    return kept


# --------------------------------------------------------------------------------------------
# One retrain_last run against both predictions and the control
# --------------------------------------------------------------------------------------------

#: Stated before the grid was measured: the regularisation path predicts a binary retrained
#: layer's angle to ``homog`` at its final checkpoint within this many degrees
#: (``within_tolerance``).
TOLERANCE_DEG = 0.1
#: The deepest loss searched for the turn of the regularisation path towards ``homog``, as
#: log(1/L) (float64 reaches about 709).
TURN_SEARCH = 1e7

#: The columns of :func:`run_table`, after the run keys.
COLUMNS = ["epoch", "train_loss", "log10_inverse_loss", "milestone", "final", "separable", "n_support",
           "support_rank", "alpha_min", "dual_residual", "assumptions", "control", "svc_homog_angle_deg",
           "angle_homog_deg", "angle_svc_deg", "soudry_angle_homog_deg", "soudry_angle_svc_deg",
           "reg_angle_homog_deg", "reg_angle_svc_deg", "measured_vs_soudry_deg",
           "measured_vs_reg_deg", "homog_error_soudry_deg", "homog_error_reg_deg",
           "control_vs_measured_deg", "turn_log10_inverse_loss", "within_tolerance"]


def assumptions(free: int, zero: int, dim: int) -> str:
    """What of the theorem's assumptions fails for a run (empty: none)."""
    notes = []
    if free:
        notes.append(f"the support vectors span {dim - free} of {dim} dimensions: ṽ there is "
                     "the initial layer's, not the theorem's")
    if zero:
        notes.append(f"α = 0 on {zero} support vector(s): a degenerate case")
    return "; ".join(notes)


def turn(X: np.ndarray, v_hat: np.ndarray, u_svc: np.ndarray, log_from: float) -> float:
    """log10(1/L) at which the regularisation path's angle to ``homog`` falls below its angle to
    ``svc``, searched from log L = ``log_from`` down to −:data:`TURN_SEARCH` (bisection on
    log log(1/L)); NaN where it is nearer ``homog`` already at ``log_from`` or the two targets
    lie within :data:`nnboundary.settings.targets.TIE_DEG`, inf where not even at the deepest
    loss searched."""
    def nearer_svc(log_l):
        v = regularised(X, log_l, predicted_path(X, v_hat, np.zeros_like(v_hat), log_l))
        return angle_deg(v[:-1], v_hat[:-1]) - angle_deg(v[:-1], u_svc)

    # Targets that coincide (a class at h = 0) have no side to turn to.
    if angle_deg(u_svc, v_hat[:-1]) <= TIE_DEG or nearer_svc(log_from) <= 0:
        return float("nan")
    if nearer_svc(-TURN_SEARCH) > 0:
        return float("inf")
    low, high = math.log(-log_from), math.log(TURN_SEARCH)
    for _ in range(20):  # log log(1/L) to 1e-5 of its range
        middle = 0.5 * (low + high)
        if nearer_svc(-math.exp(middle)) > 0:
            low = middle
        else:
            high = middle
    return math.exp(0.5 * (low + high)) / math.log(10.0)


def _milestone_of(log_losses: list[float], milestones) -> list[float]:
    """Per checkpoint, the largest milestone it is the first checkpoint below (NaN: none)."""
    out = [float("nan")] * len(log_losses)
    for milestone in sorted((float(m) for m in milestones), reverse=True):
        first = next((i for i, value in enumerate(log_losses) if value < math.log(milestone)),
                     None)
        if first is not None and math.isnan(out[first]):
            out[first] = milestone
    return out


#: The ``assumptions`` of a run whose train features no hyperplane separates.
NOT_SEPARABLE = ("the train features are not separable: the loss has a positive floor and "
                 "the theorem does not apply")


def _control_angle(control: dict, epoch: int, v: np.ndarray) -> float:
    """The angle between the control's layer at ``epoch`` and the retrained layer ``v``
    (NaN where the control did not run)."""
    ours = control.get(epoch)
    if ours is None:
        return float("nan")
    return angle_deg(v, np.r_[ours[0][1] - ours[0][0], ours[1][1] - ours[1][0]])


def _not_separable(features, layers, log_losses, milestones, control, control_note: str):
    """The rows of a run without a max-margin separator: its losses and the control's
    distance; every angle to a target or a prediction NaN (``separable`` False), so that no
    summary takes them as measurements."""
    import pandas as pd

    rows = [{"epoch": f.epoch, "train_loss": math.exp(log_l),
             "log10_inverse_loss": -log_l / math.log(10.0), "milestone": milestone,
             "final": f is features[-1], "separable": False, "n_support": 0,
             "support_rank": 0, "assumptions": NOT_SEPARABLE, "control": control_note,
             "control_vs_measured_deg": _control_angle(control, f.epoch, v),
             "within_tolerance": False}
            for f, v, log_l, milestone in zip(features, layers, log_losses, milestones)]
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def run_table(features: list, checkpoints: dict[str, Any]):
    """The rows of one ``retrain_last`` run (its feature sets, epoch order, and its checkpoint
    file's ``initial_last``, ``training`` and ``retrain_settings``): per checkpoint, the
    measured angles to ``homog`` and ``svc``, both predictions', the control's distance, and the
    run's assumptions and turn (:data:`COLUMNS`). K > 2: no rows (the binary theorem). Train
    features that no hyperplane separates: the rows say so (``separable`` False,
    :data:`NOT_SEPARABLE`) and hold no angle."""
    import pandas as pd

    last = features[-1]
    if last.n_classes != 2:
        return pd.DataFrame(columns=COLUMNS)
    H, y = last.part("train")
    X = augmented(H, y)
    initial = checkpoints["initial_last"]
    W0, b0 = np.asarray(initial["weight"], np.float64), np.asarray(initial["bias"], np.float64)
    settings, training = checkpoints["retrain_settings"], checkpoints["training"]
    why_not = replicable(settings, training)
    control = {} if why_not else control_run(H, y, W0, b0, float(training["lr"]), settings,
                                             {f.epoch for f in features})
    layers = [np.r_[f.W[1] - f.W[0], f.b[1] - f.b[0]] for f in features]
    log_losses = [log_loss(X, v) for v in layers]
    milestones = _milestone_of(log_losses, checkpoints["retrain_settings"].get(
        "loss_milestones") or ())
    try:
        v_hat = max_margin(H, y)
    except ValueError:
        return _not_separable(features, layers, log_losses, milestones, control,
                              why_not or "re-run")
    from ..svm import fit_svm

    svc = fit_svm(H, y, "svc", "binary", n_classes=2)
    W_svc = np.asarray(svc.W, dtype=np.float64)
    u_svc = W_svc[1] - W_svc[0]
    dual = dual_of(X, v_hat)
    v_tilde, free, zero = correction(dual, np.r_[W0[1] - W0[0], b0[1] - b0[0]])
    common = {"separable": True, "n_support": dual.n_support, "support_rank": X.shape[1] - free,
              "alpha_min": float(dual.alpha.min()) if dual.alpha.size else float("nan"),
              "dual_residual": dual.residual,
              "assumptions": assumptions(free, zero, X.shape[1]),
              "control": why_not or "re-run",
              "svc_homog_angle_deg": angle_deg(u_svc, v_hat[:-1])}
    rows = []
    for f, v, log_l, milestone in zip(features, layers, log_losses, milestones):
        predicted = predicted_path(X, v_hat, v_tilde, log_l)
        reg = regularised(X, log_l, predicted_path(X, v_hat, np.zeros_like(v_hat), log_l))
        w, wp, wr = v[:-1], predicted[:-1], reg[:-1]
        rows.append({**common, "epoch": f.epoch, "train_loss": math.exp(log_l),
                     "log10_inverse_loss": -log_l / math.log(10.0), "milestone": milestone,
                     "final": f is last,
                     "angle_homog_deg": angle_deg(w, v_hat[:-1]), "angle_svc_deg": angle_deg(w, u_svc),
                     "soudry_angle_homog_deg": angle_deg(wp, v_hat[:-1]),
                     "soudry_angle_svc_deg": angle_deg(wp, u_svc),
                     "reg_angle_homog_deg": angle_deg(wr, v_hat[:-1]),
                     "reg_angle_svc_deg": angle_deg(wr, u_svc),
                     "measured_vs_soudry_deg": angle_deg(w, wp),
                     "measured_vs_reg_deg": angle_deg(w, wr),
                     "control_vs_measured_deg": _control_angle(control, f.epoch, v)})
    table = pd.DataFrame(rows)
    table["homog_error_soudry_deg"] = table["angle_homog_deg"] - table["soudry_angle_homog_deg"]
    table["homog_error_reg_deg"] = table["angle_homog_deg"] - table["reg_angle_homog_deg"]
    table["turn_log10_inverse_loss"] = turn(X, v_hat, u_svc, log_losses[-1])
    table["within_tolerance"] = table["homog_error_reg_deg"].abs() <= TOLERANCE_DEG
    return table[COLUMNS]
