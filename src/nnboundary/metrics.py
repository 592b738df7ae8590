"""The ``metrics`` stage: how close is the network's last layer to the hard-margin SVM?

For every checkpoint (feature file) and every SVM fit of that epoch (``svm.json``), compare the
network's last layer (W, b) with the SVM's (U, c), both acting on the bottleneck features h.

Binary notation (multi-class: per class pair i < j, with class j playing +1):
labels y ∈ {−1, +1} (+1 = the larger class label), network normal w = W₁ − W₀ and bias
b = b₁ − b₀, SVM normal u = U₁ − U₀ and bias c = c₁ − c₀.

Output: one row per (epoch, target, scheme, pair); columns (:data:`COLUMNS`)

================== =================================================================================
dataset, arch,     run keys (from the feature file; ``variant`` is ``base`` or the ablation values,
variant, regime,   ``regime`` is ``full`` or ``retrain_last``)
seed, epoch
target, scheme     the SVM fit (``svc``/``homog``/``origin``, :mod:`nnboundary.targets`;
                   ``binary``/``crammer_singer``/``ovr``)
pair               ``"i-j"`` for the class pair (``"0-1"`` for binary); ``"mean"`` for the mean row
                   of a multi-class fit (mean over pairs of every per-pair numeric metric, except
                   the signed ones of :data:`SIGNED_PAIR_METRICS`, which it leaves empty)
step               optimizer steps at the checkpoint: epoch × steps_per_epoch (-1 if unknown)
separable,         copied from the fit
hard_margin
angle_deg          angle between w and u, degrees                             (:func:`angle_deg`)
margin_nn          min yᵢ(w·hᵢ + b)/‖w‖ over the pair's train points     (:func:`geometric_margin`)
margin_svm         the same for (u, c)
margin_ratio       margin_nn / margin_svm                                   (:func:`margin_ratio`);
                   NaN for ``ovr``: a one-vs-rest fit's pairwise margin is no maximum of anything
bias_gap           (2b/‖w‖ + m₋ + m₊)/(m₊ − m₋) = 1 − 2·midpoint_position: the network's bias
                   against the max-margin bias for its own normal, unmoved by a rotation
                   (:func:`bias_gap`); the primary bias measure
bias_gap_abs       |bias_gap| (the ``mean`` row: the mean of |·| over pairs, so that signed
                   values of different pairs cannot cancel)
svm_midpoint_position,
svm_bias_gap       the same two quantities for the SVM's (u, c) along its own normal: 0.5 and 0
                   for a hard-margin ``svc`` fit, not for ``homog`` or a Crammer–Singer pair
bias_gap_vs_svm_abs |bias_gap − svm_bias_gap|: how far the network's bias is from where that SVM
                   puts its own, each along its own normal (binary svc: = bias_gap_abs)
bias_offset        (b/‖w‖ − c/‖u‖)·‖u‖ (:func:`bias_offset`); mixes rotation with shift
bias_offset_abs    |bias_offset| (``mean`` row: mean of |·| over pairs)
midpoint_position  (−b/‖w‖ − m₋)/(m₊ − m₋)                             (:func:`midpoint_position`)
svc_homog_angle_deg,  the angles between the targets' own normals of the pair and scheme at
svc_origin_angle_deg, this checkpoint (the same on every target's rows): below them, "closer to
homog_origin_angle_deg one target or another" cannot mean much. NaN unless both fits exist and
                   are hard-margin (a soft fit is no target)
agreement_test     share of the pair's test points where sign(w·h + b) (network: from the stored
                   logits, logit_j − logit_i > 0) equals sign(u·h + c)          (:func:`agreement`)
agreement_grid     the same on a grid over the bounding box of all train features
                   (:func:`box_grid`; network from h_grid @ W.T + b)
train_acc,         the full network's accuracy on train / test and mean cross-entropy on train,
test_acc,          from the stored logits (the same on every row of an epoch)
train_loss
w_norm             ‖w‖ of the pair (mean row: mean over pairs)
dead_units         bottleneck units exactly 0 on every train point             (:func:`dead_units`)
zero_points        train points whose features are exactly 0 (every bottleneck unit off): they sit
                   at the origin of feature space, where only a bias can classify them, so no
                   separator through the origin exists (:func:`zero_points`)
sv_overlap         |S ∩ T|/|S|: S the fit's support vectors of the pair, T the |S| highest-loss
                   train points of the pair                                     (:func:`sv_overlap`)
matrix_angle_deg   angle between the centred W and U (the same on every row of a fit)
                   (:func:`matrix_angle_deg`)
degenerate         True when any value of the row used a convention below instead of its formula
diverged           the checkpoint's features or logits are not all finite
valid,             whether the row is a measurement, and if not why (:mod:`nnboundary.validity`);
invalid_reason     tables and figures use valid rows only
optimizer, loss,   what the run trained with (:func:`nnboundary.train.training_record`): lr is the
schedule, lr,      step actually used (retrain_last with lr_relative: the absolute step; with
batch_size,        schedule loss_scaled: the base step it scales), until_loss the stopping loss
steps_per_epoch,   (NaN: none), stop_reason / stop_epoch how and when the run stopped
until_loss,        (:data:`nnboundary.loop.STOP_REASONS`)
stop_reason,
stop_epoch
bn_feature_shift   BatchNorm networks: ‖H_seen − H_eval‖_F/‖H_eval‖_F on the train set, H_seen the
                   features in the mode the network was trained in at this checkpoint, H_eval the
                   eval-mode features the SVM is fitted on (NaN without BatchNorm)
amp_feature_shift  with amp bf16: the same between bf16-autocast and float32 eval-mode features
================== =================================================================================

Degenerate cases never raise and never give NaN (NaN appears only in the columns of
:data:`NOT_APPLICABLE_NAN`, where a quantity does not apply to a row). Each metric function takes
``return_flag=True`` to also return whether its convention was used. A row with a convention
value is never a measurement: :mod:`nnboundary.validity` marks it invalid, and no table or
figure averages it. The conventions:

- zero normal (‖w‖ or ‖u‖ ≤ :data:`ZERO_NORM`; e.g. a dead ReLU bottleneck): angle 90°
  (cos taken as 0), margin 0, bias offset 0, midpoint position 0.5, bias gap 0, matrix angle
  90°;
- margin_svm = 0: margin ratio 0;
- a pair with only one class among its train points, or m₊ == m₋: midpoint position 0.5 and
  bias gap 0 (and the row is flagged);
- no points (empty split or pair): agreement 1.0 (vacuous), accuracy 0, loss 0, margin 0;
- no support vectors in the pair: sv_overlap 0;
- any non-finite value that still comes out (e.g. a diverged network with infinite logits) is
  replaced by 0 and the row flagged.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import io, validity
from .cli import per_run
from .config import BASE_VARIANT, RUN_KEYS, ConfigError, parse_settings
from .targets import PAIR_ANGLE_COLUMNS, TARGET_PAIRS, pair_angle_column

#: A normal whose Euclidean norm is at most this is treated as zero (degenerate).
ZERO_NORM = 1e-12
#: Seed of the uniform draws that replace the regular grid when the features are not 2-D.
GRID_SEED = 0
#: Grid points handled at once (bounds memory for wide features).
GRID_CHUNK = 16384

#: Per-pair numeric metrics that the ``mean`` row averages.
PAIR_METRICS = [
    "angle_deg",
    "margin_nn",
    "margin_svm",
    "margin_ratio",
    "bias_gap",
    "bias_gap_abs",
    "svm_midpoint_position",
    "svm_bias_gap",
    "bias_gap_vs_svm_abs",
    "bias_offset",
    "bias_offset_abs",
    "midpoint_position",
    *PAIR_ANGLE_COLUMNS,
    "agreement_test",
    "agreement_grid",
    "w_norm",
    "sv_overlap",
]
#: Signed per-pair metrics: the multi-class ``mean`` row leaves them empty (NaN), since signs of
#: different pairs would cancel; it holds the mean of their absolute values instead.
SIGNED_PAIR_METRICS = ("bias_gap", "svm_bias_gap", "bias_offset", "midpoint_position",
                       "svm_midpoint_position")
#: Metrics of the whole network at one epoch (the same on every row of that epoch).
NETWORK_METRICS = ["train_acc", "test_acc", "train_loss", "dead_units", "zero_points"]
#: What the run trained with (:func:`nnboundary.train.training_record`, from the feature
#: file's metadata; empty / NaN / -1 for feature files written without it).
TRAINING_COLUMNS = ["optimizer", "loss", "schedule", "lr", "batch_size", "steps_per_epoch",
                    "until_loss", "stop_reason", "stop_epoch", "bn_feature_shift",
                    "amp_feature_shift"]
#: Columns that are NaN where they do not apply (not a convention, not a failure):
#: ``margin_ratio`` for one-vs-rest fits, the angles between targets without both targets'
#: hard-margin fits, ``lr`` and ``until_loss`` without a training record (or a stopping loss),
#: the feature
#: shifts of networks without BatchNorm or bf16, and the signed pair metrics on the multi-class
#: ``mean`` row.
NOT_APPLICABLE_NAN = ("margin_ratio", *PAIR_ANGLE_COLUMNS, "lr", "until_loss",
                      "bn_feature_shift", "amp_feature_shift") + SIGNED_PAIR_METRICS

#: Every column of the table, in order.
COLUMNS = (
    list(RUN_KEYS) + ["epoch", "step", "target", "scheme", "pair", "separable", "hard_margin"]
    + PAIR_METRICS
    + NETWORK_METRICS
    + ["matrix_angle_deg", "degenerate", "diverged", "valid", "invalid_reason"]
    + TRAINING_COLUMNS
)

#: Settings of the stage (``metrics`` in the config).
DEFAULT_SETTINGS = {"grid_points": 200}


# --------------------------------------------------------------------------------------------
# Metric functions (pure numpy)
# --------------------------------------------------------------------------------------------


def _vector(v: Any) -> np.ndarray:
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
    w, u = _vector(w), _vector(u)
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
    w = _vector(w)
    H = np.asarray(H, dtype=np.float64).reshape(-1, w.size)
    y = _vector(y)
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
    w, u = _vector(w), _vector(u)
    norm_w, norm_u = float(np.linalg.norm(w)), float(np.linalg.norm(u))
    if _is_zero(norm_w) or _is_zero(norm_u):
        return _out(0.0, True, return_flag)
    return _out((float(b) / norm_w - float(c) / norm_u) * norm_u, False, return_flag)


def _class_extremes(w: np.ndarray, H: Any, y: Any) -> tuple[float, float, float] | None:
    """(‖w‖, m₋, m₊): m₋ the largest projection on w/‖w‖ of class −1, m₊ the smallest of class
    +1; None when ‖w‖ ≤ ZERO_NORM, a class has no points, or m₊ == m₋ (no gap to measure in)."""
    H = np.asarray(H, dtype=np.float64).reshape(-1, w.size)
    y = _vector(y)
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
    extremes = _class_extremes(_vector(w), H, y)
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
    extremes = _class_extremes(_vector(w), H, y)
    if extremes is None:
        return _out(0.0, True, return_flag)
    norm_w, m_minus, m_plus = extremes
    return _out((2.0 * float(b) / norm_w + m_minus + m_plus) / (m_plus - m_minus), False,
                return_flag)


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
    loss = _vector(loss)
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


def _grid_chunks(
    low: np.ndarray, high: np.ndarray, grid_points: int, seed: int = GRID_SEED
) -> Iterator[np.ndarray]:
    low, high = _vector(low), _vector(high)
    d = low.size
    if d == 2:
        axis_0 = np.linspace(low[0], high[0], grid_points)
        axis_1 = np.linspace(low[1], high[1], grid_points)
        grid = np.stack(np.meshgrid(axis_0, axis_1, indexing="ij"), axis=-1).reshape(-1, 2)
        for start in range(0, grid.shape[0], GRID_CHUNK):
            yield grid[start : start + GRID_CHUNK]
        return
    rng = np.random.default_rng(seed)
    total = grid_points * grid_points
    for start in range(0, total, GRID_CHUNK):
        rows = min(GRID_CHUNK, total - start)
        yield low + (high - low) * rng.random((rows, d))


def box_grid(low: Any, high: Any, grid_points: int, seed: int = GRID_SEED) -> np.ndarray:
    """Points filling the box [low, high] (per-coordinate bounds).

    d = 2: the regular grid of ``grid_points`` per axis (np.linspace, both ends included),
    grid_points² points. d ≠ 2: grid_points² points drawn uniformly in the box with
    ``np.random.default_rng(seed)`` (seed GRID_SEED = 0), in chunks of GRID_CHUNK rows.
    A zero-width axis (e.g. a dead unit) puts every point on its single value.
    """
    return np.concatenate(list(_grid_chunks(low, high, grid_points, seed)), axis=0)


def pair_grid_agreement(
    W: Any,
    b: Any,
    U: Any,
    c: Any,
    pairs: Sequence[tuple[int, int]],
    low: Any,
    high: Any,
    grid_points: int,
) -> np.ndarray:
    """For each pair (i, j): share of grid points where [(W_j − W_i)·h + b_j − b_i > 0] equals
    [(U_j − U_i)·h + c_j − c_i > 0], over :func:`box_grid` (low, high, grid_points)."""
    return PairGrid(W, b, pairs, low, high, grid_points).agreement(U, c)


#: The largest grid (bytes) a :class:`PairGrid` keeps between fits; a larger one is drawn again
#: (the same points) for every fit.
KEEP_GRID_BYTES = 32 * 2**20


class PairGrid:
    """:func:`pair_grid_agreement` of one network layer (W, b) against many fits (U, c) over
    the same box: the grid and the network's side of every pair boundary at every grid point
    are computed once, each fit's side once per fit. The same numbers as computing both per fit."""

    def __init__(self, W: Any, b: Any, pairs: Sequence[tuple[int, int]], low: Any, high: Any,
                 grid_points: int):
        W, b = np.asarray(W, dtype=np.float64), _vector(b)
        self.first = np.array([i for i, _ in pairs], dtype=np.int64)
        self.second = np.array([j for _, j in pairs], dtype=np.int64)
        self.box = (low, high, grid_points)
        keep = grid_points * grid_points * max(1, _vector(low).size) * 8 <= KEEP_GRID_BYTES
        self.grids = list(_grid_chunks(low, high, grid_points)) if keep else None
        self.net_sides = []
        for grid in self._chunks():
            net = grid @ W.T + b
            self.net_sides.append((net[:, self.second] - net[:, self.first]) > 0)
        self.total = sum(side.shape[0] for side in self.net_sides)

    def _chunks(self) -> Iterator[np.ndarray]:
        return iter(self.grids) if self.grids is not None else _grid_chunks(*self.box)

    def agreement(self, U: Any, c: Any) -> np.ndarray:
        """Per pair, the share of grid points on whose side the fit (U, c) agrees."""
        U, c = np.asarray(U, dtype=np.float64), _vector(c)
        agree = np.zeros(self.first.size, dtype=np.int64)
        if self.total == 0:
            return np.ones(self.first.size)
        for grid, net_side in zip(self._chunks(), self.net_sides):
            svm = grid @ U.T + c
            svm_side = (svm[:, self.second] - svm[:, self.first]) > 0
            agree += np.sum(net_side == svm_side, axis=0)
        return agree / self.total


