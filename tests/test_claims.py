"""The paper's claims at every depth (nnboundary.reporting.claims) and the bias against
generalisation (nnboundary.reporting.generalisation), on tables with known answers."""

import numpy as np
import pandas as pd
import pytest
from test_aggregate import _final_table, _seeds

from nnboundary.reporting import document
from nnboundary.reporting.claims import (CLAIMS, claims, claims_blocks, claims_document,
                                         depths_order, paired_count)
from nnboundary.reporting.generalisation import generalisation_table, spearman


def _at(table, milestone="final"):
    return table[table["milestone"] == milestone].set_index("claim")


def test_absolute_claims_known_answers():
    full = _seeds("full", [0.1] * 6, [0.3] * 6, bias_gap_vs_svm_abs=[0.01] * 6)
    retrain = _seeds("retrain_last", [1.0] * 6, [0.2] * 6, bias_gap_vs_svm_abs=[0.4] * 6)
    table = _at(claims(_final_table(full + retrain)))
    assert list(table.index) == list(CLAIMS)
    absolute = table.loc[["direction", "bias_midway", "retrain_direction_not_bias_absolute"]]
    assert (absolute["verdict"] == "holds").all()
    assert table.loc["direction", "k"] == 6 and table.loc["direction", "n_valid"] == 6
    assert table.loc["direction", "p_value"] == pytest.approx(0.03125)
    assert "6/6 seeds < 2°" in table.loc["direction", "statistic"]
    assert table.loc["retrain_direction_not_bias_absolute", "regime"] == "retrain_last"
    assert table.loc["retrain_direction_not_bias_absolute", "k"] == 6
    assert table.loc["direction", "median_full"] == pytest.approx(0.1)
    assert table.loc["bias_midway", "median_full"] == pytest.approx(0.01)

    # Whole network far off, bias not midway: both full claims fail; retrain undecided on bias.
    full = _seeds("full", [5.0] * 6, [6.0] * 6, bias_gap_vs_svm_abs=[0.5] * 6)
    retrain = _seeds("retrain_last", [0.5] * 6, [0.4] * 6,
                     bias_gap_vs_svm_abs=[0.4, 0.4, 0.4, 0.01, 0.01, 0.01])
    table = _at(claims(_final_table(full + retrain)))
    assert table.loc["direction", "verdict"] == "fails"
    assert table.loc["bias_midway", "verdict"] == "fails"
    assert table.loc["retrain_direction_not_bias_absolute", "verdict"] == "undecided"
    assert table.loc["retrain_direction_not_bias_absolute", "p_value"] == pytest.approx(1.0)
    assert table.loc["retrain_direction_not_bias_absolute", "k"] == 3  # seeds meeting both


def test_claims_with_few_seeds_or_a_missing_regime():
    table = _at(claims(_final_table(_seeds("full", [0.1] * 3, [0.3] * 3))))
    assert table.loc["direction", "verdict"] == "undecided"  # 3/3: p = 0.25
    assert table.loc["direction", "p_value"] == pytest.approx(0.25)
    for claim in ("retrain_direction_not_bias_absolute", "bias_whole_vs_retrain"):
        assert table.loc[claim, "verdict"] == "not run"
    assert "regime retrain_last not in the grid" in table.loc["bias_whole_vs_retrain",
                                                              "statistic"]
    dead = _seeds("full", [90.0] * 6, [90.0] * 6, dead_units=[2] * 6)
    table = _at(claims(_final_table(dead)))
    assert table.loc["direction", "statistic"] == "no valid seed"
    assert table.loc["direction", "verdict"] == "undecided"


def test_paired_count_is_a_sign_test_over_seeds_valid_in_both():
    whole = pd.DataFrame({"seed": range(11), "x": [0.1] * 9 + [0.9, 0.5]})
    retrained = pd.DataFrame({"seed": range(11), "x": [0.2] * 9 + [0.3, 0.5]})
    count, pairs = paired_count(whole, retrained, "x")
    # 9 seeds smaller, 1 larger, 1 equal (left out): p = 2·(1 + 10)/2¹⁰ = 0.0215.
    assert (count.k, count.n, count.verdict) == (9, 10, "holds")
    assert count.p == pytest.approx(22 / 1024)
    assert len(pairs) == 11
    # A seed missing in one regime does not enter.
    count, pairs = paired_count(whole, retrained[retrained["seed"] != 0], "x")
    assert (count.k, count.n, len(pairs)) == (8, 9, 10)


