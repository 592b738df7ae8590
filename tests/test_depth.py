"""The depth table: every run at the same train losses, and whether the angle falls with depth."""

from __future__ import annotations

import pandas as pd
import pytest

from nnboundary.reporting import depth
from nnboundary.reporting.summary import SUMMARY_METRICS

GOOD = {"separable": True, "hard_margin": True, "degenerate": False, "diverged": False,
        "train_acc": 1.0, "margin_nn": 0.1, "dead_units": 0}
#: Checkpoint losses of a run that goes all the way, and of one that stops at 1e-50.
LOSSES = (1e-1, 1e-5, 1e-9, 1e-101)
SHORT = (1e-1, 1e-5, 1e-9, 1e-50)
#: Angle to each target at those four checkpoints: svc and origin fall, homog rises.
ANGLES = {"svc": (5.0, 4.0, 3.0, 2.0), "homog": (1.0, 1.0, 1.0, 2.0),
          "origin": (6.0, 3.0, 1.0, 0.1)}


def table(seeds: int = 6, short_seed: bool = True) -> pd.DataFrame:
    """One cell (blobs/mlp/base/full): ``seeds`` runs reaching 1e-101, plus one that stops at
    1e-50; seed 0's second checkpoint misclassifies a point (invalid there)."""
    rows = []
    runs = [(s, LOSSES) for s in range(seeds)] + ([(seeds, SHORT)] if short_seed else [])
    for seed, losses in runs:
        for i, loss in enumerate(losses):
            for target, angles in ANGLES.items():
                row = {m: 0.0 for m in SUMMARY_METRICS}
                row.update({"dataset": "blobs", "arch": "mlp", "variant": "base",
                            "regime": "full", "seed": seed, "epoch": 10 * (i + 1),
                            "step": 10 * (i + 1), "target": target, "scheme": "binary",
                            "pair": "0-1", **GOOD, "angle_deg": angles[i], "train_loss": loss,
                            "margin_ratio": 0.5 + 0.1 * i, "bias_gap_abs": 0.01 * i,
                            "svc_homog_angle_deg": 3.0, "svc_origin_angle_deg": 4.0,
                            "homog_origin_angle_deg": 1.0})
                if seed == 0 and i == 1:
                    row["train_acc"] = 0.99
                rows.append(row)
    return pd.DataFrame(rows)


def test_each_run_is_taken_at_its_first_checkpoint_below_each_milestone():
    picked = depth.at_milestones(table(), (1e-2, 1e-4, 1e-8, 1e-100))
    svc = picked[(picked["target"] == "svc") & (picked["seed"] == 1)].set_index("milestone")
    assert svc["train_loss"].to_dict() == {1e-2: 1e-5, 1e-4: 1e-5, 1e-8: 1e-9, 1e-100: 1e-101}
    short = picked[(picked["seed"] == 6) & (picked["target"] == "svc")]
    assert sorted(short["milestone"]) == [1e-8, 1e-4, 1e-2]  # never below 1e-100
    assert not picked[(picked["seed"] == 0) & (picked["milestone"] == 1e-2)][
        "network_valid"].any()


def test_depth_table_medians_counts_and_the_sign_test():
    result = depth.depth_table(table(), (1e-2, 1e-4, 1e-8, 1e-100))
    assert list(result["milestone"].unique()) == [1e-2, 1e-4, 1e-8, 1e-100]  # deepest last
    rows = result.set_index(["target", "milestone"])
    deep = rows.loc[("origin", 1e-100)]
    assert (deep["n_seeds"], deep["n_reached"], deep["n_valid"]) == (7, 6, 6)
    assert deep["angle_deg_median"] == pytest.approx(0.1)
    assert deep["seeds_nearest"] == 6 and rows.loc[("svc", 1e-100)]["seeds_nearest"] == 0
    assert deep["angle_nearest_median"] == deep["angle_nearest_max"] == pytest.approx(0.1)
    # at 1e-8 the nearest target is homog (1°) for every seed
    assert rows.loc[("svc", 1e-8)]["angle_nearest_max"] == pytest.approx(1.0)
    shallow = rows.loc[("svc", 1e-2)]  # seed 0 misclassifies there: 6 of 7 valid
    assert (shallow["n_reached"], shallow["n_valid"]) == (7, 6)
    assert shallow["angle_deg_median"] == pytest.approx(4.0)
    assert shallow["train_loss_median"] == pytest.approx(1e-5)
    assert rows.loc[("svc", 1e-8)]["margin_ratio_median"] == pytest.approx(0.7)
    assert rows.loc[("svc", 1e-8)]["svc_origin_angle_deg_median"] == pytest.approx(4.0)
    # From 1e-8 to 1e-100 (the deepest with valid seeds): svc and origin fell in 6 of 6 seeds
    # (p = 0.031, holds), homog rose in all 6 (fails).
    for target, verdict in (("svc", "holds"), ("origin", "holds"), ("homog", "fails")):
        row = rows.loc[(target, 1e-2)]
        assert row["deepest"] == 1e-100 and row["fell_n"] == 6
        assert row["fell_p"] == pytest.approx(0.03125) and row["fell_verdict"] == verdict


def test_a_cell_that_never_gets_past_1e_8_has_no_test():
    shallow = table(seeds=0)  # only the run that stops at 1e-50
    result = depth.depth_table(shallow, (1e-8, 1e-100))
    assert (result["fell_n"] == 0).all() and (result["fell_verdict"] == "undecided").all()
    assert depth.depth_table(shallow, (1e-100,))["fell_verdict"].str.startswith("no 1e-08").all()


def test_the_document_has_a_row_per_cell_and_milestone_and_the_tests():
    from nnboundary.reporting import document

    result = depth.depth_table(table(), (1e-2, 1e-8, 1e-100))
    text = document.markdown(depth.depth_document(result))
    assert text.count("| blobs | mlp | base | full |") == 3 + 3  # 3 milestones, 3 targets' tests
    assert "| 1e-100 | 6/7 | 6/6/6 |" in text
    assert "**holds**" in text and "**fails**" in text


def test_runs_with_a_class_at_the_origin_are_counted_per_milestone():
    """A class collapses onto h = 0 in seeds 0 and 1 from the second checkpoint on: the count
    rises with depth, over the runs that reached each milestone, valid or not."""
    rows = table()
    share = rows["seed"].isin([0, 1]) & (rows["epoch"] >= 20)
    rows["zero_class_share"] = share.astype(float)
    rows.loc[rows["epoch"] == 10, "zero_class_share"] = 0.5
    result = depth.depth_table(rows, (1e-2, 1e-4, 1e-100)).set_index(["target", "milestone"])
    assert result.loc[("svc", 1e-2), "runs_zero_class"] == 2  # seed 0 counted while invalid
    assert result.loc[("svc", 1e-100), "runs_zero_class"] == 2
    assert result.loc[("svc", 1e-100), "zero_class_share_median"] == 0.0
    text = depth.document.markdown(depth.depth_document(result.reset_index()))
    assert "| 2/7 (0) |" in text and "class at h = 0" in text
    # A table without the column (an older run) counts none.
    assert depth.zero_class_at(table().drop(columns=["zero_class_share"], errors="ignore"))["runs_zero_class"] == 0