# --------------------------------------------------------------------------------------------
# The per-run table
# --------------------------------------------------------------------------------------------


def _svm_error(svm_json: Path, what: str) -> io.InputFileError:
    return io.InputFileError(
        f"SVM file {svm_json}: {what}; rerun the svm step for this run "
        f"(snakemake --forcerun {svm_json})"
    )


def _fit_layer(fit: dict, K: int, d: int, svm_json: Path) -> tuple[np.ndarray, np.ndarray]:
    """The fit's (U, c); a fit without weights (a failed solve) gives zeros: flagged rows."""
    U_raw, c_raw = fit.get("W"), fit.get("b")
    if U_raw is None or len(U_raw) == 0:
        return np.zeros((K, d)), np.zeros(K)
    U = np.asarray(U_raw, dtype=np.float64)
    c = np.zeros(K) if c_raw is None else np.asarray(c_raw, dtype=np.float64).ravel()
    if U.shape != (K, d) or c.shape != (K,):
        raise _svm_error(
            svm_json,
            f"fit (epoch {fit.get('epoch')}, target {fit.get('target')}, scheme "
            f"{fit.get('scheme')}) has W of shape {U.shape} and b of shape {c.shape}, but the "
            f"feature file's last layer is {K}×{d}",
        )
    return U, c