def test_bias_whole_vs_retrain_pairs_seeds_and_names_the_better_regime():
    gaps_full = [0.01] * 9 + [0.5]
    gaps_retrain = [0.2] * 9 + [0.1]
    full = _seeds("full", [0.1] * 10, [0.3] * 10, bias_gap_vs_svm_abs=gaps_full)
    retrain = _seeds("retrain_last", [0.1] * 10, [0.3] * 10, bias_gap_vs_svm_abs=gaps_retrain)
    row = _at(claims(_final_table(full + retrain))).loc["bias_whole_vs_retrain"]
    assert (row["k"], row["n_valid"], row["verdict"]) == (9, 10, "holds")
    assert row["p_value"] == pytest.approx(22 / 1024)
    assert row["median_full"] == pytest.approx(0.01)
    assert row["median_retrain_last"] == pytest.approx(0.2)
    assert row["regime"] == "full vs retrain_last"
    # Swapped: the retrained layer's bias is better, the claim fails.
    full = _seeds("full", [0.1] * 10, [0.3] * 10, bias_gap_vs_svm_abs=gaps_retrain)
    retrain = _seeds("retrain_last", [0.1] * 10, [0.3] * 10, bias_gap_vs_svm_abs=gaps_full)
    row = _at(claims(_final_table(full + retrain))).loc["bias_whole_vs_retrain"]
    assert (row["k"], row["verdict"]) == (1, "fails")
    # Equal directions in every seed: nothing to count.
    direction = _at(claims(_final_table(full + retrain))).loc["direction_whole_vs_retrain"]
    assert (direction["k"], direction["n_valid"], direction["verdict"]) == (0, 10, "undecided")
    assert "0/0 seeds whole < retrained (10 equal)" in direction["statistic"]


def _two_depths(bias_full, bias_retrain):
    """Runs of both regimes with checkpoints at epoch 1 (loss 1e-3: the 1e-2 milestone) and 100
    (loss 1e-9: the 1e-4 and 1e-8 milestones, and final); ``bias_*`` maps epoch → per-seed
    |bias gap to svc|."""
    frames = []
    for regime, gaps in (("full", bias_full), ("retrain_last", bias_retrain)):
        table = _final_table(_seeds(regime, [0.1] * 10, [0.3] * 10, train_loss=[1e-9] * 10))
        for epoch, values in gaps.items():
            at = table["epoch"] == epoch
            table.loc[at, "bias_gap_vs_svm_abs"] = table.loc[at, "seed"].map(
                dict(enumerate(values)))
        table.loc[table["epoch"] == 1, "train_loss"] = 1e-3
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def test_claims_at_every_depth_show_where_a_claim_starts_and_stops():
    # Shallow: the whole network's bias is better in all 10 seeds; deep: the retrained layer's.
    metrics = _two_depths({1: [0.1] * 10, 100: [0.3] * 10}, {1: [0.4] * 10, 100: [0.05] * 10})
    table = claims(metrics)
    bias = table[table["claim"] == "bias_whole_vs_retrain"].set_index("milestone")
    assert list(bias.index) == ["0.01", "0.0001", "1e-08", "final"]  # 1e-16 never reached
    assert list(bias["verdict"]) == ["holds", "fails", "fails", "fails"]
    assert bias.loc["0.01", "train_loss_full"] == pytest.approx(1e-3)
    assert bias.loc["1e-08", "train_loss_retrain_last"] == pytest.approx(1e-9)
    # Direction (0.1° × 30 at epoch 1): not yet at 1e-2, from 1e-4 on.
    direction = table[table["claim"] == "direction"].set_index("milestone")
    assert list(direction["verdict"]) == ["fails", "holds", "holds", "holds"]
    # Only the milestones asked for.
    assert set(claims(metrics, milestones=[1e-4])["milestone"]) == {"0.0001", "final"}

    text = document.markdown(claims_blocks(table))
    row = next(line for line in text.splitlines() if "| bias_whole_vs_retrain |" in line)
    assert "| 10/10 **holds** (0.002) | 0/10 **fails** (0.002) |" in row
    assert row.endswith("| 0.01 | 0.0001, 1e-08, final |")
    assert "< 1e-08" in text and "| final |" in text
    html = document.html(claims_document(table), "Claims")
    assert "Every count" in html and "0.001 / 0.001" in html


