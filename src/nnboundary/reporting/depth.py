"""Where the last layer is heading as the loss goes to 0: every run measured at the same depths.

The theory speaks about the limit L → 0, and the direction error falls like 1/log(1/L) whatever
the schedule (Soudry et al., JMLR 2018; Ji & Telgarsky 2021): runs, regimes and targets must be
compared at equal train loss, not at equal epochs. Training keeps a checkpoint at the first
epoch whose train loss is below each of its ``loss_milestones`` (:mod:`nnboundary.training.loop`); this
table reads them back.

**The checkpoint of a run at milestone m** is its first checkpoint whose train loss (the metrics
table's ``train_loss``, recomputed from the stored logits) is below m. With milestone
checkpoints that is the first epoch below m; a run that never got below m has none there (it is
counted in ``n_seeds`` but not in ``n_reached``).

:func:`depth_table` (``depth.csv``): one row per dataset × arch × variant × regime × target ×
milestone, over the runs' summarising rows (binary, or the Crammer–Singer ``mean`` row):

- ``n_seeds``, ``n_reached`` (runs with a checkpoint at the milestone), ``n_valid`` (whose
  checkpoint there is a measurement for this target: the rows of the targets with a bias, and
  for ``origin`` its own row too, are valid; :mod:`nnboundary.measures.validity`);
- over those valid seeds, median, q25 and q75 of ``angle_deg``, ``margin_ratio``, the network's
  own ``bias_gap_abs`` and its distance to this SVM's own bias ``bias_gap_vs_svm_abs``, the
  angles between the targets (``*_angle_deg``), and the median ``train_loss`` and ``step`` of
  those checkpoints (the depth actually measured, and what it cost);
- ``seeds_nearest``: the valid seeds for which this target has the smallest angle of the three
  (a seed whose two nearest lie within :data:`nnboundary.settings.targets.TIE_DEG` counts for none);
- ``angle_nearest_median`` / ``angle_nearest_max``: over the valid seeds, each seed's smallest
  angle to any target, its median and its worst (the same on every target's row): does the gap
  to the nearest SVM close as the loss goes to 0?
- ``runs_zero_class`` (of the reached runs, valid or not: those with a whole class at h = 0,
  every bottleneck unit off on it) and ``zero_class_share_median`` (the median share of each
  run's most-zeroed class at 0): at which depth a class collapses onto the origin;
- the per-seed sign test of "the angle at the deepest milestone is smaller than at
  :data:`REFERENCE` (1e-8, the old stopping depth)", the same on every row of a cell × target:
  ``deepest`` = the smallest milestone at which the cell has a valid seed for the target,
  ``fell_k`` of ``fell_n`` seeds valid at both depths whose angle fell (equal angles are left
  out), ``fell_p`` (two-sided sign test) and ``fell_verdict``: ``holds`` (it fell), ``fails``
  (it rose) or ``undecided`` (:func:`nnboundary.reporting.stats.count_verdict`).

No torch: the aggregate step builds it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..measures.validity import with_validity
from ..settings import schema
from ..settings.keys import CELL_KEYS, RUN_KEYS, regime_sort_key
from ..settings.targets import PAIR_ANGLE_COLUMNS, TARGETS, TIE_DEG
from . import document, stats
from .tables import overall_rows
from .text import median_iqr, number

#: The shallower end of the sign test: the default grid's old stopping loss.
REFERENCE = 1e-8
#: Metrics summarised at each milestone (median, q25, q75 over valid seeds).
MEASURED = ["angle_deg", "margin_ratio", "bias_gap_abs", "bias_gap_vs_svm_abs",
            *PAIR_ANGLE_COLUMNS]
#: The milestones when a caller gives none: the train settings' default.
DEFAULT_MILESTONES = tuple(schema.defaults("train")["loss_milestones"])


def at_milestones(metrics: pd.DataFrame, milestones) -> pd.DataFrame:
    """The summarising rows of every run at every milestone it reached: its first checkpoint
    with train loss below the milestone, one row per target, with a ``milestone`` column and
    ``network_valid`` (the rows of the targets with a bias at that checkpoint are valid)."""
    rows = overall_rows(with_validity(metrics))
    if rows.empty:
        return rows.assign(milestone=[], network_valid=[])
    # The network's checkpoint is a measurement when every target with a bias is valid there.
    rows = rows.assign(bias_ok=rows["valid"].astype(bool) | (rows["target"] == "origin"))
    checkpoints = rows.groupby([*RUN_KEYS, "epoch"], sort=True).agg(
        train_loss=("train_loss", "first"), network_valid=("bias_ok", "all")).reset_index()
    picked = []
    for _, run in checkpoints.groupby(list(RUN_KEYS), sort=True):
        run = run.sort_values("epoch")
        loss = run["train_loss"].to_numpy(dtype=float)
        for milestone in milestones:
            below = np.flatnonzero(loss < milestone)
            if below.size:
                picked.append({**run.iloc[below[0]][[*RUN_KEYS, "epoch", "network_valid"]],
                               "milestone": float(milestone)})
    if not picked:
        return rows.iloc[0:0].assign(milestone=[], network_valid=[])
    chosen = pd.DataFrame(picked)
    chosen["seed"] = chosen["seed"].astype(rows["seed"].dtype)
    chosen["epoch"] = chosen["epoch"].astype(rows["epoch"].dtype)
    return rows.merge(chosen, on=[*RUN_KEYS, "epoch"], how="inner")


def _measured(frame: pd.DataFrame) -> pd.Series:
    """Rows that are measurements for their own target: the network's checkpoint is valid and,
    for origin, the row itself too."""
    own = frame["valid"].astype(bool) | (frame["target"] != "origin")
    return frame["network_valid"].astype(bool) & own


def _nearest(valid: pd.DataFrame) -> tuple[dict[tuple, str], dict[tuple, float]]:
    """(run keys..., milestone) → the target with the smallest angle (absent when tied), and →
    that smallest angle."""
    nearest, smallest = {}, {}
    for key, group in valid.groupby([*RUN_KEYS, "milestone"], sort=False):
        angles = group.set_index("target")["angle_deg"].astype(float).sort_values()
        angles = angles[np.isfinite(angles)]
        if len(angles) == 0:
            continue
        smallest[key] = float(angles.iloc[0])
        if len(angles) > 1 and angles.iloc[1] - angles.iloc[0] <= TIE_DEG:
            continue
        nearest[key] = str(angles.index[0])
    return nearest, smallest


def depth_table(metrics: pd.DataFrame, milestones=DEFAULT_MILESTONES) -> pd.DataFrame:
    """The table of the module docstring, sorted by cell, target and milestone (deepest last)."""
    milestones = sorted({float(m) for m in milestones}, reverse=True)
    picked = at_milestones(metrics, milestones)
    all_rows = overall_rows(with_validity(metrics))
    if all_rows.empty:
        return pd.DataFrame()
    seeds = all_rows.groupby(list(CELL_KEYS))["seed"].nunique()
    picked = picked.assign(measured=_measured(picked)) if len(picked) else picked
    valid = picked[picked["measured"]] if len(picked) else picked
    nearest, smallest = _nearest(valid) if len(valid) else ({}, {})
    records = []
    cells = sorted(seeds.index, key=lambda c: (*c[:3], regime_sort_key(c[3])))
    targets_of = all_rows.groupby(list(CELL_KEYS))["target"].unique()
    for cell in cells:
        targets = [t for t in TARGETS if t in set(targets_of[cell])]
        here = picked[(picked[list(CELL_KEYS)] == pd.Series(cell, index=list(CELL_KEYS))).all(axis=1)] \
            if len(picked) else picked
        for target in targets:
            mine = here[here["target"] == target] if len(here) else here
            sign = _fell(mine, milestones)
            for milestone in milestones:
                at = mine[mine["milestone"] == milestone] if len(mine) else mine
                ok = at[at["measured"]] if len(at) else at
                record = dict(zip(CELL_KEYS, cell), target=target, milestone=milestone,
                              n_seeds=int(seeds[cell]), n_reached=int(len(at)),
                              n_valid=int(len(ok)))
                for name in MEASURED + ["train_loss", "step"]:
                    parts = ("median",) if name in ("train_loss", "step") else \
                        ("median", "q25", "q75")
                    summary = stats.describe(ok[name] if len(ok) and name in ok else [])
                    for part in parts:
                        record[f"{name}_{part}"] = summary[part]
                record["seeds_nearest"] = int(sum(
                    nearest.get((*cell, int(s), milestone)) == target
                    for s in (ok["seed"] if len(ok) else [])))
                closest = stats.describe([value for (*c, _, m), value in smallest.items()
                                          if tuple(c) == cell and m == milestone])
                record["angle_nearest_median"] = closest["median"]
                record["angle_nearest_max"] = closest["max"]
                record.update(zero_class_at(at))
                record.update(sign)
                records.append(record)
    return pd.DataFrame(records)


def zero_class_at(rows: pd.DataFrame) -> dict:
    """Over the runs that reached a milestone (valid or not: a count, not a measurement):
    ``runs_zero_class``, those with a whole class at h = 0 there, and the median share of
    their most-zeroed class's points at 0 (:func:`nnboundary.measures.geometry.zero_class`)."""
    share = rows["zero_class_share"] if len(rows) and "zero_class_share" in rows else []
    return {"runs_zero_class": int((np.asarray(share, dtype=float) == 1.0).sum()),
            "zero_class_share_median": stats.describe(share)["median"]}


