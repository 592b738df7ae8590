"""The ``convergence`` figure: where each regime's last layer is heading as the loss goes to 0.

One dataset × arch × variant, every regime and seed, against the **depth** x = −log10(train
loss) of each checkpoint (linear axis): the theory's limit is L → 0, and the direction error
falls like 1/log(1/L) whatever the schedule, so runs are compared at equal loss, not at equal
steps. Every seed is one thin line, coloured by regime; nothing is averaged across seeds (their
checkpoints lie at different depths). Only valid checkpoints (:mod:`nnboundary.measures.validity`) are on
the lines; invalid ones are crosses; a dot marks each seed's deepest valid checkpoint. The
panels (3 × 4):

* the angle between the network's normal and each SVM target's, ``svc`` (free bias), ``homog``
  (bias penalised like a weight) and ``origin`` (no bias; where a separator through the origin
  exists), on one shared log scale; the angles between the targets themselves (line style: the
  pair), below which "nearer to one target" means little;
* the margin gap |1 − γ_NN/γ_SVM| to each target (0: the SVM's margin) and the network's own
  bias gap 1 − 2·midpoint (0 midway, ±1 touching a class; multi-class: mean |gap| over pairs);
* ‖w‖ (multi-class: mean over pairs), NC1 and NC3 of the same checkpoints (from the runs'
  neural_collapse.parquet) and the optimizer steps it took to get that deep.

The title says, per regime, which target each seed's deepest valid checkpoint is nearest to and
the median angle to it: where each regime is heading. Multi-class runs use the Crammer–Singer
fit (the ``mean`` row over class pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..reporting.tables import overall_rows
from ..settings.keys import RUN_KEYS, regime_sort_key
from ..settings.targets import PAIR_ANGLE_COLUMNS, TARGET_PAIRS, TARGETS, TIE_DEG
from .common import (FLOOR, bias_gap_axis, bias_values, floored,
                     plain_tick_labels, pyplot, read_collapse, read_metrics, regime_colours,
                     save, scheme_label, set_log_scale)

#: Line styles of the angles between targets (svc–homog, svc–origin, homog–origin).
PAIR_STYLES = dict(zip(PAIR_ANGLE_COLUMNS, ("-", "--", ":")))
#: Thin per-seed lines.
LINE = {"lw": 0.9, "alpha": 0.8}


def depth_of(loss) -> np.ndarray:
    """x = −log10(loss); NaN where the loss is not positive and finite (exactly 0 after an
    underflow has no depth to draw)."""
    loss = np.asarray(loss, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((loss > 0) & np.isfinite(loss), -np.log10(loss), np.nan)


def checkpoint_rows(frame):
    """The summarising rows (binary, or the Crammer–Singer ``mean``) with ``depth`` and
    ``network_valid``: the rows of the targets with a bias are valid at that checkpoint (the
    network's own quantities are measurements there)."""
    rows = overall_rows(frame).copy()
    rows["depth"] = depth_of(rows["train_loss"])
    bias_ok = rows["valid"].astype(bool) | (rows["target"] == "origin")
    rows["network_valid"] = bias_ok.groupby(
        [rows[k] for k in [*RUN_KEYS, "epoch"]]).transform("all").astype(bool)
    return rows.sort_values([*RUN_KEYS, "epoch"], kind="stable")


def seed_lines(ax, part, values: np.ndarray, valid: np.ndarray, colour, style: str = "-"):
    """One thin line per seed through its valid checkpoints (in depth order), crosses at its
    invalid ones, a dot at its deepest valid one. Returns the valid values drawn."""
    x = part["depth"].to_numpy(dtype=float)
    seeds = part["seed"].to_numpy()
    drawn = []
    for seed in np.unique(seeds):
        mine = (seeds == seed) & np.isfinite(x) & np.isfinite(values)
        order = np.flatnonzero(mine)[np.argsort(x[mine], kind="stable")]
        good, bad = order[valid[order]], order[~valid[order]]
        if good.size:
            ax.plot(x[good], values[good], ls=style, color=colour, **LINE, zorder=3)
            ax.plot(x[good[-1]], values[good[-1]], "o", color=colour, ms=3.5, zorder=4)
            drawn.append(values[good])
        if bad.size:
            ax.plot(x[bad], values[bad], "x", color=colour, ms=3.5, alpha=0.5, zorder=2)
    return np.concatenate(drawn) if drawn else np.array([])


def heading(rows, regime: str) -> str:
    """Where a regime ends: per valid seed, the target its deepest valid checkpoint is nearest
    to (a tie within TIE_DEG counts for none), and the median angle to it."""
    part = rows[(rows["regime"] == regime) & rows["network_valid"]]
    part = part[(part["target"] != "origin") | part["valid"].astype(bool)]
    if part.empty:
        return f"{regime}: no valid checkpoint"
    last = part.groupby(list(RUN_KEYS))["epoch"].transform("max")
    final = part[part["epoch"] == last]
    counts, nearest, depths = dict.fromkeys(TARGETS, 0), [], []
    tied = 0
    for _, run in final.groupby(list(RUN_KEYS)):
        angles = run.set_index("target")["angle_deg"].astype(float).sort_values()
        depths.append(float(run["depth"].iloc[0]))
        if len(angles) > 1 and angles.iloc[1] - angles.iloc[0] <= TIE_DEG:
            tied += 1
        else:
            counts[str(angles.index[0])] += 1
        nearest.append(float(angles.iloc[0]))
    told = ", ".join(f"{t} {counts[t]}" for t in TARGETS)
    return (f"{regime}: deepest valid checkpoint nearest to {told}, tied {tied} "
            f"({len(nearest)} seeds); median angle to it {np.median(nearest):.3g}° at depth "
            f"{np.median(depths):.3g}")


#: The figure's size in inches, and its fixed margins and gaps (inches): a 12-panel figure's
#: ``tight_layout`` measured every tick label once more before the drawing measured them again,
#: about a third of the figure's time; these fit the panels' longest labels at this size.
#: ``top`` and ``bottom`` hold the panels' own titles and x labels; each line of the suptitle
#: and row of the legend adds its own.
SIZE = (20.0, 12.6)
MARGIN = {"left": 0.85, "right": 0.2, "top": 0.6, "bottom": 0.55, "title_line": 0.19,
          "legend_row": 0.2, "wspace": 0.95, "hspace": 0.85}
#: Columns of the figure legend below the panels.
LEGEND_COLUMNS = 4


def fixed_layout(fig, title_lines: int, legend_rows: int) -> None:
    """Place the 3 × 4 panels with the fixed margins of :data:`MARGIN`: ``title_lines`` of the
    suptitle above, ``legend_rows`` of the figure legend below."""
    width, height = fig.get_size_inches()
    top = MARGIN["top"] + MARGIN["title_line"] * title_lines
    bottom = MARGIN["bottom"] + MARGIN["legend_row"] * legend_rows
    panel_width = (width - MARGIN["left"] - MARGIN["right"] - 3 * MARGIN["wspace"]) / 4
    panel_height = (height - top - bottom - 2 * MARGIN["hspace"]) / 3
    fig.subplots_adjust(left=MARGIN["left"] / width, right=1 - MARGIN["right"] / width,
                        bottom=bottom / height, top=1 - top / height,
                        wspace=MARGIN["wspace"] / panel_width,
                        hspace=MARGIN["hspace"] / panel_height)


class _Panels:
    """The checkpoint rows of one figure by regime, and how each regime is drawn."""

    def __init__(self, rows, collapse=None):
        self.rows, self.collapse = rows, collapse
        self.regimes = sorted(set(rows["regime"]), key=regime_sort_key)
        self.colours = regime_colours(self.regimes)

    def target(self, regime: str, target: str):
        """One target's rows of a regime and their validity (the row's and the network's)."""
        part = self.rows[(self.rows["regime"] == regime) & (self.rows["target"] == target)]
        return part, part["valid"].to_numpy(bool) & part["network_valid"].to_numpy(bool)

    def network(self, regime: str):
        """One row per checkpoint (the svc target's) for the network's own quantities."""
        part = self.rows[self.rows["regime"] == regime]
        if len(part):
            reference = "svc" if (part["target"] == "svc").any() else part["target"].iloc[0]
            part = part[part["target"] == reference]
        return part, part["network_valid"].to_numpy(bool)


def _per_target_row(panels: _Panels, axes, column: str, values_of, floor: float,
                    title: str) -> tuple[np.ndarray, bool]:
    """One panel per target of ``values_of(column values)`` floored at ``floor``, every
    regime's seeds; (every value drawn, whether any was below the floor)."""
    drawn, clipped = [], False
    for ax, target in zip(axes, TARGETS):
        for regime in panels.regimes:
            part, valid = panels.target(regime, target)
            values, below = floored(values_of(part[column].to_numpy(float)), floor)
            clipped |= below
            drawn.append(seed_lines(ax, part, values, valid, panels.colours[regime]))
        ax.set_title(title.format(target=target, name=TARGETS[target]), fontsize=10)
    return (np.concatenate(drawn) if drawn else np.array([])), clipped


def _angles(panels: _Panels, axes) -> None:
    """Row 0: the angle to each target on one shared log scale, and between the targets."""
    every, clipped = _per_target_row(panels, axes[:3], "angle_deg", lambda v: v,
                                     FLOOR["angle_deg"], "angle to {target} ({name})")
    for ax in axes[:3]:
        if every.size and (every > 0).all():
            ax.set_yscale("log")
            ax.set_ylim(every.min() / 1.5, every.max() * 1.5)
            plain_tick_labels(ax)
        ax.set_ylabel("degrees" + (f" (below {FLOOR['angle_deg']:g} drawn at it)"
                                   if clipped else ""))
    ax, between = axes[3], []
    for regime in panels.regimes:
        part, valid = panels.network(regime)
        for column in PAIR_ANGLE_COLUMNS:
            if column in part:
                values, _ = floored(part[column].to_numpy(float), FLOOR["angle_deg"])
                between.append(seed_lines(ax, part, values, valid, panels.colours[regime],
                                          PAIR_STYLES[column]))
    between = np.concatenate(between) if between else np.array([])
    if between.size and (between > 0).all():
        set_log_scale(ax, between)
        plain_tick_labels(ax)
    ax.set_title("angles between the targets", fontsize=10)
    ax.set_ylabel("degrees")


def _margins_and_bias(panels: _Panels, axes) -> None:
    """Row 1: the margin gap |1 − γ_NN/γ_t| to each target on one log scale (0 at the SVM's
    margin; above 1 for the origin target the network, which has a bias, can beat), and the
    network's bias gap."""
    gaps, clipped = _per_target_row(panels, axes[:3], "margin_ratio",
                                    lambda v: np.abs(1.0 - v), FLOOR["margin_gap"],
                                    "margin gap |1 − γ_NN / γ_{target}|")
    gaps = gaps[np.isfinite(gaps)]
    for ax in axes[:3]:
        if gaps.size:
            ax.set_yscale("log")
            ax.set_ylim(gaps.min() / 1.5, gaps.max() * 1.5)
        ax.set_ylabel("(below %g drawn at it)" % FLOOR["margin_gap"] if clipped else "")
    ax = axes[3]
    for regime in panels.regimes:
        part, valid = panels.network(regime)
        seed_lines(ax, part, np.clip(bias_values(part, "bias_gap"), -1.1, 1.1), valid,
                   panels.colours[regime])
    ax.set_ylabel("1 − 2·midpoint" + bias_gap_axis(ax), fontsize=9)
    ax.set_title("the network's bias gap (0 midway; multi-class: mean |gap|)", fontsize=10)


def _network_row(panels: _Panels, axes) -> None:
    """Row 2: ‖w‖, NC1, NC3 and the optimizer steps, per checkpoint."""
    own = [(axes[0], "w_norm", "‖w‖ = ‖W₁ − W₀‖ (multi-class: mean over pairs)", None),
           (axes[3], "step", "optimizer steps to get there", None)]
    if panels.collapse is not None:
        own += [(axes[1], "nc1", "NC1 = Tr(Σ_W Σ_B⁺)/K", panels.collapse),
                (axes[2], "nc3_self_duality", "NC3 = ‖W̃/‖W̃‖ − M̃ᵀ/‖M̃‖‖²", panels.collapse)]
    for ax, column, title, table in own:
        drawn = []
        for regime in panels.regimes:
            if table is None:
                part, valid = panels.network(regime)
            else:
                part = table[table["regime"] == regime]
                valid = part["valid"].to_numpy(bool)
            if column in part:
                values, _ = floored(part[column].to_numpy(float), FLOOR[column])
                drawn.append(seed_lines(ax, part, values, valid, panels.colours[regime]))
        drawn = np.concatenate(drawn) if drawn else np.array([])
        if drawn.size and (drawn > 0).all():
            set_log_scale(ax, drawn)
        ax.set_title(title, fontsize=10)


def _legend_handles(panels: _Panels) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=panels.colours[r], lw=1.5,
                      label=f"regime {r} (one line per seed)") for r in panels.regimes]
    handles += [Line2D([], [], color="grey", ls=PAIR_STYLES[c], lw=1.2,
                       label=f"{a}–{b} (angles between targets)")
                for c, (a, b) in zip(PAIR_ANGLE_COLUMNS, TARGET_PAIRS)]
    handles += [Line2D([], [], color="grey", ls="", marker="o", ms=4,
                       label="deepest valid checkpoint"),
                Line2D([], [], color="grey", ls="", marker="x", ms=4,
                       label="invalid checkpoint (not a measurement)")]
    return handles


