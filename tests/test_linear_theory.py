"""The linear case (nnboundary.measures.linear_theory): the theorem's pieces on problems with
known answers, the regularisation path, the numpy control against the pipeline's own
retraining, and the predictions on a synthetic run where many steps are cheap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnboundary.measures import linear_theory as lt


def test_the_loss_keeps_its_logarithm_far_below_float64():
    X = np.array([[1.0], [2.0]])
    # L = (log1p(e^-1000) + log1p(e^-2000)) / 2 ≈ e^-1000 / 2: far below 1e-308.
    assert lt.log_loss(X, np.array([1000.0])) == pytest.approx(-1000.0 - math.log(2.0),
                                                               abs=1e-12)
    assert lt.log_loss(X, np.array([0.0])) == pytest.approx(math.log(math.log(2.0)))


def test_max_margin_and_its_dual_on_a_known_problem():
    # Points ±1 on a line: augmented x = (1, 1) and (1, −1); through the origin the widest
    # margin is v̂ = (1, 0): the boundary at h = 0, bias 0, α = (1/2, 1/2).
    H, y = np.array([[1.0], [-1.0]]), np.array([1, 0])
    X = lt.augmented(H, y)
    assert np.array_equal(X, [[1.0, 1.0], [1.0, -1.0]])
    v_hat = lt.max_margin(H, y)
    np.testing.assert_allclose(v_hat, [1.0, 0.0], atol=1e-7)
    dual = lt.dual_of(X, v_hat)
    assert dual.n_support == 2 and dual.residual < 1e-7
    np.testing.assert_allclose(dual.alpha, [0.5, 0.5], atol=1e-7)
    v_tilde, free, zero = lt.correction(dual, np.zeros(2))
    assert (free, zero) == (0, 0)
    np.testing.assert_allclose(X @ v_tilde, -np.log(dual.alpha), atol=1e-9)


def test_repeated_support_points_share_their_coefficient():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    dual = lt.dual_of(X, np.array([1.0, 1.0]))
    assert dual.n_support == 4 and len(dual.points) == 2
    np.testing.assert_allclose(dual.points.T @ (dual.alpha * dual.count), [1.0, 1.0])
    v_tilde, free, zero = lt.correction(dual, np.zeros(2))
    assert free == 0 and zero == 0  # x₁ = (1, 0) stands for three points of α = 1/3 each
    assert v_tilde[0] == pytest.approx(math.log(3.0))


def test_the_predicted_path_and_the_regularisation_path_on_one_point():
    """One point x = 2: the least-norm v with loss L is log(1/expm1(L))/2, at any depth; the
    path v̂·s (v̂ = 1/2) meets it."""
    X = np.array([[2.0]])
    for log_target in (math.log(1e-3), -500.0, -5000.0):
        expected = -math.log(math.expm1(math.exp(log_target))) / 2 if log_target > -700 else \
            -log_target / 2
        path = lt.predicted_path(X, np.array([0.5]), np.zeros(1), log_target)
        assert path[0] == pytest.approx(expected, rel=1e-12)
        reg = lt.regularised(X, log_target, path * 0.9)
        assert reg[0] == pytest.approx(expected, rel=1e-10)
        assert lt.log_loss(X, reg) == pytest.approx(log_target, rel=1e-10, abs=1e-10)


def test_the_regularisation_path_is_the_least_norm_point_of_its_loss():
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(30, 3))) + 0.1  # separable through the origin
    log_target = math.log(1e-6)
    reg = lt.regularised(X, log_target, np.full(3, 5.0))
    assert lt.log_loss(X, reg) == pytest.approx(log_target, abs=1e-9)
    # Any other direction needs a larger norm to reach the same loss.
    for _ in range(20):
        direction = reg / np.linalg.norm(reg) + 0.05 * rng.normal(size=3)
        other = lt.predicted_path(X, direction, np.zeros(3), log_target)
        assert np.linalg.norm(other) >= np.linalg.norm(reg) * (1 - 1e-9)


def test_angle_is_accurate_near_zero():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([1.0, 1e-10, 0.0])
    assert lt.angle_deg(a, b) == pytest.approx(math.degrees(1e-10), rel=1e-6)
    assert lt.angle_deg(a, -a) == pytest.approx(180.0)


def _synthetic():
    """Two clouds in 2-D whose max-margin separator of the augmented points has three support
    vectors spanning the space (seed 2: the theorem's ṽ is fully determined)."""
    rng = np.random.default_rng(2)
    H = np.r_[rng.normal([2.0, 1.0], 0.6, size=(8, 2)), rng.normal([-1.0, -0.5], 0.6, size=(8, 2))]
    return H, np.r_[np.ones(8, int), np.zeros(8, int)]


def test_on_a_cheap_synthetic_run_both_predictions_close_in_with_depth():
    """The derivation checked where many steps are cheap: gradient descent with the loss-scaled
    step from a small layer, to a loss of 1e-88; the angle between the layer and each
    prediction at the same loss falls with depth, to below 0.1°."""
    H, y = _synthetic()
    X = lt.augmented(H, y)
    v_hat = lt.max_margin(H, y)
    dual = lt.dual_of(X, v_hat)
    W0, b0 = np.array([[0.01, -0.02], [0.03, 0.0]]), np.array([0.1, 0.1])
    v_tilde, free, zero = lt.correction(dual, np.r_[W0[1] - W0[0], b0[1] - b0[0]])
    assert (dual.n_support, free, zero) == (3, 0, 0)
    curvature = (np.max((H ** 2).sum(axis=1)) + 1) / 2
    kept = lt.control_run(H, y, W0, b0, 1.0 / curvature,
                          {"schedule": "loss_scaled", "schedule_cap": 1e100, "epochs": 3000,
                           "until_loss": 1e-88}, set(range(1, 3001)))
    errors = {}
    for epoch, (W, b, loss) in kept.items():
        v = np.r_[W[1] - W[0], b[1] - b[0]]
        log_l = math.log(loss)
        predicted = lt.predicted_path(X, v_hat, v_tilde, log_l)
        reg = lt.regularised(X, log_l, lt.predicted_path(X, v_hat, np.zeros(3), log_l))
        errors[loss] = (lt.angle_deg(v, predicted), lt.angle_deg(v, reg))
    losses = sorted(errors)
    shallow = min(losses, key=lambda value: abs(math.log(value) - math.log(1e-12)))
    deepest = losses[0]
    assert deepest < 1e-88
    for which in (0, 1):
        assert errors[deepest][which] < 0.1
        assert errors[deepest][which] < errors[shallow][which] / 5


def test_the_control_rejects_and_backs_off_like_the_schedule():
    """A base step far too large: the first epochs are rejected, the step halves until the loss
    falls, and the kept epochs are the accepted ones."""
    H, y = _synthetic()
    W0, b0 = np.zeros((2, 2)), np.zeros(2)
    kept = lt.control_run(H, y, W0, b0, 1e3, {"schedule": "loss_scaled", "schedule_cap": 1e6,
                                             "epochs": 50, "until_loss": None}, set(range(1, 51)))
    losses = [kept[e][2] for e in sorted(kept)]
    assert len(kept) == 50 and all(b <= a * (1 + 1e-3) for a, b in zip(losses, losses[1:]))


def test_what_the_control_cannot_rerun_is_said():
    assert lt.replicable({"schedule": "loss_scaled"}, {"optimizer": "sgd"}) == ""
    assert "adam" in lt.replicable({}, {"optimizer": "adam"})
    assert lt.replicable({}, {"optimizer": "sgd", "momentum": 0.9}) != ""
    assert "mini-batches" in lt.replicable({}, {"optimizer": "sgd", "steps_per_epoch": 4})


def test_the_control_reruns_the_pipelines_retraining_to_round_off(tmp_path):
    """The retrain stage's own run (its training code, torch, the lone-layer kernel, the
    loss-scaled schedule) against the numpy control from the run's recorded initial layer and
    step, at every kept epoch."""
    from nnboundary.data.make import make_dataset
    from nnboundary.formats.features import read_features, write_features
    from nnboundary.models.restore import forward_features, model_at
    from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_RETRAIN, DEFAULT_TRAIN
    from nnboundary.training.retrain import retrain_run
    from nnboundary.training.train import train_run

    data = make_dataset("blobs", 0, {"n_samples": 300, "test_fraction": 0.2, "seed": 1})
    train = dict(DEFAULT_TRAIN, optimizer="adam", lr=0.01, epochs=30, checkpoints=[30],
                 log_every=1000, dtype="float64")
    full = train_run(data, "mlp", 0, dict(DEFAULT_ARCH["mlp"], hidden=16), train)
    retrained = retrain_run(full, data, dict(DEFAULT_RETRAIN, epochs=400, until_loss=1e-30,
                                             loss="cross_entropy", label_smoothing=0.0,
                                             optimizer="sgd", lr=64.0, lr_relative=True,
                                             schedule="loss_scaled", schedule_cap=1e100,
                                             loss_milestones=[1e-4, 1e-16], log_every=1000,
                                             device="cpu", dtype="float64"))
    H, _ = forward_features(model_at(retrained, retrained["epochs"][-1]), data.X_train, "cpu")
    sets = []
    for epoch in retrained["epochs"]:
        state = retrained["states"][epoch]
        W, b = state["last.weight"].double().numpy(), state["last.bias"].double().numpy()
        path = tmp_path / f"epoch{epoch:06d}.parquet"
        write_features(path, {"dataset": "blobs", "epoch": epoch}, W, b,
                       {"train": (data.y_train, H, H @ W.T + b)})
        sets.append(read_features(path))
    table = lt.run_table(sets, retrained)
    assert retrained["training"]["schedule"] == "loss_scaled"
    assert (table["control"] == "re-run").all() and len(table) == len(sets) >= 4
    assert table["control_vs_measured_deg"].max() < 1e-9
    assert table["final"].sum() == 1 and table["train_loss"].min() < 1e-30


def test_features_without_a_separator_are_said_and_hold_no_angle(tmp_path):
    """Two train points at the same h with both labels: no hyperplane separates them, so the
    rows say so, hold no angle, and the summary counts the run apart from the measured ones."""
    import pandas as pd

    from nnboundary.formats.features import read_features, write_features
    from nnboundary.reporting.theory import theory_summary

    H = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0], [-2.0, 0.5]])
    y = np.array([0, 1, 1, 0])
    sets = []
    for epoch, scale in ((1, 0.1), (2, 1.0)):
        W = scale * np.array([[-1.0, 0.0], [1.0, 0.0]])
        b = np.zeros(2)
        path = tmp_path / f"epoch{epoch}.parquet"
        write_features(path, {"dataset": "rings", "epoch": epoch}, W, b,
                       {"train": (y, H, H @ W.T + b)})
        sets.append(read_features(path))
    checkpoints = {"initial_last": {"weight": np.zeros((2, 2)), "bias": np.zeros(2)},
                   "retrain_settings": {"schedule": "constant", "loss_milestones": [0.5]},
                   "training": {"optimizer": "adam"}}
    table = lt.run_table(sets, checkpoints)
    assert len(table) == 2 and not table["separable"].any()
    assert (table["assumptions"] == lt.NOT_SEPARABLE).all()
    angles = ["angle_homog_deg", "reg_angle_homog_deg", "turn_log10_inverse_loss"]
    assert table[angles].isna().all().all()
    assert table["control"].str.contains("adam").all()
    assert table["train_loss"].min() > math.log(2) / 4  # the tie keeps its log 2 / n floor
    keys = {"dataset": "rings", "arch": "mlp", "variant": "plain"}
    summary = theory_summary(pd.concat([table.assign(**keys, seed=0),
                                        table.assign(**keys, seed=1)]))
    assert summary.loc[0, "n_runs"] == 2 and summary.loc[0, "runs_not_separable"] == 2
    assert summary.loc[0, "within_tolerance"] == 0
