"""What the grid shows, per cell and per claim: the tables behind every sentence about results.

Everything here starts from the final checkpoint of each run and uses **valid seeds only**
(:mod:`nnboundary.measures.validity`): a seed of a cell is valid when its final rows for the targets with a
bias (``svc``, ``homog``) are. The ``origin`` target (no bias) may not exist where those do (no
hyperplane through the origin separates the features): then the seed stays valid, its origin
values are left out (NaN; ``origin_valid`` false, counted as ``n_valid_origin``) and its reason is
``origin_invalid_reason``. Invalid seeds are counted (``n_valid`` beside ``n_seeds``) and listed
with their reason; none of their values enters a statistic. The row that stands for a fit is
the binary one, or for K > 2 the Crammer–Singer ``mean`` row over class pairs
(:func:`nnboundary.reporting.tables.overall_rows`).

Tables:

- :func:`seed_table` (``seeds.csv``): one row per run at its final checkpoint: per target the
  angle, margin ratio, |bias offset|, the SVM's own bias gap and the network's bias gap against
  it; the network's bias gap, the angles between the targets, loss, accuracies, what it
  trained with, and its validity.
- :func:`findings` (``findings.csv``): one row per dataset × arch × variant × regime: mean, sd,
  median, quartiles and extremes over valid seeds, and three verdicts:

  - ``direction_converged``: the *worst* valid seed's angle to its nearest target is below
    :data:`DIRECTION_TOL_DEG` (2°);
  - ``closer_target``: per valid seed, the target with the smallest final angle (a seed whose two
    nearest targets lie within :data:`TIE_DEG` of each other is tied); the target nearest in
    most seeds is the verdict when, against *each* other target, a two-sided sign test over the
    seeds of that comparison says it is the nearer one (an intersection–union test: p is the
    largest of those p-values), else ``undecided`` (also when fewer than 5 seeds were compared;
    :func:`closer_count`);
  - ``bias_midway``: the worst valid seed's |bias gap to the svc SVM| is below
    :data:`BIAS_GAP_TOL` (0.1 half-gaps);

  and, over all its runs, how many have a whole class at h = 0 (:func:`zero_class_counts`).
- the paper's claims at every depth: :mod:`nnboundary.reporting.claims` (``claims.csv``).
- :func:`excluded` (``excluded.csv``): every invalid seed with its reason.

The bias measure is ``bias_gap_svc_abs`` = |bias_gap − svm_bias_gap| of the svc row: how far
the network's boundary sits from where the free-bias SVM puts its own, each along its own
normal, in units of the half gap between the classes. For a binary hard-margin fit the SVM's
bias gap is 0, so this is |bias_gap| = |1 − 2·midpoint|; for K > 2 it is the mean over class
pairs of the distance to the Crammer–Singer pair's own position (which is not midway).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..settings.keys import CELL_KEYS, EXPERIMENT_KEYS, RUN_KEYS, regime_sort_key
from ..settings.targets import PAIR_ANGLE_COLUMNS, TARGET_PAIRS, TARGETS, TIE_DEG
from . import document, stats
from .tables import final_overall_rows
from .text import median_iqr, number, put_stats

#: The target without a bias: a seed stays valid where it alone does not exist.
ORIGIN = "origin"
#: A seed's direction ``has converged`` when its final angle to its nearer target is below this.
DIRECTION_TOL_DEG = 2.0
#: A boundary sits ``midway`` when its |bias gap| is below this many half gaps (±1 = touching a
#: class), i.e. within 5% of the gap's width from its middle.
BIAS_GAP_TOL = 0.1
#: Shown instead of numbers where a cell has no valid seed.
NO_VALID = "no valid seed"

#: Per-target columns of :func:`seed_table`: metrics column → column prefix.
PER_TARGET = {"angle_deg": "angle", "margin_ratio": "margin_ratio",
              "bias_offset_abs": "bias_offset_abs", "svm_bias_gap": "svm_bias_gap",
              "bias_gap_vs_svm_abs": "bias_gap_vs_svm_abs"}
#: Columns of the network alone (and the angles between the targets), taken from the svc row
#: (else the first target fitted).
NETWORK = ["scheme", "epoch", "step", "bias_gap", "bias_gap_abs", *PAIR_ANGLE_COLUMNS,
           "train_loss", "train_acc", "test_acc", "test_loss", "test_bias_gap",
           "test_bias_gap_abs", "dead_units", "zero_points", "zero_class", "zero_class_share",
           "optimizer", "loss", "lr", "batch_size"]


# --------------------------------------------------------------------------------------------
# Per seed
# --------------------------------------------------------------------------------------------


def seed_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run (:data:`RUN_KEYS`) at its final checkpoint (module docstring;
    :func:`seeds_of`)."""
    return seeds_of(final_overall_rows(metrics))


