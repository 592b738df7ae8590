"""The metrics table of a run: how close is the network's last layer to the hard-margin SVM?

For every checkpoint (feature file) and every SVM fit of that epoch (``svm.json``), compare the
network's last layer (W, b) with the SVM's (U, c), both acting on the bottleneck features h.
:func:`checkpoint` and :func:`checkpoint_rows` build the rows from arrays: the ``metrics``
stage (:func:`run_metrics`, from files) and :func:`nnboundary.measure` (from a model's arrays)
both go through them.

Binary notation (multi-class: per class pair i < j, with class j playing +1):
labels y ∈ {−1, +1} (+1 = the larger class label), network normal w = W₁ − W₀ and bias
b = b₁ − b₀, SVM normal u = U₁ − U₀ and bias c = c₁ − c₀.

Output: one row per (epoch, target, scheme, pair); columns (:data:`COLUMNS`)

================== =================================================================================
dataset, arch,     run keys (from the feature file; ``variant`` is ``base`` or the ablation values,
variant, regime,   ``regime`` is ``full`` or ``retrain_last``)
seed, epoch
target, scheme     the SVM fit (``svc``/``homog``/``origin``, :mod:`nnboundary.settings.targets`;
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
train_acc,         the full network's accuracy on train / test and mean cross-entropy on train
test_acc,          and on test, from the stored logits (the same on every row of an epoch)
train_loss,
test_loss
test_bias_gap,     the network's bias gap on the pair's test points (:func:`separated_bias_gap`):
test_bias_gap_abs  where its boundary sits between the test classes; NaN where they overlap
                   along w (a test error on that side); the ``mean`` row: the mean |·| only
w_norm             ‖w‖ of the pair (mean row: mean over pairs)
dead_units         bottleneck units exactly 0 on every train point             (:func:`dead_units`)
zero_points        train points whose features are exactly 0 (every bottleneck unit off): they sit
                   at the origin of feature space, where only a bias can classify them, so no
                   separator through the origin exists (:func:`zero_points`)
zero_class,        the class with the largest share of its train points at h = 0, and that share
zero_class_share   (:func:`zero_class`; −1 and 0 when no point is at 0): share 1, a whole class
                   at the origin, classified by the last layer's bias alone
sv_overlap         |S ∩ T|/|S|: S the fit's support vectors of the pair, T the |S| highest-loss
                   train points of the pair                                     (:func:`sv_overlap`)
matrix_angle_deg   angle between the centred W and U (the same on every row of a fit)
                   (:func:`matrix_angle_deg`)
degenerate         True when any value of the row used a convention below instead of its formula
diverged           the checkpoint's features or logits are not all finite
valid,             whether the row is a measurement, and if not why (:mod:`nnboundary.measures.validity`);
invalid_reason     tables and figures use valid rows only
optimizer, loss,   what the run trained with (:func:`nnboundary.training.train.training_record`): lr is the
schedule, lr,      step actually used (retrain_last with lr_relative: the absolute step; with
batch_size,        schedule loss_scaled: the base step it scales), until_loss the stopping loss
steps_per_epoch,   (NaN: none), stop_reason / stop_epoch how and when the run stopped
until_loss,        (:data:`nnboundary.training.loop.STOP_REASONS`)
stop_reason,
stop_epoch
bn_feature_shift   BatchNorm networks: ‖H_seen − H_eval‖_F/‖H_eval‖_F on the train set, H_seen the
                   features in the mode the network was trained in at this checkpoint, H_eval the
                   eval-mode features the SVM is fitted on (NaN without BatchNorm)
amp_feature_shift  with amp bf16: the same between bf16-autocast and float32 eval-mode features
================== =================================================================================

The metric functions and their conventions are :mod:`nnboundary.measures.geometry`'s; a row
with a convention value is flagged ``degenerate`` and is never a measurement
(:mod:`nnboundary.measures.validity`). NaN appears only in the columns of
:data:`NOT_APPLICABLE_NAN`, where a quantity does not apply to a row.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..formats.features import FeatureSet, read_features, row_keys_of
from ..formats.svmfile import fit_layer, read_svm
from ..settings import schema
from ..settings.keys import CELL_KEYS, RUN_KEYS
from ..settings.targets import PAIR_ANGLE_COLUMNS, TARGET_PAIRS, pair_angle_column
from . import validity
from .geometry import (accuracy, agreement, angle_deg, bias_gap, bias_offset, cross_entropy,
                       cross_entropy_per_sample, dead_units, geometric_margin, margin_ratio,
                       matrix_angle_deg, midpoint_position, separated_bias_gap, sv_overlap,
                       zero_class, zero_points)
from .grid_agreement import PairGrid


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
    "test_bias_gap",
    "test_bias_gap_abs",
]
#: Signed per-pair metrics: the multi-class ``mean`` row leaves them empty (NaN), since signs of
#: different pairs would cancel; it holds the mean of their absolute values instead.
SIGNED_PAIR_METRICS = ("bias_gap", "svm_bias_gap", "bias_offset", "midpoint_position",
                       "svm_midpoint_position", "test_bias_gap")
#: Metrics of the whole network at one epoch (the same on every row of that epoch).
NETWORK_METRICS = ["train_acc", "test_acc", "train_loss", "test_loss", "dead_units",
                   "zero_points", "zero_class_share"]
#: What the run trained with (:func:`nnboundary.training.train.training_record`, from the feature
#: file's metadata; empty / NaN / -1 for feature files written without it).
TRAINING_COLUMNS = ["optimizer", "loss", "schedule", "lr", "batch_size", "steps_per_epoch",
                    "until_loss", "stop_reason", "stop_epoch", "bn_feature_shift",
                    "amp_feature_shift"]
#: Columns that are NaN where they do not apply (not a convention, not a failure):
#: ``margin_ratio`` for one-vs-rest fits, the angles between targets without both targets'
#: hard-margin fits, ``lr`` and ``until_loss`` without a training record (or a stopping loss),
#: the feature shifts of networks without BatchNorm or bf16, the test bias gap where the test
#: classes overlap along the network's normal, the test columns without a test set
#: (:func:`nnboundary.measures.measure.measure` called without one; the pipeline always has
#: one), and the signed pair metrics on the multi-class ``mean`` row.
NOT_APPLICABLE_NAN = ("margin_ratio", *PAIR_ANGLE_COLUMNS, "lr", "until_loss",
                      "bn_feature_shift", "amp_feature_shift", "test_bias_gap_abs", "test_acc",
                      "test_loss", "agreement_test") + SIGNED_PAIR_METRICS

#: Every column of the table, in order.
COLUMNS = (
    [*RUN_KEYS, "epoch", "step", "target", "scheme", "pair", "separable", "hard_margin"]
    + PAIR_METRICS
    + NETWORK_METRICS
    + ["zero_class", "matrix_angle_deg", "degenerate", "diverged", "valid", "invalid_reason"]
    + TRAINING_COLUMNS
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


@dataclass
class Checkpoint:
    """One checkpoint's last layer (W, b) and features, split into train and test, and what
    every row of it shares (``common``: the run keys, the network's own metrics, the training
    columns). Built by :func:`checkpoint`."""

    W: np.ndarray
    b: np.ndarray
    H_train: np.ndarray
    y_train: np.ndarray
    H_test: np.ndarray
    y_test: np.ndarray
    logits_test: np.ndarray
    index_train: np.ndarray
    loss_train: np.ndarray
    common: dict[str, Any]
    network_flag: bool
    pairs: list[tuple[int, int]]
    has_test: bool


def checkpoint(W: np.ndarray, b: np.ndarray, H_train: np.ndarray, y_train: np.ndarray,
               H_test: np.ndarray, y_test: np.ndarray, *, logits_train: np.ndarray | None = None,
               logits_test: np.ndarray | None = None, index_train: np.ndarray | None = None,
               row_keys: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
               has_test: bool = True) -> Checkpoint:
    """A :class:`Checkpoint` from arrays: the last layer W (K, d), b (K,), the train and test
    features and labels (0..K−1). ``logits_*``: the network's own (default H·Wᵀ + b);
    ``index_train``: the train rows' sample indices, those of the fits' support (default
    0..n−1); ``row_keys``: the run keys, epoch and step (default: empty, as for a feature file
    without them); ``training``: the feature file's metadata (:func:`_training_columns`);
    ``has_test`` false: no test set, its columns NaN (not applicable) instead of conventions."""
    K = W.shape[0]
    logits_train = H_train @ W.T + b if logits_train is None else logits_train
    logits_test = H_test @ W.T + b if logits_test is None else logits_test
    index_train = np.arange(H_train.shape[0]) if index_train is None else index_train
    diverged = not all(np.isfinite(a).all() for a in (H_train, H_test, logits_train, logits_test,
                                                       W, b))
    train_acc, flag_train_acc = accuracy(logits_train, y_train, return_flag=True)
    train_loss, flag_loss = cross_entropy(logits_train, y_train, return_flag=True)
    if has_test:
        test_acc, flag_test_acc = accuracy(logits_test, y_test, return_flag=True)
        test_loss, flag_test_loss = cross_entropy(logits_test, y_test, return_flag=True)
    else:
        test_acc = test_loss = float("nan")
        flag_test_acc = flag_test_loss = False
    collapsed, share = zero_class(H_train, y_train, K)
    common = {
        **(row_keys if row_keys is not None else row_keys_of({}, -1)),
        "train_acc": train_acc,
        "test_acc": test_acc,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "dead_units": dead_units(H_train),
        "zero_points": zero_points(H_train),
        "zero_class": collapsed,
        "zero_class_share": share,
        "diverged": diverged,
        **_training_columns(training or {}),
    }
    return Checkpoint(W, b, H_train, y_train, H_test, y_test, logits_test, index_train,
                      cross_entropy_per_sample(logits_train, y_train), common,
                      flag_train_acc or flag_test_acc or flag_loss or flag_test_loss,
                      list(itertools.combinations(range(K), 2)), has_test)


def _checkpoint(features: FeatureSet) -> Checkpoint:
    """:func:`checkpoint` of one feature file, with its stored logits, indices and keys."""
    K = features.W.shape[0]
    train, test = features.split == "train", features.split == "test"
    labels = features.label
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise InputFileError(
            f"feature file labels run from {labels.min()} to {labels.max()} but the last layer has "
            f"{K} outputs; labels must be 0..{K - 1}"
        )
    return checkpoint(features.W, features.b, features.h[train], labels[train], features.h[test],
                      labels[test], logits_train=features.logits[train],
                      logits_test=features.logits[test], index_train=features.index[train],
                      row_keys=features.row_keys, training=features.keys)


def _pair_row(point: Checkpoint, i: int, j: int, U: np.ndarray, c: np.ndarray,
              fit: dict, hard_layers: dict[str, np.ndarray]) -> tuple[dict[str, Any], bool]:
    """The metrics of class pair (i, j) of one fit (U, c), and whether any used a convention."""
    scheme = str(fit.get("scheme"))
    hard = bool(fit.get("hard_margin", False))
    w, b = point.W[j] - point.W[i], point.b[j] - point.b[i]
    u, cc = U[j] - U[i], c[j] - c[i]
    in_train = (point.y_train == i) | (point.y_train == j)
    H_pair = point.H_train[in_train]
    y_pair = np.where(point.y_train[in_train] == j, 1.0, -1.0)
    one_class = not ((y_pair > 0).any() and (y_pair < 0).any())
    angle, f_angle = angle_deg(w, u, return_flag=True)
    margin_nn, f_mnn = geometric_margin(w, b, H_pair, y_pair, return_flag=True)
    margin_svm, f_msvm = geometric_margin(u, cc, H_pair, y_pair, return_flag=True)
    if scheme == "ovr":
        ratio, f_ratio = float("nan"), False  # not defined: no max-margin pair boundary
    else:
        ratio, f_ratio = margin_ratio(margin_nn, margin_svm, hard=hard, return_flag=True)
    gap, f_gap = bias_gap(w, b, H_pair, y_pair, return_flag=True)
    svm_position, f_svm_position = midpoint_position(u, cc, H_pair, y_pair, return_flag=True)
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
    in_test = (point.y_test == i) | (point.y_test == j)
    net_side = (point.logits_test[in_test, j] - point.logits_test[in_test, i]) > 0
    svm_side = (point.H_test[in_test] @ u + cc) > 0
    if point.has_test:
        agree_test, f_agree = agreement(net_side, svm_side, return_flag=True)
    else:
        agree_test, f_agree = float("nan"), False  # no test set: not applicable
    test_gap = separated_bias_gap(w, b, point.H_test[in_test],
                                  np.where(point.y_test[in_test] == j, 1.0, -1.0))
    support = np.asarray(fit.get("support") or [], dtype=np.int64)
    overlap, f_overlap = sv_overlap(support, point.loss_train[in_train],
                                    point.index_train[in_train], return_flag=True)
    row = {
        "pair": f"{i}-{j}", "angle_deg": angle, "margin_nn": margin_nn,
        "margin_svm": margin_svm, "margin_ratio": ratio, "bias_gap": gap,
        "bias_gap_abs": abs(gap), "svm_midpoint_position": svm_position,
        "svm_bias_gap": svm_gap, "bias_gap_vs_svm_abs": abs(gap - svm_gap),
        "bias_offset": offset, "bias_offset_abs": abs(offset), "midpoint_position": position,
        **between, "agreement_test": agree_test, "w_norm": float(np.linalg.norm(w)),
        "sv_overlap": overlap, "test_bias_gap": test_gap, "test_bias_gap_abs": abs(test_gap),
    }
    flags = (f_angle, f_mnn, f_msvm, f_ratio, f_gap, f_svm_position, f_svm_gap, f_offset,
             f_position, f_targets, f_agree, f_overlap, one_class)
    return row, any(flags)


def _mean_row(fit_common: dict[str, Any], pair_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The multi-class ``mean`` row of a fit: the mean over its pairs of every pair metric."""
    row = {**fit_common, "pair": "mean"}
    for name in PAIR_METRICS:
        # A signed quantity of different pairs would cancel in a mean: the mean row holds its
        # |·| mean (bias_gap_abs, ...) instead.
        row[name] = (float("nan") if name in SIGNED_PAIR_METRICS else
                     float(np.mean([r[name] for r in pair_rows])))
    row["degenerate"] = any(r["degenerate"] for r in pair_rows)
    return row


