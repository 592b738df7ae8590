"""The ``overview`` figure: the final checkpoint of every run of the grid, per dataset × arch ×
variant × regime: the angle to each SVM target and the network's bias gap, seeds as points
(invalid seeds as crosses), the targets side by side, the median over valid seeds as a bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..reporting.tables import final_overall_rows
from ..settings.keys import RUN_KEYS, regime_sort_key
from ..settings.targets import TARGETS
from .common import (BIAS_GAP_LIMIT, TARGET_COLOURS, bias_gap_axis, bias_values,
                     pyplot, read_metrics, save, set_angle_scale)

#: Horizontal offset of each target's points within a category.
OFFSETS = dict(zip(TARGETS, np.linspace(-0.24, 0.24, len(TARGETS))))


def overview_figure(metrics_path: str | Path, output, settings: dict[str, Any]) -> None:
    """Final angle and bias gap of every run per dataset/arch/variant/regime (module
    docstring). An ``origin`` row that is invalid because no separator through the origin
    exists is a cross, like any invalid row."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    rows = final_overall_rows(read_metrics([metrics_path]))
    keys = list(zip(rows["dataset"], rows["arch"], rows["variant"], rows["regime"]))
    names = ["/".join(map(str, key)) for key in keys]
    order = {name: (*key[:3], regime_sort_key(key[3])) for name, key in zip(names, keys)}
    categories = sorted(order, key=order.get)
    where = {name: i for i, name in enumerate(categories)}
    x_of = np.array([where[name] for name in names], dtype=float)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.05, 0.05, size=len(rows))
    width = max(6.5, 1.2 * len(categories) + 3.0)
    fig, axes = plt.subplots(2, 1, figsize=(width, 7.2), sharex=True)
    panels = (("angle_deg", "final angle to the SVM (degrees)"),
              ("bias_gap", "final bias gap 1 − 2·midpoint\n(network: 0 = midway; "
                           "multi-class: mean |gap|)"))
    bad = ~rows["valid"].to_numpy(dtype=bool)
    for ax, (column, label) in zip(axes, panels):
        values = (rows[column].to_numpy(dtype=float) if column == "angle_deg" else
                  bias_values(rows, column))
        for target in TARGETS:
            mask = (rows["target"] == target).to_numpy()
            x = x_of + OFFSETS[target] + jitter
            colour = TARGET_COLOURS[target]
            ax.scatter(x[mask & ~bad], values[mask & ~bad], color=colour, s=22, alpha=0.8,
                       zorder=3)
            crosses = values if column == "angle_deg" else np.clip(
                values, -BIAS_GAP_LIMIT, BIAS_GAP_LIMIT)
            ax.scatter(x[mask & bad], crosses[mask & bad], color=colour, marker="x", s=30,
                       alpha=0.6, zorder=3)
            for i in where.values():  # median over the valid seeds as a short bar
                sel = mask & ~bad & (x_of == i)
                if sel.any():
                    ax.hlines(np.median(values[sel]), i + OFFSETS[target] - 0.09,
                              i + OFFSETS[target] + 0.09, color=colour, lw=2.0, zorder=2)
        if column == "angle_deg":
            set_angle_scale(ax, values)
        else:
            label += bias_gap_axis(ax)
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_xticks(range(len(categories)))
    axes[1].set_xticklabels(categories, rotation=30, ha="right")
    axes[1].set_xlim(-0.6, max(len(categories), 1) - 0.4)
    handles = [Line2D([], [], color=TARGET_COLOURS[t], marker="o", ls="",
                      label=f"{t} ({TARGETS[t]})") for t in TARGETS]
    handles.append(Line2D([], [], color="grey", marker="x", ls="",
                          label="invalid seed (not in the median)"))
    handles.append(Line2D([], [], color="grey", lw=2.0, label="median over valid seeds"))
    axes[0].legend(handles=handles, fontsize=8, loc="best")
    n_runs = len(rows.groupby(list(RUN_KEYS))) if len(rows) else 0
    n_bad = len(rows[bad & (rows["target"] != "origin").to_numpy()].groupby(list(RUN_KEYS))) \
        if bad.any() else 0
    axes[0].set_title(f"Final checkpoint of {n_runs} runs ({n_bad} invalid): last layer against "
                      f"the hard-margin SVMs\n(binary, or crammer_singer mean over class pairs)",
                      fontsize=10)
    fig.tight_layout()
    save(fig, output, int(settings["dpi"]))
