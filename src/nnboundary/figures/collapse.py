"""The ``collapse`` figure: neural collapse against the SVM, per run over its valid checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..formats.tables import read_table
from ..settings.targets import TARGETS
from .common import pyplot, regime_styles, save


def collapse_figure(table_path: str | Path, output, settings: dict[str, Any]) -> None:
    """Per run, the angle between the centred last layer and each SVM target (Crammer–Singer
    for K > 2) against ``nc3_self_duality``, over its valid checkpoints (one line per run,
    the final checkpoint marked; log axes). One panel per target; colour: dataset × arch ×
    variant (e.g. the bottleneck width), line style: regime."""
    plt = pyplot()
    table = read_table(table_path)
    targets = [t for t in TARGETS if f"angle_{t}_deg" in table.columns]
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(5.2 * max(1, len(targets)) + 2, 4.4),
                             squeeze=False, layout="constrained")
    valid = table[table["valid"]] if "valid" in table.columns else table.iloc[0:0]
    cells = sorted({(r.dataset, r.arch, r.variant) for r in valid.itertuples()})
    colours = plt.get_cmap("tab10" if len(cells) <= 10 else "tab20")
    styles = regime_styles(sorted(set(valid["regime"])) if len(valid) else [])
    for ax, target in zip(axes[0], targets):
        column = f"angle_{target}_deg"
        drawn = False
        for i, cell in enumerate(cells):
            for regime, style in styles.items():
                group = valid[(valid["dataset"] == cell[0]) & (valid["arch"] == cell[1])
                              & (valid["variant"] == cell[2]) & (valid["regime"] == regime)]
                label = f"{'/'.join(cell)}" if regime == next(iter(styles)) else None
                for _, run in group.groupby("seed"):
                    run = run.sort_values("epoch")
                    x = run["nc3_self_duality"].to_numpy(float)
                    y = run[column].to_numpy(float)
                    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
                    if not keep.any():
                        continue
                    ax.plot(x[keep], y[keep], style, color=colours(i % colours.N), lw=1.1,
                            alpha=0.8, label=label)
                    ax.plot(x[keep][-1], y[keep][-1], "o", color=colours(i % colours.N), ms=4)
                    label, drawn = None, True
        if drawn:
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no valid checkpoint", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel("nc3_self_duality  ‖W̃/‖W̃‖ − M̃ᵀ/‖M̃‖‖²")
        ax.set_ylabel(f"angle to the {target} SVM (°)")
        ax.set_title(f"{target}: last layer vs SVM against self-duality", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    if cells:
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    fig.suptitle("Neural collapse and the SVM, per run over its valid checkpoints "
                 "(dot: final checkpoint)", fontsize=10)
    save(fig, output, int(settings["dpi"]))