def test_depths_order_puts_final_last():
    assert [label for label, _ in depths_order(["final", "1e-08", "0.01", "1e-100"])] == [
        "0.01", "1e-08", "1e-100", "final"]


# --------------------------------------------------------------------------------------------
# Generalisation
# --------------------------------------------------------------------------------------------


def test_spearman_known_answers():
    rho, p, text = spearman([0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 0.01, 0.02, 0.05, 0.1])
    assert rho == pytest.approx(1.0) and p < 0.05 and text.startswith("ρ = 1.00")
    rho, _, _ = spearman([0.1, 0.2, 0.3, 0.4], [4.0, 3.0, 2.0, 1.0])
    assert rho == pytest.approx(-1.0)
    # ρ from its formula 1 − 6Σd²/(n(n² − 1)) without ties: ranks (1..5) vs (2,1,4,3,5).
    rho, _, _ = spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(1 - 6 * 4 / (5 * 24))
    rho, p, text = spearman([0.1, 0.2, 0.3], [0.0, 0.0, 0.0])
    assert np.isnan(rho) and np.isnan(p) and text == "undefined: test value constant over 3 seeds"
    assert spearman([0.1, np.nan], [0.2, 0.3])[2] == "undefined: 1 seeds"


def test_generalisation_table_relates_bias_and_test_error():
    bias = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    error = [0.00, 0.01, 0.01, 0.02, 0.03, 0.05]
    full = _seeds("full", [0.1] * 6, [0.3] * 6, bias_gap_vs_svm_abs=bias,
                  test_acc=[1 - e for e in error], test_loss=[0.1 + e for e in error],
                  test_bias_gap_abs=[0.2, 0.1, np.nan, 0.3, 0.1, 0.2])
    retrain = _seeds("retrain_last", [0.1] * 6, [0.3] * 6, bias_gap_vs_svm_abs=bias,
                     test_acc=[0.9] * 6, test_loss=[1.0] * 6, test_bias_gap_abs=[0.5] * 6)
    table = generalisation_table(_final_table(full + retrain))
    final = table[table["milestone"] == "final"].set_index("regime")
    row = final.loc["full"]
    assert row["n_valid"] == 6 and row["seeds_test_error"] == 5
    assert row["test_error_median"] == pytest.approx(0.015)
    assert row["test_error_max"] == pytest.approx(0.05)
    assert row["test_bias_gap_abs_median"] == pytest.approx(0.2) and row["n_test_gap"] == 5
    # Error rises with the bias (ties of 0.01 at ranks 2–3): ρ = 0.986.
    assert row["spearman_error_rho"] == pytest.approx(0.98561, abs=1e-4)
    assert row["spearman_loss_rho"] == pytest.approx(row["spearman_error_rho"])
    assert final.loc["retrain_last", "spearman_error"].startswith("undefined")
    assert np.isnan(final.loc["retrain_last", "spearman_error_rho"])
    # The whole network's test error is lower in all 6 seeds: p = 2/64.
    assert (row["whole_lower_error_k"], row["whole_lower_error_n"]) == (6, 6)
    assert row["whole_lower_error_verdict"] == "holds"
    assert row["whole_lower_error_p"] == pytest.approx(0.03125)
    assert final.loc["retrain_last", "whole_lower_loss_verdict"] == "holds"
    # Depth 1e-2 (epoch 1) is in the table too, before final.
    assert list(table["milestone"]) == ["0.01", "final", "0.01", "final"]


def test_generalisation_without_the_retrained_regime_says_not_run():
    full = _seeds("full", [0.1] * 3, [0.3] * 3, bias_gap_vs_svm_abs=[0.1, 0.2, 0.3])
    table = generalisation_table(_final_table(full))
    assert set(table["whole_lower_error_verdict"]) == {"not run"}
    assert table["spearman_error"].iloc[-1] == "undefined: test value constant over 3 seeds"
