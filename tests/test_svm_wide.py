"""The exact hard margin of wide features (svm.active): against an independent solve, the
binary and one-vs-rest paths, the fallback when it declines, and the memory limit."""

from __future__ import annotations

import clarabel
import numpy as np
import pytest
import scipy.sparse as sp

from nnboundary.svm import TARGETS, SVMError, fit_svm, functional_margins
from nnboundary.bench.svm import collapsed_features
from nnboundary.svm._memory import check_memory, MEMORY_LIMIT
from nnboundary.svm import SVMMemoryError
from test_svm import assert_exact_hard_fit, network_like


@pytest.fixture
def any_width(monkeypatch):
    """Route every d > 3 problem through the active-set path, however few its variables (by
    default only problems with ≥ active.MIN_VARIABLES take it, and those small enough for
    svm.interior take that path first), so small cases test it."""
    from nnboundary.svm import _active as active
    from nnboundary.svm import _interior as interior

    monkeypatch.setattr(active, "MIN_VARIABLES", 0)
    monkeypatch.setattr(interior, "MAX_FLOPS", -1.0)


def independent_crammer_singer(H, y, K, target):
    """The hard Crammer–Singer QP over every point, written out directly in the original
    coordinates and handed to clarabel in one piece (no whitening, working set or polish):
    variables [W (K·d), b (K)], objective ½‖W‖² (+ ½‖b‖² for homog), one row per (i, k ≠ yᵢ),
    and Σb = 0 for svc."""
    n, d = H.shape
    p = K * (d + 1)
    rows, cols, vals = [], [], []
    r = 0
    for i in range(n):
        for k in range(K):
            if k == y[i]:
                continue
            for col, sign in ((y[i], 1.0), (k, -1.0)):
                rows += [r] * (d + 1)
                cols += list(range(col * d, col * d + d)) + [K * d + col]
                vals += list(sign * H[i]) + [sign]
            r += 1
    G = sp.csc_matrix((vals, (rows, cols)), shape=(r, p))
    pdiag = np.r_[np.ones(K * d), np.full(K, 1.0 if target == "homog" else 0.0)]
    A, b, cones = -G, -np.ones(r), [clarabel.NonnegativeConeT(r)]
    if target == "svc":
        eq = sp.csc_matrix(np.r_[np.zeros(K * d), np.ones(K)][None, :])
        A, b, cones = sp.vstack([eq, A]).tocsc(), np.r_[0.0, b], [clarabel.ZeroConeT(1)] + cones
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-10
    sol = clarabel.DefaultSolver(sp.diags(pdiag).tocsc(), np.zeros(p), A, b, cones, settings).solve()
    assert "Solved" in str(sol.status)
    x = np.asarray(sol.x)
    return x[: K * d].reshape(K, d), x[K * d :]


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_wide_crammer_singer_equals_an_independent_solve(target):
    # n = 500, d = 64, K = 10: the size the issue names.
    H, y = collapsed_features(500, 64, 10, noise=4.0, seed=3)
    fit = fit_svm(H, y, target, "crammer_singer", n_classes=10)
    assert fit.hard_margin and fit.separable and fit.C is None
    # The interior-point path (this size is small enough for it), not the fallback.
    assert "exact KKT point" in fit.status and fit.solver["path"] == "interior-point", fit.status
    W, b = independent_crammer_singer(H, y, 10, target)
    # clarabel stops at its tolerances (objective within ~1e-10, so W within ~1e-5 of the
    # optimum by strong convexity); ours is the KKT point itself.
    scale = np.abs(W).max()
    np.testing.assert_allclose(fit.W, W, atol=1e-4 * scale)
    np.testing.assert_allclose(fit.b, b, atol=1e-4 * max(scale, np.abs(b).max()))
    m = functional_margins(H, y, fit.W, fit.b, "crammer_singer")
    assert m.min() == pytest.approx(1.0, abs=1e-9)  # exact: active constraints at 1, none below
    ours = 0.5 * (fit.W**2).sum() + (0.5 * (fit.b**2).sum() if target == "homog" else 0.0)
    theirs = 0.5 * (W**2).sum() + (0.5 * (b**2).sum() if target == "homog" else 0.0)
    assert ours == pytest.approx(theirs, rel=1e-8)


@pytest.mark.parametrize("target", ["svc", "homog"])
def test_wide_binary_and_ovr_take_the_active_set_path(target, any_width):
    rng = np.random.default_rng(4)
    H = np.r_[rng.normal(0, 1, (300, 12)) + 1.5, rng.normal(0, 1, (300, 12)) - 1.5]
    y = np.r_[np.ones(300, int), np.zeros(300, int)]
    fit = fit_svm(H, y, target, "binary")
    assert fit.hard_margin and "exact KKT point" in fit.status, fit.status
    assert functional_margins(H, y, fit.W, fit.b, "binary").min() == pytest.approx(1.0, abs=1e-9)
    H3, y3 = collapsed_features(600, 16, 3, noise=1.0, seed=1)
    fit3 = fit_svm(H3, y3, target, "ovr")
    assert fit3.hard_margin, fit3.status
    assert fit3.status.count("exact KKT point") == 3