def _check_keys(features: io.FeatureSet, svm_keys: dict, path: Path, svm_json: Path) -> None:
    for name in RUN_KEYS:
        if name in svm_keys and name in features.keys:
            if str(svm_keys[name]) != str(features.keys[name]):
                raise _svm_error(
                    svm_json,
                    f"key {name}={svm_keys[name]!r} differs from feature file {path} "
                    f"({name}={features.keys[name]!r}); the SVM was fitted on another run",
                )


def _training_columns(keys: dict[str, Any]) -> dict[str, Any]:
    """The run's training record (feature-file metadata) as the table's training columns."""
    record = keys.get("training") or {}
    until = record.get("until_loss")
    return {
        "optimizer": str(record.get("optimizer", "")),
        "loss": str(record.get("loss", "")),
        "schedule": str(record.get("schedule", "")),
        "lr": float(record.get("lr", float("nan"))),
        "batch_size": int(record.get("batch_size", -1)),
        "steps_per_epoch": int(record.get("steps_per_epoch", -1)),
        "until_loss": float("nan") if until is None else float(until),
        "stop_reason": str(record.get("stop", "")),
        "stop_epoch": int(record.get("stop_epoch", -1)),
        "bn_feature_shift": float(keys.get("bn_feature_shift", float("nan"))),
        "amp_feature_shift": float(keys.get("amp_feature_shift", float("nan"))),
    }