def _fell(rows: pd.DataFrame, milestones) -> dict:
    """The sign test of one cell × target (module docstring)."""
    out = {"deepest": np.nan, "fell_k": 0, "fell_n": 0, "fell_p": 1.0,
           "fell_verdict": "undecided"}
    if rows.empty or REFERENCE not in milestones:
        if REFERENCE not in milestones:
            out["fell_verdict"] = f"no {REFERENCE:g} milestone"
        return out
    ok = rows[rows["measured"]]
    reached = [m for m in milestones if m < REFERENCE and (ok["milestone"] == m).any()]
    if not reached:
        return out
    deepest = min(reached)
    by_seed = ok.pivot_table(index="seed", columns="milestone", values="angle_deg",
                             aggfunc="first")
    if REFERENCE not in by_seed or deepest not in by_seed:
        return {**out, "deepest": deepest}
    pairs = by_seed[[REFERENCE, deepest]].dropna()
    change = (pairs[deepest] - pairs[REFERENCE]).to_numpy(dtype=float)
    fell, rose = int((change < 0).sum()), int((change > 0).sum())
    count = stats.count_verdict(fell, fell + rose)
    return {"deepest": deepest, "fell_k": count.k, "fell_n": count.n, "fell_p": count.p,
            "fell_verdict": count.verdict}


