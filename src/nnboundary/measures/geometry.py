"""The metric functions: how a network's last layer (w, b) compares with a hard-margin SVM's
(u, c) on the bottleneck features, pure numpy, each with its formula in its docstring.

Binary notation (multi-class: per class pair i < j, with class j playing +1): labels
y ∈ {−1, +1}, network normal w = W₁ − W₀ and bias b = b₁ − b₀, SVM normal u = U₁ − U₀ and bias
c = c₁ − c₀.

Degenerate cases never raise and never give NaN. Each metric function takes
``return_flag=True`` to also return whether its convention was used. A value produced by a
convention is never a measurement: :mod:`nnboundary.measures.validity` marks its row invalid,
and no table or figure averages it. The conventions:

- zero normal (‖w‖ or ‖u‖ ≤ :data:`ZERO_NORM`; e.g. a dead ReLU bottleneck): angle 90°
  (cos taken as 0), margin 0, bias offset 0, midpoint position 0.5, bias gap 0, matrix angle
  90°;
- margin_svm = 0: margin ratio 0;
- a pair with only one class among its train points, or m₊ == m₋: midpoint position 0.5 and
  bias gap 0 (and the row is flagged);
- no points (empty split or pair): agreement 1.0 (vacuous), accuracy 0, loss 0, margin 0;
- no support vectors in the pair: sv_overlap 0;
- any non-finite value that still comes out (e.g. a diverged network with infinite logits) is
  replaced by 0 and flagged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: A normal whose Euclidean norm is at most this is treated as zero (degenerate).
ZERO_NORM = 1e-12


def vector(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64).ravel()


def _is_zero(norm: float) -> bool:
    return not (np.isfinite(norm) and norm > ZERO_NORM)


def _out(value: float, flag: bool, return_flag: bool):
    value = float(value) + 0.0  # + 0.0 turns −0.0 into 0.0
    if not np.isfinite(value):
        value, flag = 0.0, True
    return (value, bool(flag)) if return_flag else value


def angle_deg(w: Any, u: Any, *, return_flag: bool = False):
    """Angle between the vectors ``w`` and ``u`` in degrees, in [0, 180].

    θ = arccos(clip(w·u / (‖w‖‖u‖), −1, 1)), computed as θ = 2·atan2(‖ŵ − û‖, ‖ŵ + û‖) with
    ŵ = w/‖w‖, û = u/‖u‖: the same angle, but accurate to machine precision near 0° and 180°
    where arccos loses half the digits (convergence is measured down to tiny angles).

    Degenerate: if ‖w‖ or ‖u‖ ≤ ZERO_NORM, cos is taken as 0, i.e. the angle is 90°.
    """
    w, u = vector(w), vector(u)
    if w.shape != u.shape:
        raise ValueError(f"angle_deg: w has {w.size} entries but u has {u.size}; they must match")
    norm_w, norm_u = float(np.linalg.norm(w)), float(np.linalg.norm(u))
    if _is_zero(norm_w) or _is_zero(norm_u):
        return _out(90.0, True, return_flag)
    w_hat, u_hat = w / norm_w, u / norm_u
    theta = 2.0 * np.arctan2(np.linalg.norm(w_hat - u_hat), np.linalg.norm(w_hat + u_hat))
    return _out(np.clip(np.degrees(theta), 0.0, 180.0), False, return_flag)


def geometric_margin(w: Any, b: float, H: Any, y: Any, *, return_flag: bool = False):
    """Geometric margin γ = minᵢ yᵢ(w·hᵢ + b)/‖w‖ of the boundary w·h + b = 0.

    ``H`` is (n, d), ``y`` holds ±1. γ < 0 when some point is on the wrong side.
    Degenerate: ‖w‖ ≤ ZERO_NORM or no points ⇒ γ = 0.
    """
    w = vector(w)
    H = np.asarray(H, dtype=np.float64).reshape(-1, w.size)
    y = vector(y)
    norm_w = float(np.linalg.norm(w))
    if _is_zero(norm_w) or H.shape[0] == 0:
        return _out(0.0, True, return_flag)
    return _out(np.min(y * (H @ w + float(b))) / norm_w, False, return_flag)


def margin_ratio(margin_nn: float, margin_svm: float, *, hard: bool = True,
                 return_flag: bool = False):
    """γ_NN / γ_SVM (1 when the network's boundary has the SVM's margin).

    Only a hard-margin fit's γ_SVM is the maximum margin: a soft fit's γ can be ≤ 0 or
    arbitrarily close to 0, which would make the ratio meaningless (or huge).
    Degenerate: ``hard`` is False, or γ_SVM ≤ 0 (or not finite) ⇒ ratio 0.
    """
    margin_nn, margin_svm = float(margin_nn), float(margin_svm)
    if not hard or not np.isfinite(margin_svm) or margin_svm <= 0.0:
        return _out(0.0, True, return_flag)
    return _out(margin_nn / margin_svm, False, return_flag)


def bias_offset(w: Any, b: float, u: Any, c: float, *, return_flag: bool = False):
    """(b/‖w‖ − c/‖u‖)·‖u‖: shift of the network's boundary from the SVM's, in SVM margins 1/‖u‖.

    The boundary w·h + b = 0 lies at signed distance −b/‖w‖ from the origin along w/‖w‖, so
    moving it towards class +1 by half the SVM margin (with w ∥ u) gives −0.5.
    It mixes rotation with shift: the two distances are taken along different normals, so a
    boundary rotated by a small angle about a point far from the origin gets a large offset
    while it still sits midway between the classes (0.3° about a point 100 margins away moves
    it by about −0.52). :func:`bias_gap` measures the shift alone.
    Degenerate: ‖w‖ or ‖u‖ ≤ ZERO_NORM ⇒ 0.
    """
    w, u = vector(w), vector(u)
    norm_w, norm_u = float(np.linalg.norm(w)), float(np.linalg.norm(u))
    if _is_zero(norm_w) or _is_zero(norm_u):
        return _out(0.0, True, return_flag)
    return _out((float(b) / norm_w - float(c) / norm_u) * norm_u, False, return_flag)


def _class_extremes(w: np.ndarray, H: Any, y: Any) -> tuple[float, float, float] | None:
    """(‖w‖, m₋, m₊): m₋ the largest projection on w/‖w‖ of class −1, m₊ the smallest of class
    +1; None when ‖w‖ ≤ ZERO_NORM, a class has no points, or m₊ == m₋ (no gap to measure in)."""
    H = np.asarray(H, dtype=np.float64).reshape(-1, w.size)
    y = vector(y)
    norm_w = float(np.linalg.norm(w))
    positive, negative = y > 0, y <= 0
    if _is_zero(norm_w) or not positive.any() or not negative.any():
        return None
    projection = H @ (w / norm_w)
    m_minus, m_plus = float(np.max(projection[negative])), float(np.min(projection[positive]))
    gap = m_plus - m_minus
    if gap == 0.0 or not np.isfinite(gap):
        return None
    return norm_w, m_minus, m_plus


def midpoint_position(w: Any, b: float, H: Any, y: Any, *, return_flag: bool = False):
    """Where the boundary sits between the classes along w: 0 at class −1, 1 at class +1.

    Project the points on w/‖w‖: m₋ = largest projection of class −1, m₊ = smallest of class
    +1; the boundary is at −b/‖w‖; position = (−b/‖w‖ − m₋)/(m₊ − m₋) (0.5 = midway; outside
    [0, 1] when the boundary leaves the gap; the sign flips if the classes overlap, m₊ < m₋).
    Degenerate: ‖w‖ ≤ ZERO_NORM, a class without points, or m₊ == m₋ ⇒ 0.5.
    """
    extremes = _class_extremes(vector(w), H, y)
    if extremes is None:
        return _out(0.5, True, return_flag)
    norm_w, m_minus, m_plus = extremes
    return _out((-float(b) / norm_w - m_minus) / (m_plus - m_minus), False, return_flag)


def bias_gap(w: Any, b: float, H: Any, y: Any, *, return_flag: bool = False):
    """The network's bias minus the max-margin bias for the network's own normal w, in units of
    that normal's margin; a rotation of the boundary does not move it.

    With m₋, m₊ as in :func:`midpoint_position`, the bias that puts the boundary w·h + b = 0
    midway between the classes' closest train points along w is b* = −‖w‖(m₋ + m₊)/2, and that
    normal's half-gap is (m₊ − m₋)/2, so

        bias_gap = (b − b*) / (‖w‖·(m₊ − m₋)/2) = (2b/‖w‖ + m₋ + m₊)/(m₊ − m₋)
                 = 1 − 2·midpoint_position.

    0 exactly when the boundary lies midway; +1 when it touches class −1 (b too large), −1 when
    it touches class +1. Unlike :func:`bias_offset` it compares the network with no SVM, so a
    boundary rotated about its midpoint keeps bias_gap = 0.
    Degenerate: as :func:`midpoint_position` ⇒ 0 (the value of the midway position 0.5).
    """
    extremes = _class_extremes(vector(w), H, y)
    if extremes is None:
        return _out(0.0, True, return_flag)
    norm_w, m_minus, m_plus = extremes
    return _out((2.0 * float(b) / norm_w + m_minus + m_plus) / (m_plus - m_minus), False,
                return_flag)


def separated_bias_gap(w: Any, b: float, H: Any, y: Any) -> float:
    """:func:`bias_gap` on points whose two classes are separated along w (m₊ > m₋, e.g. a
    test set), where the boundary sits between them; NaN where they overlap along w (a point
    on the wrong side), a class has no points or ‖w‖ ≤ ZERO_NORM: there is no gap to sit in.
    Not a convention: the quantity does not exist there."""
    extremes = _class_extremes(vector(w), H, y)
    if extremes is None or extremes[2] <= extremes[1]:
        return float("nan")
    norm_w, m_minus, m_plus = extremes
    return float((2.0 * float(b) / norm_w + m_minus + m_plus) / (m_plus - m_minus)) + 0.0


def zero_class(H: Any, y: Any, K: int) -> tuple[int, float]:
    """(k, s): the class with the largest share s of its train points at h = 0 (every unit
    off), and that share; (−1, 0.0) when no point is at 0. s = 1: the whole class sits at the
    origin of feature space, where only the last layer's bias classifies it."""
    H = np.asarray(H)
    y = np.asarray(y).ravel()
    at_zero = np.all(H == 0, axis=1)
    counts = np.bincount(y, minlength=K).astype(np.float64)
    shares = np.divide(np.bincount(y[at_zero], minlength=K), counts,
                       out=np.zeros(K), where=counts > 0)
    if not shares.any():
        return -1, 0.0
    k = int(np.argmax(shares))
    return k, float(shares[k])


