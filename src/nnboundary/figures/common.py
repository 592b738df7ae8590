"""What every figure shares: colours and line styles, pyplot set-up, atomic PNG writing, reading
metrics and neural-collapse tables (with their validity), and axis scales."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..formats.atomic import atomic_path
from ..formats.tables import read_table
from ..settings.targets import TARGETS

CLASS_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:brown", "tab:pink", "tab:olive",
                 "tab:cyan", "tab:gray", "gold", "navy"]
NETWORK_COLOUR = "black"
#: Target colours, kept apart from the first class colours.
TARGET_COLOURS = {"svc": "tab:red", "homog": "tab:purple", "origin": "teal"}
assert set(TARGET_COLOURS) == set(TARGETS)
#: Regime colours of the convergence figure (one thin line per seed); other regimes take
#: :data:`EXTRA_REGIME_COLOURS` in turn.
REGIME_COLOURS = {"full": "tab:blue", "retrain_last": "tab:orange"}
EXTRA_REGIME_COLOURS = ("tab:green", "tab:brown", "tab:pink")
#: Line styles of the regimes where colour already means something else; others take
#: :data:`EXTRA_REGIME_STYLES` in turn.
REGIME_STYLES = {"full": "-", "retrain_last": "--"}
EXTRA_REGIME_STYLES = (":", "-.")
#: Floors of log-scaled panels: smaller values (0 included) are drawn at the floor, and the
#: axis label says so.
FLOOR = {"angle_deg": 1e-6, "margin_gap": 1e-8, "w_norm": 1e-12, "nc1": 1e-12,
         "nc3_self_duality": 1e-16, "step": 1.0}
#: A panel whose values all lie within this factor is drawn with a linear y axis.
NARROW_RANGE = 1.5
#: The bias-gap axes span ±BIAS_GAP_LIMIT: a valid row's bias gap lies in (−1, 1) (every train
#: point on its side puts the boundary inside the gap); invalid ones beyond are drawn at the edge.
BIAS_GAP_LIMIT = 1.1


def pyplot():
    """pyplot with the headless Agg backend (imported on first use: the CLI stays light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, output: str | Path, dpi: int) -> None:
    """Write ``fig`` as PNG to ``output`` atomically, then close it."""
    plt = pyplot()
    try:
        with atomic_path(output) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def cycled(regimes: Sequence[str], known: dict[str, str], extra: Sequence[str]) -> dict[str, str]:
    """A style per regime: ``known``'s, then ``extra`` in turn for the others."""
    styles, others = {}, itertools.cycle(extra)
    for regime in regimes:
        styles[regime] = known.get(regime) or next(others)
    return styles


def regime_styles(regimes: Sequence[str]) -> dict[str, str]:
    """Line style per regime: :data:`REGIME_STYLES`, then :data:`EXTRA_REGIME_STYLES`."""
    return cycled(regimes, REGIME_STYLES, EXTRA_REGIME_STYLES)


def regime_colours(regimes: Sequence[str]) -> dict[str, str]:
    """Colour per regime: :data:`REGIME_COLOURS`, then :data:`EXTRA_REGIME_COLOURS`."""
    return cycled(regimes, REGIME_COLOURS, EXTRA_REGIME_COLOURS)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def scheme_label(rows) -> str:
    schemes = sorted(set(rows["scheme"]))
    return " / ".join(s if s == "binary" else f"{s} mean over pairs" for s in schemes)


def read_metrics(paths: Sequence[str | Path]):
    """Metrics tables (one or more) in one frame, with run keys and validity; an
    InputFileError naming the missing columns if they are not metrics tables."""
    import pandas as pd  # the tables' figures only: the run figure needs no pandas

    from ..measures.validity import with_validity
    from ..reporting.tables import with_run_keys

    frames = [read_table(path) for path in paths]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    missing = {"dataset", "arch", "seed", "epoch", "step", "target", "scheme", "pair",
               "angle_deg", "bias_gap", "svm_bias_gap", "train_loss", "degenerate",
               "valid"} - set(frame.columns)
    if missing:
        raise InputFileError(
            f"metrics files {list(map(str, paths))} lack the columns {sorted(missing)}; "
            f"rerun the metrics step"
        )
    return with_validity(with_run_keys(frame))


def read_collapse(paths: Sequence[str | Path], metrics):
    """The runs' neural-collapse rows with each checkpoint's validity (from its metrics rows:
    :func:`nnboundary.reporting.collapse.collapse_table`)."""
    from ..reporting.collapse import collapse_table

    return collapse_table([read_table(path) for path in paths], metrics)


# --------------------------------------------------------------------------------------------
# Values and axes
# --------------------------------------------------------------------------------------------


def bias_values(rows, column: str) -> np.ndarray:
    """A bias-gap column to draw: its signed value on binary rows; on a multi-class ``mean`` row
    (which leaves signed pair values empty, so that they cannot cancel) the mean |bias gap| over
    pairs for the network's own, and nothing for the SVM's."""
    values = rows[column].to_numpy(dtype=float).copy()
    mean = (rows["pair"] == "mean").to_numpy()
    if mean.any():
        values[mean] = (rows["bias_gap_abs"].to_numpy(dtype=float)[mean] if column == "bias_gap"
                        else np.nan)
    return values


def bias_gap_axis(ax) -> str:
    """Linear y over ±:data:`BIAS_GAP_LIMIT` with the midway line and the class edges ±1;
    returns a note for the axis label."""
    ax.axhline(0.0, color="grey", lw=0.8, zorder=0)
    for edge in (-1.0, 1.0):
        ax.axhline(edge, color="grey", lw=0.6, ls=":", zorder=0)
    ax.set_ylim(-BIAS_GAP_LIMIT, BIAS_GAP_LIMIT)
    return f"\n(invalid beyond ±{BIAS_GAP_LIMIT:g} drawn at the edge)"


def floored(values: np.ndarray, floor: float) -> tuple[np.ndarray, bool]:
    """``values`` raised to ``floor`` (for a log axis) and whether any finite value was below."""
    values = np.asarray(values, dtype=np.float64)
    below = np.isfinite(values) & (values < floor)
    return np.where(below, floor, values), bool(below.any())


def set_log_scale(ax, values: np.ndarray) -> None:
    """Log y, unless every finite value lies within a factor :data:`NARROW_RANGE` (a flat
    curve, e.g. an untrained network's loss), where log ticks would repeat one label: linear."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() < NARROW_RANGE:
        return
    ax.set_yscale("log")


def plain_tick_labels(ax) -> None:
    """Tick labels as plain numbers (0.5, 30, 90) instead of 5×10⁻¹; minor ones only when the
    axis spans less than a decade (else they crowd)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    few_decades = low > 0 and high / low < 20
    ax.yaxis.set_minor_formatter(plain if few_decades else NullFormatter())


def set_angle_scale(ax, values: np.ndarray) -> None:
    """Log y when every angle is positive (convergence is a straight fall), else symlog with
    the smallest positive angle as the linear range, else linear."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    values = values[np.isfinite(values)]
    if values.size and np.all(values > 0):
        ax.set_yscale("log")
        plain_tick_labels(ax)
    elif values.size and np.any(values > 0):
        linthresh = float(values[values > 0].min())
        ax.set_yscale("symlog", linthresh=linthresh)
        top = float(values.max())
        decades = range(int(np.ceil(np.log10(linthresh))), int(np.floor(np.log10(top))) + 1)
        ticks = [0.0] + [10.0**k for k in decades] + ([90.0] if top >= 50 else [])
        ax.set_yticks(ticks)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