# --------------------------------------------------------------------------------------------
# The document (depth.html, and a section of findings.md)
# --------------------------------------------------------------------------------------------


DEPTH_CAPTION = (
    "Each cell's runs at the same depths: the first checkpoint of each run whose train loss is "
    "below the milestone, medians [q25, q75] over the seeds valid there (reached: runs that got "
    "below it). Angles in degrees to each SVM target: svc (free bias), homog (bias penalised "
    "like a weight), origin (no bias; over the seeds where a separator through the origin "
    "exists). nearest: seeds whose smallest angle is to svc / homog / origin; nearest angle: "
    "each seed's smallest angle, median (worst). between targets: "
    "median angles svc–homog / svc–origin / homog–origin. |bias gap|: the network's own, "
    "1 − 2·midpoint (0 midway). median loss: the train loss actually measured there (a run "
    "can pass several milestones in one step). class at h = 0: reached runs with every "
    "bottleneck unit off on a whole class (the median share of each run's most-zeroed class "
    "at 0). The gap closes where the angles fall with "
    "depth; the target it heads for is the one whose angle falls towards 0.")
FELL_CAPTION = (
    f"Per seed: is the angle at the deepest milestone smaller than at {REFERENCE:g}? k of n "
    "seeds valid at both depths (equal angles left out), two-sided sign test; holds: it fell, "
    "fails: it rose, undecided: p ≥ 0.05 or fewer than 5 seeds.")


def depth_document(table: pd.DataFrame, level: int = 1) -> list[document.Block]:
    """The depth table as blocks: one row per cell × milestone (the targets side by side), then
    the sign tests per cell × target."""
    if table.empty:
        return [document.Heading("Depth: every run at the same train losses", level),
                document.Paragraph("No runs.")]
    targets = [t for t in TARGETS if (table["target"] == t).any()]
    header = ([*CELL_KEYS, "loss below", "reached/seeds", "valid"]
              + [f"angle {t}" for t in targets]
              + ["nearest " + "/".join(targets), "nearest angle (worst)", "between targets",
                 "margin ratio svc", "|bias gap|", "median loss", "median step",
                 "class at h = 0"])
    rows = []
    for key, group in table.groupby([*CELL_KEYS, "milestone"], sort=False):
        milestone = key[-1]
        by_target = {r["target"]: r for _, r in group.iterrows()}
        first = next(iter(by_target.values()))
        cells = [str(first[c]) for c in CELL_KEYS] + [f"{milestone:g}",
                                                  f"{first['n_reached']}/{first['n_seeds']}"]
        valid = "/".join(str(int(by_target[t]["n_valid"])) for t in targets)
        cells.append(valid)
        cells += [median_iqr(by_target[t], "angle_deg") for t in targets]
        cells.append("/".join(str(int(by_target[t]["seeds_nearest"])) for t in targets))
        cells.append(f"{number(first['angle_nearest_median'])} ({number(first['angle_nearest_max'])})")
        reference = by_target.get("svc", first)
        cells.append(" / ".join(number(reference[f"{c}_median"]) for c in PAIR_ANGLE_COLUMNS))
        cells.append(median_iqr(reference, "margin_ratio"))
        cells.append(median_iqr(reference, "bias_gap_abs"))
        cells.append(number(reference["train_loss_median"], 2))
        cells.append(number(reference["step_median"], 4))
        cells.append(f"{int(first['runs_zero_class'])}/{int(first['n_reached'])} "
                     f"({number(first['zero_class_share_median'], 2)})")
        rows.append(cells)
    signs = table.drop_duplicates([*CELL_KEYS, "target"])
    sign_rows = [[str(r[c]) for c in CELL_KEYS] + [
        r["target"], number(r["deepest"]),
        f"{int(r['fell_k'])}/{int(r['fell_n'])}", number(r["fell_p"], 2), f"**{r['fell_verdict']}**"]
        for _, r in signs.iterrows()]
    valid_note = "valid: seeds valid there for " + "/".join(targets)
    return [document.Heading("Depth: every run at the same train losses", level),
            document.Table(header, rows, caption=DEPTH_CAPTION + " " + valid_note + "."),
            document.Heading(f"Does the angle fall from {REFERENCE:g} to the deepest milestone?",
                             level + 1),
            document.Table([*CELL_KEYS, "target", "deepest", "fell k/n", "p", "verdict"], sign_rows,
                           caption=FELL_CAPTION)]
