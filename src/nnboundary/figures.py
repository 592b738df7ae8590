"""Stage ``figures``: pictures of the network's last layer against the hard-margin SVMs.

Three subcommands, one PNG each (written atomically):

``run``          One run at its final checkpoint, in the bottleneck space h (the original study's
                 picture): train features coloured by class, the network's decision regions shaded
                 (argmax of h @ W.T + b), its boundary as a solid black line, the ``svc`` SVM's
                 boundary dashed red with its margin lines f = ±1 dotted, the ``homog`` SVM's
                 boundary dashed purple (its dashes fill the red gaps where the two coincide),
                 the svc support vectors circled. If the max-margin
                 hypothesis holds, the black line lies on the red dashed one, midway between the
                 dotted margins, touching no point. For a 2-D *input* dataset a second panel
                 shows the same network (and the svc SVM pulled back through h(x)) in input space.
``convergence``  One dataset × arch × variant, every regime and seed, in the style of Soudry
                 et al. (JMLR 2018), against optimizer steps t on log axes: the angle gap
                 1 − cos θ, the margin gap |1 − γ_NN/γ_SVM|, the bias gap (the network's, and each
                 SVM's own), ‖w‖ and the train loss. Colour = SVM target, line style = regime
                 (‖w‖, the loss and the network's bias gap are the network's own: one line per
                 regime); the line is the median over the seeds whose checkpoint is valid
                 (:mod:`nnboundary.validity`), the band their min–max; invalid checkpoints are
                 crosses outside both. The last panel gives the 1/log t fit of the angle gap
                 (:mod:`nnboundary.convergence`), median and range over seeds, where the runs
                 are long enough. Convergence = the gaps falling towards 0 (slowly, like
                 1/log t) for the target the last layer approaches. For ``full`` the target
                 moves with t, so the 1/log t law is only a reference there.
``overview``     Final checkpoint of every run of the grid: angle and bias gap per
                 dataset/arch/variant/regime, seeds as points (invalid seeds as crosses), the two
                 targets side by side, the median over valid seeds as a bar.

Which SVM fit is drawn: the ``binary`` scheme for K = 2; ``crammer_singer`` for K > 2 (the
multi-class limit of cross-entropy gradient descent), whose metrics are the ``mean`` row over
class pairs. The ``ovr`` scheme is used only when a multi-class run has no crammer_singer fit.

Bottleneck widths other than 2 (``run``):

- d > 2: points are projected on e₁ = û (the svc normal of pair 0-1, u = U₁ − U₀, unit length;
  the network's w = W₁ − W₀ if the svc fit is missing or zero; the first principal direction if
  both are zero) and e₂ = the first principal direction of the centred features' residual
  orthogonal to e₁. Regions and boundaries are drawn on the plane through the feature mean μ
  spanned by e₁, e₂: h(z) = r + z₁e₁ + z₂e₂ with r = μ − (μ·e₁)e₁ − (μ·e₂)e₂, so a classifier
  (W, b) becomes (W P, b + W r) with P = [e₁ e₂]. The svc boundary of pair 0-1 is exact for
  every projected point (u·r = 0 and u ⟂ e₂); the network's is a slice.
- d = 1: h on the x axis against a random jitter (no meaning) on the y axis; the boundaries
  become vertical lines at the thresholds.
- A dead bottleneck (every feature 0) still gives a picture: every point sits at the origin,
  the box around it gets a unit half-width, zero normals simply draw no line, and the title
  says so.
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .config import parse_settings
from .metrics import ZERO_NORM, angle_deg

#: Settings accepted by every subcommand (the ``figures`` block of the config) and their defaults.
DEFAULT_SETTINGS: dict[str, Any] = {"dpi": 110, "resolution": 300}

CLASS_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:brown", "tab:pink", "tab:olive",
                 "tab:cyan", "tab:gray", "gold", "navy"]
NETWORK_COLOUR = "black"
#: Target colours, kept apart from the class colours.
TARGET_COLOURS = {"svc": "tab:red", "homog": "tab:purple"}
#: Line styles of the regimes in the convergence figure (whole network solid, last layer
#: retrained alone dashed); other regimes take :data:`EXTRA_REGIME_STYLES` in turn.
REGIME_STYLES = {"full": "-", "retrain_last": "--"}
EXTRA_REGIME_STYLES = (":", "-.")
#: Colour of the network's own quantities (‖w‖, loss), which do not depend on the target.
NETWORK_LINE_COLOUR = "0.2"
#: Floors of the log-scaled convergence panels: smaller values (0 included) are drawn at the
#: floor, and the axis label says so.
GAP_FLOOR = {"angle_gap": 1e-12, "margin_gap": 1e-6, "train_loss": 1e-300, "w_norm": 1e-12,
             "nc1": 1e-12, "nc3_self_duality": 1e-16}
#: A panel whose values all lie within this factor is drawn with a linear y axis.
NARROW_RANGE = 1.5
#: Dash patterns of the SVM boundaries in the ``run`` figure: the homog dashes fill the svc gaps,
#: so two coinciding boundaries show as one red–purple line instead of one hiding the other.
BOUNDARY_DASHES = {"svc": (0, (6, 4)), "homog": (4, (4, 6))}
#: Support vectors are circled only up to this many (a soft fit can have thousands).
MAX_SUPPORT_CIRCLES = 400
#: Grid rows passed through the model at once in the input-space panel (bounds memory).
INPUT_GRID_CHUNK = 8192
#: Share of the features' bounding box added on each side.
BOX_MARGIN = 0.08


def _pyplot():
    """pyplot with the headless Agg backend (imported on first use: the CLI stays light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, output: str | Path, dpi: int) -> None:
    """Write ``fig`` as PNG to ``output`` atomically, then close it."""
    plt = _pyplot()
    try:
        with io.atomic_path(output) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# Geometry helpers (pure numpy)
# --------------------------------------------------------------------------------------------