def test_wide_nonseparable_data_fall_back_to_the_lp_and_soft_fit(any_width):
    # Overlapping Gaussians in 6-D: no hard margin; the active-set path must decline (it never
    # claims what it cannot certify) and the LP decides.
    rng = np.random.default_rng(0)
    H = np.r_[rng.normal(0, 1, (400, 6)) + 0.3, rng.normal(0, 1, (400, 6)) - 0.3]
    y = np.r_[np.ones(400, int), np.zeros(400, int)]
    fit = fit_svm(H, y, "svc", "binary")
    assert not fit.separable and not fit.hard_margin and fit.C == 1.0
    assert "active-set path declined" in fit.status and "not separable" in fit.status


def test_fit_that_needs_more_memory_than_allowed_stops_with_a_clear_message():
    H, y = collapsed_features(2000, 64, 10, seed=0)
    with pytest.raises(SVMMemoryError) as err:
        fit_svm(H, y, "svc", "crammer_singer", max_memory_gb=0.01)
    text = str(err.value)
    assert "2000 points × 64 features" in text and "GiB" in text and "max_memory_gb" in text
    assert isinstance(err.value, SVMError)
    # The limit is the fit's own: after it, the default (what is available) applies again.
    assert MEMORY_LIMIT.get() is None
    check_memory(1e6, "a small array")  # well below what any test machine has
    with pytest.raises(ValueError, match="max_memory_gb"):
        fit_svm(H, y, "svc", "crammer_singer", max_memory_gb=-1)


def test_memory_limit_holds_inside_the_solver(monkeypatch, any_width):
    # With the up-front estimate switched off, a limit below the KKT system of the active set
    # (about 400 constraints: 24·400² bytes ≈ 3.8 MB) is caught by the per-round check: still
    # SVMMemoryError before the allocation, never the kernel's OOM killer.
    from nnboundary.svm import _active as active
    from nnboundary.svm import _fit as svm_fit

    H, y = collapsed_features(3000, 64, 10, seed=2)
    monkeypatch.setattr(active, "memory_estimate", lambda n, d, blocks: 0)
    monkeypatch.setattr(svm_fit, "_FEATURE_COPIES", 0)
    with pytest.raises(SVMMemoryError, match="KKT system of [0-9]+ active constraints"):
        fit_svm(H, y, "homog", "crammer_singer", max_memory_gb=1e6 / 2**30)


WIDE_BADLY_CONDITIONED = {
    # name: (features, labels, fast): fast = the active-set path must certify it. On crowded,
    # nearly collinear features liblinear does not converge (its dual coordinate descent sees
    # the original spreads, 1e-3 to 1e-8), the path declines, and constraint generation fits
    # them: exact either way.
    "crowded 8-D, spreads 1e-3..1e-8": lambda: (*network_like(5, 1500, 8, 3, (1e-3, 1e-8)), False),
    "crowded 8-D, 500x": lambda: (
        500 * network_like(6, 1500, 8, 2)[0], network_like(6, 1500, 8, 2)[1], False
    ),
    # Collapsed ten-class features with two dead units (exactly 0 everywhere) and a constant one.
    "collapsed, dead and constant units": lambda: (
        *_with_constant_units(*collapsed_features(2000, 20, 10, noise=2.0, seed=7)), True
    ),
}


def _with_constant_units(H, y):
    return np.c_[H, np.zeros((len(y), 2)), np.full(len(y), 3.0)], y


@pytest.mark.parametrize("name", list(WIDE_BADLY_CONDITIONED))
@pytest.mark.parametrize("target", ["svc", "homog"])
def test_badly_conditioned_wide_features_give_exact_hard_fits(name, target, any_width):
    H, y, fast = WIDE_BADLY_CONDITIONED[name]()
    K = int(y.max()) + 1
    scheme = "binary" if K == 2 else "crammer_singer"
    fit = fit_svm(H, y, target, scheme, n_classes=K)
    if fast:
        assert "exact KKT point" in fit.status, fit.status
    else:
        assert "exact KKT point" in fit.status or "active-set path declined" in fit.status
    # The checks of test_svm: margins agree, the minimum is 1, and an independent KKT residual
    # (NNLS on the active constraints in the original coordinates) is small.
    assert_exact_hard_fit(H, y, fit, K)


def test_narrow_problems_stay_with_constraint_generation():
    # K·(d + 1) = 3·9 < active.MIN_VARIABLES: the qp path, as before the active-set path existed.
    H, y = collapsed_features(600, 8, 3, noise=1.0, seed=5)
    fit = fit_svm(H, y, "svc", "crammer_singer")
    assert fit.hard_margin and "active-set" not in fit.status and "hard QP solved" in fit.status