def _partner_fits(fits: list[dict]) -> dict[tuple[str, str], dict]:
    """The fits of one epoch by (target, scheme), to find each fit's other-target partner."""
    return {(str(f.get("target")), str(f.get("scheme"))): f for f in fits}


def _epoch_rows(
    features: io.FeatureSet, fits: list[dict], svm_json: Path, grid_points: int
) -> list[dict[str, Any]]:
    K, d = features.W.shape
    split = features.split
    train, test = split == "train", split == "test"
    labels = features.label
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise io.InputFileError(
            f"feature file labels run from {labels.min()} to {labels.max()} but the last layer has "
            f"{K} outputs; labels must be 0..{K - 1}"
        )
    H_train, y_train = features.h[train], labels[train]
    H_test, y_test = features.h[test], labels[test]
    logits_train, logits_test = features.logits[train], features.logits[test]
    index_train = features.index[train]
    loss_train = cross_entropy_per_sample(logits_train, y_train)
    diverged = not (np.isfinite(features.h).all() and np.isfinite(features.logits).all()
                    and np.isfinite(features.W).all() and np.isfinite(features.b).all())

    train_acc, flag_train_acc = accuracy(logits_train, y_train, return_flag=True)
    test_acc, flag_test_acc = accuracy(logits_test, y_test, return_flag=True)
    train_loss, flag_loss = cross_entropy(logits_train, y_train, return_flag=True)
    network_flag = flag_train_acc or flag_test_acc or flag_loss
    n_dead = dead_units(H_train)

    if H_train.shape[0]:
        low, high = H_train.min(axis=0), H_train.max(axis=0)
    else:
        low = high = np.zeros(d)
    pairs = list(itertools.combinations(range(K), 2))
    training = _training_columns(features.keys)
    steps = training["steps_per_epoch"]

    common = {
        "dataset": str(features.keys.get("dataset", "")),
        "arch": str(features.keys.get("arch", "")),
        "variant": str(features.keys.get("variant", BASE_VARIANT)),
        "regime": str(features.keys.get("regime", "full")),
        "seed": int(features.keys.get("seed", -1)),
        "epoch": features.epoch,
        "step": features.epoch * steps if steps > 0 else -1,
        "train_acc": train_acc,
        "test_acc": test_acc,
        "train_loss": train_loss,
        "dead_units": n_dead,
        "zero_points": zero_points(H_train),
        "diverged": diverged,
        **training,
    }
    by_target_scheme = _partner_fits(fits)
    grid = PairGrid(features.W, features.b, pairs, low, high, grid_points)
    rows: list[dict[str, Any]] = []
    for fit in fits:
        U, c = _fit_layer(fit, K, d, svm_json)
        target, scheme = str(fit.get("target")), str(fit.get("scheme"))
        # The targets' own hard-margin normals of this scheme, for the angles between targets.
        hard_layers = {t: _fit_layer(f, K, d, svm_json)[0]
                       for (t, s), f in by_target_scheme.items()
                       if s == scheme and bool(f.get("hard_margin", False))}
        hard = bool(fit.get("hard_margin", False))
        support = np.asarray(fit.get("support") or [], dtype=np.int64)
        matrix_angle, flag_matrix = matrix_angle_deg(features.W, U, return_flag=True)
        grid_agree = grid.agreement(U, c)
        fit_common = {
            **common,
            "target": target,
            "scheme": scheme,
            "separable": bool(fit.get("separable", False)),
            "hard_margin": hard,
            "matrix_angle_deg": matrix_angle,
        }
        pair_rows = []
        for (i, j), grid_value in zip(pairs, grid_agree):
            w, b = features.W[j] - features.W[i], features.b[j] - features.b[i]
            u, cc = U[j] - U[i], c[j] - c[i]
            in_train = (y_train == i) | (y_train == j)
            H_pair, y_pair = H_train[in_train], np.where(y_train[in_train] == j, 1.0, -1.0)
            one_class = not ((y_pair > 0).any() and (y_pair < 0).any())

            angle, f_angle = angle_deg(w, u, return_flag=True)
            margin_nn, f_mnn = geometric_margin(w, b, H_pair, y_pair, return_flag=True)
            margin_svm, f_msvm = geometric_margin(u, cc, H_pair, y_pair, return_flag=True)
            if scheme == "ovr":
                ratio, f_ratio = float("nan"), False  # not defined: no max-margin pair boundary
            else:
                ratio, f_ratio = margin_ratio(margin_nn, margin_svm, hard=hard, return_flag=True)
            gap, f_gap = bias_gap(w, b, H_pair, y_pair, return_flag=True)
            svm_position, f_svm_position = midpoint_position(u, cc, H_pair, y_pair,
                                                             return_flag=True)
            svm_gap, f_svm_gap = bias_gap(u, cc, H_pair, y_pair, return_flag=True)
            offset, f_offset = bias_offset(w, b, u, cc, return_flag=True)
            position, f_position = midpoint_position(w, b, H_pair, y_pair, return_flag=True)
            between, f_targets = {}, False
            for first, second in TARGET_PAIRS:
                value = float("nan")
                if first in hard_layers and second in hard_layers:
                    A, B = hard_layers[first], hard_layers[second]
                    value, flag = angle_deg(A[j] - A[i], B[j] - B[i], return_flag=True)
                    f_targets = f_targets or flag
                between[pair_angle_column(first, second)] = value

            in_test = (y_test == i) | (y_test == j)
            net_side = (logits_test[in_test, j] - logits_test[in_test, i]) > 0
            svm_side = (H_test[in_test] @ u + cc) > 0
            agree_test, f_agree = agreement(net_side, svm_side, return_flag=True)

            overlap, f_overlap = sv_overlap(
                support, loss_train[in_train], index_train[in_train], return_flag=True
            )
            flags = (f_angle, f_mnn, f_msvm, f_ratio, f_gap, f_svm_position, f_svm_gap, f_offset,
                     f_position, f_targets, f_agree, f_overlap)
            pair_rows.append(
                {
                    **fit_common,
                    "pair": f"{i}-{j}",
                    "angle_deg": angle,
                    "margin_nn": margin_nn,
                    "margin_svm": margin_svm,
                    "margin_ratio": ratio,
                    "bias_gap": gap,
                    "bias_gap_abs": abs(gap),
                    "svm_midpoint_position": svm_position,
                    "svm_bias_gap": svm_gap,
                    "bias_gap_vs_svm_abs": abs(gap - svm_gap),
                    "bias_offset": offset,
                    "bias_offset_abs": abs(offset),
                    "midpoint_position": position,
                    **between,
                    "agreement_test": agree_test,
                    "agreement_grid": float(grid_value),
                    "w_norm": float(np.linalg.norm(w)),
                    "sv_overlap": overlap,
                    "degenerate": bool(any(flags) or one_class or flag_matrix or network_flag),
                }
            )
        rows.extend(pair_rows)
        if K > 2:
            mean_row = {**fit_common, "pair": "mean"}
            for name in PAIR_METRICS:
                # A signed quantity of different pairs would cancel in a mean: the mean row
                # holds its |·| mean (bias_gap_abs, ...) instead.
                mean_row[name] = (float("nan") if name in SIGNED_PAIR_METRICS else
                                  float(np.mean([row[name] for row in pair_rows])))
            mean_row["degenerate"] = any(row["degenerate"] for row in pair_rows)
            rows.append(mean_row)
    return rows