def agreement(pred_a: Any, pred_b: Any, *, return_flag: bool = False):
    """Share of positions where the two prediction arrays are equal.

    Degenerate: no predictions ⇒ 1.0 (vacuous agreement).
    """
    pred_a, pred_b = np.asarray(pred_a).ravel(), np.asarray(pred_b).ravel()
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"agreement: {pred_a.size} predictions against {pred_b.size}")
    if pred_a.size == 0:
        return _out(1.0, True, return_flag)
    return _out(np.mean(pred_a == pred_b), False, return_flag)


def dead_units(H: Any) -> int:
    """Number of feature columns (bottleneck units) that are exactly 0 on every row of ``H``.

    With no rows every unit counts as dead (vacuously 0 everywhere).
    """
    H = np.asarray(H)
    if H.ndim != 2:
        raise ValueError(f"dead_units: H must be (n, d), got shape {H.shape}")
    return int(np.sum(np.all(H == 0, axis=0)))


def zero_points(H: Any) -> int:
    """Number of rows (train points) of ``H`` that are exactly 0 in every column: points the
    bottleneck maps to the origin, where w·h = 0 for every w."""
    H = np.asarray(H)
    if H.ndim != 2:
        raise ValueError(f"zero_points: H must be (n, d), got shape {H.shape}")
    return int(np.sum(np.all(H == 0, axis=1)))


