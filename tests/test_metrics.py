"""Tests of the metrics stage: every metric against a known answer, then the stage end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import nnboundary  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nnboundary.errors import InputFileError
from nnboundary.formats import features as feature_files
from nnboundary.formats import tables as table_io
from nnboundary.measures import geometry
from nnboundary.measures import grid_agreement
from nnboundary.measures import metrics
from nnboundary.stages import metrics as metrics_stage

# Soudry et al.'s toy set: support vectors (0.5, 1.5), (1.5, 0.5) for +1 and their negatives for
# −1, plus one farther point per class. Max-margin normal ∝ (1, 1): u = (0.5, 0.5), c = 0
# (yᵢ u·hᵢ = 1 on the support vectors, 2.5 on the far points), margin 1/‖u‖ = √2.
H_TOY = np.array([[0.5, 1.5], [1.5, 0.5], [2.0, 3.0], [-0.5, -1.5], [-1.5, -0.5], [-2.0, -3.0]])
Y_TOY = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
U_TOY = np.array([0.5, 0.5])
C_TOY = 0.0
MARGIN_TOY = math.sqrt(2.0)


def rotate(v: np.ndarray, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) @ v


# --------------------------------------------------------------------------------------------
# The toy set
# --------------------------------------------------------------------------------------------


def test_toy_svm_matches_scikit_learn():
    from sklearn.svm import SVC

    svc = SVC(kernel="linear", C=1e8).fit(H_TOY, Y_TOY)
    np.testing.assert_allclose(svc.coef_[0], U_TOY, atol=1e-4)
    assert abs(svc.intercept_[0] - C_TOY) < 1e-4
    assert geometry.geometric_margin(U_TOY, C_TOY, H_TOY, Y_TOY) == pytest.approx(MARGIN_TOY)
    assert geometry.geometric_margin(svc.coef_[0], svc.intercept_[0], H_TOY, Y_TOY) == (
        pytest.approx(MARGIN_TOY, rel=1e-4)
    )


def test_network_equal_to_svm():
    w, b = U_TOY.copy(), C_TOY
    assert geometry.angle_deg(w, U_TOY) == 0.0
    assert geometry.bias_offset(w, b, U_TOY, C_TOY) == 0.0
    margin = geometry.geometric_margin(w, b, H_TOY, Y_TOY)
    assert geometry.margin_ratio(margin, MARGIN_TOY) == pytest.approx(1.0)
    assert geometry.midpoint_position(w, b, H_TOY, Y_TOY) == pytest.approx(0.5)
    side = H_TOY @ w + b > 0
    assert geometry.agreement(side, H_TOY @ U_TOY + C_TOY > 0) == 1.0


@pytest.mark.parametrize("degrees", [1e-6, 0.5, 30.0, 90.0, 135.0, 180.0])
def test_known_rotation(degrees):
    w = rotate(U_TOY, degrees) * 3.0
    assert geometry.angle_deg(w, U_TOY) == pytest.approx(degrees, rel=1e-9, abs=1e-10)
    assert geometry.angle_deg(U_TOY, w) == pytest.approx(degrees, rel=1e-9, abs=1e-10)


def test_angle_matches_arccos_of_normalised_dot():
    rng = np.random.default_rng(1)
    for _ in range(20):
        w, u = rng.normal(size=5), rng.normal(size=5)
        cos = np.dot(w, u) / np.linalg.norm(w) / np.linalg.norm(u)
        expected = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        assert geometry.angle_deg(w, u) == pytest.approx(expected, abs=1e-9)


def test_known_bias_shift():
    # Move the boundary towards class +1 by half the SVM margin: −b/‖w‖ = √2/2 ⇒ b = −0.5.
    w = U_TOY.copy()
    b = -np.linalg.norm(w) * MARGIN_TOY / 2
    assert b == pytest.approx(-0.5)
    assert geometry.bias_offset(w, b, U_TOY, C_TOY) == pytest.approx(-0.5)
    # Projections: class −1 up to −√2, class +1 from √2; boundary at √2/2 ⇒ (√2/2 + √2)/(2√2).
    assert geometry.midpoint_position(w, b, H_TOY, Y_TOY) == pytest.approx(0.75)
    assert geometry.geometric_margin(w, b, H_TOY, Y_TOY) == pytest.approx(MARGIN_TOY / 2)
    # The other way: towards class −1.
    assert geometry.bias_offset(w, -b, U_TOY, C_TOY) == pytest.approx(0.5)
    assert geometry.midpoint_position(w, -b, H_TOY, Y_TOY) == pytest.approx(0.25)


def test_misclassifying_network_has_negative_margin():
    w, b = np.array([1.0, 0.0]), -1.0
    # (0.5, 1.5) with y = +1: 0.5 − 1 = −0.5 is the smallest of y(w·h + b)/‖w‖.
    assert geometry.geometric_margin(w, b, H_TOY, Y_TOY) == pytest.approx(-0.5)
    assert geometry.geometric_margin(-U_TOY, 0.0, H_TOY, Y_TOY) == pytest.approx(-2.5 * math.sqrt(2))


def test_scale_invariance():
    w, b = rotate(U_TOY, 12.0) * 2.0, 0.3
    before = (
        geometry.angle_deg(w, U_TOY),
        geometry.geometric_margin(w, b, H_TOY, Y_TOY),
        geometry.bias_offset(w, b, U_TOY, C_TOY),
        geometry.midpoint_position(w, b, H_TOY, Y_TOY),
    )
    after = (
        geometry.angle_deg(7 * w, U_TOY),
        geometry.geometric_margin(7 * w, 7 * b, H_TOY, Y_TOY),
        geometry.bias_offset(7 * w, 7 * b, U_TOY, C_TOY),
        geometry.midpoint_position(7 * w, 7 * b, H_TOY, Y_TOY),
    )
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Against scikit-learn / numpy
# --------------------------------------------------------------------------------------------


def test_cross_entropy_and_accuracy_match_scikit_learn():
    from scipy.special import softmax
    from sklearn.metrics import accuracy_score, log_loss

    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3.0, size=(50, 4))
    labels = np.arange(50) % 4
    expected = log_loss(labels, softmax(logits, axis=1), labels=[0, 1, 2, 3])
    assert geometry.cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-9)
    assert geometry.accuracy(logits, labels) == pytest.approx(
        accuracy_score(labels, logits.argmax(axis=1))
    )
    assert geometry.accuracy(logits.argmax(axis=1), labels) == geometry.accuracy(logits, labels)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert geometry.cross_entropy(logits, [0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert geometry.cross_entropy(logits, [1, 1]) == pytest.approx(500.0)


def test_matrix_angle():
    rng = np.random.default_rng(3)
    W, U = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    shifted = W + rng.normal(size=4)  # the same vector on every row
    assert geometry.matrix_angle_deg(shifted, U) == pytest.approx(geometry.matrix_angle_deg(W, U))
    assert geometry.matrix_angle_deg(W + 5.0, W) == pytest.approx(0.0, abs=1e-6)
    W2, U2 = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    assert geometry.matrix_angle_deg(W2, U2) == pytest.approx(
        geometry.angle_deg(W2[1] - W2[0], U2[1] - U2[0]), abs=1e-9
    )


def test_agreement_and_dead_units():
    assert geometry.agreement([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    H = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    assert geometry.dead_units(H) == 1
    assert geometry.dead_units(np.zeros((5, 2))) == 2


def test_sv_overlap_known_answer():
    index = np.array([10, 11, 12, 13, 14])
    loss = np.array([0.1, 5.0, 3.0, 0.2, 4.0])
    # S = {11, 13} (99 is not in the pair), k = 2; the 2 highest losses: rows 11 and 14.
    assert geometry.sv_overlap([11, 13, 99], loss, index) == 0.5
    assert geometry.sv_overlap([11, 14], loss, index) == 1.0
    assert geometry.sv_overlap([10, 13], loss, index) == 0.0


def test_sv_overlap_counts_a_repeated_support_vector_once():
    index = np.array([10, 11, 12, 13, 14])
    loss = np.array([0.1, 5.0, 3.0, 0.2, 4.0])
    assert geometry.sv_overlap([13, 11, 11, 99, 13], loss, index) == 0.5  # S = {11, 13}


def test_pair_grid_agreement_known_answer():
    # the network's boundary x = 0, the fit's x = 0.5, over [-1, 1]²: 5 grid points per axis
    # (-1, -0.5, 0, 0.5, 1); they disagree where 0 < x <= 0.5 (x = 0.5), 5 of 25 points
    W, b = np.array([[0.0, 0.0], [1.0, 0.0]]), np.zeros(2)
    U, c = W, np.array([0.0, -0.5])
    value = grid_agreement.pair_grid_agreement(W, b, U, c, [(0, 1)], [-1.0, -1.0], [1.0, 1.0], 5)
    assert value.tolist() == [20 / 25]


@pytest.mark.parametrize("d, keep", [(2, True), (3, True), (3, False)])
def test_one_pair_grid_for_many_fits_gives_each_fits_own_numbers(monkeypatch, d, keep):
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(3, d)), rng.normal(size=3)
    pairs = [(0, 1), (0, 2), (1, 2)]
    low, high = -rng.random(d), rng.random(d)
    if not keep:
        monkeypatch.setattr(grid_agreement, "KEEP_GRID_BYTES", 0)  # the grid is drawn again per fit
    grid = grid_agreement.PairGrid(W, b, pairs, low, high, 30)
    assert (grid.grids is not None) == keep
    for _ in range(3):
        U, c = rng.normal(size=(3, d)), rng.normal(size=3)
        expected = []
        for i, j in pairs:  # the definition, point by point
            points = grid_agreement.box_grid(low, high, 30)
            net = points @ (W[j] - W[i]) + (b[j] - b[i]) > 0
            svm = points @ (U[j] - U[i]) + (c[j] - c[i]) > 0
            expected.append(np.mean(net == svm))
        np.testing.assert_allclose(grid.agreement(U, c), expected, rtol=0, atol=1e-12)


def test_box_grid():
    grid = grid_agreement.box_grid([0.0, -1.0], [1.0, 1.0], 5)
    assert grid.shape == (25, 2)
    assert grid.min(axis=0).tolist() == [0.0, -1.0] and grid.max(axis=0).tolist() == [1.0, 1.0]
    cloud = grid_agreement.box_grid([0.0, 0.0, 2.0], [1.0, 1.0, 2.0], 4)
    assert cloud.shape == (16, 3) and np.all(cloud[:, 2] == 2.0)
    np.testing.assert_array_equal(cloud, grid_agreement.box_grid([0.0, 0.0, 2.0], [1.0, 1.0, 2.0], 4))


# --------------------------------------------------------------------------------------------
# Degenerate cases
# --------------------------------------------------------------------------------------------


def test_degenerate_conventions():
    zero = np.zeros(2)
    assert geometry.angle_deg(zero, U_TOY, return_flag=True) == (90.0, True)
    assert geometry.angle_deg(U_TOY, zero, return_flag=True) == (90.0, True)
    assert geometry.geometric_margin(zero, 1.0, H_TOY, Y_TOY, return_flag=True) == (0.0, True)
    assert geometry.margin_ratio(1.0, 0.0, return_flag=True) == (0.0, True)
    assert geometry.bias_offset(zero, 1.0, U_TOY, 0.0, return_flag=True) == (0.0, True)
    assert geometry.midpoint_position(zero, 1.0, H_TOY, Y_TOY, return_flag=True) == (0.5, True)
    # All features zero: m₊ == m₋.
    assert geometry.midpoint_position(U_TOY, 0.0, np.zeros((6, 2)), Y_TOY, return_flag=True) == (
        0.5,
        True,
    )
    # A single class.
    assert geometry.midpoint_position(U_TOY, 0.0, H_TOY[:3], Y_TOY[:3], return_flag=True) == (
        0.5,
        True,
    )
    assert geometry.matrix_angle_deg(np.ones((3, 2)), np.eye(3, 2), return_flag=True) == (90.0, True)
    assert geometry.sv_overlap([], [1.0], [0], return_flag=True) == (0.0, True)
    assert geometry.agreement([], [], return_flag=True) == (1.0, True)
    assert geometry.cross_entropy(np.zeros((0, 2)), [], return_flag=True) == (0.0, True)
    # Non-degenerate calls say so.
    assert geometry.angle_deg(U_TOY, U_TOY, return_flag=True) == (0.0, False)


# --------------------------------------------------------------------------------------------
# The stage end to end
# --------------------------------------------------------------------------------------------

TRAINING = {"optimizer": "momentum", "lr": 0.05, "loss": "cross_entropy", "schedule": "constant",
            "epochs": 10, "batch_size": 2, "steps_per_epoch": 3, "n_train": 6}
KEYS = {"dataset": "toy", "arch": "mlp", "seed": 3}
FILE_KEYS = {**KEYS, "training": json.dumps(TRAINING)}


def no_nan(frame) -> bool:
    """No NaN in the numeric columns, except where a column does not apply (documented)."""
    numbers = frame.select_dtypes("number").drop(columns=list(metrics.NOT_APPLICABLE_NAN))
    return not numbers.isna().any().any()


def write_run(folder: Path, W, b, train, test, epochs) -> list[Path]:
    """Feature files for ``epochs`` with a fixed last layer; ``train``/``test`` = (h, labels)."""
    W, b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
    parts = {split: (y, h, h @ W.T + b) for split, (h, y) in (("train", train), ("test", test))}
    paths = []
    for epoch in epochs:
        path = folder / feature_files.feature_file_name(epoch)
        feature_files.write_features(path, {**FILE_KEYS, "epoch": epoch}, W, b, parts)
        paths.append(path)
    return paths


def fit_record(epoch, target, scheme, U, c, support, separable=True):
    return {
        "epoch": epoch,
        "target": target,
        "scheme": scheme,
        "W": np.asarray(U, dtype=np.float64).tolist(),
        "b": np.asarray(c, dtype=np.float64).tolist(),
        "separable": separable,
        "hard_margin": separable,
        "C": None,
        "min_margin": 1.0,
        "support": list(support),
        "seconds": 0.01,
        "status": "ok",
    }


def binary_layer(u, c):
    u = np.asarray(u, dtype=np.float64)
    return np.stack([-u / 2, u / 2]), np.array([-c / 2, c / 2])


def three_class_data():
    rng = np.random.default_rng(4)
    centres = np.array([[4.0, 1.0], [1.0, 4.0], [4.0, 4.0]])  # ReLU-like non-negative features
    labels = np.repeat(np.arange(3), 10)
    h = centres[labels] + rng.uniform(-0.5, 0.5, size=(30, 2))
    return h, labels, centres


def test_run_metrics_binary(tmp_path):
    labels = (Y_TOY > 0).astype(int)
    W, b = binary_layer(U_TOY, C_TOY)
    files = write_run(tmp_path / "run", W, b, (H_TOY, labels), (H_TOY * 1.1, labels), [1, 10])
    U_rot, c_rot = binary_layer(rotate(U_TOY, 30.0), 0.0)
    fits = []
    for epoch in (1, 10):
        fits.append(fit_record(epoch, "svc", "binary", W, b, [0, 1, 3, 4]))
        fits.append(fit_record(epoch, "homog", "binary", U_rot, c_rot, [0, 1, 3, 4]))
    svm = tmp_path / "svm.json"
    table_io.write_json(svm, {"keys": KEYS, "fits": fits})

    frame = metrics.run_metrics(files, svm, grid_points=50)
    assert list(frame.columns) == metrics.COLUMNS
    assert len(frame) == 4 and set(frame["pair"]) == {"0-1"}
    assert no_nan(frame)
    equal = frame[frame["target"] == "svc"]
    np.testing.assert_allclose(equal["angle_deg"], 0.0, atol=1e-9)
    np.testing.assert_allclose(equal["margin_ratio"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(equal["bias_offset"], 0.0, atol=1e-9)
    np.testing.assert_allclose(equal["midpoint_position"], 0.5, atol=1e-6)
    np.testing.assert_allclose(equal["agreement_test"], 1.0)
    np.testing.assert_allclose(equal["agreement_grid"], 1.0)
    np.testing.assert_allclose(equal["train_acc"], 1.0)
    np.testing.assert_allclose(equal["w_norm"], np.linalg.norm(U_TOY))
    assert not equal["degenerate"].any()
    rotated = frame[frame["target"] == "homog"]
    np.testing.assert_allclose(rotated["angle_deg"], 30.0, atol=1e-9)
    np.testing.assert_allclose(rotated["matrix_angle_deg"], rotated["angle_deg"], atol=1e-9)
    assert (rotated["agreement_grid"] < 1.0).all()
    # Support vectors {0, 1, 3, 4}: the 4 highest-loss points are the 4 nearest the boundary.
    np.testing.assert_allclose(frame["sv_overlap"], 1.0)
    assert frame["dead_units"].tolist() == [0] * 4
    assert frame["epoch"].tolist() == [1, 1, 10, 10]
    assert frame["dataset"].iloc[0] == "toy" and frame["seed"].iloc[0] == 3
    # The training record travels into every row; steps = epoch x steps per epoch.
    assert frame["step"].tolist() == [3, 3, 30, 30]
    assert (frame["lr"] == 0.05).all() and (frame["optimizer"] == "momentum").all()
    assert (frame["loss"] == "cross_entropy").all() and (frame["batch_size"] == 2).all()
    # The two targets are 30 degrees apart; the network equals svc, so it is valid and exact.
    np.testing.assert_allclose(frame["svc_homog_angle_deg"], 30.0, atol=1e-9)
    np.testing.assert_allclose(equal["bias_gap"], 0.0, atol=1e-6)
    np.testing.assert_allclose(equal["svm_midpoint_position"], 0.5, atol=1e-6)
    np.testing.assert_allclose(equal["svm_bias_gap"], 0.0, atol=1e-6)
    assert frame["valid"].all() and (frame["invalid_reason"] == "").all()


def test_run_metrics_three_classes_and_main(tmp_path):
    h, labels, centres = three_class_data()
    W = centres / 4  # nearest class centre as a linear classifier
    b = -np.sum(centres**2, axis=1) / 8
    folder = tmp_path / "run"
    write_run(folder, W, b, (h, labels), (h[::2], labels[::2]), [7])
    U_shifted = W + np.array([3.0, -2.0])  # same pairwise boundaries as W
    b_shifted = b + 1.5
    fits = [
        fit_record(7, "svc", "crammer_singer", U_shifted, b_shifted, [0, 10, 20]),
        fit_record(7, "homog", "ovr", np.eye(3, 2), np.zeros(3), [0, 1]),
    ]
    svm = tmp_path / "svm.json"
    table_io.write_json(svm, {"keys": KEYS, "fits": fits})
    output = tmp_path / "out" / "metrics.parquet"

    assert metrics_stage.main(
        [
            "--features", str(folder),
            "--svm", str(svm),
            "--output", str(output),
            "--settings", json.dumps({"grid_points": 40}),
        ]
    ) == 0  # fmt: skip
    frame = table_io.read_table(output)
    assert list(frame.columns) == metrics.COLUMNS
    assert len(frame) == 8
    assert frame["pair"].tolist() == ["0-1", "0-2", "1-2", "mean"] * 2
    assert no_nan(frame)
    same = frame[frame["target"] == "svc"]
    np.testing.assert_allclose(same["angle_deg"], 0.0, atol=1e-9)
    np.testing.assert_allclose(same["matrix_angle_deg"], 0.0, atol=1e-6)
    np.testing.assert_allclose(same["bias_offset_abs"], 0.0, atol=1e-9)
    np.testing.assert_allclose(same["agreement_grid"], 1.0)
    np.testing.assert_allclose(same["agreement_test"], 1.0)
    pairs = same[same["pair"] != "mean"]
    mean = same[same["pair"] == "mean"].iloc[0]
    for name in metrics.PAIR_METRICS:
        if name in metrics.SIGNED_PAIR_METRICS:
            assert np.isnan(mean[name])  # signs of different pairs must not cancel
        else:
            assert mean[name] == pytest.approx(pairs[name].mean(), nan_ok=True)
    # Pair 0-2 margin by hand: w = W₂ − W₀ on classes 0 (−1) and 2 (+1).
    w, bb = W[2] - W[0], b[2] - b[0]
    mask = labels != 1
    y = np.where(labels[mask] == 2, 1.0, -1.0)
    h32 = h[mask].astype(np.float32).astype(np.float64)  # features are stored as float32
    expected = np.min(y * (h32 @ w + bb)) / np.linalg.norm(w)
    assert pairs[pairs["pair"] == "0-2"]["margin_nn"].iloc[0] == pytest.approx(expected)
    assert (pairs["margin_nn"] > 0).all() and (pairs["midpoint_position"].between(0, 1)).all()
    # Full-network metrics are the same on every row.
    np.testing.assert_allclose(frame["train_acc"], 1.0)
    assert frame["train_acc"].nunique() == 1 and frame["train_loss"].nunique() == 1
    other = frame[frame["target"] == "homog"]
    assert other["matrix_angle_deg"].nunique() == 1
    # One-vs-rest: no max-margin pair boundary, so no margin ratio (NaN, not a convention).
    assert other["margin_ratio"].isna().all() and same["margin_ratio"].notna().all()
    # No other target of the same scheme: the angle between the targets does not apply.
    assert frame["svc_homog_angle_deg"].isna().all()
    # The mean row holds the mean |bias gap| over pairs: signed values cannot cancel in it.
    assert mean["bias_gap_abs"] == pytest.approx(pairs["bias_gap"].abs().mean())
    assert mean["bias_gap_abs"] >= abs(pairs["bias_gap"].mean())


def test_degenerate_run_dead_bottleneck(tmp_path):
    labels = np.array([0, 0, 0, 1, 1, 1])
    h = np.zeros((6, 2))  # a dead ReLU bottleneck
    W, b = binary_layer(U_TOY, 0.2)
    files = write_run(tmp_path / "run", W, b, (h, labels), (h[:2], labels[:2]), [1])
    zero_fit = fit_record(1, "svc", "binary", np.zeros((2, 2)), np.zeros(2), [], separable=False)
    none_fit = {**zero_fit, "target": "homog", "W": None, "b": None, "status": "failed"}
    svm = tmp_path / "svm.json"
    table_io.write_json(svm, {"keys": KEYS, "fits": [zero_fit, none_fit]})
    frame = metrics.run_metrics(files, svm, grid_points=10)
    assert len(frame) == 2
    assert no_nan(frame)
    assert frame["degenerate"].all()
    assert frame["dead_units"].tolist() == [2, 2]
    assert frame["angle_deg"].tolist() == [90.0, 90.0]
    assert frame["midpoint_position"].tolist() == [0.5, 0.5]
    assert not frame["valid"].any()
    for reason in ("not_separable", "soft_margin", "dead_unit", "convention"):
        assert frame["invalid_reason"].str.contains(reason).all()


def test_zero_network_normal_is_flagged(tmp_path):
    labels = (Y_TOY > 0).astype(int)
    W, b = np.zeros((2, 2)), np.zeros(2)
    files = write_run(tmp_path / "run", W, b, (H_TOY, labels), (H_TOY, labels), [2])
    svm = tmp_path / "svm.json"
    U, c = binary_layer(U_TOY, C_TOY)
    table_io.write_json(svm, {"keys": KEYS, "fits": [fit_record(2, "svc", "binary", U, c, [0])]})
    frame = metrics.run_metrics(files, svm)
    assert no_nan(frame)
    row = frame.iloc[0]
    assert row["degenerate"] and row["angle_deg"] == 90.0 and row["margin_nn"] == 0.0
    assert row["margin_svm"] == pytest.approx(MARGIN_TOY)


def test_missing_epoch_names_file_and_step(tmp_path):
    labels = (Y_TOY > 0).astype(int)
    W, b = binary_layer(U_TOY, C_TOY)
    files = write_run(tmp_path / "run", W, b, (H_TOY, labels), (H_TOY, labels), [1, 5])
    svm = tmp_path / "svm.json"
    table_io.write_json(svm, {"keys": KEYS, "fits": [fit_record(1, "svc", "binary", W, b, [0])]})
    with pytest.raises(InputFileError, match=r"epoch 5.*epoch000005\.parquet.*svm"):
        metrics.run_metrics(files, svm)


def test_margin_ratio_is_flagged_for_a_soft_fit():
    from nnboundary.measures.geometry import margin_ratio

    assert margin_ratio(0.5, 0.25, return_flag=True) == (2.0, False)
    assert margin_ratio(0.5, 1e-12, hard=False, return_flag=True) == (0.0, True)
    assert margin_ratio(0.5, -0.1, return_flag=True) == (0.0, True)


# --------------------------------------------------------------------------------------------
# The bias gap: the shift of the boundary, unmoved by a rotation
# --------------------------------------------------------------------------------------------


def test_bias_gap_is_one_minus_twice_the_midpoint_position():
    rng = np.random.default_rng(1)
    for _ in range(20):
        w, b = rng.normal(size=2), rng.normal()
        gap = geometry.bias_gap(w, b, H_TOY, Y_TOY)
        assert gap == pytest.approx(1.0 - 2.0 * geometry.midpoint_position(w, b, H_TOY, Y_TOY))


def test_bias_gap_of_a_pure_shift_is_its_known_value():
    """Along the SVM normal the toy classes' closest points are ±√2 (the margin): moving the
    boundary by s towards class +1 gives bias_gap −s/√2, the same as the bias offset to the
    hard-margin SVM (both in units of the half gap); touching a class gives ∓1."""
    unit = U_TOY / np.linalg.norm(U_TOY)
    for s in (0.0, 0.3, math.sqrt(2) / 2, -1.0):
        b = C_TOY - s * np.linalg.norm(U_TOY)  # boundary at −b/‖w‖ = s along û
        assert geometry.bias_gap(U_TOY, b, H_TOY, Y_TOY) == pytest.approx(-s / math.sqrt(2))
        assert geometry.bias_offset(U_TOY, b, U_TOY, C_TOY) == pytest.approx(-s / math.sqrt(2))
    assert geometry.bias_gap(unit, -math.sqrt(2), H_TOY, Y_TOY) == pytest.approx(-1.0)
    assert geometry.bias_gap(unit, math.sqrt(2), H_TOY, Y_TOY) == pytest.approx(1.0)


def test_a_rotation_about_the_midpoint_moves_the_offset_but_not_the_bias_gap():
    """The toy set moved 100 SVM margins along its boundary: the set is symmetric about P, so
    every boundary through P is midway along its own normal. Rotating the SVM's boundary by
    0.3° about P leaves bias_gap at 0 but moves bias_offset by −100·sin(0.3°) ≈ −0.52."""
    margin = MARGIN_TOY
    along = rotate(U_TOY / np.linalg.norm(U_TOY), 90.0)
    P = 100.0 * margin * along
    H = H_TOY + P
    c = -float(U_TOY @ P)  # the SVM moves with the set: its boundary still passes through P
    w = rotate(U_TOY, 0.3)
    b = -float(w @ P)
    assert geometry.bias_gap(w, b, H, Y_TOY) == pytest.approx(0.0, abs=1e-9)
    assert geometry.bias_gap(U_TOY, c, H, Y_TOY) == pytest.approx(0.0, abs=1e-9)
    expected = -100.0 * math.sin(math.radians(0.3))
    assert geometry.bias_offset(w, b, U_TOY, c) == pytest.approx(expected, rel=1e-6)
    assert round(expected, 2) == -0.52


def test_bias_gap_conventions():
    assert geometry.bias_gap(np.zeros(2), 1.0, H_TOY, Y_TOY, return_flag=True) == (0.0, True)
    one_class = geometry.bias_gap(U_TOY, 0.0, H_TOY[:3], Y_TOY[:3], return_flag=True)
    assert one_class == (0.0, True)
    assert geometry.bias_gap(U_TOY, 0.0, H_TOY, Y_TOY, return_flag=True) == (0.0, False)


def test_angles_between_three_targets_and_a_target_through_the_origin(tmp_path):
    # svc = the network; homog rotated by 30°, origin by −20° (so 50° from homog), origin with
    # no bias. Every row carries the three angles between the targets; the origin rows measure
    # the network against a boundary through 0.
    labels = (Y_TOY > 0).astype(int)
    W, b = binary_layer(U_TOY, 0.3)
    files = write_run(tmp_path / "run", W, b, (H_TOY, labels), (H_TOY, labels), [1])
    U_homog, c_homog = binary_layer(rotate(U_TOY, 30.0), 0.1)
    U_origin, c_origin = binary_layer(rotate(U_TOY, -20.0), 0.0)
    fits = [fit_record(1, "svc", "binary", W, b, [0]),
            fit_record(1, "homog", "binary", U_homog, c_homog, [0]),
            fit_record(1, "origin", "binary", U_origin, c_origin, [0])]
    table_io.write_json(tmp_path / "svm.json", {"keys": KEYS, "fits": fits})
    frame = metrics.run_metrics(files, tmp_path / "svm.json", grid_points=20).set_index("target")
    np.testing.assert_allclose(frame["svc_homog_angle_deg"], 30.0, atol=1e-9)
    np.testing.assert_allclose(frame["svc_origin_angle_deg"], 20.0, atol=1e-9)
    np.testing.assert_allclose(frame["homog_origin_angle_deg"], 50.0, atol=1e-9)
    assert frame.loc["origin", "angle_deg"] == pytest.approx(20.0)
    # bias offset against c = 0: (b/‖w‖ − 0)·‖u‖
    u = U_origin[1] - U_origin[0]
    w = W[1] - W[0]
    expected = (0.3 / np.linalg.norm(w)) * np.linalg.norm(u)
    assert frame.loc["origin", "bias_offset"] == pytest.approx(expected)


def test_angles_between_targets_need_two_hard_margin_fits(tmp_path):
    # A soft origin fit (no separator through the origin) is no target: the angles that
    # involve it do not apply (NaN); svc–homog still does.
    labels = (Y_TOY > 0).astype(int)
    W, b = binary_layer(U_TOY, 0.0)
    files = write_run(tmp_path / "run", W, b, (H_TOY, labels), (H_TOY, labels), [1])
    fits = [fit_record(1, "svc", "binary", W, b, [0]),
            fit_record(1, "homog", "binary", *binary_layer(rotate(U_TOY, 10.0), 0.0), [0]),
            fit_record(1, "origin", "binary", W, np.zeros(2), [0], separable=False)]
    table_io.write_json(tmp_path / "svm.json", {"keys": KEYS, "fits": fits})
    frame = metrics.run_metrics(files, tmp_path / "svm.json", grid_points=20).set_index("target")
    np.testing.assert_allclose(frame["svc_homog_angle_deg"], 10.0, atol=1e-9)
    assert frame["svc_origin_angle_deg"].isna().all()
    assert frame["homog_origin_angle_deg"].isna().all()
    assert frame.loc["origin", "invalid_reason"].startswith("not_separable_origin,soft_margin")
    assert frame.loc["svc", "valid"] and frame.loc["homog", "valid"]


def test_separated_bias_gap_known_values_and_overlap():
    """Test points of class −1 up to −1 and of class +1 from 3 along w = (1, 0): a boundary
    at x = 1 sits midway (0), at x = 2 halfway to class +1 (−0.5); where the classes overlap
    along w, or a class is missing, there is no gap: NaN."""
    H = np.array([[-3.0, 0.0], [-1.0, 5.0], [3.0, -2.0], [6.0, 1.0]])
    y = np.array([-1.0, -1.0, 1.0, 1.0])
    w = np.array([1.0, 0.0])
    assert geometry.separated_bias_gap(w, -1.0, H, y) == pytest.approx(0.0)
    assert geometry.separated_bias_gap(w, -2.0, H, y) == pytest.approx(-0.5)
    assert geometry.separated_bias_gap(2 * w, -4.0, H, y) == pytest.approx(-0.5)  # scale-free
    # The same as bias_gap wherever the classes are separated.
    assert geometry.separated_bias_gap(w, -2.0, H, y) == pytest.approx(
        geometry.bias_gap(w, -2.0, H, y))
    overlapping = np.vstack([H, [[-2.0, 0.0]]])
    assert np.isnan(geometry.separated_bias_gap(w, -1.0, overlapping, np.append(y, 1.0)))
    assert np.isnan(geometry.separated_bias_gap(w, -1.0, H[:2], y[:2]))
    assert np.isnan(geometry.separated_bias_gap(np.zeros(2), -1.0, H, y))


def test_zero_class_is_the_class_most_at_the_origin():
    H = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    y = np.array([1, 1, 0, 0, 2, 2])
    assert geometry.zero_class(H, y, 3) == (1, 1.0)  # both points of class 1 at h = 0
    assert geometry.zero_class(H[2:], y[2:], 3) == (0, 0.5)
    assert geometry.zero_class(H[4:], y[4:], 3) == (-1, 0.0)
    assert geometry.zero_class(H, y, 4) == (1, 1.0)  # an empty class has no share


def test_zero_points_counts_rows_at_the_origin():
    H = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    assert geometry.zero_points(H) == 2
    assert geometry.dead_units(H) == 0  # each unit is on somewhere
    assert geometry.zero_points(np.zeros((0, 2))) == 0
