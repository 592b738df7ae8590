"""Neural-collapse metrics on cases with a known answer (formulas: nnboundary.measures.collapse)."""

from __future__ import annotations

import numpy as np
import pytest

from nnboundary.measures.collapse import class_means, nc1, NC_COLUMNS, neural_collapse


def _simplex(K: int, d: int, scale: float = 3.0) -> np.ndarray:
    """K × d: the vertices of a centred simplex ETF of norm ``scale`` in the first K dims."""
    etf = np.sqrt(K / (K - 1)) * (np.eye(K) - np.ones((K, K)) / K)
    out = np.zeros((K, d))
    out[:, :K] = scale * etf
    return out


def _collapsed(K=4, d=6, per_class=(3, 3, 3, 3), offset=1.5):
    vertices = _simplex(K, d)
    y = np.repeat(np.arange(K), per_class)
    H = vertices[y] + offset  # no within-class spread; global mean moved away from 0
    return H, y, vertices


def test_an_exact_simplex_etf_with_self_dual_classifier_is_fully_collapsed():
    H, y, vertices = _collapsed()
    W = 2.0 * vertices + 7.0  # W̃ ∝ M̃ᵀ after the common row shift is removed
    row = neural_collapse(H, y, W, np.zeros(4))
    for name in NC_COLUMNS:
        assert row[name] == pytest.approx(0.0, abs=1e-12), name
    assert row["nc_degenerate"] is False


def test_imbalance_does_not_move_the_global_mean():
    # 10 points in one class, 1 in each other: the mean of the class means is the ETF's centre,
    # so the means still form an exact ETF; the mean of the points would not be.
    H, y, vertices = _collapsed(per_class=(10, 1, 1, 1))
    row = neural_collapse(H, y, vertices, np.zeros(4))
    assert row["nc2_etf_distance"] == pytest.approx(0, abs=1e-12)
    assert row["nc2_cos_shift_means"] == pytest.approx(0, abs=1e-12)
    assert row["nc2_norm_cv_means"] == pytest.approx(0, abs=1e-12)


def test_nc1_of_two_classes_on_a_line_is_sigma_squared_over_two():
    # Means ±1 (μ_G = 0): Σ_B = ((−1)² + 1²)/2 = 1, Σ_W = σ²: NC1 = Tr(σ² · 1)/K = σ²/2.
    sigma = 0.5
    H = np.array([[-1 - sigma], [-1 + sigma], [1 - sigma], [1 + sigma]])
    y = np.array([0, 0, 1, 1])
    assert nc1(H, y, class_means(H, y, 2)[0]) == pytest.approx(sigma**2 / 2)
    row = neural_collapse(H, y, np.array([[-1.0], [1.0]]), np.zeros(2))
    assert row["nc1"] == pytest.approx(0.125)
    # K = 2: the two centred means are always opposite, an ETF of two points.
    assert row["nc2_cos_shift_means"] == pytest.approx(0) and row["nc2_etf_distance"] == \
        pytest.approx(0, abs=1e-12)


def test_nc1_matches_the_pseudo_inverse_formula_on_random_data():
    rng = np.random.default_rng(0)
    K, d = 5, 7
    y = np.repeat(np.arange(K), 20)
    H = rng.normal(size=(100, d)) + 3 * rng.normal(size=(K, d))[y]
    means = class_means(H, y, K)[0]
    M = (means - means.mean(0)).T
    sigma_w = (H - means[y]).T @ (H - means[y]) / len(H)
    sigma_b = M @ M.T / K
    assert nc1(H, y, means) == pytest.approx(np.trace(sigma_w @ np.linalg.pinv(sigma_b)) / K,
                                              rel=1e-8)


def test_nc3_is_four_for_an_anti_aligned_classifier_and_ignores_row_shifts():
    H, y, vertices = _collapsed()
    assert neural_collapse(H, y, -vertices, np.zeros(4))["nc3_self_duality"] == pytest.approx(4)
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4, 6))
    a = neural_collapse(H, y, W, np.zeros(4))
    b = neural_collapse(H, y, W + rng.normal(size=6), np.zeros(4))  # a common row shift
    for name in ("nc3_self_duality", "nc2_norm_cv_weights"):
        assert a[name] == pytest.approx(b[name], rel=1e-12)


def test_nc4_on_a_hand_made_case():
    # Class means 0 and 4 on a line; the network's boundary sits at 1 instead of 2, so the
    # point at 1.5 (class 0, nearer mean 0) is predicted 1: 1 mismatch in 4 points.
    H = np.array([[-1.0], [1.5], [3.0], [5.0]])
    y = np.array([0, 0, 1, 1])
    W, b = np.array([[-1.0], [1.0]]), np.array([1.0, -1.0])  # logit gap 2h − 2 > 0 iff h > 1
    assert neural_collapse(H, y, W, b)["nc4_ncc_mismatch"] == pytest.approx(0.25)


def test_nc4_agrees_with_scikit_learns_nearest_centroid():
    from sklearn.neighbors import NearestCentroid

    rng = np.random.default_rng(2)
    K, d, n = 6, 4, 300
    y = rng.integers(0, K, n)
    H = rng.normal(size=(n, d)) + rng.normal(size=(K, d))[y]
    W, b = rng.normal(size=(K, d)), rng.normal(size=K)
    ncc = NearestCentroid().fit(H, y).predict(H)
    expected = float(((H @ W.T + b).argmax(1) != ncc).mean())
    assert neural_collapse(H, y, W, b)["nc4_ncc_mismatch"] == pytest.approx(expected)


