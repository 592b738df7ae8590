"""The convergence module: gaps, the 1/log t fit, run keys, summarising rows, the table.

:func:`synthetic_metrics` builds a metrics table with known gaps; the figures and aggregate
tests use it too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnboundary.measures import validity
from nnboundary.reporting import convergence
from nnboundary.reporting.convergence import (MEAN_SEED, angle_gap, convergence_table, margin_gap, slope_vs_inverse_log)
from nnboundary.reporting.tables import overall_rows, with_run_keys

EPOCHS = (1, 3, 10, 30, 100, 300, 1000)
#: Metric columns the synthetic table sets to 0 (the summary reads them).
OTHER_METRICS = ("margin_svm", "agreement_test", "agreement_grid", "sv_overlap",
                 "matrix_angle_deg", "svm_bias_gap", "svm_midpoint_position", "bias_offset_abs")


def angle_for_gap(gap):
    """The angle (degrees) whose 1 − cos is ``gap``."""
    return np.degrees(np.arccos(1.0 - np.asarray(gap, dtype=float)))


def synthetic_metrics(dataset="blobs", arch="mlp", variant="base",
                      regimes=("full", "retrain_last"), seeds=(0, 1, 2), epochs=EPOCHS,
                      slopes=None, intercept=0.0, keys=True, steps_per_epoch=1) -> pd.DataFrame:
    """A binary metrics table: for t ≥ 10 the angle gap is intercept + slope/log t, with
    slope = slopes[(regime, target)] + 0.1·seed (default 1 for svc, 2 for homog, +1 for
    retrain_last); before t = 10 it is 0.9 and the checkpoint is invalid (a misclassified train
    point: train_acc 0.9, margin_nn < 0). t is the step, epoch × ``steps_per_epoch``. The margin
    ratio is 1 − 0.5/log t (t ≥ 10), the bias offset and the bias gap 1/log t, the angle between
    the targets 1°, ‖w‖ = log t + 1, the loss 1/t. Without ``keys`` the table has no
    regime/variant (nor validity) columns (an old table)."""
    rows = []
    for regime in regimes:
        for seed in seeds:
            for epoch in epochs:
                step = epoch * steps_per_epoch
                log_t = np.log(step)
                for target in ("svc", "homog"):
                    default = (1.0 if target == "svc" else 2.0) + (regime == "retrain_last")
                    base = (slopes or {}).get((regime, target), default)
                    slope = base + 0.1 * seed
                    late = step >= 10
                    gap = intercept + slope / log_t if late else 0.9
                    row = {"dataset": dataset, "arch": arch, "variant": variant, "regime": regime,
                           "seed": seed, "epoch": epoch, "step": step, "target": target,
                           "scheme": "binary", "pair": "0-1", "separable": True,
                           "hard_margin": True, "angle_deg": float(angle_for_gap(gap)),
                           "margin_nn": 0.1 if late else -0.05,
                           "margin_ratio": 1.0 - 0.5 / log_t if late else -0.5,
                           "bias_offset": 1.0 / log_t if step > 1 else 5.0,
                           "bias_gap": 1.0 / log_t if step > 1 else 5.0,
                           "midpoint_position": 0.5, "w_norm": log_t + 1.0,
                           "svc_homog_angle_deg": 1.0,
                           "train_loss": 1.0 / step, "train_acc": 1.0 if late else 0.9,
                           "test_acc": 1.0, "dead_units": 0, "degenerate": False,
                           "diverged": False, "optimizer": "sgd", "loss": "cross_entropy",
                           "lr": 0.5}
                    row.update({name: 0.0 for name in OTHER_METRICS})
                    row["bias_gap_abs"] = abs(row["bias_gap"])
                    row["bias_gap_vs_svm_abs"] = abs(row["bias_gap"] - row["svm_bias_gap"])
                    if not keys:
                        del row["regime"], row["variant"]
                    rows.append(row)
    frame = pd.DataFrame(rows)
    if keys:
        frame = validity.with_validity(frame)
    return frame


# --------------------------------------------------------------------------------------------
# Gaps and the fit
# --------------------------------------------------------------------------------------------


def test_gaps():
    assert angle_gap(60.0) == pytest.approx(0.5)
    assert convergence.angle_rad(180.0) == pytest.approx(np.pi)
    assert angle_gap(0.0) == 0.0 and angle_gap(90.0) == pytest.approx(1.0)
    np.testing.assert_allclose(angle_gap(np.array([180.0])), [2.0])
    np.testing.assert_allclose(margin_gap([1.0, 0.75, 1.2]), [0.0, 0.25, -0.2])


def test_slope_of_an_exact_inverse_log_gap():
    t = np.array(EPOCHS, dtype=float)
    gap = np.where(t >= 10, 0.2 + 3.0 / np.log(np.maximum(t, 2.0)), 50.0)  # t < 10 ignored
    fit = slope_vs_inverse_log(t, gap)
    assert fit is not None
    assert fit.slope == pytest.approx(3.0)
    assert fit.intercept == pytest.approx(0.2)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n_points == 5  # 10, 30, 100, 300, 1000


def test_slope_is_none_for_a_short_run():
    t = np.array([1, 2, 5, 10, 20, 50, 99])  # last step < MIN_LAST_STEP
    assert slope_vs_inverse_log(t, 1.0 / np.log(t + 1.0)) is None
    # long enough in time, but only 3 checkpoints at t ≥ MIN_STEP
    assert slope_vs_inverse_log([1, 2, 3, 10, 50, 100], [1, 1, 1, 0.5, 0.4, 0.3]) is None
    assert slope_vs_inverse_log([], []) is None


def test_slope_ignores_non_finite_gaps_and_constant_gap_is_exact():
    t = np.array([10, 20, 50, 100, 200, 500])
    gap = 1.0 / np.log(t)
    gap[1] = np.nan
    fit = slope_vs_inverse_log(t, gap)
    assert fit.n_points == 5 and fit.slope == pytest.approx(1.0)
    fit = slope_vs_inverse_log(t, np.full(t.size, 0.3))
    assert fit.slope == pytest.approx(0.0, abs=1e-12) and fit.intercept == pytest.approx(0.3)
    assert fit.r2 == 1.0


def test_slope_uses_only_the_kept_checkpoints():
    t = np.array([10, 20, 50, 100, 200, 500, 1000])
    gap = 1.0 / np.log(t)
    gap[3] = 50.0  # an invalid checkpoint (say, a train point misclassified)
    keep = np.ones(t.size, bool)
    keep[3] = False
    fit = slope_vs_inverse_log(t, gap, keep)
    assert fit.n_points == 6 and fit.slope == pytest.approx(1.0) and fit.r2 == pytest.approx(1.0)
    assert slope_vs_inverse_log(t, gap).slope < 0  # with it, the fit is wrong
    # Too few valid checkpoints left: no fit.
    assert slope_vs_inverse_log(t, gap, t < 100) is None


def test_slope_r2_below_one_for_a_noisy_gap():
    t = np.geomspace(10, 10_000, 12)
    noise = np.random.default_rng(0).normal(scale=0.05, size=t.size)
    fit = slope_vs_inverse_log(t, 2.0 / np.log(t) + noise)
    assert 0.0 < fit.r2 < 1.0
    assert fit.slope == pytest.approx(2.0, abs=0.5)


def test_slope_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="steps against"):
        slope_vs_inverse_log([10, 100], [0.1])


# --------------------------------------------------------------------------------------------
# Reading tables
# --------------------------------------------------------------------------------------------


def test_with_run_keys_fills_old_tables_and_missing_values():
    old = synthetic_metrics(keys=False, regimes=("full",), seeds=(0,))
    filled = with_run_keys(old)
    assert list(filled.columns[:4]) == ["dataset", "arch", "variant", "regime"]
    assert set(filled["regime"]) == {"full"} and set(filled["variant"]) == {"base"}
    assert "regime" not in old  # the input is left alone
    new = synthetic_metrics(regimes=("retrain_last",), seeds=(1,), variant="loss-hinge")
    mixed = with_run_keys(pd.concat([old, new], ignore_index=True))
    assert sorted(set(zip(mixed["regime"], mixed["variant"]))) == [
        ("full", "base"), ("retrain_last", "loss-hinge")]


def test_overall_rows_prefer_binary_then_crammer_singer_then_ovr():
    base = {"dataset": "blobs3", "arch": "mlp", "seed": 0, "epoch": 5, "angle_deg": 1.0}
    rows = []
    for target in ("svc", "homog"):
        for scheme in ("crammer_singer", "ovr"):
            if target == "homog" and scheme == "crammer_singer":
                continue  # homog has only ovr: its mean row is used
            for pair in ("0-1", "0-2", "1-2", "mean"):
                rows.append(dict(base, target=target, scheme=scheme, pair=pair))
    rows.append(dict(base, dataset="blobs", target="svc", scheme="binary", pair="0-1"))
    picked = overall_rows(pd.DataFrame(rows, index=np.zeros(len(rows), dtype=int)))  # dup index
    chosen = sorted(zip(picked["dataset"], picked["target"], picked["scheme"], picked["pair"]))
    assert chosen == [("blobs", "svc", "binary", "0-1"),
                      ("blobs3", "homog", "ovr", "mean"),
                      ("blobs3", "svc", "crammer_singer", "mean")]


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def test_convergence_table_fits_each_run_and_averages_seeds():
    frame = synthetic_metrics(intercept=0.01)
    table = convergence_table(frame)
    per_seed = table[table["seed"] != MEAN_SEED]
    assert len(per_seed) == 2 * 3 * 2 and per_seed["long_enough"].all()
    row = per_seed[(per_seed["regime"] == "retrain_last") & (per_seed["target"] == "homog")
                   & (per_seed["seed"] == 2)].iloc[0]
    assert row["angle_gap_slope"] == pytest.approx(3.2)
    assert row["angle_gap_intercept"] == pytest.approx(0.01)
    assert row["angle_gap_r2"] == pytest.approx(1.0)
    assert row["margin_gap_slope"] == pytest.approx(0.5)
    assert 0.0 < row["angle_rad_r2"] < 1.0  # θ = arccos(1 − gap) is not linear in 1/log t
    assert row["margin_gap_intercept"] == pytest.approx(0.0, abs=1e-9)
    assert row["n_fit_points"] == 5 and row["last_epoch"] == 1000 and row["n_checkpoints"] == 7
    assert row["final_angle_gap"] == pytest.approx(0.01 + 3.2 / np.log(1000))
    assert row["n_valid_checkpoints"] == 5 and row["final_valid"] and row["last_step"] == 1000
    means = table[table["seed"] == MEAN_SEED]
    assert len(means) == 4
    mean = means[(means["regime"] == "full") & (means["target"] == "svc")].iloc[0]
    assert mean["angle_gap_slope"] == pytest.approx(1.1)  # seeds 1.0, 1.1, 1.2: the median
    assert mean["angle_gap_slope_min"] == pytest.approx(1.0)
    assert mean["angle_gap_slope_max"] == pytest.approx(1.2)
    assert mean["n_seeds"] == 3 and mean["n_fitted"] == 3 and mean["long_enough"]
    assert list(table.columns) == convergence.CONVERGENCE_COLUMNS


def test_convergence_summary_is_a_median_that_one_bad_seed_cannot_move():
    frame = synthetic_metrics(regimes=("full",), seeds=(0, 1, 2, 3, 4))
    bad = (frame["seed"] == 4) & (frame["target"] == "svc") & (frame["epoch"] >= 10)
    frame.loc[bad, "angle_deg"] = angle_for_gap(0.01 + 0.9 * np.arange(bad.sum()) / bad.sum())
    mean = convergence_table(frame)
    mean = mean[(mean["seed"] == MEAN_SEED) & (mean["target"] == "svc")].iloc[0]
    # slopes 1.0 … 1.3 and the outlier's negative one: the median is 1.1, the mean would be < 0.9
    assert mean["angle_gap_slope"] == pytest.approx(1.1)
    assert mean["angle_gap_slope_min"] < 0  # the outlier's growing gap shows in the range


def test_convergence_is_fitted_against_steps_over_valid_checkpoints():
    """The same table with 10 steps per epoch: the fit runs over t = steps, so it needs no
    epoch ≥ 10; the checkpoints at steps < 10 and the invalid ones are left out."""
    frame = synthetic_metrics(regimes=("full",), seeds=(0,), epochs=(1, 2, 5, 10, 20, 50, 100),
                              steps_per_epoch=10)
    frame.loc[frame["epoch"] == 20, ["train_acc", "valid"]] = (0.99, False)
    frame.loc[frame["epoch"] == 20, "angle_deg"] = 80.0
    table = convergence_table(frame, with_means=False)
    row = table[table["target"] == "svc"].iloc[0]
    assert row["n_fit_points"] == 6  # steps 10, 20, 50, 100, 500, 1000: 7 valid, one not
    assert row["angle_gap_slope"] == pytest.approx(1.0) and row["angle_gap_r2"] == pytest.approx(1.0)
    assert row["last_step"] == 1000 and row["last_epoch"] == 100


def test_an_invalid_final_checkpoint_gives_no_final_values():
    frame = synthetic_metrics(regimes=("full",), seeds=(0, 1))
    last = (frame["seed"] == 1) & (frame["epoch"] == 1000)
    frame.loc[last, ["dead_units", "valid"]] = (1, False)
    table = convergence_table(frame)
    seed1 = table[(table["seed"] == 1) & (table["target"] == "svc")].iloc[0]
    assert not seed1["final_valid"] and np.isnan(seed1["final_angle_deg"])
    mean = table[(table["seed"] == MEAN_SEED) & (table["target"] == "svc")].iloc[0]
    assert mean["n_valid"] == 1
    assert mean["final_angle_gap"] == pytest.approx(1.0 / np.log(1000))  # seed 0 alone


def test_convergence_table_marks_short_runs():
    frame = synthetic_metrics(epochs=(1, 3, 10, 30), regimes=("full",), seeds=(0, 1))
    table = convergence_table(frame)
    assert not table["long_enough"].any()
    assert table["angle_gap_slope"].isna().all() and (table["n_fit_points"] == 0).all()
    means = table[table["seed"] == MEAN_SEED]
    assert (means["n_seeds"] == 2).all() and (means["n_fitted"] == 0).all()


def test_convergence_table_of_an_old_table_without_means():
    table = convergence_table(synthetic_metrics(keys=False, regimes=("full",)), with_means=False)
    assert set(table["regime"]) == {"full"} and set(table["variant"]) == {"base"}
    assert (table["seed"] >= 0).all() and len(table) == 6