def convergence_figure(metric_paths: Sequence[str | Path], output, settings: dict[str, Any],
                       collapse_paths: Sequence[str | Path] | None = None) -> None:
    """Draw the figure of the module docstring from the runs' metrics files (and, with
    ``collapse_paths``, their neural_collapse.parquet for NC1 and NC3); write ``output``."""
    plt = pyplot()
    frame = read_metrics(metric_paths)
    rows = checkpoint_rows(frame)
    collapse = None
    if collapse_paths:
        collapse = read_collapse(collapse_paths, frame)
        depth = rows.drop_duplicates([*RUN_KEYS, "epoch"])[[*RUN_KEYS, "epoch", "depth"]]
        collapse = collapse.merge(depth, on=[*RUN_KEYS, "epoch"], how="left")
    panels = _Panels(rows, collapse)
    fig, axes = plt.subplots(3, 4, figsize=SIZE)
    _angles(panels, axes[0])
    _margins_and_bias(panels, axes[1])
    _network_row(panels, axes[2])
    for ax in axes.ravel():
        if not ax.has_data():
            ax.text(0.5, 0.5, "no valid checkpoint" if ax is not axes[2, 1] or collapse is None
                    else "no NC values", transform=ax.transAxes, ha="center")
        ax.set_xlabel("depth −log10(train loss)")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlim(left=0)
    handles = _legend_handles(panels)
    fig.legend(handles=handles, loc="lower center", ncol=LEGEND_COLUMNS, fontsize=8.5,
               frameon=False)
    names = sorted({"/".join(map(str, key)) for key in
                    zip(rows["dataset"], rows["arch"], rows["variant"])}) or ["no rows"]
    lines = [f"{', '.join(names)}: the last layer against the hard-margin SVMs as the loss goes "
             f"to 0 ({scheme_label(rows) if len(rows) else '-'})"]
    lines += [heading(rows, regime) for regime in panels.regimes]
    fig.suptitle("\n".join(lines), fontsize=10)
    fixed_layout(fig, title_lines=len(lines),
                 legend_rows=-(-len(handles) // LEGEND_COLUMNS))
    save(fig, output, int(settings["dpi"]))
