"""The interior-point path of the exact hard margin (svm.interior): on a real checkpoint that
the liblinear start could not certify, against the active-set path, its fallback, the solver
record of a fit, and ``nnboundary benchmark svm --features`` on real checkpoint files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnboundary.formats import features as fio
from nnboundary.svm import SVMFit, TARGETS, fit_svm, functional_margins
from nnboundary.bench.svm import collapsed_features
from test_svm import DATA, assert_exact_hard_fit, load_features
from test_svm_wide import WIDE_BADLY_CONDITIONED

# A ten-class MLP at bottleneck width 32 on digits, epoch 64 of a run to 1e-32 (1,438 train
# points; rounded to float32 for the file). Before the interior-point path its homog fit took
# 37 s here: liblinear did not converge in 10⁵ sweeps (objective weights 1 to 6·10⁶), both of
# its guesses were thousands of constraints off, and constraint generation solved 578-point
# working sets with clarabel at 3–5 s each.
WIDTH32 = DATA / "svm_width32_digits_epoch064.npz"


@pytest.fixture
def no_interior(monkeypatch):
    """Send wide problems to the liblinear start of ``active`` (the path before this one)."""
    from nnboundary.svm import _interior as interior

    monkeypatch.setattr(interior, "MAX_FLOPS", -1.0)


@pytest.mark.parametrize("target", TARGETS)
def test_real_width32_checkpoint_is_certified_by_the_interior_point_path(target):
    H, y, K = load_features(WIDTH32)
    fit = fit_svm(H, y, target, "crammer_singer", n_classes=K)
    solver = fit.solver
    assert solver["path"] == "interior-point", fit.status
    assert "declined" not in solver
    # Its numbers: iterations to a relative gap ≤ 1e-4, then few exact active-set rounds
    # that end on a certificate (KKT residual ≤ 1e-9, no negative multiplier, every margin ≥ 1).
    assert solver["iterations"] <= 40 and solver["gap"] <= 1e-4
    assert 1 <= solver["rounds"] <= 10 and len(solver["active_sizes"]) == solver["rounds"]
    assert 150 <= solver["active_sizes"][-1] <= 300
    assert solver["residual"] <= 1e-9 and solver["min_alpha"] >= -1e-9
    assert solver["min_margin"] >= 1 - 1e-7
    assert_exact_hard_fit(H, y, fit, K)


@pytest.mark.parametrize("target", TARGETS)
def test_interior_point_and_active_set_paths_give_the_same_optimum(target, monkeypatch):
    from nnboundary.svm import _interior as interior

    H, y = collapsed_features(800, 32, 10, noise=3.0, seed=11)
    fit = fit_svm(H, y, target, "crammer_singer", n_classes=10)
    assert fit.solver["path"] == "interior-point", fit.status
    monkeypatch.setattr(interior, "MAX_FLOPS", -1.0)
    other = fit_svm(H, y, target, "crammer_singer", n_classes=10)
    assert other.solver["path"] == "active-set", other.status
    # Both are the certified KKT point of a strictly convex problem: the same point.
    scale = np.abs(fit.W).max()
    np.testing.assert_allclose(fit.W, other.W, atol=1e-8 * scale)
    np.testing.assert_allclose(fit.b, other.b, atol=1e-8 * max(scale, np.abs(fit.b).max()))
    assert_exact_hard_fit(H, y, fit, 10)


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_interior_point_path_on_binary_problems(target, monkeypatch):
    from nnboundary.svm import _active as active

    monkeypatch.setattr(active, "MIN_VARIABLES", 0)  # a binary problem of 13 variables
    rng = np.random.default_rng(4)
    H = np.r_[rng.normal(0, 1, (300, 12)) + 1.5, rng.normal(0, 1, (300, 12)) - 1.5]
    y = np.r_[np.ones(300, int), np.zeros(300, int)]
    fit = fit_svm(H, y, target, "binary")
    assert fit.solver["path"] == "interior-point" and fit.hard_margin, fit.status
    assert functional_margins(H, y, fit.W, fit.b, "binary").min() == pytest.approx(1.0, abs=1e-9)
    assert_exact_hard_fit(H, y, fit, 2)


@pytest.mark.parametrize("name", list(WIDE_BADLY_CONDITIONED))
@pytest.mark.parametrize("target", ["svc", "homog"])
def test_badly_conditioned_features_are_certified_by_the_interior_point_path(
    name, target, monkeypatch
):
    # 500× features, dead and constant units: the interior-point path certifies them. On
    # crowded, nearly collinear features (spreads 1e-3 to 1e-8, objective weights of the
    # whitened problem up to 4·10¹⁶) its normal equations lose every digit, the primal
    # stalls below margin 1 while the multipliers grow without bound, and it declines: the
    # fit is still exact, by constraint generation.
    from nnboundary.svm import _active as active

    monkeypatch.setattr(active, "MIN_VARIABLES", 0)
    H, y, _ = WIDE_BADLY_CONDITIONED[name]()
    K = int(y.max()) + 1
    fit = fit_svm(H, y, target, "binary" if K == 2 else "crammer_singer", n_classes=K)
    if "1e-8" in name:
        assert fit.solver["declined"][0]["path"] == "interior-point", fit.status
    else:
        assert fit.solver["path"] == "interior-point", fit.status
    assert_exact_hard_fit(H, y, fit, K)


def test_an_uncertified_interior_point_run_falls_back_and_says_so(monkeypatch):
    from nnboundary.svm import _interior as interior

    monkeypatch.setattr(interior, "_ITERATIONS", 2)  # stops long before any guess is tried
    H, y = collapsed_features(500, 32, 10, noise=4.0, seed=3)
    fit = fit_svm(H, y, "svc", "crammer_singer", n_classes=10)
    assert fit.hard_margin and fit.solver["path"] == "active-set", fit.status
    declined = fit.solver["declined"]
    assert [d["path"] for d in declined] == ["interior-point"]
    assert "2 interior-point iterations" in declined[0]["why"]
    assert "interior-point path declined" in fit.status
    assert_exact_hard_fit(H, y, fit, 10)


def test_wide_non_separable_data_go_soft_after_both_paths_decline():
    # Ten-class features with one point repeated under another label: no hard margin exists,
    # neither path certifies anything, the LP decides.
    H, y = collapsed_features(200, 32, 10, noise=4.0, seed=2)
    H, y = np.r_[H, H[:1]], np.r_[y, (y[0] + 1) % 10]
    fit = fit_svm(H, y, "svc", "crammer_singer", n_classes=10)
    assert not fit.separable and fit.solver["path"] == "soft", fit.status
    assert [d["path"] for d in fit.solver["declined"]] == ["interior-point", "active-set"]


def test_solver_record_survives_json(tmp_path):
    H, y = collapsed_features(400, 32, 10, noise=4.0, seed=5)
    fit = fit_svm(H, y, "homog", "crammer_singer", n_classes=10)
    text = json.dumps(fit.to_json(), allow_nan=False)  # strict JSON: no NaN or numpy types
    back = SVMFit.from_json(json.loads(text))
    assert back.solver == json.loads(text)["solver"] and back.solver["path"] == "interior-point"
    small = fit_svm(H[:, :2], y, "svc", "ovr", n_classes=10)
    assert small.solver["path"] == "ovr" and len(small.solver["classes"]) == 10


def test_benchmark_on_real_checkpoint_files(tmp_path, capsys):
    from nnboundary.stages.benchmark import main

    H, y, K = load_features(WIDTH32)
    rng = np.random.default_rng(0)
    keep = rng.choice(len(y), 400, replace=False)
    W, b = np.zeros((K, H.shape[1])), np.zeros(K)
    logits = np.zeros((len(y), K))
    parts = {"train": (y[keep], H[keep], logits[keep]), "test": (y[:5], H[:5], logits[:5])}
    run = tmp_path / "run" / "features"
    for epoch in (3, 7):
        keys = {"dataset": "digits", "arch": "mlp", "variant": "bottleneck-32", "regime": "full",
                "seed": 0, "epoch": epoch}
        fio.write_features(run / fio.feature_file_name(epoch), keys, W, b, parts)
    out = tmp_path / "svm_real.json"
    assert main(["svm", "--features", str(run), "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    rows = record["real"]
    assert "cores" in record["device"] and "wide" not in record and "planar" not in record
    assert [(r["epoch"], r["target"]) for r in rows] == [(e, t) for e in (3, 7) for t in TARGETS]
    for row in rows:
        assert row["n"] == 400 and row["d"] == 32 and row["K"] == 10
        assert row["hard"] and row["path"] == "interior-point" and row["seconds"] > 0
        assert row["peak_mb"] >= row["start_mb"] > 0 and row["solver"]["rounds"] >= 1
    printed = capsys.readouterr().out
    assert "interior-point" in printed and "peak MB" in printed


def test_svm_stage_holds_blas_to_its_threads(tmp_path, monkeypatch):
    import threadpoolctl

    from nnboundary.stages import svm as stage

    with pytest.raises(SystemExit):
        stage.main(["--features", str(tmp_path), "--output", str(tmp_path / "s.json"),
                    "--threads", "0"])
    seen = []

    def record(features, settings, log=None):
        seen.append(max(info["num_threads"] for info in threadpoolctl.threadpool_info()))
        return {}, []

    monkeypatch.setattr(stage, "fit_run", record)
    assert stage.main(["--features", str(tmp_path), "--output", str(tmp_path / "s.json")]) == 0
    assert seen == [1]  # the default: the svm rule's one thread
    assert stage.main(["--features", str(tmp_path), "--output", str(tmp_path / "t.json"),
                       "--threads", "2"]) == 0
    assert seen[-1] <= 2