def run_metrics(feature_files: Sequence[str | Path], svm_json: str | Path, grid_points: int = 200):
    """The metrics table of one run (see the module docstring for the columns).

    Every feature file's epoch must have at least one fit in ``svm_json`` (fits are matched by
    epoch); fits of epochs without a feature file are ignored.
    """
    import pandas as pd

    svm_json = Path(svm_json)
    if int(grid_points) < 1:
        raise ValueError(f"grid_points must be a positive integer, got {grid_points}")
    content = io.read_json(svm_json)
    if not isinstance(content, dict) or not isinstance(content.get("fits"), list):
        raise _svm_error(svm_json, "no 'fits' list: not an svm.json")
    by_epoch: dict[int, list[dict]] = {}
    for fit in content["fits"]:
        by_epoch.setdefault(int(fit["epoch"]), []).append(fit)
    svm_keys = content.get("keys") or {}

    rows: list[dict[str, Any]] = []
    for path in feature_files:
        path = Path(path)
        features = io.read_features(path)
        _check_keys(features, svm_keys, path, svm_json)
        fits = by_epoch.get(features.epoch)
        if not fits:
            raise _svm_error(
                svm_json,
                f"no fit for epoch {features.epoch} of feature file {path} (fitted epochs: "
                f"{sorted(by_epoch)})",
            )
        rows.extend(_epoch_rows(features, fits, svm_json, int(grid_points)))

    frame = pd.DataFrame(rows, columns=COLUMNS)
    strings = ("dataset", "arch", "variant", "regime", "target", "scheme", "pair",
               "invalid_reason", "optimizer", "loss", "schedule", "stop_reason")
    booleans = ("separable", "hard_margin", "degenerate", "diverged", "valid")
    integers = ("seed", "epoch", "step", "dead_units", "zero_points", "batch_size",
                "steps_per_epoch",
                "stop_epoch")
    floats = [c for c in COLUMNS if c not in strings + booleans + integers]
    frame = frame.astype({name: "int64" for name in integers})
    frame[floats] = frame[floats].astype("float64")
    frame = frame.astype({"separable": bool, "hard_margin": bool, "degenerate": bool,
                          "diverged": bool})
    # Safety net: a non-finite value (e.g. logits of a diverged network) becomes 0, flagged;
    # the NaN of a column that does not apply to a row stays (NOT_APPLICABLE_NAN).
    checked = [c for c in floats if c not in NOT_APPLICABLE_NAN]
    values = frame[checked].to_numpy()
    bad = ~np.isfinite(values)
    for name in NOT_APPLICABLE_NAN:
        bad_inf = np.isinf(frame[name].to_numpy())
        frame.loc[bad_inf, "degenerate"] = True
        frame.loc[bad_inf, name] = 0.0
    if bad.any():
        frame.loc[bad.any(axis=1), "degenerate"] = True
        frame[checked] = frame[checked].where(~bad, 0.0)
    frame["valid"], frame["invalid_reason"] = validity.assess(frame)
    return frame


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``nnboundary metrics --features DIR --svm svm.json --output metrics.parquet``."""
    parser = argparse.ArgumentParser(
        prog="nnboundary metrics",
        description="Compare each checkpoint's last layer with the SVM fits of its epoch.",
    )
    parser.add_argument("--features", required=True, type=Path, nargs="+",
                        help="run folder of feature files, one per run")
    parser.add_argument("--svm", required=True, type=Path, nargs="+",
                        help="svm.json of the same run, one per run")
    parser.add_argument("--output", required=True, type=Path, nargs="+",
                        help="metrics Parquet file to write, one per run")
    parser.add_argument(
        "--settings", default="", help='JSON object, e.g. {"grid_points": 200} (the default)'
    )
    args = parser.parse_args(argv)
    try:
        settings = parse_settings(args.settings, DEFAULT_SETTINGS)
    except ConfigError as err:
        parser.error(str(err))
    grid_points = settings["grid_points"]
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 1:
        parser.error(f"settings key grid_points must be a positive integer, got {grid_points!r}")

    for features, svm, output in per_run(parser, args, ("features", "svm", "output")):
        frame = run_metrics(io.list_feature_files(features), svm, grid_points)
        metadata = {"stage": "metrics", "settings": json.dumps({"grid_points": grid_points})}
        for name in RUN_KEYS:
            if len(frame):
                metadata[name] = str(frame[name].iloc[0])
        io.write_table(output, frame, metadata)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