@pytest.mark.parametrize("scheme", ["crammer_singer", "binary"])
def test_a_separating_certificate_replaces_the_lp(scheme, monkeypatch):
    from nnboundary.svm import _fit as svm_fit

    K = 3 if scheme == "crammer_singer" else 2
    H, y = collapsed_features(600, 8, K, noise=0.5, seed=6)
    plain = fit_svm(H, y, "homog", scheme)
    means = np.array([H[y == k].mean(axis=0) for k in range(K)])
    W, b = means, -0.5 * (means**2).sum(axis=1)  # the nearest-mean classifier separates them
    assert functional_margins(H, y, W, b, scheme).min() > 0

    def no_lp(*args, **kwargs):
        raise AssertionError("the LP ran although a certificate was given")

    monkeypatch.setattr(svm_fit, "separability", no_lp)
    fit = fit_svm(H, y, "homog", scheme, certificate=(W, b))
    assert fit.hard_margin and "the given classifier separates every point" in fit.status
    np.testing.assert_allclose(fit.W, plain.W, rtol=1e-6, atol=1e-9 * np.abs(plain.W).max())
    # A classifier that misclassifies a point proves nothing: the status does not cite it; the
    # certified optimum proves separability by itself, so the LP does not run either.
    fit2 = fit_svm(H, y, "homog", scheme, certificate=(-W, b))
    assert fit2.hard_margin and "given classifier" not in fit2.status
    monkeypatch.undo()
    with pytest.raises(ValueError, match="certificate has W"):
        fit_svm(H, y, "homog", scheme, certificate=(W[:, :3], b))


def test_cgroup_memory_limits_are_read_for_v1_and_v2(tmp_path):
    from nnboundary.svm._memory import cgroup_rooms

    proc = tmp_path / "cgroup"
    # v2: a SLURM job's group with 4 GiB, 1 GiB used.
    v2 = tmp_path / "sys" / "system.slice" / "job_7"
    v2.mkdir(parents=True)
    (v2 / "memory.max").write_text(f"{4 * 2**30}\n")
    (v2 / "memory.current").write_text(f"{2**30}\n")
    proc.write_text("0::/system.slice/job_7\n")
    assert cgroup_rooms(str(proc), str(tmp_path / "sys")) == [3 * 2**30]
    (v2 / "memory.max").write_text("max\n")
    assert cgroup_rooms(str(proc), str(tmp_path / "sys")) == []
    # v1: the memory controller's own hierarchy; "no limit" is written as about 2^63.
    v1 = tmp_path / "sys" / "memory" / "box"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{2 * 2**30}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2**29}\n")
    proc.write_text("4:memory:/box\n0::/\n")
    assert cgroup_rooms(str(proc), str(tmp_path / "sys")) == [2 * 2**30 - 2**29]
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_rooms(str(proc), str(tmp_path / "sys")) == []
    assert cgroup_rooms(str(tmp_path / "missing"), str(tmp_path / "sys")) == []


def test_benchmark_svm_prints_the_wide_table_and_writes_json(tmp_path, capsys):
    # The command the benchmarks page's numbers come from, on one small size (fits in a spawned
    # process).
    import json

    from nnboundary.stages import benchmark
    from nnboundary.bench import svm as bench

    rows = bench.benchmark_wide(sizes=((400, 64, 10, 4.0),))
    out = capsys.readouterr().out
    assert "peak MB" in out and len(rows) == len(TARGETS)
    for row in rows:
        assert row["hard"] and row["exact"] and row["n"] == 400 and row["d"] == 64
        assert row["peak_mb"] > 0 and row["min_margin"] == pytest.approx(1.0, abs=1e-9)
    # The CLI with --no-wide writes the 2-D table's rows and names the machine.
    path = tmp_path / "svm.json"
    assert benchmark.main(["svm", "--n", "600", "--no-wide", "--output", str(path)]) == 0
    record = json.loads(path.read_text())
    assert "cores" in record["device"] and len(record["planar"]) == 7 * len(TARGETS) and "wide" not in record


def test_the_lp_runs_only_where_no_certified_optimum_is_found(monkeypatch):
    # Separable: the certified optimum of constraint generation is feasible, which proves
    # separability, so the LP never runs. Not separable: clarabel finds a working set
    # infeasible, and the LP confirms it before the soft fit.
    from nnboundary.svm import _fit as svm_fit

    calls = []
    real = svm_fit.separability

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(svm_fit, "separability", counted)
    H, y = collapsed_features(600, 8, 3, noise=0.5, seed=6)
    assert fit_svm(H, y, "svc", "crammer_singer").hard_margin and not calls
    rng = np.random.default_rng(0)
    H = rng.normal(size=(400, 2))
    y = (rng.random(400) < 0.5).astype(int)
    fit = fit_svm(H, y, "svc", "binary")
    assert not fit.separable and calls and "LP infeasible" in fit.status