def cross_entropy_per_sample(logits: Any, labels: Any) -> np.ndarray:
    """ℓᵢ = log Σₖ exp(zᵢₖ) − z_{i,yᵢ} = log(1 + sᵢ), sᵢ = Σ_{k≠yᵢ} exp(zᵢₖ − z_{i,yᵢ}), computed
    as log1p(sᵢ) when every other logit is below the true one and as M + log(e^{−M} + Σ exp(dₖ −
    M)) otherwise (dₖ = zᵢₖ − z_{i,yᵢ}, M = max dₖ > 0): exact also for losses far below 1e-16,
    where the plain log-sum-exp form rounds to 0."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if logits.ndim != 2 or logits.shape[0] != labels.size:
        raise ValueError(
            f"cross_entropy: logits of shape {logits.shape} do not match {labels.size} labels"
        )
    if labels.size == 0:
        return np.zeros(0)
    rows = np.arange(labels.size)
    d = logits - logits[rows, labels][:, None]
    d[rows, labels] = -np.inf
    top = np.maximum(d.max(axis=1), 0.0)
    s = np.exp(d - top[:, None]).sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(top > 0, top + np.log(np.exp(-top) + s), np.log1p(s))


def cross_entropy(logits: Any, labels: Any, *, return_flag: bool = False):
    """Mean cross-entropy (1/n) Σᵢ [log Σₖ exp(zᵢₖ) − z_{i,yᵢ}] (natural log, stable log-softmax).

    Degenerate: no rows ⇒ 0.
    """
    losses = cross_entropy_per_sample(logits, labels)
    if losses.size == 0:
        return _out(0.0, True, return_flag)
    return _out(np.mean(losses), False, return_flag)


def accuracy(pred: Any, labels: Any, *, return_flag: bool = False):
    """Share of rows with pred == label; ``pred`` may be a (n, K) logit array (argmax taken).

    Degenerate: no rows ⇒ 0.
    """
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    labels = np.asarray(labels).ravel()
    if pred.size != labels.size:
        raise ValueError(f"accuracy: {pred.size} predictions against {labels.size} labels")
    if labels.size == 0:
        return _out(0.0, True, return_flag)
    return _out(np.mean(pred.ravel() == labels), False, return_flag)


def sv_overlap(support: Any, loss: Any, index: Any, *, return_flag: bool = False):
    """Overlap of the SVM's support vectors with the highest-loss points (the original check).

    ``index`` are the train-row indices of the pair's points and ``loss`` their network loss;
    S = support ∩ index (the pair's support vectors), k = |S|, T = the k points with the
    highest loss (ties broken by position, stable); overlap = |S ∩ T| / k.
    Degenerate: k = 0 ⇒ 0.
    """
    index = np.asarray(index, dtype=np.int64).ravel()
    loss = vector(loss)
    if loss.size != index.size:
        raise ValueError(f"sv_overlap: {loss.size} losses against {index.size} indices")
    support = np.asarray(support, dtype=np.int64).ravel()
    chosen = np.unique(support[np.isin(support, index)])  # S, sorted and unique
    k = chosen.size
    if k == 0:
        return _out(0.0, True, return_flag)
    order = np.argsort(-loss, kind="stable")
    top = index[order[:k]]
    return _out(int(np.isin(chosen, top).sum()) / k, False, return_flag)


def centre_rows(W: Any) -> np.ndarray:
    """W − (1/K) Σₖ Wₖ: subtract the mean row (the last layer is defined only up to that)."""
    W = np.asarray(W, dtype=np.float64)
    return W - W.mean(axis=0, keepdims=True)


def matrix_angle_deg(W: Any, U: Any, *, return_flag: bool = False):
    """Angle between the centred matrices Wc = W − mean row, Uc = U − mean row, in degrees.

    cos = ⟨Wc, Uc⟩_F / (‖Wc‖_F ‖Uc‖_F) (matrices as vectors), computed as in :func:`angle_deg`.
    Invariant to adding one vector to every row; for K = 2 it equals the angle between
    W₁ − W₀ and U₁ − U₀. Degenerate: a zero centred matrix ⇒ 90°.
    """
    W, U = np.asarray(W, dtype=np.float64), np.asarray(U, dtype=np.float64)
    if W.shape != U.shape:
        raise ValueError(f"matrix_angle_deg: W is {W.shape} but U is {U.shape}")
    return angle_deg(centre_rows(W), centre_rows(U), return_flag=return_flag)
