"""Tests of the hard-margin SVM targets (nnboundary.svm) and the svm stage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import nnboundary  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nnboundary.formats import features as fio  # noqa: E402
from nnboundary import svm  # noqa: E402
from nnboundary.errors import ConfigError  # noqa: E402
from nnboundary.stages import svm as svm_stage  # noqa: E402
from nnboundary.svm import _problems as problems  # noqa: E402
from nnboundary.svm import _qp as qp  # noqa: E402
from nnboundary.svm import SVMFit, fit_svm, functional_margins  # noqa: E402


def binary_uc(fit: SVMFit) -> tuple[np.ndarray, float]:
    """(u, c) of a binary fit: u = W₁ − W₀, c = b₁ − b₀."""
    return fit.W[1] - fit.W[0], float(fit.b[1] - fit.b[0])


def soudry_toy() -> tuple[np.ndarray, np.ndarray]:
    sv = np.array([[0.5, 1.5], [1.5, 0.5]])
    far = np.array([[2.0, 2.0], [3.0, 1.5], [1.0, 4.0]])
    H = np.r_[sv, far, -sv, -far]
    y = np.r_[np.ones(5, int), np.zeros(5, int)]
    return H, y


def separable_set(seed: int, n: int, d: int, K: int = 2, gap: float = 0.3):
    """Points around K random centres, labelled by the nearest centre (a linear argmax rule,
    score_k = μₖ·h − ½‖μₖ‖²), with points near a boundary dropped so that the set is separable."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (K, d))
    X = centres[rng.integers(0, K, 4 * n)] + rng.normal(0, 1.5, (4 * n, d))
    S = X @ centres.T - 0.5 * (centres**2).sum(axis=1)
    y = S.argmax(axis=1)
    top = np.sort(S, axis=1)
    keep = top[:, -1] - top[:, -2] > gap
    X, y = X[keep][:n], y[keep][:n]
    assert len(np.unique(y)) == K
    return X, y


