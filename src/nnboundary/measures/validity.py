"""Which rows of a metrics table are measurements: the validity rule, in one place.

A row of ``metrics.parquet`` (one run × checkpoint × SVM target × scheme × class pair) compares
the network's last layer with a hard-margin SVM on the train features. Its numbers measure what
the theory speaks about only when there is a max-margin target and the network separates the
data; otherwise some of them are conventions (:mod:`nnboundary.measures.geometry`) or compare with
something that is not the theory's target. The rule:

    valid = separable ∧ hard_margin ∧ train_acc = 1 ∧ margin_nn > 0
            ∧ dead_units = 0 ∧ ¬degenerate ∧ ¬diverged ∧ terminal

Each failed condition adds its reason to ``invalid_reason`` (comma-separated, in this order;
"" for a valid row):

================ ==============================================================================
not_separable    the train features of the fit are not linearly separable: there is no hard-
                 margin SVM, and the soft-margin fit (C = ``svm.C``) is not the theory's target
not_separable_   a row of the ``origin`` target whose features no hyperplane through the origin
origin           separates (e.g. a point of each class at h = 0, or classes in opposite
                 directions): that target does not exist there, while ``svc`` and ``homog``
                 (which have a bias) may; only the origin rows are invalid
soft_margin      the fit is not a verified hard-margin SVM (a soft fit, or a solve that did not
                 verify), so margin_svm is no maximum margin
misclassified    the network misclassifies a train point (train_acc < 1, or a point on or across
                 the pair's boundary, margin_nn ≤ 0): the loss cannot go to 0, the terminal phase
                 the theory describes has not begun, and the midpoint and bias gap are not
                 defined between separated classes
dead_unit        a bottleneck unit is 0 on every train point: the features live in fewer
                 dimensions than the layer has (all dead: the conventions 90°, gap 0, ...)
convention       some value of the row used a documented convention (``degenerate``)
diverged         the checkpoint's features, logits or last layer are not all finite, or this is
                 the final checkpoint of a run that stopped because its loss was not finite
not_terminal     the final checkpoint of a run given a stopping loss (``until_loss``) that it did
                 not reach: it stalled, hit its epoch cap or was stopped as unable to reach it by
                 the cap (``unreachable``), so it ends outside the terminal
                 phase (loss → 0) the theory speaks about. Earlier checkpoints of such a run,
                 and runs without a stopping loss, are judged by the other conditions alone
================ ==============================================================================

A multi-class ``mean`` row is valid only if every pair row of its fit is; its reasons are the
union of theirs. Summaries, findings, convergence fits, figure bands and the report use valid
rows only; invalid rows are counted and listed with their reason, never averaged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..settings.keys import RUN_KEYS

#: The conditions, in the order their reasons are listed.
REASONS = ("not_separable", "not_separable_origin", "soft_margin", "misclassified", "dead_unit",
           "convention", "diverged", "not_terminal")
#: Columns the rule reads.
REQUIRED = ("separable", "hard_margin", "train_acc", "margin_nn", "dead_units", "degenerate")
#: The columns that identify one fit's rows (its pairs and its ``mean`` row).
FIT_KEYS = (*RUN_KEYS, "epoch", "target", "scheme")


def failed_conditions(frame: pd.DataFrame) -> pd.DataFrame:
    """One boolean column per reason of :data:`REASONS`: True where that condition fails."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"the validity rule needs the columns {missing}, which the table lacks; "
                         f"rerun the metrics step")

    def flag(name: str) -> np.ndarray:
        return frame[name].fillna(False).astype(bool).to_numpy()

    none = np.zeros(len(frame), bool)
    diverged = flag("diverged") if "diverged" in frame.columns else none
    train_acc = frame["train_acc"].to_numpy(dtype=float)
    margin_nn = frame["margin_nn"].to_numpy(dtype=float)
    not_terminal = none
    if {"stop_reason", "stop_epoch", "until_loss"} <= set(frame.columns):
        final = frame["epoch"].to_numpy() == frame["stop_epoch"].to_numpy()
        reason = frame["stop_reason"].fillna("").astype(str).to_numpy()
        has_target = np.isfinite(frame["until_loss"].to_numpy(dtype=float))
        diverged = diverged | (final & (reason == "diverged"))
        not_terminal = final & has_target & np.isin(reason, ("stalled", "epochs",
                                                             "unreachable"))
    origin = (frame["target"].astype(str).to_numpy() == "origin" if "target" in frame.columns
              else none)
    not_separable = ~flag("separable")
    return pd.DataFrame({
        "not_separable": not_separable & ~origin,
        "not_separable_origin": not_separable & origin,
        "soft_margin": ~flag("hard_margin"),
        "misclassified": ~(train_acc >= 1.0) | ~(margin_nn > 0.0),
        "dead_unit": frame["dead_units"].to_numpy() > 0,
        "convention": flag("degenerate"),
        "diverged": diverged,
        "not_terminal": not_terminal,
    }, index=frame.index)


def _join(failed: pd.DataFrame) -> pd.Series:
    names = np.array(REASONS, dtype=object)
    return pd.Series([",".join(names[row]) for row in failed[list(REASONS)].to_numpy()],
                     index=failed.index, dtype=object)


def assess(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(valid, invalid_reason) for every row of a metrics table (the module's rule).

    A ``mean`` row (multi-class) takes the union of the failed conditions of its own values and
    of every pair row of the same fit (:data:`FIT_KEYS`)."""
    if frame.empty:
        return (pd.Series([], dtype=bool, index=frame.index),
                pd.Series([], dtype=object, index=frame.index))
    failed = failed_conditions(frame)
    if "pair" in frame.columns and (frame["pair"] == "mean").any():
        keys = [k for k in FIT_KEYS if k in frame.columns]
        pairs = frame["pair"] != "mean"
        union = failed[pairs].groupby([frame.loc[pairs, k] for k in keys], dropna=False).any()
        means = frame.index[~pairs]
        lookup = pd.MultiIndex.from_frame(frame.loc[means, keys])
        from_pairs = union.reindex(lookup).fillna(False).astype(bool).to_numpy()
        failed.loc[means] = failed.loc[means].to_numpy() | from_pairs
    valid = pd.Series(~failed.to_numpy().any(axis=1), index=frame.index, dtype=bool)
    return valid, _join(failed)


def with_validity(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``valid`` and ``invalid_reason`` (computed by :func:`assess` when the table
    was written without them). Returns a copy."""
    frame = frame.copy()
    if "valid" not in frame.columns or "invalid_reason" not in frame.columns:
        frame["valid"], frame["invalid_reason"] = assess(frame)
    frame["valid"] = frame["valid"].fillna(False).astype(bool)
    frame["invalid_reason"] = frame["invalid_reason"].fillna("").astype(str)
    return frame