def checkpoint_rows(point: Checkpoint, fits: list[dict], layer: Callable[[dict], Any],
                    grid_points: int) -> list[dict[str, Any]]:
    """Every row of one checkpoint: per fit, one per class pair, and for K > 2 the mean row.
    ``fits``: the fits' dicts (:meth:`nnboundary.svm.SVMFit.to_json`); ``layer(fit)``: its (U, c),
    or None for a fit without weights (measured against zeros, which the conventions flag)."""
    K, d = point.W.shape
    if point.H_train.shape[0]:
        low, high = point.H_train.min(axis=0), point.H_train.max(axis=0)
    else:
        low = high = np.zeros(d)

    def layer_or_zeros(fit):
        found = layer(fit)
        return found if found is not None else (np.zeros((K, d)), np.zeros(K))

    grid = PairGrid(point.W, point.b, point.pairs, low, high, grid_points)
    by_target_scheme = {(str(f.get("target")), str(f.get("scheme"))): f for f in fits}
    rows: list[dict[str, Any]] = []
    for fit in fits:
        U, c = layer_or_zeros(fit)
        scheme = str(fit.get("scheme"))
        # The targets' own hard-margin normals of this scheme, for the angles between targets.
        hard_layers = {t: layer_or_zeros(f)[0] for (t, s), f in by_target_scheme.items()
                       if s == scheme and bool(f.get("hard_margin", False))}
        matrix_angle, flag_matrix = matrix_angle_deg(point.W, U, return_flag=True)
        fit_common = {**point.common, "target": str(fit.get("target")), "scheme": scheme,
                      "separable": bool(fit.get("separable", False)),
                      "hard_margin": bool(fit.get("hard_margin", False)),
                      "matrix_angle_deg": matrix_angle}
        pair_rows = []
        for (i, j), grid_value in zip(point.pairs, grid.agreement(U, c)):
            row, flagged = _pair_row(point, i, j, U, c, fit, hard_layers)
            pair_rows.append({**fit_common, **row, "agreement_grid": float(grid_value),
                              "degenerate": bool(flagged or flag_matrix or point.network_flag)})
        rows.extend(pair_rows)
        if K > 2:
            rows.append(_mean_row(fit_common, pair_rows))
    return rows


