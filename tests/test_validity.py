"""The validity rule: each condition on a hand-made row, the union over a fit's pairs."""

import numpy as np
import pandas as pd
import pytest

from nnboundary.measures import validity

GOOD = {"dataset": "blobs", "arch": "mlp", "variant": "base", "regime": "full", "seed": 0,
        "epoch": 10, "target": "svc", "scheme": "binary", "pair": "0-1", "separable": True,
        "hard_margin": True, "train_acc": 1.0, "margin_nn": 0.2, "dead_units": 0,
        "degenerate": False, "diverged": False}

CASES = [
    ({}, ""),
    ({"separable": False, "hard_margin": False}, "not_separable,soft_margin"),
    ({"hard_margin": False}, "soft_margin"),
    ({"train_acc": 0.999}, "misclassified"),
    ({"margin_nn": -0.1}, "misclassified"),
    ({"margin_nn": 0.0}, "misclassified"),  # a point on the boundary is not separated
    ({"dead_units": 1}, "dead_unit"),
    ({"degenerate": True}, "convention"),
    ({"diverged": True}, "diverged"),
    ({"dead_units": 2, "degenerate": True, "train_acc": 0.5, "margin_nn": 0.0},
     "misclassified,dead_unit,convention"),
    # No separator through the origin: the origin target's own reason, not the features'.
    ({"target": "origin", "separable": False, "hard_margin": False},
     "not_separable_origin,soft_margin"),
    ({"target": "origin"}, ""),
]


@pytest.mark.parametrize("change,reason", CASES, ids=[c[1] or "valid" for c in CASES])
def test_each_condition_gives_its_reason(change, reason):
    frame = pd.DataFrame([{**GOOD, **change}])
    valid, why = validity.assess(frame)
    assert valid.tolist() == [reason == ""]
    assert why.tolist() == [reason]


def test_a_mean_row_is_valid_only_if_every_pair_of_its_fit_is():
    rows = [{**GOOD, "scheme": "crammer_singer", "pair": p} for p in ("0-1", "0-2", "1-2")]
    rows[1]["margin_nn"] = -0.5  # pair 0-2 crosses; the mean margin is still positive
    rows.append({**GOOD, "scheme": "crammer_singer", "pair": "mean", "margin_nn": 0.1})
    other = [{**r, "target": "homog"} for r in rows]
    other[1]["margin_nn"] = 0.3  # the homog fit's pairs are all fine
    frame = pd.DataFrame(rows + other)
    valid, why = validity.assess(frame)
    assert valid.tolist() == [True, False, True, False] + [True] * 4
    assert why.iloc[3] == "misclassified" and why.iloc[7] == ""


def test_tables_written_without_the_columns_get_them():
    frame = pd.DataFrame([GOOD, {**GOOD, "seed": 1, "dead_units": 2}])
    checked = validity.with_validity(frame)
    assert checked["valid"].tolist() == [True, False]
    assert checked["invalid_reason"].tolist() == ["", "dead_unit"]
    assert "valid" not in frame.columns  # a copy


def test_a_table_without_the_rules_columns_is_refused():
    with pytest.raises(ValueError, match="rerun the metrics step"):
        validity.assess(pd.DataFrame([{"seed": 0, "pair": "0-1"}]))


def test_an_empty_table():
    valid, why = validity.assess(pd.DataFrame(columns=list(GOOD)))
    assert valid.empty and why.empty and np.dtype(valid.dtype) == bool


def test_a_final_checkpoint_short_of_its_stopping_loss_is_not_terminal():
    run = {**GOOD, "stop_epoch": 10, "until_loss": 1e-8}
    frame = pd.DataFrame([
        {**run, "stop_reason": "until_loss"},
        {**run, "stop_reason": "epochs"},
        {**run, "stop_reason": "stalled", "epoch": 5},  # an earlier checkpoint: judged as usual
        {**run, "stop_reason": "epochs", "until_loss": float("nan")},  # no stopping loss asked
        {**run, "stop_reason": "diverged"},
        {**run, "stop_reason": "unreachable"},  # stopped as unable to reach it by the cap
        {**run, "stop_reason": "stalled"},
    ])
    valid, why = validity.assess(frame)
    assert valid.tolist() == [True, False, True, True, False, False, False]
    assert why.tolist() == ["", "not_terminal", "", "", "diverged", "not_terminal",
                            "not_terminal"]