def seeds_of(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``rows``, the summarising rows of one checkpoint per run (its final
    one, or its first below a loss milestone: :func:`nnboundary.reporting.depth.at_milestones`).

    ``valid``: the rows of every target with a bias (svc, homog) are valid (origin alone: its
    row); ``invalid_reason``: the union of their reasons (``target: reason`` where the targets
    differ). ``origin_valid`` / ``origin_invalid_reason``: the origin row's; where it is invalid
    the origin columns are NaN. ``bias_gap_svc_abs``: the bias measure of the module docstring
    (NaN without an svc fit). ``angle_nearer``: the smallest of the targets' angles."""
    records = []
    for keys, run in rows.groupby(list(RUN_KEYS), sort=True):
        record = dict(zip(RUN_KEYS, keys))
        by_target = {str(t): row for t, row in zip(run["target"], run.to_dict("records"))}
        reference = by_target.get("svc") or next(iter(by_target.values()))
        record.update({name: reference.get(name, np.nan) for name in NETWORK})
        origin = by_target.get(ORIGIN)
        origin_valid = origin is not None and bool(origin["valid"])
        for column, prefix in PER_TARGET.items():
            for target in TARGETS:
                row = by_target.get(target)
                usable = row is not None and (target != ORIGIN or origin_valid)
                record[f"{prefix}_{target}"] = row.get(column, np.nan) if usable else np.nan
        svc = by_target.get("svc")
        record["bias_gap_svc_abs"] = np.nan if svc is None else svc.get("bias_gap_vs_svm_abs")
        angles = [record[f"angle_{t}"] for t in TARGETS if np.isfinite(record[f"angle_{t}"])]
        record["angle_nearer"] = float(np.min(angles)) if angles else np.nan
        judged = {t: row for t, row in by_target.items() if t != ORIGIN} or by_target
        reasons = {t: row["invalid_reason"] for t, row in judged.items() if row["invalid_reason"]}
        record["valid"] = all(bool(row["valid"]) for row in judged.values())
        if len(set(reasons.values())) <= 1 and len(reasons) == len(judged):
            record["invalid_reason"] = next(iter(reasons.values()), "")
        else:
            record["invalid_reason"] = "; ".join(f"{t}: {r}" for t, r in sorted(reasons.items()))
        record["origin_valid"] = origin_valid
        record["origin_invalid_reason"] = "" if origin is None else str(origin["invalid_reason"])
        record["targets"] = "/".join(t for t in TARGETS if t in by_target)
        records.append(record)
    return pd.DataFrame(records)


def excluded(seeds: pd.DataFrame) -> pd.DataFrame:
    """The invalid seeds of :func:`seed_table`, with their reason and what they measured (the
    network's own accuracy and loss, which are not conventions)."""
    columns = [*RUN_KEYS, "epoch", "invalid_reason", "train_acc", "test_acc", "train_loss",
                          "dead_units"]
    if seeds.empty:
        return pd.DataFrame(columns=columns)
    return seeds.loc[~seeds["valid"].astype(bool), columns].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Per cell
# --------------------------------------------------------------------------------------------


def distinct_values(values: pd.Series) -> str:
    """The distinct values of a column as one string: ``0.01``, ``0.01/0.1``, or for more than
    two distinct numbers their range ``0.0285–0.0455`` (e.g. the absolute step of
    ``retrain_last`` with ``lr_relative``, which differs per seed)."""
    distinct, numbers = [], []
    for value in values:
        if isinstance(value, (float, np.floating, int, np.integer)) and not isinstance(value, bool):
            if not np.isfinite(value):
                continue
            numbers.append(float(value))
            text = f"{value:.3g}"
        else:
            text = str(value)
        if text not in distinct and text not in ("", "nan"):
            distinct.append(text)
    if len(distinct) > 2 and len(numbers) == len(values):
        return f"{min(numbers):.3g}–{max(numbers):.3g}"
    return "/".join(distinct)


def closer_count(valid: pd.DataFrame) -> dict:
    """Which target each valid seed's final angle is nearest to, pair by pair, and whether one
    target is nearer than every other.

    Per seed, among the targets with a finite angle: the nearest one, or a tie when the two
    nearest lie within :data:`TIE_DEG` (``seeds_closer_<target>``, ``seeds_tied``). Per pair of
    targets (a, b): the seeds where a's angle is smaller by more than :data:`TIE_DEG`
    (``seeds_<a>_over_<b>``), where b's is (``seeds_<b>_over_<a>``), and the two-sided sign test
    of the two counts (``p_<a>_<b>``). The verdict ``closer_target`` is the target T whose every
    pairwise test against another target with data says T is the nearer one
    (:func:`nnboundary.reporting.stats.count_verdict`: holds); ``closer_p_value`` is the largest of those
    p-values (an intersection–union test; 1 for a pair it does not win), for the target where
    it is smallest; ``undecided`` when no target passes every test."""
    columns = [f"angle_{t}" for t in TARGETS if f"angle_{t}" in valid]
    angles = valid[columns].to_numpy(dtype=float) if columns else np.zeros((len(valid), 0))
    names = [c.removeprefix("angle_") for c in columns]
    wins = dict.fromkeys(TARGETS, 0)
    tied = 0
    for row in angles:
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size == 0:
            continue
        order = finite[np.argsort(row[finite], kind="stable")]
        if order.size > 1 and row[order[1]] - row[order[0]] <= TIE_DEG:
            tied += 1
        else:
            wins[names[order[0]]] += 1
    record = {f"seeds_closer_{t}": wins[t] for t in TARGETS}
    record["seeds_tied"] = tied
    tests: dict[tuple[str, str], stats.Count] = {}
    for first, second in TARGET_PAIRS:
        a_wins = b_wins = 0
        if first in names and second in names:
            difference = angles[:, names.index(second)] - angles[:, names.index(first)]
            difference = difference[np.isfinite(difference)]
            a_wins = int((difference > TIE_DEG).sum())
            b_wins = int((difference < -TIE_DEG).sum())
            if a_wins + b_wins or difference.size:
                tests[(first, second)] = stats.count_verdict(a_wins, a_wins + b_wins)
                tests[(second, first)] = stats.count_verdict(b_wins, a_wins + b_wins)
        record[f"seeds_{first}_over_{second}"] = a_wins
        record[f"seeds_{second}_over_{first}"] = b_wins
        record[f"p_{first}_{second}"] = stats.sign_test(a_wins, a_wins + b_wins)
    best, best_p = "undecided", 1.0
    for target in names:
        against = [count for (t, _), count in tests.items() if t == target]
        if not against:
            continue
        # A pair the target does not win (at most half the seeds) is no evidence for it.
        p = max(count.p if 2 * count.k > count.n else 1.0 for count in against)
        if all(count.verdict == "holds" for count in against):
            best, best_p = target, p
            break
        best_p = min(best_p, p)
    record.update(closer_p_value=best_p, closer_target=best)
    return record


def zero_class_counts(runs: pd.DataFrame) -> dict[str, float]:
    """Over all ``runs`` (counts, not measurements; valid or not): ``runs_zero_class``, those
    with a whole class at h = 0 (``zero_class_share`` = 1); ``runs_zero_points``, those with any
    train point at 0; ``zero_points_median`` / ``zero_points_max``, the points at 0 per run."""
    share = runs["zero_class_share"].to_numpy(dtype=float)
    points = runs["zero_points"].to_numpy(dtype=float)
    summary = stats.describe(points)
    return {"runs_zero_class": int((share == 1.0).sum()),
            "runs_zero_points": int((points > 0).sum()), "zero_points_median": summary["median"], "zero_points_max": summary["max"]}


def _yes_no(condition: bool) -> str:
    return "yes" if condition else "no"


def findings(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × arch × variant × regime (module docstring), sorted by cell."""
    seeds = seed_table(metrics)
    records = []
    if seeds.empty:
        return pd.DataFrame()
    for keys, group in seeds.groupby(list(CELL_KEYS), sort=False):
        record: dict = dict(zip(CELL_KEYS, keys))
        valid = group[group["valid"].astype(bool)]
        record.update({
            "scheme": distinct_values(group["scheme"]),
            "final_epoch": int(group["epoch"].max()),
            "final_step": int(group["step"].max()),
            "n_seeds": int(group["seed"].nunique()),
            "n_valid": int(valid["seed"].nunique()),
            "optimizer": distinct_values(group["optimizer"]),
            "loss": distinct_values(group["loss"]),
            "lr": distinct_values(group["lr"]),
        })
        record["n_valid_origin"] = int(valid["origin_valid"].astype(bool).sum())
        for target in TARGETS:
            put_stats(record, f"angle_{target}", valid[f"angle_{target}"],
                 ("mean", "sd", "median", "q25", "q75", "max"))
            put_stats(record, f"margin_ratio_{target}", valid[f"margin_ratio_{target}"],
                 ("mean", "median", "min"))
            put_stats(record, f"bias_offset_abs_{target}", valid[f"bias_offset_abs_{target}"],
                 ("mean",))
            put_stats(record, f"svm_bias_gap_{target}", valid[f"svm_bias_gap_{target}"], ("median",))
        put_stats(record, "angle_nearer", valid["angle_nearer"], ("median", "max"))
        put_stats(record, "bias_gap", valid["bias_gap"])
        put_stats(record, "bias_gap_svc_abs", valid["bias_gap_svc_abs"], ("mean", "median", "max"))
        for column in PAIR_ANGLE_COLUMNS:
            put_stats(record, column.removesuffix("_deg"), valid[column], ("median", "min", "max"))
        put_stats(record, "train_loss", valid["train_loss"], ("median", "max"))
        record.update(zero_class_counts(group))
        record.update(closer_count(valid))
        if record["n_valid"] == 0:
            record["closer_target"] = record["direction_converged"] = NO_VALID
            record["bias_midway"] = NO_VALID
        else:
            record["direction_converged"] = _yes_no(
                record["angle_nearer_max"] < DIRECTION_TOL_DEG)
            record["bias_midway"] = _yes_no(record["bias_gap_svc_abs_max"] < BIAS_GAP_TOL)
        records.append(record)
    table = pd.DataFrame(records)
    order = sorted(range(len(table)), key=lambda i: (
        table["dataset"].iat[i], table["arch"].iat[i], table["variant"].iat[i],
        regime_sort_key(table["regime"].iat[i])))
    return table.iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _closer_counts(row: pd.Series) -> str:
    return ", ".join([f"{t} {int(row[f'seeds_closer_{t}'])}" for t in TARGETS]
                     + [f"tied {int(row['seeds_tied'])}", f"p = {row['closer_p_value']:.2g}"])


def _closer_cell(row: pd.Series) -> str:
    if row["n_valid"] == 0:
        return NO_VALID
    return f"{row['closer_target']} ({_closer_counts(row)})"


def _pairwise_cell(row: pd.Series) -> str:
    """Seeds nearer to each target of every pair, e.g. ``svc:homog 0:3 (p 0.25)``."""
    return "; ".join(f"{a}:{b} {int(row[f'seeds_{a}_over_{b}'])}:{int(row[f'seeds_{b}_over_{a}'])}"
                     f" (p {row[f'p_{a}_{b}']:.2g})" for a, b in TARGET_PAIRS)


def _between_cell(row: pd.Series) -> str:
    """The median angles between the targets, e.g. ``0.16 / 11 / 11`` (svc–homog / svc–origin /
    homog–origin)."""
    return " / ".join(number(row[f"{c.removesuffix('_deg')}_median"]) for c in PAIR_ANGLE_COLUMNS)


def _zero_cell(row: pd.Series) -> str:
    """``4/8 runs (points 0–401)``: runs with a whole class at h = 0 of all runs, and the
    range of train points at 0 per run."""
    return (f"{int(row['runs_zero_class'])}/{int(row['n_seeds'])} runs (points "
            f"{number(row['zero_points_median'])} median, {number(row['zero_points_max'])} max)")


def regime_sentence(row: pd.Series) -> str:
    """One clause of a cell's comparison sentence: where a regime ends, from valid seeds."""
    regime = row["regime"]
    if row["n_valid"] == 0:
        return f"{regime}: {NO_VALID} of {int(row['n_seeds'])}"
    closer = row["closer_target"]
    which = (f"closer to {closer}" if closer in TARGETS else "closer to no one target "
             "(undecided)")
    return (f"{regime} ({int(row['n_valid'])}/{int(row['n_seeds'])} valid seeds) ends {which} "
            f"({_closer_counts(row)}; pairwise {_pairwise_cell(row)}); worst angle to the "
            f"nearest target "
            f"{number(row['angle_nearer_max'])}°, median |bias gap to svc| "
            f"{number(row['bias_gap_svc_abs_median'])}, targets {_between_cell(row)}° apart "
            f"(svc–homog / svc–origin / homog–origin)")


def findings_document(table: pd.DataFrame, claim_blocks: list[document.Block] = (),
                      excluded_table: pd.DataFrame | None = None) -> list[document.Block]:
    """findings.md / findings.html: the per-cell table (medians with quartiles over valid
    seeds), the regimes compared, the claims, and every excluded seed with its reason."""
    legend = (
        "Angles in degrees, as median [q25, q75] over valid seeds (a seed is valid when its "
        "final rows are measurements: separable features, a hard-margin fit, every train point "
        "classified, no dead unit, no convention value; see nnboundary.measures.validity). Targets: svc "
        "(free bias), homog (bias penalised like a weight), origin (no bias; its angle is over "
        "the seeds where a separator through the origin exists, n in brackets where fewer). "
        "worst: the largest angle to the nearest target. closer: per-seed count of the target "
        "with the smallest angle (tied: the two nearest within 0.01°), and the target nearer "
        "than each other one by a two-sided sign test per pair (p: the largest); undecided when "
        f"no target passes every test or fewer than {stats.MIN_SEEDS} seeds were compared. "
        "nearer, pairwise: for each pair a:b, the seeds nearer to a and to b (ties left out), "
        "with the pair's sign test. between targets: the "
        "median angles svc–homog / svc–origin / homog–origin; a 'closer' count means little "
        "where they are small. bias gap: "
        "1 − 2·midpoint along the network's own normal (0 midway, ±1 touching a class); "
        "|gap to svc|: distance from where the svc SVM puts its own bias, in half gaps "
        "(binary: |bias gap|; K > 2: mean over class pairs of the Crammer–Singer fit). "
        f"direction converged: worst < {DIRECTION_TOL_DEG:g}°. midway: worst |gap to svc| < "
        f"{BIAS_GAP_TOL:g}. class at h = 0: runs (valid or not) in which every bottleneck unit "
        "is off on a whole class, whose points then sit at the origin of feature space where only "
        "the last layer's bias classifies them, and the train points at 0 per run.")
    header = [*CELL_KEYS, "valid/seeds", "optimizer, lr",
              "angle svc", "angle homog", "angle origin", "worst", "closer", "nearer, pairwise",
              "between targets",
              "margin ratio svc", "bias gap", "|gap to svc| (worst)", "train loss",
              "direction converged", "midway", "class at h = 0"]
    rows = []
    for _, row in table.iterrows():
        cells = [str(row[g]) for g in CELL_KEYS]
        cells.append(f"{int(row['n_valid'])}/{int(row['n_seeds'])}")
        cells.append(f"{row['optimizer']} {row['lr']}".strip())
        if row["n_valid"] == 0:
            cells += [NO_VALID] + ["–"] * (len(header) - len(cells) - 2) + [_zero_cell(row)]
        else:
            origin = median_iqr(row, "angle_origin")
            if row["n_valid_origin"] < row["n_valid"]:
                origin += f" (n = {int(row['n_valid_origin'])})"
            cells += [median_iqr(row, "angle_svc"), median_iqr(row, "angle_homog"), origin,
                      number(row["angle_nearer_max"]), _closer_cell(row), _pairwise_cell(row),
                      _between_cell(row),
                      number(row["margin_ratio_svc_median"]), median_iqr(row, "bias_gap"),
                      f"{number(row['bias_gap_svc_abs_median'])} ({number(row['bias_gap_svc_abs_max'])})",
                      number(row["train_loss_median"], 2), row["direction_converged"],
                      row["bias_midway"], _zero_cell(row)]
        rows.append(cells)
    blocks: list[document.Block] = [
        document.Heading("Findings: final checkpoint, valid seeds only"),
        document.Table(header, rows, caption=legend),
        document.Heading("Regimes compared", 2),
        document.Bullets([
            f"{'/'.join(map(str, keys))}: "
            + "; ".join(regime_sentence(row) for _, row in group.iterrows()) + "."
            for keys, group in table.groupby(list(EXPERIMENT_KEYS), sort=False)]),
    ]
    if claim_blocks:
        blocks += list(claim_blocks)
    if excluded_table is not None:
        blocks.append(document.Heading("Excluded seeds", 2))
        if excluded_table.empty:
            blocks.append(document.Paragraph("None: every seed's final checkpoint is valid."))
        else:
            blocks.append(document.Bullets([
                f"{row['dataset']}/{row['arch']}/{row['variant']}/{row['regime']} seed "
                f"{int(row['seed'])} (epoch {int(row['epoch'])}): {row['invalid_reason']} "
                f"(train acc {row['train_acc']:.4f}, test acc {row['test_acc']:.4f}, train loss "
                f"{row['train_loss']:.2g}, dead units {int(row['dead_units'])})"
                for _, row in excluded_table.iterrows()]))
    return blocks


def findings_markdown(table: pd.DataFrame, claim_blocks: list[document.Block] = (),
                      excluded_table: pd.DataFrame | None = None) -> str:
    """findings.md: :func:`findings_document` as Markdown."""
    return document.markdown(findings_document(table, claim_blocks, excluded_table))