def _typed(frame):
    """The table with its columns' types, and the safety net: a non-finite value (e.g. logits
    of a diverged network) becomes 0, flagged; the NaN of a column that does not apply to a row
    stays (:data:`NOT_APPLICABLE_NAN`)."""
    strings = (*CELL_KEYS, "target", "scheme", "pair",
               "invalid_reason", "optimizer", "loss", "schedule", "stop_reason")
    booleans = ("separable", "hard_margin", "degenerate", "diverged", "valid")
    integers = ("seed", "epoch", "step", "dead_units", "zero_points", "zero_class",
                "batch_size", "steps_per_epoch", "stop_epoch")
    floats = [c for c in COLUMNS if c not in strings + booleans + integers]
    frame = frame.astype({name: "int64" for name in integers})
    frame[floats] = frame[floats].astype("float64")
    frame = frame.astype({"separable": bool, "hard_margin": bool, "degenerate": bool,
                          "diverged": bool})
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
    return frame


def run_metrics(feature_files: Sequence[str | Path], svm_json: str | Path,
                grid_points: int | None = None):
    """The metrics table of one run (see the module docstring for the columns).

    Every feature file's epoch must have at least one fit in ``svm_json`` (fits are matched by
    epoch); fits of epochs without a feature file are ignored. ``grid_points``: per axis of
    ``agreement_grid`` (default: the ``metrics`` settings' default).
    """
    if grid_points is None:
        grid_points = schema.defaults("metrics")["grid_points"]
    if int(grid_points) < 2:
        raise ValueError(f"grid_points must be an integer of at least 2, got {grid_points}")
    svm = read_svm(svm_json)
    rows: list[dict[str, Any]] = []
    for path in map(Path, feature_files):
        features = read_features(path)
        svm.check_keys(features.keys, f"feature file {path}")
        fits = svm.at(features.epoch, f" of feature file {path}")
        K, d = features.W.shape
        rows.extend(checkpoint_rows(_checkpoint(features), fits,
                                    lambda fit: fit_layer(fit, K, d, svm.path), int(grid_points)))
    return table(rows)


def table(rows: list[dict[str, Any]]):
    """The metrics table of :func:`checkpoint_rows`' rows: typed (:func:`_typed`), with
    ``valid`` and ``invalid_reason`` (:mod:`nnboundary.measures.validity`)."""
    import pandas as pd

    frame = _typed(pd.DataFrame(rows, columns=COLUMNS))
    frame["valid"], frame["invalid_reason"] = validity.assess(frame)
    return frame