def overall_fits(fits: list[dict], K: int) -> dict[str, dict]:
    """The fit drawn per target: scheme ``binary`` for K = 2, ``crammer_singer`` for K > 2
    (``ovr`` if a target has no crammer_singer fit)."""
    preferred = ("binary",) if K == 2 else ("crammer_singer", "ovr")
    chosen: dict[str, dict] = {}
    for scheme in preferred:
        for fit in fits:
            target = str(fit.get("target"))
            if fit.get("scheme") == scheme and target not in chosen:
                chosen[target] = fit
    return chosen


def fit_layer(fit: dict | None, K: int, d: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(U, c) of a fit, or None when the fit has no usable weights (a failed solve)."""
    if fit is None or not fit.get("W"):
        return None
    U = np.asarray(fit["W"], dtype=np.float64)
    c = np.asarray(fit.get("b") or np.zeros(K), dtype=np.float64).ravel()
    if U.shape != (K, d) or c.shape != (K,):
        raise io.InputFileError(
            f"SVM fit (target {fit.get('target')}, scheme {fit.get('scheme')}) has W of shape "
            f"{U.shape} and b of shape {c.shape}, but the network's last layer is {K}×{d}; "
            f"rerun the svm step for this run"
        )
    return U, c


def _unit(v: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(v))
    return v / norm if np.isfinite(norm) and norm > ZERO_NORM else None


def _principal_direction(X: np.ndarray) -> np.ndarray | None:
    """First right singular vector of the (already centred) rows X, or None if X is 0."""
    if X.shape[0] == 0 or not np.any(X):
        return None
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    return _unit(vt[0])


def projection_basis(H: np.ndarray, normals: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
    """Orthonormal P = [e₁ e₂] (d×2) for d ≥ 2 and a phrase naming e₁.

    e₁ = the first non-zero of ``normals`` (unit length), else the first principal direction of
    the centred features, else the first axis; e₂ = the first principal direction of the centred
    features' residual orthogonal to e₁, else the axis least aligned with e₁, orthogonalised.
    """
    d = H.shape[1]
    centred = H - H.mean(axis=0) if H.shape[0] else H
    e1, what = None, ""
    names = ("the svc normal (pair 0-1)", "the network normal w₁ − w₀")
    for normal, name in zip(normals, names):
        e1 = _unit(np.asarray(normal, dtype=np.float64))
        if e1 is not None:
            what = name
            break
    if e1 is None:
        e1, what = _principal_direction(centred), "the 1st principal direction"
    if e1 is None:
        e1, what = np.eye(d)[0], "axis h_0"
    residual = centred - np.outer(centred @ e1, e1)
    e2 = _principal_direction(residual)
    if e2 is None:
        axis = np.eye(d)[int(np.argmin(np.abs(e1)))]
        e2 = _unit(axis - (axis @ e1) * e1)
    return np.column_stack([e1, e2]), what


def box(Z: np.ndarray, margin: float = BOX_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of the rows of Z (n×2) widened by ``margin`` of its width on each side.

    A zero-width axis (a dead unit, or every point equal) gets the half-width of the other
    axis, or 1 when both are zero, so that a picture always has an area.
    """
    if Z.shape[0] == 0 or not np.all(np.isfinite(Z)):
        finite = Z[np.all(np.isfinite(Z), axis=1)] if Z.shape[0] else Z
        if finite.shape[0] == 0:
            return -np.ones(2), np.ones(2)
        Z = finite
    low, high = Z.min(axis=0), Z.max(axis=0)
    span = high - low
    widest = float(span.max())
    pad = np.where(span > 1e-12 * max(widest, 1.0), margin * span, 0.5 * (widest or 1.0))
    return low - pad, high + pad


def plane_grid(low: np.ndarray, high: np.ndarray, resolution: int):
    """x, y axes and the (resolution², 2) grid points, row-major in y (image order)."""
    xs = np.linspace(low[0], high[0], resolution)
    ys = np.linspace(low[1], high[1], resolution)
    XX, YY = np.meshgrid(xs, ys)
    return xs, ys, np.column_stack([XX.ravel(), YY.ravel()])


# --------------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------------


def _shade_regions(ax, labels: np.ndarray, low, high, K: int) -> None:
    """Decision regions as a lightly coloured image of the argmax label map."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([CLASS_COLOURS[k % len(CLASS_COLOURS)] for k in range(K)])
    ax.imshow(labels, origin="lower", extent=(low[0], high[0], low[1], high[1]), cmap=cmap,
              vmin=-0.5, vmax=K - 0.5, alpha=0.16, interpolation="nearest", aspect="auto",
              zorder=0)


def _pair_frontiers(ax, xs, ys, logits: np.ndarray, levels: Sequence[float], **style) -> bool:
    """Contours f_ij = logit_j − logit_i = level for every pair i < j, drawn only where i and j
    are the two largest logits (for K = 2 everywhere): the argmax frontier for level 0 and
    the margin lines beside it for ±1. ``logits`` is (len(ys), len(xs), K). Returns whether
    anything was drawn (a constant or zero field draws nothing)."""
    K = logits.shape[-1]
    drawn = False
    for i, j in itertools.combinations(range(K), 2):
        diff = logits[..., j] - logits[..., i]
        if K > 2:
            others = np.delete(logits, [i, j], axis=-1).max(axis=-1)
            diff = np.ma.masked_where(others > np.minimum(logits[..., i], logits[..., j]), diff)
        values = diff.compressed() if np.ma.isMaskedArray(diff) else diff.ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        inside = sorted(level for level in levels if values.min() < level < values.max())
        if not inside:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax.contour(xs, ys, diff, levels=inside, **style)
        drawn = True
    return drawn


def _scatter_classes(ax, Z: np.ndarray, y: np.ndarray, K: int, size: float) -> None:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))  # no class drawn wholly on top of another
    colours = np.array([CLASS_COLOURS[k % len(CLASS_COLOURS)] for k in range(K)], dtype=object)
    ax.scatter(Z[order, 0], Z[order, 1], c=list(colours[y[order]]), s=size, alpha=0.55,
               linewidths=0, zorder=2, rasterized=False)


def _legend_handles(K: int, targets: Sequence[str], margins: bool, support: bool):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=CLASS_COLOURS[k % len(CLASS_COLOURS)], marker="o",
                      linestyle="", markersize=5, label=f"class {k}") for k in range(K)]
    handles.append(Line2D([], [], color=NETWORK_COLOUR, lw=1.6, label="network (W, b)"))
    if "svc" in targets:
        handles.append(Line2D([], [], color=TARGET_COLOURS["svc"], lw=1.6,
                              ls=BOUNDARY_DASHES["svc"], label="SVM svc (free bias)"))
    if margins:
        handles.append(Line2D([], [], color=TARGET_COLOURS["svc"], lw=1.0, ls=":",
                              label="svc margin f = ±1"))
    if "homog" in targets:
        handles.append(Line2D([], [], color=TARGET_COLOURS["homog"], lw=1.6,
                              ls=BOUNDARY_DASHES["homog"], label="SVM homog (penalised bias)"))
    if support:
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="none",
                              linestyle="", markersize=6, label="svc support vectors"))
    return handles


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


def _mean_pair_angle(W: np.ndarray, U: np.ndarray) -> float:
    """Angle of pair 0-1 for K = 2; mean over pairs i < j of angle(W_j − W_i, U_j − U_i) else
    (the ``mean`` row of the metrics table)."""
    pairs = list(itertools.combinations(range(W.shape[0]), 2))
    return float(np.mean([angle_deg(W[j] - W[i], U[j] - U[i]) for i, j in pairs]))


def _final_features(folder: str | Path) -> io.FeatureSet:
    return io.read_features(io.list_feature_files(folder)[-1])


def _epoch_fits(svm_path: str | Path, features: io.FeatureSet) -> list[dict]:
    content = io.read_json(svm_path)
    if not isinstance(content, dict) or not isinstance(content.get("fits"), list):
        raise io.InputFileError(f"SVM file {svm_path} has no 'fits' list: not an svm.json")
    keys = content.get("keys") or {}
    for name in ("dataset", "arch", "variant", "regime", "seed"):
        if name in keys and name in features.keys and str(keys[name]) != str(features.keys[name]):
            raise io.InputFileError(
                f"SVM file {svm_path} is for {name}={keys[name]!r} but the feature files are for "
                f"{name}={features.keys[name]!r}; pass the svm.json of the same run"
            )
    fits = [fit for fit in content["fits"] if int(fit.get("epoch", -1)) == features.epoch]
    if not fits:
        epochs = sorted({int(fit.get("epoch", -1)) for fit in content["fits"]})
        raise io.InputFileError(
            f"SVM file {svm_path} has no fit for the final feature epoch {features.epoch} (fitted "
            f"epochs: {epochs}); rerun the svm step (snakemake --forcerun svm {svm_path})"
        )
    return fits


def draw_run(features: io.FeatureSet, fits: list[dict], ax, resolution: int) -> list[str]:
    """Draw one checkpoint in the bottleneck plane on ``ax``; return notes for the title."""
    K, d = features.W.shape
    H, y = features.part("train")
    index = features.index[features.split == "train"]
    chosen = overall_fits(fits, K)
    layers = {t: fit_layer(chosen.get(t), K, d) for t in ("svc", "homog")}
    notes: list[str] = []

    # The plane: coordinates Z of the points and each classifier as an affine map of z.
    if d == 2:
        Z = H

        def to_plane(W, b):
            return W, b

        ax.set_xlabel("h_0")
        ax.set_ylabel("h_1")
    elif d == 1:
        jitter = np.random.default_rng(0).uniform(-1.0, 1.0, size=len(y))
        Z = np.column_stack([H[:, 0], jitter])

        def to_plane(W, b):
            return np.column_stack([W[:, 0], np.zeros(K)]), b

        ax.set_xlabel("h_0")
        ax.set_ylabel("random jitter (no meaning)")
        ax.set_yticks([])
        notes.append("d = 1: boundaries are the vertical lines (thresholds on h_0)")
    else:
        normals = []
        if layers["svc"] is not None:
            normals.append(layers["svc"][0][1] - layers["svc"][0][0])
        normals.append(features.W[1] - features.W[0])
        P, what = projection_basis(H, normals)
        mu = H.mean(axis=0) if len(H) else np.zeros(d)
        r = mu - P @ (P.T @ mu)
        Z = H @ P

        def to_plane(W, b):
            return W @ P, b + W @ r

        ax.set_xlabel(f"h · e₁  (e₁ = {what})")
        ax.set_ylabel("h · e₂  (1st principal direction of the residual)")
        notes.append(f"d = {d}: projected on e₁, e₂; regions on the plane through the mean")

    low, high = box(Z)
    xs, ys, grid = plane_grid(low, high, resolution)
    shape = (len(ys), len(xs))

    W_plane, b_plane = to_plane(features.W, features.b)
    net = (grid @ W_plane.T + b_plane).reshape(*shape, K)
    _shade_regions(ax, net.argmax(axis=-1), low, high, K)
    drawn_targets, margins = [], False
    for target in ("svc", "homog"):
        if layers[target] is None:
            notes.append(f"no usable {target} fit")
            continue
        U_plane, c_plane = to_plane(*layers[target])
        svm = (grid @ U_plane.T + c_plane).reshape(*shape, K)
        colour = TARGET_COLOURS[target]
        if target == "svc":
            margins = _pair_frontiers(ax, xs, ys, svm, [-1.0, 1.0], colors=colour,
                                      linewidths=1.0, linestyles=":", zorder=3)
        if _pair_frontiers(ax, xs, ys, svm, [0.0], colors=colour, linewidths=1.6,
                           linestyles=[BOUNDARY_DASHES[target]], zorder=4):
            drawn_targets.append(target)
        else:
            notes.append(f"{target} SVM: no boundary in the box (zero normal or one class)")
    if not _pair_frontiers(ax, xs, ys, net, [0.0], colors=NETWORK_COLOUR, linewidths=1.6,
                           linestyles="-", zorder=5):
        notes.append("network predicts one class on the whole box")

    size = 7.0 if len(y) <= 1000 else 4.0
    _scatter_classes(ax, Z, y, K, size)
    support = False
    svc_fit = chosen.get("svc")
    if svc_fit is not None and layers["svc"] is not None:
        rows = np.flatnonzero(np.isin(index, np.asarray(svc_fit.get("support") or [], int)))
        if 0 < len(rows) <= MAX_SUPPORT_CIRCLES:
            ax.scatter(Z[rows, 0], Z[rows, 1], s=36, facecolors="none", edgecolors="black",
                       linewidths=0.7, zorder=6)
            support = True
        if not svc_fit.get("separable", True):
            notes.append(f"train features not separable: soft-margin SVM (C = {svc_fit.get('C')})")

    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    spans = high - low
    if d != 1 and max(spans) <= 3 * min(spans):
        ax.set_aspect("equal", adjustable="box")  # angles look like angles
    # Outside the axes, on the right: inside, "best" still lands on a class cluster when K = 3.
    ax.legend(handles=_legend_handles(K, drawn_targets, margins, support),
              loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7,
              frameon=False)
    if len(H) and not np.any(H):
        notes.append("dead bottleneck: every feature is 0")
    return notes


def draw_input_space(checkpoints: dict, epoch: int, data, fits: list[dict], ax,
                     resolution: int) -> None:
    """The network's regions and boundary over the standardised 2-D input box, with the train
    points, and the svc SVM pulled back through the network's features h(x) (dashed)."""
    import torch

    from .models import input_dtype
    from .train import model_at

    if epoch not in checkpoints["states"]:
        raise io.InputFileError(
            f"the checkpoint file has no weights for the final feature epoch {epoch} (saved "
            f"epochs: {sorted(checkpoints['states'])}); the features and checkpoints differ"
        )
    model = model_at(checkpoints, epoch)
    X, y = data.X_train, data.y_train
    K = int(checkpoints["n_classes"])
    low, high = box(np.asarray(X, dtype=np.float64))
    xs, ys, grid = plane_grid(low, high, resolution)
    hs, logits = [], []
    dtype = input_dtype(model)
    with torch.no_grad():
        for start in range(0, grid.shape[0], INPUT_GRID_CHUNK):
            chunk = torch.from_numpy(grid[start:start + INPUT_GRID_CHUNK]).to(dtype)
            h = model.features(chunk).to(model.last.weight.dtype)  # a retrained layer: float64
            hs.append(h.numpy().astype(np.float64))
            logits.append(model.last(h).numpy().astype(np.float64))
    h_grid, net = np.concatenate(hs), np.concatenate(logits)
    shape = (len(ys), len(xs))
    _shade_regions(ax, net.argmax(axis=1).reshape(shape), low, high, K)
    layer = fit_layer(overall_fits(fits, K).get("svc"), K, h_grid.shape[1])
    if layer is not None:
        svm = (h_grid @ layer[0].T + layer[1]).reshape(*shape, K)
        _pair_frontiers(ax, xs, ys, svm, [0.0], colors=TARGET_COLOURS["svc"], linewidths=1.4,
                        linestyles=[BOUNDARY_DASHES["svc"]], zorder=4)
    _pair_frontiers(ax, xs, ys, net.reshape(*shape, K), [0.0], colors=NETWORK_COLOUR,
                    linewidths=1.6, linestyles="-", zorder=5)
    _scatter_classes(ax, np.asarray(X, dtype=np.float64), np.asarray(y), K,
                     7.0 if len(y) <= 1000 else 4.0)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("x_0 (standardised)")
    ax.set_ylabel("x_1 (standardised)")
    ax.set_title("input space: network (solid), svc SVM on h(x) (dashed)", fontsize=9)


def run_figure(features_dir, svm_path, checkpoints_path, data_path, output,
               settings: dict[str, Any]) -> None:
    """Draw the ``run`` figure (module docstring) and write it to ``output``."""
    from .prepare import load_dataset

    plt = _pyplot()
    features = _final_features(features_dir)
    fits = _epoch_fits(svm_path, features)
    data = load_dataset(data_path)
    input_panel = tuple(data.input_shape) == (2,)
    K, d = features.W.shape

    size = (12.4, 6.0) if input_panel else (6.6, 6.0)
    fig, axes = plt.subplots(1, 2 if input_panel else 1, figsize=size, squeeze=False)
    notes = draw_run(features, fits, axes[0, 0], int(settings["resolution"]))
    if input_panel:
        from .train import load_checkpoints

        draw_input_space(load_checkpoints(checkpoints_path), features.epoch, data, fits,
                         axes[0, 1], int(settings["resolution"]))

    chosen = overall_fits(fits, K)
    angles = []
    for target in ("svc", "homog"):
        layer = fit_layer(chosen.get(target), K, d)
        if layer is not None:
            angles.append(f"{target} {_mean_pair_angle(features.W, layer[0]):.3g}°")
    scheme = chosen.get("svc", chosen.get("homog", {})).get("scheme", "")
    kind = "angle to" if K == 2 else f"mean pairwise angle ({scheme}) to"
    keys = features.keys
    names = [str(keys.get(k, "?")) for k in ("dataset", "arch")]
    names += [str(keys[k]) for k in ("variant", "regime") if k in keys]
    lines = [
        (f"{'/'.join(names)}  seed {keys.get('seed', '?')}  epoch {features.epoch}  "
         f"(bottleneck d = {d}, K = {K})"),
        f"{kind} SVM: " + (", ".join(angles) if angles else "no SVM fit"),
    ] + notes
    axes[0, 0].set_title("\n".join(lines), fontsize=8.5)
    fig.tight_layout()
    _save(fig, output, int(settings["dpi"]))


# --------------------------------------------------------------------------------------------
# convergence and overview (from metrics tables)
# --------------------------------------------------------------------------------------------


def overall_rows(frame):
    """Rows summarising a fit: the binary scheme's only pair, or for multi-class the ``mean``
    row of crammer_singer (of ovr for a run without crammer_singer), with the run keys
    (:func:`nnboundary.convergence.overall_rows`)."""
    from .convergence import overall_rows as select

    return select(frame)


def _scheme_label(rows) -> str:
    schemes = sorted(set(rows["scheme"]))
    return " / ".join(s if s == "binary" else f"{s} mean over pairs" for s in schemes)


def _plain_tick_labels(ax) -> None:
    """Tick labels as plain numbers (0.5, 30, 90) instead of 5×10⁻¹; minor ones only when the
    axis spans less than a decade (else they crowd)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    few_decades = low > 0 and high / low < 20
    ax.yaxis.set_minor_formatter(plain if few_decades else NullFormatter())


def _set_angle_scale(ax, values: np.ndarray) -> None:
    """Log y when every angle is positive (convergence is a straight fall), else symlog with
    the smallest positive angle as the linear range, else linear."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    values = values[np.isfinite(values)]
    if values.size and np.all(values > 0):
        ax.set_yscale("log")
        _plain_tick_labels(ax)
    elif values.size and np.any(values > 0):
        linthresh = float(values[values > 0].min())
        ax.set_yscale("symlog", linthresh=linthresh)
        top = float(values.max())
        decades = range(int(np.ceil(np.log10(linthresh))), int(np.floor(np.log10(top))) + 1)
        ticks = [0.0] + [10.0**k for k in decades] + ([90.0] if top >= 50 else [])
        ax.set_yticks(ticks)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def _read_metrics(paths: Sequence[str | Path]):
    import pandas as pd

    from .convergence import with_run_keys

    from .validity import with_validity

    frames = [io.read_table(path) for path in paths]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    missing = {"dataset", "arch", "seed", "epoch", "step", "target", "scheme", "pair",
               "angle_deg", "bias_gap", "svm_bias_gap", "degenerate", "valid"} - set(frame.columns)
    if missing:
        raise io.InputFileError(
            f"metrics files {list(map(str, paths))} lack the columns {sorted(missing)}; "
            f"rerun the metrics step"
        )
    frame = with_validity(with_run_keys(frame))
    # The x axis: optimizer steps; a table without them (steps unknown, -1) falls back to epochs.
    known = frame["step"] > 0
    frame["t"] = np.where(known, frame["step"], frame["epoch"])
    frame.attrs["t_name"] = "optimizer steps t" if known.all() else "epoch t (steps unknown)"
    return frame


def _regime_styles(regimes: Sequence[str]) -> dict[str, str]:
    """Line style per regime: :data:`REGIME_STYLES`, then :data:`EXTRA_REGIME_STYLES` in turn."""
    styles, extra = {}, itertools.cycle(EXTRA_REGIME_STYLES)
    for regime in regimes:
        styles[regime] = REGIME_STYLES.get(regime) or next(extra)
    return styles


def _band(rows, values: np.ndarray):
    """Per step t over the valid seeds: t, median, min and max of ``values`` (aligned with
    rows); invalid rows never enter it."""
    import pandas as pd

    frame = pd.DataFrame({"t": rows["t"].to_numpy(), "value": values,
                          "valid": rows["valid"].to_numpy(dtype=bool)})
    frame = frame[np.isfinite(frame["value"]) & frame["valid"]]
    stats = frame.groupby("t")["value"].agg(["median", "min", "max"])
    return (stats.index.to_numpy(dtype=float), stats["median"].to_numpy(),
            stats["min"].to_numpy(), stats["max"].to_numpy())


#: The bias-gap axes span ±BIAS_GAP_LIMIT: a valid row's bias gap lies in (−1, 1) (every train
#: point on its side puts the boundary inside the gap); invalid ones beyond are drawn at the edge.
BIAS_GAP_LIMIT = 1.1


def _draw_band(ax, rows, values: np.ndarray, colour, style, lw: float = 1.7,
               clip: tuple[float, float] | None = None) -> None:
    """The median over valid seeds as a line, their min–max as a band, and every invalid
    checkpoint as a cross (outside both; with ``clip``, crosses beyond it sit at its edge)."""
    values = np.asarray(values, dtype=np.float64)
    steps, median, low, high = _band(rows, values)
    if steps.size:
        ax.fill_between(steps, low, high, color=colour, alpha=0.15, lw=0, zorder=1)
        ax.plot(steps, median, color=colour, ls=style, lw=lw, marker="o", markersize=2.5,
                zorder=3)
    bad = ~rows["valid"].to_numpy(dtype=bool)
    if bad.any():
        crosses = values[bad] if clip is None else np.clip(values[bad], *clip)
        ax.plot(rows["t"].to_numpy()[bad], crosses, color=colour, ls="", marker="x",
                markersize=6, zorder=4)


def _bias_values(rows, column: str) -> np.ndarray:
    """A bias-gap column to draw: its signed value on binary rows; on a multi-class ``mean`` row
    (which leaves signed pair values empty, so that they cannot cancel) the mean |bias gap| over
    pairs for the network's own, and nothing for the SVM's."""
    values = rows[column].to_numpy(dtype=float).copy()
    mean = (rows["pair"] == "mean").to_numpy()
    if mean.any():
        values[mean] = (rows["bias_gap_abs"].to_numpy(dtype=float)[mean] if column == "bias_gap"
                        else np.nan)
    return values


def _bias_gap_axis(ax) -> str:
    """Linear y over ±:data:`BIAS_GAP_LIMIT` with the midway line and the class edges ±1;
    returns a note for the axis label."""
    ax.axhline(0.0, color="grey", lw=0.8, zorder=0)
    for edge in (-1.0, 1.0):
        ax.axhline(edge, color="grey", lw=0.6, ls=":", zorder=0)
    ax.set_ylim(-BIAS_GAP_LIMIT, BIAS_GAP_LIMIT)
    return f"\n(invalid beyond ±{BIAS_GAP_LIMIT:g} drawn at the edge)"


def _floored(values: np.ndarray, floor: float) -> tuple[np.ndarray, bool]:
    """``values`` raised to ``floor`` (for a log axis) and whether any finite value was below."""
    values = np.asarray(values, dtype=np.float64)
    below = np.isfinite(values) & (values < floor)
    return np.where(below, floor, values), bool(below.any())


def _set_log_scale(ax, values: np.ndarray) -> None:
    """Log y, unless every finite value lies within a factor :data:`NARROW_RANGE` (a flat
    curve, e.g. an untrained network's loss), where log ticks would repeat one label: linear."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() < NARROW_RANGE:
        return
    ax.set_yscale("log")


def _fit_summary(frame) -> tuple[list[str], list[str]]:
    """Lines for the text panel and short phrases for the title: the median and range over
    seeds of the angle gap's 1/log t slope per regime × target
    (:func:`convergence.convergence_table`)."""
    from . import convergence

    table = convergence.convergence_table(frame)
    medians = table[table["seed"] == convergence.MEAN_SEED]
    details, short = [], []
    order = sorted(set(medians["regime"]), key=convergence.regime_sort_key)
    for regime in order:
        for target in ("svc", "homog"):
            row = medians[(medians["regime"] == regime) & (medians["target"] == target)]
            if row.empty:
                continue
            row = row.iloc[0]
            if row["long_enough"]:
                intercept = row["angle_gap_intercept"]
                intercept = 0.0 if abs(intercept) < 1e-12 else intercept  # rounding noise
                details.append(
                    f"{regime} {target}: s = {row['angle_gap_slope']:.3g} "
                    f"[{row['angle_gap_slope_min']:.2g}, {row['angle_gap_slope_max']:.2g}], "
                    f"a = {intercept:.2g}, r² = {row['angle_gap_r2']:.2f} "
                    f"({int(row['n_fitted'])}/{int(row['n_seeds'])} seeds)")
                short.append(f"{regime} {target} s = {row['angle_gap_slope']:.3g}")
            else:
                details.append(f"{regime} {target}: too few valid checkpoints for a fit "
                               f"(last step {int(row['last_step'])})")
    return details, short


def _read_collapse(paths: Sequence[str | Path], metrics):
    """The runs' neural-collapse rows with each checkpoint's validity (from its metrics rows:
    :func:`nnboundary.collapse.collapse_table`) and the x axis ``t`` of the metrics."""
    from .collapse import collapse_table

    table = collapse_table([io.read_table(path) for path in paths], metrics)
    table["t"] = np.where(table["step"] > 0, table["step"], table["epoch"])
    return table.sort_values("t", kind="stable")


def convergence_figure(metric_paths: Sequence[str | Path], output,
                       settings: dict[str, Any],
                       collapse_paths: Sequence[str | Path] | None = None) -> None:
    """Gaps, bias gap, ‖w‖ and loss against optimizer steps for every regime and seed (module
    docstring), and with ``collapse_paths`` (the runs' neural_collapse.parquet) NC1 and NC3
    of the same checkpoints; write ``output``."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    from . import convergence

    frame = _read_metrics(metric_paths)
    rows = overall_rows(frame).sort_values("t", kind="stable")
    regimes = sorted(set(rows["regime"]), key=convergence.regime_sort_key)
    styles = _regime_styles(regimes)
    collapse = _read_collapse(collapse_paths, frame) if collapse_paths else None
    n_columns = 3 if collapse is None else 4
    fig, axes = plt.subplots(2, n_columns, figsize=(5.0 * n_columns, 8.6))
    panels = list(axes[0]) + list(axes[1])

    def by_regime_target(regime, target):
        return rows[(rows["regime"] == regime) & (rows["target"] == target)]

    def reference(regime):
        """Rows of one target per regime for the network's own quantities (svc if any)."""
        part = rows[rows["regime"] == regime]
        target = "svc" if (part["target"] == "svc").any() else "homog"
        return part[part["target"] == target]

    # Angle gap and margin gap: log-log, per regime × target.
    gap_panels = (
        (panels[0], "angle_gap", "angle gap 1 − cos θ",
         lambda part: convergence.angle_gap(part["angle_deg"].to_numpy(dtype=float))),
        (panels[1], "margin_gap", "margin gap |1 − γ_NN/γ_SVM|",
         lambda part: np.abs(convergence.margin_gap(part["margin_ratio"].to_numpy(dtype=float)))
         if "margin_ratio" in part else np.full(len(part), np.nan)),
    )
    for ax, name, label, values_of in gap_panels:
        clipped, drawn = False, []
        for regime in regimes:
            for target in ("svc", "homog"):
                part = by_regime_target(regime, target)
                values, below = _floored(values_of(part), GAP_FLOOR[name])
                clipped |= below
                drawn.append(values[part["valid"].to_numpy(dtype=bool)])
                _draw_band(ax, part, values, TARGET_COLOURS[target], styles[regime])
        _set_log_scale(ax, np.concatenate(drawn) if drawn else np.array([]))
        ax.set_ylabel(label + (f"\n(values below {GAP_FLOOR[name]:g} drawn at it)"
                               if clipped else ""))

    # Bias gap: the network's own (one line per regime) and each SVM's own (thin, per target).
    ax = panels[2]
    edge = (-BIAS_GAP_LIMIT, BIAS_GAP_LIMIT)
    for regime in regimes:
        part = reference(regime)
        _draw_band(ax, part, _bias_values(part, "bias_gap"), NETWORK_LINE_COLOUR,
                   styles[regime], clip=edge)
        for target in ("svc", "homog"):
            part = by_regime_target(regime, target)
            _draw_band(ax, part, _bias_values(part, "svm_bias_gap"),
                       TARGET_COLOURS[target], styles[regime], lw=0.9, clip=edge)
    _bias_gap_axis(ax)
    ax.set_ylabel("bias gap 1 − 2·midpoint (0 midway, ±1 at a class;\nmulti-class: mean |gap| "
                  "over pairs); thin: each SVM's own", fontsize=9)

    # The network's own quantities: one line per regime.
    own_panels = ((panels[3], "w_norm", "‖w‖ = ‖W₁ − W₀‖ (multi-class: mean over pairs)"),
                  (panels[4], "train_loss", "train loss (cross-entropy)"))
    for ax, column, label in own_panels:
        clipped, drawn = False, []
        for regime in regimes:
            part = reference(regime)
            if column not in part:
                continue
            values, below = _floored(part[column].to_numpy(dtype=float), GAP_FLOOR[column])
            clipped |= below
            drawn.append(values)
            _draw_band(ax, part, values, NETWORK_LINE_COLOUR, styles[regime])
        _set_log_scale(ax, np.concatenate(drawn) if drawn else np.array([]))
        ax.set_ylabel(label + (f"\n(values below {GAP_FLOOR[column]:g} drawn at it)"
                               if clipped else ""))

    # Neural collapse of the same checkpoints: NC1 and NC3, one line per regime.
    nc_panels = [] if collapse is None else [
        (panels[5], "nc1", "NC1 = Tr(Σ_W Σ_B⁺)/K"),
        (panels[6], "nc3_self_duality", "NC3 = ‖W̃/‖W̃‖ − M̃ᵀ/‖M̃‖‖²")]
    for ax, column, label in nc_panels:
        clipped, drawn, every = False, [], []
        for regime in regimes:
            part = collapse[collapse["regime"] == regime]
            values, below = _floored(part[column].to_numpy(dtype=float), GAP_FLOOR[column])
            clipped |= below
            drawn.append(values[part["valid"].to_numpy(dtype=bool)])
            every.append(values)
            _draw_band(ax, part, values, NETWORK_LINE_COLOUR, styles[regime])
        every = np.concatenate(every) if every else np.array([])
        if (np.isfinite(every) & (every > 0)).any():  # NaN only (e.g. no spread): stay linear
            _set_log_scale(ax, np.concatenate(drawn) if drawn else np.array([]))
        ax.set_ylabel(label + (f"\n(values below {GAP_FLOOR[column]:g} drawn at it)"
                               if clipped else ""))

    from matplotlib.ticker import FuncFormatter

    for ax in panels[:5] + [ax for ax, _, _ in nc_panels]:
        if not ax.has_data():
            ax.text(0.5, 0.5, "no valid checkpoint", transform=ax.transAxes, ha="center")
        elif len(rows) and (rows["t"] > 0).all():
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=1.0)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_xlabel(frame.attrs.get("t_name", "optimizer steps t"))
        ax.grid(True, which="major", alpha=0.3)

    # Legend and the 1/log t fits in the last panel.
    text_ax = panels[-1]
    text_ax.axis("off")
    handles = [Line2D([], [], color=TARGET_COLOURS[t], lw=2.0, label=f"target {t}")
               for t in ("svc", "homog")]
    handles.append(Line2D([], [], color=NETWORK_LINE_COLOUR, lw=2.0,
                          label="network (bias gap, ‖w‖, loss" + (", NC1, NC3)" if nc_panels
                                                                  else ")")))
    handles += [Line2D([], [], color="grey", ls=styles[r], lw=1.7, label=f"regime {r}")
                for r in regimes]
    handles.append(Line2D([], [], color="grey", ls="", marker="x",
                          label="invalid checkpoint (not in line or band)"))
    text_ax.legend(handles=handles, loc="upper left", fontsize=8.5, frameon=False,
                   title="line: median over valid seeds; band: their min–max",
                   title_fontsize=8.5)
    details, short = _fit_summary(frame)
    fit_rule = (f"Fit 1 − cos θ ≈ a + s / log t over valid checkpoints, t ≥ "
                f"{convergence.MIN_STEP} steps\n(needs ≥ {convergence.MIN_FIT_POINTS} such "
                f"checkpoints, one at t ≥ {convergence.MIN_LAST_STEP}). Median [range] over "
                f"seeds.\nfull: the SVM target moves with t, so 1/log t is a reference only.")
    text_ax.text(0.0, 0.42, fit_rule + "\n" + "\n".join(details or ["no runs"]),
                 transform=text_ax.transAxes, va="top", ha="left", fontsize=8.5)

    names = sorted({"/".join(map(str, key)) for key in
                    zip(rows["dataset"], rows["arch"], rows["variant"])}) or ["no rows"]
    seeds = ", ".join(f"{r} {rows.loc[rows['regime'] == r, 'seed'].nunique()}" for r in regimes)
    slope_line = ("angle-gap 1/log t slope s (median): " + "; ".join(short) if short else
                  "too few valid checkpoints for the 1/log t fit of the angle gap")
    fig.suptitle(f"{', '.join(names)}: convergence of the last layer to the hard-margin SVMs "
                 f"(seeds: {seeds or '-'}; {_scheme_label(rows) if len(rows) else '-'})\n"
                 + slope_line, fontsize=10)
    fig.tight_layout()
    _save(fig, output, int(settings["dpi"]))


def final_overall_rows(frame):
    """:func:`overall_rows` at the last epoch of every run (dataset, arch, variant, regime,
    seed)."""
    from .convergence import RUN_KEYS, with_run_keys

    frame = with_run_keys(frame)
    if frame.empty:
        return frame
    last = frame.groupby(RUN_KEYS, dropna=False)["epoch"].transform("max")
    return overall_rows(frame[frame["epoch"] == last])


def overview_figure(metrics_path: str | Path, output, settings: dict[str, Any]) -> None:
    """Final angle and bias offset of every run per dataset/arch/variant/regime (module
    docstring)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    from .convergence import RUN_KEYS, regime_sort_key

    rows = final_overall_rows(_read_metrics([metrics_path]))
    keys = list(zip(rows["dataset"], rows["arch"], rows["variant"], rows["regime"]))
    names = ["/".join(map(str, key)) for key in keys]
    order = {name: (*key[:3], regime_sort_key(key[3])) for name, key in zip(names, keys)}
    categories = sorted(order, key=order.get)
    where = {name: i for i, name in enumerate(categories)}
    x_of = np.array([where[name] for name in names], dtype=float)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.07, 0.07, size=len(rows))
    offsets = {"svc": -0.18, "homog": 0.18}
    width = max(6.5, 1.0 * len(categories) + 3.0)
    fig, axes = plt.subplots(2, 1, figsize=(width, 7.2), sharex=True)
    panels = (("angle_deg", "final angle to the SVM (degrees)"),
              ("bias_gap", "final bias gap 1 − 2·midpoint\n(network: 0 = midway; "
                           "multi-class: mean |gap|)"))
    bad = ~rows["valid"].to_numpy(dtype=bool)
    for ax, (column, label) in zip(axes, panels):
        values = (rows[column].to_numpy(dtype=float) if column == "angle_deg" else
                  _bias_values(rows, column))
        for target in ("svc", "homog"):
            mask = (rows["target"] == target).to_numpy()
            x = x_of + offsets[target] + jitter
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
                    ax.hlines(np.median(values[sel]), i + offsets[target] - 0.13,
                              i + offsets[target] + 0.13, color=colour, lw=2.0, zorder=2)
        if column == "angle_deg":
            _set_angle_scale(ax, values)
        else:
            label += _bias_gap_axis(ax)
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_xticks(range(len(categories)))
    axes[1].set_xticklabels(categories, rotation=30, ha="right")
    axes[1].set_xlim(-0.6, max(len(categories), 1) - 0.4)
    handles = [Line2D([], [], color=TARGET_COLOURS[t], marker="o", ls="", label=t)
               for t in ("svc", "homog")]
    handles.append(Line2D([], [], color="grey", marker="x", ls="",
                          label="invalid seed (not in the median)"))
    handles.append(Line2D([], [], color="grey", lw=2.0, label="median over valid seeds"))
    axes[0].legend(handles=handles, fontsize=8, loc="best")
    n_runs = len(rows.groupby(RUN_KEYS)) if len(rows) else 0
    n_bad = len(rows[bad].groupby(RUN_KEYS)) if bad.any() else 0
    axes[0].set_title(f"Final checkpoint of {n_runs} runs ({n_bad} invalid): last layer against "
                      f"the hard-margin SVMs\n(binary, or crammer_singer mean over class pairs)",
                      fontsize=10)
    fig.tight_layout()
    _save(fig, output, int(settings["dpi"]))


def collapse_figure(table_path: str | Path, output, settings: dict[str, Any]) -> None:
    """Per run, the angle between the centred last layer and each SVM target (Crammer–Singer
    for K > 2) against ``nc3_self_duality``, over its valid checkpoints (one line per run,
    the final checkpoint marked; log axes). One panel per target; colour: dataset × arch ×
    variant (e.g. the bottleneck width), line style: regime."""
    plt = _pyplot()
    table = io.read_table(table_path)
    targets = [t for t in ("svc", "homog") if f"angle_{t}_deg" in table.columns]
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(5.2 * max(1, len(targets)) + 2, 4.4),
                             squeeze=False, layout="constrained")
    valid = table[table["valid"]] if "valid" in table.columns else table.iloc[0:0]
    cells = sorted({(r.dataset, r.arch, r.variant) for r in valid.itertuples()})
    colours = plt.get_cmap("tab10" if len(cells) <= 10 else "tab20")
    styles = _regime_styles(sorted(set(valid["regime"])) if len(valid) else [])
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
    _save(fig, output, int(settings["dpi"]))


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def parse_figure_settings(text: str | None) -> dict[str, Any]:
    """``--settings`` JSON → the settings with defaults; ValueError with a message if invalid."""
    settings = parse_settings(text, DEFAULT_SETTINGS)  # its ConfigError is a ValueError
    for name, least in (("dpi", 30), ("resolution", 10)):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"settings key {name} must be an integer ≥ {least}, got {value!r}")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary figures", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    settings_help = 'JSON object, e.g. {"dpi": 110, "resolution": 300} (the defaults)'

    run = commands.add_parser("run", help="one run's final checkpoint in the bottleneck space")
    run.add_argument("--features", required=True, type=Path, help="run folder of feature files")
    run.add_argument("--svm", required=True, type=Path, help="svm.json of the same run")
    run.add_argument("--checkpoints", required=True, type=Path, help="checkpoint file (.pt)")
    run.add_argument("--data", required=True, type=Path, help="prepared dataset (.npz)")
    run.add_argument("--output", required=True, type=Path, help="PNG file to write")
    run.add_argument("--settings", default="", help=settings_help)

    conv = commands.add_parser("convergence",
                               help="gaps, bias gap, ‖w‖ and loss against steps (log-log)")
    conv.add_argument("--metrics", required=True, nargs="+", type=Path,
                      help="per-run metrics files of one dataset × arch × variant: every "
                           "regime and seed")
    conv.add_argument("--collapse", nargs="*", type=Path, default=None,
                      help="the same runs' neural_collapse.parquet files (adds NC1 and NC3)")
    conv.add_argument("--output", required=True, type=Path, help="PNG file to write")
    conv.add_argument("--settings", default="", help=settings_help)

    over = commands.add_parser("overview", help="final angle and bias gap of every run")
    over.add_argument("--metrics", required=True, type=Path, help="aggregated metrics.parquet")
    over.add_argument("--output", required=True, type=Path, help="PNG file to write")
    over.add_argument("--settings", default="", help=settings_help)

    nc = commands.add_parser("collapse", help="angle to the SVM against NC3 self-duality, per run")
    nc.add_argument("--table", required=True, type=Path, help="aggregated neural_collapse.parquet")
    nc.add_argument("--output", required=True, type=Path, help="PNG file to write")
    nc.add_argument("--settings", default="", help=settings_help)

    args = parser.parse_args(argv)
    try:
        settings = parse_figure_settings(args.settings)
    except ValueError as err:
        parser.error(str(err))
    if args.command == "run":
        run_figure(args.features, args.svm, args.checkpoints, args.data, args.output, settings)
    elif args.command == "convergence":
        convergence_figure(args.metrics, args.output, settings, args.collapse)
    elif args.command == "collapse":
        collapse_figure(args.table, args.output, settings)
    else:
        overview_figure(args.metrics, args.output, settings)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