def test_no_between_class_spread_is_a_marked_convention():
    H = np.ones((6, 3))
    y = np.array([0, 0, 1, 1, 2, 2])
    row = neural_collapse(H, y, np.eye(3), np.zeros(3))
    assert row["nc_degenerate"] is True
    assert np.isnan(row["nc1"]) and np.isnan(row["nc3_self_duality"])
    # A class without train points: nothing is defined.
    row = neural_collapse(H[:4], y[:4], np.eye(3), np.zeros(3))
    assert row["nc_degenerate"] is True and all(np.isnan(row[c]) for c in NC_COLUMNS)


def test_ten_class_sets_and_the_widths_of_the_collapse_grid():
    """digits and mnist5k hold all ten classes; bottleneck null is a variant ("none") whose
    features are the MLP's own hidden layer."""
    from conftest import REPO
    from nnboundary.settings import config as nbconfig
    from nnboundary.settings import grid
    from nnboundary.settings import keys
    from nnboundary.settings import layers
    from nnboundary.models.networks import build_model
    from nnboundary.data.make import make_dataset

    digits = make_dataset("digits", None, {"test_fraction": 0.2, "seed": 12345})
    assert digits.n_classes == 10 and digits.input_shape == (1, 8, 8)
    assert np.bincount(digits.y_train).min() > 100
    mnist = make_dataset("mnist5k", None, {"test_fraction": 0.2, "seed": 12345})
    assert mnist.n_classes == 10 and np.bincount(mnist.y_train).tolist() == [400] * 10
    config = nbconfig.load_config(REPO / "config.yaml", REPO / "configs" / "collapse.yaml")
    assert grid.variants(config) == ["bottleneck-2", "bottleneck-9", "bottleneck-32",
                                         "bottleneck-none"]
    assert keys.variant_values("bottleneck-none") == {"bottleneck": None}
    settings = layers.arch_settings(config, "mlp", "bottleneck-none", "digits")
    model = build_model("mlp", (1, 8, 8), 10, settings)
    assert model.last.in_features == settings["hidden"] == 100
    assert build_model("mlp", (1, 8, 8), 10, layers.arch_settings(
        config, "mlp", "bottleneck-9", "digits")).last.in_features == 9


def _trend_table(n_seeds=6):
    """A collapse table of one cell: per seed 5 checkpoints; NC1 falls in all seeds but the
    last; the angle to svc falls with NC3 (ρ = 1), the angle to homog rises with it (ρ = −1)."""
    import pandas as pd

    rows = []
    for seed in range(n_seeds):
        for i, epoch in enumerate([1, 3, 10, 30, 100]):
            nc1_value = (5 - i) if seed < n_seeds - 1 else (1 + i)
            rows.append(dict(dataset="digits", arch="mlp", variant="bottleneck-9", regime="full",
                             seed=seed, epoch=epoch, step=epoch, n_classes=10, feature_dim=9,
                             nc1=float(nc1_value), nc3_self_duality=1.0 / (1 + i),
                             angle_svc_deg=10.0 / (1 + i), angle_homog_deg=float(i),
                             nc_degenerate=False, valid=True, invalid_reason="",
                             **{c: 0.0 for c in NC_COLUMNS if c not in ("nc1", "nc3_self_duality")}))
    return pd.DataFrame(rows)


def test_run_trends_known_answers():
    from nnboundary.reporting.collapse import run_trends

    table = _trend_table()
    first = run_trends(table[table["seed"] == 0])
    assert np.isnan(first.pop("rho_origin_nc3"))  # no origin angle in this table
    assert first == {"nc1_fell": 1.0, "rho_svc_nc3": pytest.approx(1.0),
                     "rho_homog_nc3": pytest.approx(-1.0)}
    assert run_trends(table[table["seed"] == 5])["nc1_fell"] == 0.0
    frozen = table[table["seed"] == 0].assign(nc1=2.0)  # frozen features: no change, no seed
    assert np.isnan(run_trends(frozen)["nc1_fell"])
    few = table[(table["seed"] == 0) & (table["epoch"] <= 10)]  # 3 < 4 valid checkpoints
    assert np.isnan(run_trends(few)["rho_svc_nc3"])


def test_collapse_summary_counts_and_sign_tests():
    from nnboundary.reporting import stats
    from nnboundary.reporting.collapse import collapse_document, collapse_summary

    table = _trend_table()
    table.loc[(table["seed"] == 2) & (table["epoch"] == 100), "angle_svc_deg"] = 3.0  # not < 2°
    row = collapse_summary(table).iloc[0]
    assert (row["nc1_fell_k"], row["nc1_fell_n"]) == (5, 6)
    assert row["nc1_fell_p"] == pytest.approx(stats.sign_test(5, 6)) and row["nc1_fell_verdict"] == "undecided"
    # Final angle_svc is 2° in five seeds (not < 2°) and 3° in one: 0 of 6 below.
    assert (row["svc_lt2_k"], row["svc_lt2_n"], row["svc_lt2_verdict"]) == (0, 6, "fails")
    assert (row["homog_lt2_k"], row["homog_lt2_n"]) == (0, 6)
    # ρ(angle_svc, NC3) > 0 in every seed but seed 2 (its last angle breaks the order, still ρ>0)
    assert row["rho_svc_pos_k"] == 6 and row["rho_svc_pos_verdict"] == "holds"
    assert row["rho_svc_pos_p"] == pytest.approx(2 / 64)
    assert row["rho_homog_pos_k"] == 0 and row["rho_homog_nc3_median"] == pytest.approx(-1.0)
    text = str(collapse_document(collapse_summary(table)))
    assert "5/6 (p = 0.219, undecided)" in text and "6/6 (p = 0.0312, holds)" in text
