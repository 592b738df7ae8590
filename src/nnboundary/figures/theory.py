"""The ``theory`` figure: a dataset's binary ``retrain_last`` runs against the linear theorem,
measured and predicted angles over the depth log10(1/L) (:mod:`nnboundary.measures.linear_theory`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..formats.tables import read_table
from .common import pyplot, save

#: The three curves of every run: column suffix → (line style, legend text).
CURVES = {"": ("-", "measured"), "reg_": ("--", "regularisation path"),
          "soudry_": (":", "v̂·s + ṽ (Soudry et al.)")}


def theory_figure(paths: Sequence[str | Path], output, settings: dict[str, Any]) -> None:
    """Two panels, the angle to ``homog`` and to ``svc`` (degrees, log scale) against
    log10(1/L): per seed (one colour each) the retrained layer (solid), the regularisation path
    at the same loss (dashed) and the theorem's asymptotic path (dotted)."""
    plt = pyplot()
    frames = [read_table(p) for p in paths]
    table = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(
        len(f) for f in frames) else pd.DataFrame()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    if table.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no binary retrain_last run (the theorem's binary form)",
                    ha="center", va="center", transform=ax.transAxes)
        save(fig, output, int(settings["dpi"]))
        return
    colours = plt.get_cmap("tab10")
    seeds = sorted(table["seed"].unique())
    for ax, target in zip(axes, ("homog", "svc")):
        for i, seed in enumerate(seeds):
            run = table[table["seed"] == seed].sort_values("epoch")
            x = run["log10_inverse_loss"].to_numpy(float)
            for prefix, (style, text) in CURVES.items():
                y = run[f"{prefix}angle_{target}_deg"].to_numpy(float)
                keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
                ax.plot(x[keep], y[keep], style, color=colours(i % 10), lw=1.1,
                        label=(f"seed {seed}" if prefix == "" else None))
        for prefix, (style, text) in CURVES.items():
            ax.plot([], [], style, color="0.3", label=text)
        ax.set_yscale("log")
        ax.set_xlabel("depth log10(1/train loss)")
        ax.set_ylabel(f"angle to {target} (°)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"angle to {target}", fontsize=10)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    first = table.iloc[0]
    fig.suptitle(f"{first['dataset']}/{first['arch']}/{first['variant']}: the retrained last "
                 "layer against the linear theorem's predictions at the same loss", fontsize=10)
    save(fig, output, int(settings["dpi"]))