def overlap_set(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(0, 1, (n // 2, 2)) + 0.7, rng.normal(0, 1, (n - n // 2, 2)) - 0.7]
    return X, np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]


def soft_objective(H, y, u, c, C, penalise_bias):
    s = np.where(y == 1, 1.0, -1.0)
    hinge = np.maximum(0.0, 1.0 - s * (H @ u + c)).sum()
    return 0.5 * (u @ u + (c * c if penalise_bias else 0.0)) + C * hinge


# --------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_soudry_toy(target):
    H, y = soudry_toy()
    fit = fit_svm(H, y, target, "binary")
    u, c = binary_uc(fit)
    assert fit.separable and fit.hard_margin and fit.C is None
    np.testing.assert_allclose(u, [0.5, 0.5], atol=1e-6)  # normal ∝ (1, 1)
    assert abs(c) < 1e-6
    assert np.linalg.norm(u) == pytest.approx(1 / np.sqrt(2), rel=1e-6)
    assert 1 / np.linalg.norm(u) == pytest.approx(np.sqrt(2), rel=1e-6)  # geometric margin
    assert fit.min_margin == pytest.approx(1.0, abs=1e-6)
    assert sorted(fit.support.tolist()) == [0, 1, 5, 6]
    # Centred binary representation.
    np.testing.assert_allclose(fit.W[0], -fit.W[1])
    assert fit.b[0] == pytest.approx(-fit.b[1])


def test_svc_and_homog_differ_1d():
    # h = −100 (class 0, y = −1) and h = 3 (class 1, y = +1).
    # svc: both points on the margin: 3u + c = 1, −100u + c = −1 → u = 2/103, c = 97/103.
    # homog: min ½(u² + c²) s.t. 3u + c ≥ 1, −(−100u + c) ≥ 1. With only the first active,
    # (u, c) = (3, 1)/10 = (0.3, 0.1), and the second holds: 30 − 0.1 = 29.9 ≥ 1, so it is optimal.
    H = np.array([[-100.0], [3.0]])
    y = np.array([0, 1])
    u, c = binary_uc(fit_svm(H, y, "svc", "binary"))
    assert u[0] == pytest.approx(2 / 103, rel=1e-6)
    assert c == pytest.approx(97 / 103, rel=1e-6)
    fit = fit_svm(H, y, "homog", "binary")
    u, c = binary_uc(fit)
    assert u[0] == pytest.approx(0.3, rel=1e-6)
    assert c == pytest.approx(0.1, rel=1e-6)
    assert fit.support.tolist() == [1]  # only the +1 point is on the margin
    assert fit.min_margin == pytest.approx(1.0, abs=1e-6)


def test_svc_and_homog_1d_two_points_agree():
    # h = 1 (class −1), h = 3 (class +1): two constraints, two unknowns, both active for both
    # targets, so u = 1, c = −2 for svc and homog alike.
    H, y = np.array([[1.0], [3.0]]), np.array([0, 1])
    for target in ("svc", "homog"):
        u, c = binary_uc(fit_svm(H, y, target, "binary"))
        assert u[0] == pytest.approx(1.0, rel=1e-6)
        assert c == pytest.approx(-2.0, rel=1e-6)


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_crammer_singer_triangle(target):
    # Class k at r·(cos θₖ, sin θₖ), θₖ = 2πk/3, plus farther points on the same rays.
    # By symmetry b = 0 and wₖ = a·(cos θₖ, sin θₖ); the constraint (w_y − w_k)·h_y = a·r·(1 − cos 120°)
    # = 1.5·a·r = 1 gives a = 2/(3r).
    r = 2.0
    dirs = np.array([[np.cos(t), np.sin(t)] for t in 2 * np.pi * np.arange(3) / 3])
    H = np.r_[r * dirs, 1.5 * r * dirs, 3 * r * dirs]
    y = np.tile(np.arange(3), 3)
    fit = fit_svm(H, y, target, "crammer_singer")
    assert fit.hard_margin
    np.testing.assert_allclose(fit.W, 2 / (3 * r) * dirs, atol=1e-6)
    np.testing.assert_allclose(fit.b, 0.0, atol=1e-6)
    assert sorted(fit.support.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_crammer_singer_with_two_classes_is_binary(target):
    H, y = separable_set(3, 60, 2)
    a = fit_svm(H, y, target, "binary")
    b = fit_svm(H, y, target, "crammer_singer")
    np.testing.assert_allclose(b.W[1] - b.W[0], a.W[1] - a.W[0], rtol=1e-4, atol=1e-6)
    assert b.b[1] - b.b[0] == pytest.approx(a.b[1] - a.b[0], rel=1e-4, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Agreement with scikit-learn
# --------------------------------------------------------------------------------------------


def test_svc_matches_sklearn_hard():
    from sklearn.svm import SVC

    H, y = separable_set(0, 40, 2)
    fit = fit_svm(H, y, "svc", "binary")
    ref = SVC(kernel="linear", C=1e6, tol=1e-10).fit(H, y)
    u, c = binary_uc(fit)
    np.testing.assert_allclose(u, ref.coef_[0], rtol=1e-4)
    assert c == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-6)


def test_homog_matches_linearsvc_on_augmented():
    from sklearn.svm import LinearSVC

    H, y = separable_set(1, 40, 2)
    fit = fit_svm(H, y, "homog", "binary")
    A = np.c_[H, np.ones(len(H))]
    ref = LinearSVC(loss="hinge", C=1e4, fit_intercept=False, tol=1e-10, max_iter=1_000_000).fit(
        A, y
    )
    u, c = binary_uc(fit)
    # LinearSVC's dual coordinate descent is not a hard-margin solver: loose tolerance.
    np.testing.assert_allclose(np.r_[u, c], ref.coef_[0], rtol=2e-2, atol=2e-3)


def test_soft_svc_matches_sklearn_objective():
    from sklearn.svm import SVC

    H, y = overlap_set(2, 200)
    C = 1.0
    fit = fit_svm(H, y, "svc", "binary", C=C)
    assert not fit.separable and not fit.hard_margin and fit.C == C
    ref = SVC(kernel="linear", C=C, tol=1e-8).fit(H, y)
    ours = soft_objective(H, y, *binary_uc(fit), C, penalise_bias=False)
    theirs = soft_objective(H, y, ref.coef_[0], ref.intercept_[0], C, penalise_bias=False)
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert ours <= theirs * (1 + 1e-6)


def test_soft_homog_matches_linearsvc_objective():
    from sklearn.svm import LinearSVC

    H, y = overlap_set(3, 200)
    C = 0.5
    fit = fit_svm(H, y, "homog", "binary", C=C)
    A = np.c_[H, np.ones(len(H))]
    ref = LinearSVC(loss="hinge", C=C, fit_intercept=False, tol=1e-10, max_iter=1_000_000).fit(A, y)
    ours = soft_objective(H, y, *binary_uc(fit), C, penalise_bias=True)
    theirs = soft_objective(H, y, ref.coef_[0, :2], ref.coef_[0, 2], C, penalise_bias=True)
    assert ours <= theirs * (1 + 1e-6)
    assert ours == pytest.approx(theirs, rel=1e-3)


def test_crammer_singer_homog_matches_linearsvc():
    from sklearn.svm import LinearSVC

    H, y = separable_set(4, 60, 2, K=3)
    fit = fit_svm(H, y, "homog", "crammer_singer")
    assert fit.hard_margin
    A = np.c_[H, np.ones(len(H))]
    ref = LinearSVC(
        multi_class="crammer_singer", C=1e3, fit_intercept=False, tol=1e-10, max_iter=1_000_000
    ).fit(A, y)
    ours = np.c_[fit.W, fit.b]
    # Both are centred (Σₖ wₖ = 0 at the optimum); loose: LinearSVC is a soft solver.
    np.testing.assert_allclose(ours, ref.coef_, rtol=5e-2, atol=5e-3)
    m = functional_margins(H, y, fit.W, fit.b, "crammer_singer")
    assert m.min() >= 1 - 1e-3
    np.testing.assert_allclose(m[fit.support], 1.0, atol=1e-3)
    assert len(fit.support) >= 2


# --------------------------------------------------------------------------------------------
# Hard-margin verification, optimality of constraint generation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("d", [2, 5])
def test_random_separable_sets_hold_hard_margin(seed, d):
    for K, schemes in ((2, ("binary",)), (3, ("crammer_singer", "ovr"))):
        H, y = separable_set(10 * seed + d + K, 300, d, K=K)
        for target in ("svc", "homog"):
            for scheme in schemes:
                fit = fit_svm(H, y, target, scheme)
                m = functional_margins(H, y, fit.W, fit.b, scheme)
                assert fit.min_margin == pytest.approx(m.min())
                if scheme == "ovr" and not fit.separable:
                    # An argmax-separable set need not be one-vs-rest separable (a middle class).
                    continue
                assert fit.separable and fit.hard_margin, fit.status
                assert m.min() >= 1 - 1e-3
                assert len(fit.support) >= 2
                if scheme != "ovr":
                    np.testing.assert_allclose(m[fit.support], 1.0, atol=1e-3)


def test_ovr_separable_blobs():
    # Three well separated blobs at the vertices of a triangle: every one-vs-rest problem separable.
    rng = np.random.default_rng(12)
    centres = 8 * np.array([[np.cos(t), np.sin(t)] for t in 2 * np.pi * np.arange(3) / 3])
    H = np.concatenate([rng.normal(0, 0.5, (100, 2)) + c for c in centres])
    y = np.repeat(np.arange(3), 100)
    for target in ("svc", "homog"):
        fit = fit_svm(H, y, target, "ovr")
        assert fit.separable and fit.hard_margin and fit.C is None
        sign = np.where(y[:, None] == np.arange(3)[None, :], 1.0, -1.0)
        assert (sign * (H @ fit.W.T + fit.b)).min(axis=0) == pytest.approx(np.ones(3), abs=1e-6)


@pytest.mark.parametrize("scheme,K", [("binary", 2), ("crammer_singer", 3)])
@pytest.mark.parametrize("target", ["svc", "homog"])
def test_constraint_generation_equals_direct_solve(scheme, K, target):
    # The working-set optimum must be the optimum of the QP over every point.
    H, y = separable_set(7, 400, 3, K=K)
    fit = fit_svm(H, y, target, scheme)
    if scheme == "binary":
        prob = problems.Binary(H, np.where(y == 1, 1.0, -1.0), target)
    else:
        prob = problems.CrammerSinger(H, y, K, target)
    status, x = qp._solve_hard(prob, np.arange(len(y)), 60.0)
    assert status == "Solved"
    if scheme == "binary":
        W = np.vstack([-x[:3] / 2, x[:3] / 2])
    else:
        W, _ = prob.unpack(x)
    np.testing.assert_allclose(fit.W, W, rtol=1e-4, atol=1e-6)


def test_hull_reduction_with_many_points_is_exact():
    rng = np.random.default_rng(5)
    H = np.r_[rng.normal(0, 1, (5000, 2)) + 4, rng.normal(0, 1, (5000, 2)) - 4]
    y = np.r_[np.ones(5000, int), np.zeros(5000, int)]
    keep = np.where(y == 1, H.sum(axis=1) > 1, H.sum(axis=1) < -1)
    H, y = H[keep], y[keep]
    for target in ("svc", "homog"):
        fit = fit_svm(H, y, target, "binary")
        assert fit.hard_margin
        assert functional_margins(H, y, fit.W, fit.b, "binary").min() >= 1 - 1e-3


def test_collinear_and_duplicate_points():
    # Every class on one line (degenerate hulls) with duplicates.
    t = np.linspace(0, 1, 50)
    H = np.r_[np.c_[t, t + 2], np.c_[t, t + 2], np.c_[t, t - 2]]
    y = np.r_[np.ones(100, int), np.zeros(50, int)]
    for target in ("svc", "homog"):
        fit = fit_svm(H, y, target, "binary")
        assert fit.hard_margin, fit.status


# --------------------------------------------------------------------------------------------
# Not separable, degenerate input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_nonseparable_gets_soft_fit_fast(target):
    H, y = overlap_set(8, 4000)
    start = time.perf_counter()
    fit = fit_svm(H, y, target, "binary", C=1.0)
    assert time.perf_counter() - start < 10
    assert not fit.separable and not fit.hard_margin
    assert fit.C == 1.0
    assert fit.min_margin < 0
    assert "not separable" in fit.status
    assert len(fit.support) > 0


@pytest.mark.parametrize("target", ["svc", "homog", "origin"])
@pytest.mark.parametrize("K,scheme", [(2, "binary"), (3, "crammer_singer"), (3, "ovr")])
def test_soft_false_leaves_nonseparable_data_unfitted(target, K, scheme):
    rng = np.random.default_rng(21)
    H = rng.normal(0, 1, (400, 2))
    y = rng.integers(0, K, 400)  # labels independent of h: not separable by any target
    fit = fit_svm(H, y, target, scheme, n_classes=K, soft=False)
    assert not fit.separable and not fit.hard_margin and fit.C is None
    assert fit.W.shape == (0, 0) and fit.b.shape == (0,) and fit.support.size == 0
    assert np.isnan(fit.min_margin)
    assert "soft margin not fitted" in fit.status
    path = fit.solver["path"] if scheme != "ovr" else fit.solver["classes"][-1]["path"]
    assert path == "unfitted"
    back = SVMFit.from_json(json.loads(json.dumps(fit.to_json())))
    assert back.W.shape == (0, 0) and not back.separable and np.isnan(back.min_margin)
    # The soft fit of the same data, for contrast: weights, a penalty, a negative margin.
    soft = fit_svm(H, y, target, scheme, n_classes=K)
    assert soft.W.shape == (K, 2) and soft.C == 1.0 and soft.min_margin < 1


@pytest.mark.parametrize("scheme,K", [("binary", 2), ("crammer_singer", 3), ("ovr", 2)])
def test_soft_false_changes_no_hard_fit(scheme, K):
    H, y = separable_set(5, 300, 2, K=K)
    for target in ("svc", "homog"):
        a = fit_svm(H, y, target, scheme, soft=False)
        b = fit_svm(H, y, target, scheme)
        assert a.hard_margin and b.hard_margin
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)


def test_nearly_separable_few_flipped_labels():
    H, y = separable_set(9, 3000, 2)
    y = y.copy()
    y[:3] ^= 1
    for scheme in ("binary", "crammer_singer", "ovr"):
        fit = fit_svm(H, y, "svc", scheme)
        assert not fit.separable and fit.C == 1.0


def test_multiclass_nonseparable():
    rng = np.random.default_rng(11)
    H = rng.normal(0, 1, (600, 2))
    y = rng.integers(0, 3, 600)
    for scheme in ("crammer_singer", "ovr"):
        for target in ("svc", "homog"):
            fit = fit_svm(H, y, target, scheme)
            assert not fit.separable and not fit.hard_margin


@pytest.mark.parametrize("K,schemes", [(2, ("binary",)), (3, ("crammer_singer", "ovr"))])
def test_dead_features_do_not_crash(K, schemes):
    n = 300
    H = np.zeros((n, 2))
    y = np.arange(n) % K
    for target in ("svc", "homog"):
        for scheme in schemes:
            fit = fit_svm(H, y, target, scheme, n_classes=K)
            assert not fit.separable and not fit.hard_margin
            assert "identical" in fit.status
            assert np.all(np.isfinite(fit.W)) and np.all(np.isfinite(fit.b))
            np.testing.assert_allclose(fit.W, 0.0, atol=1e-6)  # h = 0: W cannot matter


def test_single_class_present():
    H = np.random.default_rng(0).normal(size=(20, 2))
    fit = fit_svm(H, np.zeros(20, int), "svc", "binary", n_classes=2)
    assert not fit.separable and "only class" in fit.status
    assert fit.W.shape == (2, 2)


def test_bad_arguments_name_what_is_allowed():
    H, y = soudry_toy()
    with pytest.raises(ValueError, match="svc"):
        fit_svm(H, y, "nope", "binary")
    with pytest.raises(ValueError, match="crammer_singer"):
        fit_svm(H, y, "svc", "binary", n_classes=3)
    with pytest.raises(ValueError, match="NaN"):
        fit_svm(np.full((4, 2), np.nan), np.array([0, 1, 0, 1]), "svc", "binary")


def test_fit_json_round_trip():
    H, y = soudry_toy()
    fit = fit_svm(H, y, "homog", "binary")
    back = SVMFit.from_json(json.loads(json.dumps(fit.to_json())))
    for name in (
        "target",
        "scheme",
        "separable",
        "hard_margin",
        "C",
        "min_margin",
        "seconds",
        "status",
    ):
        assert getattr(back, name) == getattr(fit, name)
    np.testing.assert_array_equal(back.W, fit.W)
    np.testing.assert_array_equal(back.b, fit.b)
    np.testing.assert_array_equal(back.support, fit.support)


# --------------------------------------------------------------------------------------------
# Gradient descent approaches homog (Soudry et al. 2018)
# --------------------------------------------------------------------------------------------


def logistic_gd_angles(H, y, v_targets, checkpoints):
    """Full-batch GD on Σ log(1 + exp(−sᵢ θ·[hᵢ, 1])) from θ = 0, step 1/L (L bounds the Hessian);
    the bias is just another weight. Returns the angle (degrees) to each target at each checkpoint.
    """
    A = np.c_[H, np.ones(len(H))]
    s = np.where(y == 1, 1.0, -1.0)
    L = 0.25 * np.linalg.norm(A, 2) ** 2
    theta = np.zeros(A.shape[1])
    angles = {}
    for step in range(1, max(checkpoints) + 1):
        # ∂/∂θ = −Σ sᵢ σ(−mᵢ) aᵢ with σ(−m) = exp(−log(1 + e^m)), stable for large m.
        m = s * (A @ theta)
        theta += (A.T @ (s * np.exp(-np.logaddexp(0.0, m)))) / L
        if step in checkpoints:
            angles[step] = [
                np.degrees(
                    np.arccos(np.clip(theta @ v / np.linalg.norm(theta) / np.linalg.norm(v), -1, 1))
                )
                for v in v_targets
            ]
    return angles


def test_gradient_descent_approaches_homog():
    H, y = soudry_toy()
    H = H + np.array([3.0, 3.0])  # non-zero bias, so the bias weight matters
    u, c = binary_uc(fit_svm(H, y, "homog", "binary"))
    angles = logistic_gd_angles(H, y, [np.r_[u, c]], (100, 10_000))
    assert angles[10_000][0] < angles[100][0]
    assert angles[10_000][0] < 1.0


def test_gradient_descent_prefers_homog_over_svc():
    # A set where the two targets differ: GD with the bias as a weight heads for homog.
    H = np.array([[1.0, 0.2], [1.2, 1.0], [-6.0, 0.0], [-6.0, 1.0]])
    y = np.array([1, 1, 0, 0])
    targets = []
    for target in ("homog", "svc"):
        u, c = binary_uc(fit_svm(H, y, target, "binary"))
        targets.append(np.r_[u, c])
    assert (
        np.degrees(
            np.arccos(
                targets[0] @ targets[1] / np.linalg.norm(targets[0]) / np.linalg.norm(targets[1])
            )
        )
        > 10
    )
    angles = logistic_gd_angles(H, y, targets, (100, 10_000))
    assert angles[10_000][0] < angles[100][0]
    assert angles[10_000][0] < angles[10_000][1]


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def write_run(folder: Path, K: int, epochs=(0, 5)):
    rng = np.random.default_rng(K)
    for epoch in epochs:
        H, y = separable_set(epoch + K, 60, 2, K=K)
        W = rng.normal(size=(K, 2))
        b = rng.normal(size=K)
        Ht, yt = separable_set(epoch + K + 100, 20, 2, K=K)
        fio.write_features(
            folder / fio.feature_file_name(epoch),
            {
                "dataset": "blobs",
                "arch": "mlp",
                "seed": 3,
                "epoch": epoch,
                "n_classes": K,
                "feature_dim": 2,
            },
            W,
            b,
            {"train": (y, H, H @ W.T + b), "test": (yt, Ht, Ht @ W.T + b)},
        )


@pytest.mark.parametrize("K,n_schemes", [(2, 1), (3, 2)])
def test_stage_main_writes_loadable_svm_json(tmp_path, K, n_schemes, capsys):
    folder = tmp_path / "features"
    write_run(folder, K)
    out = tmp_path / "svm.json"
    assert (
        svm_stage.main(["--features", str(folder), "--output", str(out), "--settings", '{"C": 2.0}']) == 0
    )
    obj = json.loads(out.read_text())
    assert obj["keys"] == {"dataset": "blobs", "arch": "mlp", "seed": 3}
    fits = svm.load_fits(out)
    assert len(fits) == 2 * len(svm.TARGETS) * n_schemes  # epochs × targets × schemes
    assert sorted({e for e, _ in fits}) == [0, 5]
    for epoch, fit in fits:
        assert fit.W.shape == (K, 2)
        if fit.scheme != "ovr" and fit.target != "origin":
            assert fit.hard_margin  # the test sets are argmax-separable (with a bias)
        if fit.target == "origin":
            np.testing.assert_array_equal(fit.b, np.zeros(K))
    # One log line per fit.
    assert capsys.readouterr().err.count("svm: epoch") == len(fits)


def test_stage_soft_margin_false_gives_flagged_metrics_rows(tmp_path):
    """soft_margin false: an origin problem that no separator through the origin solves is
    recorded without weights, and its metrics rows are flagged not_separable_origin, while the
    svc rows of the same checkpoint stay valid measurements."""
    from nnboundary.measures.metrics import run_metrics

    folder = tmp_path / "features"
    H, y = two_clusters()
    H, y = np.r_[H, [[0.0, 0.0]]], np.r_[y, [1]]  # class 1 touches the origin
    svc = fit_svm(H, y, "svc", "binary")
    assert svc.hard_margin
    W, b = 3 * svc.W, 3 * svc.b  # a network that classifies every train point
    keys = {"dataset": "blobs", "arch": "mlp", "seed": 3, "epoch": 4, "n_classes": 2,
            "feature_dim": 2}
    fio.write_features(folder / fio.feature_file_name(4), keys, W, b,
                       {"train": (y, H, H @ W.T + b), "test": (y[:4], H[:4], H[:4] @ W.T + b)})
    out = tmp_path / "svm.json"
    settings = '{"soft_margin": false}'
    assert svm_stage.main(["--features", str(folder), "--output", str(out), "--settings", settings]) == 0
    fits = {f.target: f for _, f in svm.load_fits(out)}
    assert fits["origin"].W.shape == (0, 0) and not fits["origin"].separable
    assert fits["svc"].W.shape == (2, 2)
    frame = run_metrics([folder / fio.feature_file_name(4)], out)
    origin = frame[frame.target == "origin"]
    assert not origin.valid.any()
    assert origin.invalid_reason.str.contains("not_separable_origin").all()
    assert origin.invalid_reason.str.contains("convention").all()  # measured against no weights
    assert origin.degenerate.all()
    svc_rows = frame[frame.target == "svc"]
    assert svc_rows.valid.all()
    with pytest.raises(ConfigError, match="soft_margin"):
        svm_stage.main(["--features", str(folder), "--output", str(out), "--settings",
                  '{"soft_margin": "no"}'])


def test_stage_rejects_unknown_settings(tmp_path):
    write_run(tmp_path / "f", 2, epochs=(0,))
    with pytest.raises(ConfigError, match="allowed"):
        svm_stage.main(
            [
                "--features",
                str(tmp_path / "f"),
                "--output",
                str(tmp_path / "s.json"),
                "--settings",
                '{"c": 1}',
            ]
        )


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_soft_constraint_generation_equals_direct_solve(target):
    # n > the direct-solve size, so the subsample start and working-set rounds are exercised.
    H, y = overlap_set(13, 6000)
    C = 1.0
    fit = fit_svm(H, y, target, "binary", C=C)
    prob = problems.Binary(H, np.where(y == 1, 1.0, -1.0), target)
    status, x = qp._solve_soft(prob, np.arange(len(y)), np.ones(len(y)), C, 60.0)
    assert status == "Solved"
    ours = soft_objective(H, y, *binary_uc(fit), C, penalise_bias=target == "homog")
    direct = soft_objective(H, y, x[:2], x[2], C, penalise_bias=target == "homog")
    assert ours == pytest.approx(direct, rel=1e-6)


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_ovr_with_a_class_absent_from_train(target):
    H, y = separable_set(14, 200, 2, K=2)
    fit = fit_svm(H, y, target, "ovr", n_classes=3)  # class 2 has no train point
    assert fit.W.shape == (3, 2)
    assert np.all(np.isfinite(fit.W)) and np.all(np.isfinite(fit.b))
    assert fit.separable and fit.hard_margin


# --------------------------------------------------------------------------------------------
# Badly conditioned network features (regressions)
# --------------------------------------------------------------------------------------------
# Real last-layer features crowd near one point h₀ far from the origin relative to their spread
# (e.g. h ≈ (0.10, 0.10) ± 1e-3), are nearly collinear (one principal spread 1e-5 … 1e-9 of the
# other) or large (500·h). Solved as given, clarabel stopped with MaxIterations /
# InsufficientProgress, returned "solutions" with margins 0.86–0.97 < 1 − tol on their own working
# set (SVMError "claims separable data but…"), or claimed an LP-separable problem infeasible.

DATA = Path(__file__).resolve().parent / "data"
FEATURE_FILES = sorted(DATA.glob("svm_features_*.npz"))  # (svm_origin_*: the origin tests)


def load_features(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Train features saved from real runs (float32 there, exactly as the run wrote them)."""
    with np.load(path) as f:
        return f["H"].astype(np.float64), f["y"].astype(np.int64), int(f["n_classes"])


def kkt_residual(H, y, fit: SVMFit, K: int, active_tol: float = 1e-6) -> float:
    """Relative stationarity residual of a hard fit in the original coordinates: the smallest
    ‖P x − R_Aᵀα − eqᵀμ‖ / ‖P x‖ over α ≥ 0 on the active constraints (margin ≤ 1 + active_tol).
    Zero at the optimum (with the margins ≥ 1 it certifies optimality); independent of how the
    module solved the problem. Computed by NNLS, so only accurate to ~1e-4 on such data."""
    from scipy.optimize import nnls

    cases = []
    bias = fit.target != "origin"  # origin has no bias variable
    if fit.scheme == "binary":
        prob = problems.Binary(H, np.where(y == 1, 1.0, -1.0), fit.target)
        cases.append((prob, np.r_[fit.W[1] - fit.W[0], [fit.b[1] - fit.b[0]] * bias]))
    elif fit.scheme == "crammer_singer":
        prob = problems.CrammerSinger(H, y, K, fit.target)
        cases.append((prob, np.r_[fit.W.ravel(), fit.b if bias else []]))
    else:
        for k in range(K):
            prob = problems.Binary(H, np.where(y == k, 1.0, -1.0), fit.target)
            cases.append((prob, np.r_[fit.W[k], [fit.b[k]] * bias]))
    worst = 0.0
    for prob, x in cases:
        R, _ = prob.rows(np.arange(prob.n))
        act = np.flatnonzero(R @ x <= 1 + active_tol)
        cols = [R[act].toarray().T]
        if prob.eq is not None:
            e = prob.eq.toarray().T
            cols += [e, -e]
        M = np.hstack(cols)
        norms = np.linalg.norm(M, axis=0)
        norms[norms == 0] = 1.0
        g = prob.pdiag * x
        _, res = nnls(M / norms, g, maxiter=100_000)
        worst = max(worst, res / np.linalg.norm(g))
    return worst


def assert_exact_hard_fit(H, y, fit: SVMFit, K: int):
    assert fit.separable and fit.hard_margin and fit.C is None, fit.status
    assert np.all(np.isfinite(fit.W)) and np.all(np.isfinite(fit.b))
    m = functional_margins(H, y, fit.W, fit.b, fit.scheme)
    assert m.min() == pytest.approx(fit.min_margin, rel=1e-12)
    # Optimal means tight: a hard fit with every margin > 1 could be scaled down.
    assert fit.min_margin == pytest.approx(1.0, abs=1e-6)
    assert kkt_residual(H, y, fit, K) < 1e-3


def test_regression_feature_files_present():
    assert len(FEATURE_FILES) == 4
    for path in FEATURE_FILES:
        assert path.stat().st_size < 200_000


@pytest.mark.parametrize("path", FEATURE_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("target", ["svc", "homog"])
def test_real_network_features_give_exact_hard_fits(path, target):
    # blobs0 epoch 1: homog stopped with MaxIterations (47-point working set). blobs3 epochs
    # 1 and 12: crammer_singer and ovr returned minimum margins 0.86–0.93 (SVMError) or stopped
    # with MaxIterations / InsufficientProgress. d3 epoch 133 (3-D, one principal spread ~2e-9
    # next to ~1e-3): both targets returned minimum margins 0.956.
    H, y, K = load_features(path)
    for scheme in ("binary",) if K == 2 else ("crammer_singer", "ovr"):
        fit = fit_svm(H, y, target, scheme, n_classes=K)
        assert_exact_hard_fit(H, y, fit, K)


@pytest.mark.parametrize("path", FEATURE_FILES, ids=lambda p: p.stem)
def test_svc_on_real_features_is_scale_and_shift_equivariant(path):
    # svc is invariant to h → a·h + t up to u → u/a (the free bias absorbs the shift): large
    # features (500·h, norms ~1e2 here, ~1e3 with the shift) must give the same classifier.
    H, y, K = load_features(path)
    a, t = 500.0, np.linspace(300.0, 700.0, H.shape[1])
    for scheme in ("binary",) if K == 2 else ("crammer_singer", "ovr"):
        fit = fit_svm(H, y, "svc", scheme, n_classes=K)
        big = fit_svm(a * H + t, y, "svc", scheme, n_classes=K)
        assert big.hard_margin, big.status
        np.testing.assert_allclose(a * big.W, fit.W, rtol=1e-5, atol=1e-7 * np.abs(fit.W).max())
        m1 = functional_margins(H, y, fit.W, fit.b, scheme)
        m2 = functional_margins(a * H + t, y, big.W, big.b, scheme)
        np.testing.assert_allclose(m2, m1, rtol=1e-5, atol=1e-5)


def network_like(seed: int, n: int, d: int, K: int, spreads=(1e-3, 2e-5), offset=0.1):
    """A separable set squeezed like early-training ReLU features: every point within ~spreads[0]
    of h₀ = offset·1, along random principal axes whose spreads fall geometrically from
    spreads[0] to spreads[-1] (nearly collinear)."""
    X, y = separable_set(seed, n, d, K=K)
    rng = np.random.default_rng(seed + 100)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return offset + (X / 3 * np.geomspace(spreads[0], spreads[1], d)) @ Q.T, y


def with_dead_unit(seed: int, n: int, K: int):
    """Features near h₀ plus a ReLU unit that is dead (exactly 0) on 49 of every 50 points."""
    X, y = separable_set(seed, n, 2, K=K)
    dead = np.where(np.arange(n) % 50 == 0, 1e-4 * np.abs(X[:, 0]), 0.0)
    return np.c_[1e-3 * X + 0.1, dead], y


def blobs3_like(seed: int, n: int, spreads=(1e-3, 2e-5), offset=0.1):
    """Three Gaussian classes at the vertices of a triangle with a clear gap (separable one vs
    rest too), squeezed like network_like."""
    rng = np.random.default_rng(seed)
    centres = 6.0 * np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * np.arange(3) / 3])
    X = centres[rng.integers(0, 3, 4 * n)] + rng.normal(0, 1, (4 * n, 2))
    dist = np.linalg.norm(X[:, None] - centres[None], axis=2)
    y = dist.argmin(axis=1)
    top = np.sort(dist, axis=1)
    keep = top[:, 1] - top[:, 0] > 1.0
    X, y = X[keep][:n], y[keep][:n]
    Q, _ = np.linalg.qr(np.random.default_rng(seed + 100).normal(size=(2, 2)))
    return offset + (X / 6 * np.array(spreads)) @ Q.T, y


SYNTHETIC = {
    # name: (features, labels, scheme); each failed for both targets before preconditioning.
    "crowded 2-D": (*network_like(1, 2000, 2, 2), "binary"),
    "crowded 2-D, 500x": (
        500 * network_like(2, 2000, 2, 2)[0],
        network_like(2, 2000, 2, 2)[1],
        "binary",
    ),
    "crowded 3-D, spread 1e-8": (*network_like(2, 2000, 3, 2, (1e-3, 1e-8)), "binary"),
    # Claimed "not separable" although the LP separated every point (a wrong soft fit).
    "crowded 3-D, LP-separable": (*network_like(0, 2000, 3, 2, (1e-3, 1e-8)), "binary"),
    "dead unit": (*with_dead_unit(2, 2000, 2), "binary"),
    "3 classes crowded": (*network_like(1, 2000, 2, 3), "crammer_singer"),
    "3 classes dead unit": (*with_dead_unit(1, 2000, 3), "crammer_singer"),
    "3 classes crowded (blobs3-like), ovr": (*blobs3_like(0, 2000), "ovr"),
    "3 classes crowded (blobs3-like), cs": (*blobs3_like(3, 2000), "crammer_singer"),
}


@pytest.mark.parametrize("name", list(SYNTHETIC))
@pytest.mark.parametrize("target", ["svc", "homog"])
def test_badly_conditioned_synthetic_features_give_exact_hard_fits(name, target):
    H, y, scheme = SYNTHETIC[name]
    K = int(y.max()) + 1
    fit = fit_svm(H, y, target, scheme, n_classes=K)
    assert_exact_hard_fit(H, y, fit, K)


@pytest.mark.parametrize("target", ["svc", "homog"])
@pytest.mark.parametrize("scheme,K", [("binary", 2), ("crammer_singer", 3)])
def test_precond_is_an_exact_change_of_variables(target, scheme, K):
    # Same margins and same objective (times obj_scale) for any point, mapped back; a constant
    # feature (a dead unit) is dropped for svc (r < d) and merges with the bias for homog.
    rng = np.random.default_rng(21)
    H, y = network_like(4, 300, 3, K, (1e-3, 1e-7))
    H = np.c_[H, np.full(len(H), 0.25)]
    pre = problems.Precond(H, target)
    assert pre.r == (3 if target == "svc" else 4)  # homog keeps the constant direction once
    prob = (
        pre.binary(np.where(y == 1, 1.0, -1.0)) if scheme == "binary" else pre.crammer_singer(y, K)
    )
    for _ in range(3):
        x = rng.normal(size=prob.p)
        if scheme == "binary":
            u, c = pre.binary_back(x)
            W, b = np.vstack([-u / 2, u / 2]), np.array([-c / 2, c / 2])
            norm2 = u @ u + (c * c if target == "homog" else 0.0)
        else:
            if prob.eq is not None:
                x[-K:] -= x[-K:].mean()  # the svc gauge
            W, b = pre.cs_back(*prob.unpack(x))
            norm2 = (W**2).sum() + ((b**2).sum() if target == "homog" else 0.0)
        np.testing.assert_allclose(
            functional_margins(H, y, W, b, scheme), prob.margins(x), rtol=1e-7, atol=1e-7
        )
        assert 0.5 * norm2 * pre.obj_scale == pytest.approx(0.5 * x @ (prob.pdiag * x), rel=1e-7)


def test_ldp_by_nnls_known_answer():
    # homog on the Soudry toy set as a least-distance problem: min ½‖x‖² s.t. sᵢ[hᵢ, 1]·x ≥ 1.
    H, y = soudry_toy()
    G = np.where(y == 1, 1.0, -1.0)[:, None] * np.c_[H, np.ones(len(H))]
    w, z = qp._ldp(G)
    np.testing.assert_allclose(w, [0.5, 0.5, 0.0], atol=1e-12)
    # Multipliers only on support vectors (4 of them in 3-D: degenerate, so any 3 may carry them).
    assert set(np.flatnonzero(z > 0).tolist()) <= {0, 1, 5, 6}
    w, _ = qp._ldp(np.array([[1.0], [-1.0]]))  # x ≥ 1 and −x ≥ 1: infeasible
    assert w is None


def _hard_qp(q) -> bool:
    return not np.any(q)  # the soft QP has a linear term (C·slack), the hard one none


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_unconverged_solver_status_is_verified_not_trusted(monkeypatch, target):
    # clarabel's own status is not trusted either way: an exact answer reported as
    # InsufficientProgress is certified by its KKT system and kept (it used to raise SVMError).
    H, y, K = load_features(DATA / "svm_features_blobs3_epoch001.npz")
    expected = fit_svm(H, y, target, "crammer_singer", n_classes=K)
    real = qp._clarabel

    def stalls(pdiag, q, A, b, cones, time_limit, **options):
        status, x, z = real(pdiag, q, A, b, cones, time_limit, **options)
        return ("InsufficientProgress" if _hard_qp(q) else status), x, z

    monkeypatch.setattr(qp, "_clarabel", stalls)
    fit = fit_svm(H, y, target, "crammer_singer", n_classes=K)
    assert_exact_hard_fit(H, y, fit, K)
    np.testing.assert_allclose(fit.W, expected.W, rtol=1e-6, atol=1e-9 * np.abs(expected.W).max())


@pytest.mark.parametrize(
    "path,scheme",
    [
        (DATA / "svm_features_blobs0_epoch001.npz", "binary"),
        (DATA / "svm_features_d3_epoch133.npz", "binary"),
        (DATA / "svm_features_blobs3_epoch012.npz", "crammer_singer"),
        (DATA / "svm_features_blobs3_epoch012.npz", "ovr"),
    ],
    ids=lambda v: v.stem if isinstance(v, Path) else v,
)
@pytest.mark.parametrize("target", ["svc", "homog"])
def test_nnls_fallback_when_clarabel_fails(monkeypatch, path, scheme, target):
    # Every hard clarabel solve fails (a wrong iterate, meaningless duals): the NNLS
    # least-distance fallback, polished on its active set, must give the same exact fit.
    H, y, K = load_features(path)
    expected = fit_svm(H, y, target, scheme, n_classes=K)
    real = qp._clarabel

    def fails(pdiag, q, A, b, cones, time_limit, **options):
        status, x, z = real(pdiag, q, A, b, cones, time_limit, **options)
        if _hard_qp(q):
            return "InsufficientProgress", 0.97 * x, np.ones_like(z)
        return status, x, z

    monkeypatch.setattr(qp, "_clarabel", fails)
    fit = fit_svm(H, y, target, scheme, n_classes=K)
    assert_exact_hard_fit(H, y, fit, K)
    np.testing.assert_allclose(fit.W, expected.W, rtol=1e-5, atol=1e-8 * np.abs(expected.W).max())
    np.testing.assert_allclose(fit.b, expected.b, rtol=1e-5, atol=1e-8 * np.abs(expected.b).max())


def test_no_silent_soft_fit_when_every_solver_fails(monkeypatch):
    # Separable (the LP certifies it) but no hard solve can be verified: an SVMError that says
    # so, never a soft fit labelled "not separable".
    H, y = soudry_toy()
    real = qp._clarabel

    def broken(pdiag, q, A, b, cones, time_limit, **options):
        status, x, z = real(pdiag, q, A, b, cones, time_limit, **options)
        if _hard_qp(q):
            return "PrimalInfeasible", np.full_like(x, np.nan), z
        return status, x, z

    monkeypatch.setattr(qp, "_clarabel", broken)
    monkeypatch.setattr(qp, "_ldp_fallback", lambda *args, **kwargs: iter(()))
    with pytest.raises(svm.SVMError, match="separable"):
        fit_svm(H, y, "homog", "binary")


# --------------------------------------------------------------------------------------------
# The target through the origin (no bias), and how homog moves between svc and origin
# --------------------------------------------------------------------------------------------


def two_clusters(seed: int = 0, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """Two clusters at (1, 3) and (3, 1.2), std 0.3: separable with a bias and through the
    origin, by two different separators."""
    rng = np.random.default_rng(seed)
    H = np.r_[rng.normal([1.0, 3.0], 0.3, (n, 2)), rng.normal([3.0, 1.2], 0.3, (n, 2))]
    return H, np.repeat([0, 1], n)


def origin_qp(H: np.ndarray, s: np.ndarray) -> np.ndarray:
    """min ½‖u‖² s.t. sᵢ u·hᵢ ≥ 1, by clarabel on the full problem written out here (no
    preconditioning, no constraint generation): an independent solve."""
    import clarabel
    import scipy.sparse as sp

    n, d = H.shape
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-12
    solver = clarabel.DefaultSolver(sp.identity(d, format="csc"), np.zeros(d),
                                    sp.csc_matrix(-(H * s[:, None])), -np.ones(n),
                                    [clarabel.NonnegativeConeT(n)], settings)
    solution = solver.solve()
    assert str(solution.status).endswith("Solved")
    return np.asarray(solution.x)


def test_origin_matches_an_independent_qp_and_has_no_bias():
    H, y = two_clusters()
    fit = fit_svm(H, y, "origin", "binary")
    assert_exact_hard_fit(H, y, fit, 2)
    np.testing.assert_array_equal(fit.b, [0.0, 0.0])
    u = origin_qp(H, np.where(y == 1, 1.0, -1.0))
    np.testing.assert_allclose(fit.W[1] - fit.W[0], u, rtol=1e-6, atol=1e-8)
    assert svm.TARGETS == ("svc", "homog", "origin")


def angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b),
                                              -1, 1))))


def test_homog_moves_from_svc_to_origin_as_the_features_are_scaled_up():
    # homog is the SVM without intercept on [s·h, 1]: as s → 0 the constant coordinate is cheap
    # and it becomes svc; as s → ∞ the bias costs ever more and it becomes origin. svc and
    # origin themselves only scale with s (their direction does not move).
    H, y = two_clusters()
    normals = {}
    for s in (1e-3, 1.0, 1e3):
        fits = {t: fit_svm(s * H, y, t, "binary") for t in svm.TARGETS}
        normals[s] = {t: f.W[1] - f.W[0] for t, f in fits.items()}
    svc_origin = angle(normals[1.0]["svc"], normals[1.0]["origin"])
    assert svc_origin > 2.0  # two different targets
    assert angle(normals[1e-3]["homog"], normals[1e-3]["svc"]) < 0.01
    assert angle(normals[1e-3]["homog"], normals[1e-3]["origin"]) > svc_origin - 0.1
    assert angle(normals[1e3]["homog"], normals[1e3]["origin"]) < 0.01
    assert angle(normals[1e3]["homog"], normals[1e3]["svc"]) > svc_origin - 0.1
    at_one = (angle(normals[1.0]["homog"], normals[1.0]["svc"]),
              angle(normals[1.0]["homog"], normals[1.0]["origin"]))
    assert min(at_one) > 0.1  # in between at s = 1
    for target in ("svc", "origin"):
        assert angle(normals[1e-3][target], normals[1e3][target]) < 1e-6


@pytest.mark.parametrize("scheme", ["crammer_singer", "ovr"])
def test_origin_multiclass_is_exact_with_zero_biases(scheme):
    rng = np.random.default_rng(3)
    centres = np.array([[1.0, 4.0], [4.0, 1.0], [4.0, 4.0]]) * 3
    H = np.r_[tuple(rng.normal(c, 0.3, (80, 2)) for c in centres)]
    y = np.repeat([0, 1, 2], 80)
    fit = fit_svm(H, y, "origin", scheme)
    np.testing.assert_array_equal(fit.b, np.zeros(3))
    if scheme == "crammer_singer":
        assert_exact_hard_fit(H, y, fit, 3)
    else:  # class 2 sits between the others' directions: no ray separates it from the rest
        assert not fit.separable and not fit.hard_margin and "class 2: not separable" in fit.status


def test_origin_not_separable_when_both_classes_touch_the_origin():
    # A point of each class at h = 0 (a ReLU bottleneck off on both): no hyperplane through the
    # origin separates them, while a free bias still can separate the rest from class 1's 0.
    H, y = two_clusters()
    H = np.r_[H, [[0.0, 0.0]]]
    y = np.r_[y, [1]]
    origin = fit_svm(H, y, "origin", "binary")
    assert not origin.separable and not origin.hard_margin and origin.C == 1.0
    assert "not separable" in origin.status
    assert fit_svm(H, y, "svc", "binary").hard_margin


def test_origin_certificate_ignores_the_networks_bias():
    H, y = two_clusters()
    u = origin_qp(H, np.where(y == 1, 1.0, -1.0))
    good = (np.vstack([-u, u]), np.array([5.0, -5.0]))  # separates through 0, whatever its bias
    fit = fit_svm(H, y, "origin", "binary", certificate=good)
    assert fit.hard_margin and "through the origin separates every point" in fit.status
    # A layer that separates only with its bias proves nothing about the origin problem: the
    # status does not cite it (the data are separable through the origin all the same, which
    # the certified optimum itself proves).
    shifted = H + np.array([0.0, 10.0])
    w = np.array([1.0, -1.0])
    needs_bias = (np.vstack([-w / 2, w / 2]), np.array([-5.0, 5.0]))
    assert (functional_margins(shifted, y, *needs_bias, "binary") > 0).all()
    assert not (functional_margins(shifted, y, needs_bias[0], np.zeros(2), "binary") > 0).all()
    fit = fit_svm(shifted, y, "origin", "binary", certificate=needs_bias)
    assert fit.hard_margin and "given classifier" not in fit.status


def test_origin_of_features_spanning_ten_decades_is_exact():
    # Regression (a square-activation blobs run, epoch 275): class 0 sits at h ≈ (5e-10, 7e-5),
    # class 1 up to h₀ = 956, so the optimum through the origin has an objective of about 1e13.
    # A first solve at scale 1 and the NNLS fallback at that scale both fail; after the LP, the
    # solve starts from the scale of its (feasible) certificate.
    H, y, K = load_features(DATA / "svm_origin_square_epoch275.npz")
    fit = fit_svm(H, y, "origin", "binary")
    assert_exact_hard_fit(H, y, fit, K)
    assert "LP feasible" in fit.status


def test_origin_with_a_tiny_margin_through_the_origin_is_exact():
    # Regression (a leaky-ReLU blobs run, epoch 64): class 0 sits in a small region around
    # h = 0 on both sides of it, so the separator through the origin exists but needs
    # ‖u‖ ≈ 4e5. clarabel called a 52-point working set infeasible; the LP says otherwise, and
    # the exact NNLS solve of that set must then work at the optimum's own scale.
    H, y, K = load_features(DATA / "svm_origin_leaky_epoch064.npz")
    fit = fit_svm(H, y, "origin", "binary")
    assert_exact_hard_fit(H, y, fit, K)
    assert np.linalg.norm(fit.W[1] - fit.W[0]) > 1e5
    np.testing.assert_allclose(fit.W[1] - fit.W[0], origin_qp(H, np.where(y == 1, 1.0, -1.0)),
                               rtol=1e-4)
