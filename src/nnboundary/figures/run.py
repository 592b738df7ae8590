"""The ``run`` figure: one run at its final checkpoint, in the bottleneck space h (the original
study's picture).

Train features coloured by class, the network's decision regions shaded (argmax of
h @ W.T + b), its boundary as a solid black line, the ``svc`` SVM's boundary dashed red with
its margin lines f = ±1 dotted, the ``homog`` SVM's dashed purple and the ``origin`` SVM's
(through the origin, no bias) dashed teal, their dashes interleaved so that coinciding
boundaries show as one multi-coloured line; the svc support vectors circled. If the max-margin
hypothesis holds, the black line lies on one of the dashed ones, touching no point. For a 2-D
*input* dataset a second panel shows the same network (and the svc SVM pulled back through
h(x)) in input space.

Which SVM fit is drawn: the ``binary`` scheme for K = 2; ``crammer_singer`` for K > 2 (the
multi-class limit of cross-entropy gradient descent). The ``ovr`` scheme is used only when a
multi-class run has no crammer_singer fit.

Bottleneck widths other than 2:

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

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..formats.dataset import load_dataset
from ..formats.features import FeatureSet, list_feature_files, read_features
from ..formats.svmfile import fit_layer, read_svm
from ..measures.geometry import ZERO_NORM, angle_deg
from ..models.restore import load_network_file, network_at
from ..settings.targets import TARGETS
from .common import CLASS_COLOURS, NETWORK_COLOUR, TARGET_COLOURS, pyplot, save

#: Dash patterns of the SVM boundaries: each target draws 5 points in 15, at its own offset, so
#: coinciding boundaries show as one red–purple–teal line instead of one hiding another.
BOUNDARY_DASHES = {"svc": (0, (5, 10)), "homog": (5, (5, 10)), "origin": (10, (5, 10))}
#: Support vectors are circled only up to this many (a soft fit can have thousands).
MAX_SUPPORT_CIRCLES = 400
#: Grid rows passed through the model at once in the input-space panel (bounds memory).
INPUT_GRID_CHUNK = 8192
#: Share of the features' bounding box added on each side.
BOX_MARGIN = 0.08

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
                              ls=BOUNDARY_DASHES["svc"], label=f"SVM svc ({TARGETS['svc']})"))
    if margins:
        handles.append(Line2D([], [], color=TARGET_COLOURS["svc"], lw=1.0, ls=":",
                              label="svc margin f = ±1"))
    for target in [t for t in TARGETS if t != "svc" and t in targets]:
        handles.append(Line2D([], [], color=TARGET_COLOURS[target], lw=1.6,
                              ls=BOUNDARY_DASHES[target],
                              label=f"SVM {target} ({TARGETS[target]})"))
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


def _final_features(folder: str | Path) -> FeatureSet:
    return read_features(list_feature_files(folder)[-1])


def _epoch_fits(svm_path: str | Path, features: FeatureSet) -> list[dict]:
    """The fits of the final feature epoch, from the svm.json of the same run."""
    svm = read_svm(svm_path)
    svm.check_keys(features.keys, "the feature files")
    return svm.at(features.epoch, " (the final feature epoch)")


def _plane(features: FeatureSet, H: np.ndarray, normals: list[np.ndarray], ax):
    """(Z, to_plane, notes): the points' coordinates in the drawn plane, each classifier
    (W, b) as an affine map of those coordinates, and what the title should say (module
    docstring: d = 2 as it is, d = 1 against a jitter, d > 2 projected)."""
    K, d = features.W.shape
    if d == 2:
        ax.set_xlabel("h_0")
        ax.set_ylabel("h_1")
        return H, lambda W, b: (W, b), []
    if d == 1:
        jitter = np.random.default_rng(0).uniform(-1.0, 1.0, size=len(H))
        ax.set_xlabel("h_0")
        ax.set_ylabel("random jitter (no meaning)")
        ax.set_yticks([])
        return (np.column_stack([H[:, 0], jitter]),
                lambda W, b: (np.column_stack([W[:, 0], np.zeros(K)]), b),
                ["d = 1: boundaries are the vertical lines (thresholds on h_0)"])
    P, what = projection_basis(H, normals)
    mu = H.mean(axis=0) if len(H) else np.zeros(d)
    r = mu - P @ (P.T @ mu)
    ax.set_xlabel(f"h · e₁  (e₁ = {what})")
    ax.set_ylabel("h · e₂  (1st principal direction of the residual)")
    return (H @ P, lambda W, b: (W @ P, b + W @ r),
            [f"d = {d}: projected on e₁, e₂; regions on the plane through the mean"])


def _draw_targets(ax, xs, ys, grid, layers: dict, chosen: dict, to_plane, K: int,
                  notes: list[str]) -> tuple[list[str], bool]:
    """Each target's boundary (svc's margin lines too) over the plane's grid; (the targets
    drawn, whether the margins were)."""
    shape = (len(ys), len(xs))
    drawn_targets, margins = [], False
    for target in TARGETS:
        if layers[target] is None:
            # no usable weights: a fit of features that are not separable made without its
            # soft-margin solve (svm.soft_margin false), else a failed or missing one
            unfitted = target in chosen and not chosen[target].get("separable", True)
            notes.append(f"{target} SVM: train features not separable, soft margin not fitted"
                         if unfitted else f"no usable {target} fit")
            continue
        if target == "origin" and not chosen[target].get("hard_margin", False):
            notes.append("origin SVM: no separator through the origin (not drawn)")
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
    return drawn_targets, margins


def _support_vectors(ax, Z: np.ndarray, index: np.ndarray, svc_fit: dict | None,
                     notes: list[str]) -> bool:
    """Circle the svc fit's support vectors (up to :data:`MAX_SUPPORT_CIRCLES`); whether any
    were circled."""
    if svc_fit is None:
        return False
    rows = np.flatnonzero(np.isin(index, np.asarray(svc_fit.get("support") or [], int)))
    circled = 0 < len(rows) <= MAX_SUPPORT_CIRCLES
    if circled:
        ax.scatter(Z[rows, 0], Z[rows, 1], s=36, facecolors="none", edgecolors="black",
                   linewidths=0.7, zorder=6)
    if not svc_fit.get("separable", True):
        notes.append(f"train features not separable: soft-margin SVM (C = {svc_fit.get('C')})")
    return circled


def draw_run(features: FeatureSet, fits: list[dict], ax, resolution: int) -> list[str]:
    """Draw one checkpoint in the bottleneck plane on ``ax``; return notes for the title."""
    K, d = features.W.shape
    H, y = features.part("train")
    index = features.index[features.split == "train"]
    chosen = overall_fits(fits, K)
    layers = {t: fit_layer(chosen.get(t), K, d) for t in TARGETS}
    normals = [] if layers["svc"] is None else [layers["svc"][0][1] - layers["svc"][0][0]]
    Z, to_plane, notes = _plane(features, H, normals + [features.W[1] - features.W[0]], ax)
    low, high = box(Z)
    xs, ys, grid = plane_grid(low, high, resolution)
    W_plane, b_plane = to_plane(features.W, features.b)
    net = (grid @ W_plane.T + b_plane).reshape(len(ys), len(xs), K)
    _shade_regions(ax, net.argmax(axis=-1), low, high, K)
    drawn_targets, margins = _draw_targets(ax, xs, ys, grid, layers, chosen, to_plane, K, notes)
    if not _pair_frontiers(ax, xs, ys, net, [0.0], colors=NETWORK_COLOUR, linewidths=1.6,
                           linestyles="-", zorder=5):
        notes.append("network predicts one class on the whole box")
    _scatter_classes(ax, Z, y, K, 7.0 if len(y) <= 1000 else 4.0)
    support = False
    if layers["svc"] is not None:
        support = _support_vectors(ax, Z, index, chosen.get("svc"), notes)
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
    if epoch not in checkpoints["states"]:
        raise InputFileError(
            f"the checkpoint file has no weights for the final feature epoch {epoch} (saved "
            f"epochs: {sorted(checkpoints['states'])}); the features and checkpoints differ"
        )
    network = network_at(checkpoints, epoch, "cpu")  # the built-in MLP in numpy, no torch
    X, y = data.X_train, data.y_train
    K = int(checkpoints["n_classes"])
    low, high = box(np.asarray(X, dtype=np.float64))
    xs, ys, grid = plane_grid(low, high, resolution)
    hs, logits = [], []
    for start in range(0, grid.shape[0], INPUT_GRID_CHUNK):
        h, z = network.forward(grid[start:start + INPUT_GRID_CHUNK])
        hs.append(h.astype(np.float64))  # a retrained layer: float64
        logits.append(z.astype(np.float64))
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
    plt = pyplot()
    features = _final_features(features_dir)
    fits = _epoch_fits(svm_path, features)
    data = load_dataset(data_path)
    input_panel = tuple(data.input_shape) == (2,)
    K, d = features.W.shape

    size = (12.4, 6.0) if input_panel else (6.6, 6.0)
    fig, axes = plt.subplots(1, 2 if input_panel else 1, figsize=size, squeeze=False)
    notes = draw_run(features, fits, axes[0, 0], int(settings["resolution"]))
    if input_panel:
        draw_input_space(load_network_file(checkpoints_path, "cpu"), features.epoch, data, fits,
                         axes[0, 1], int(settings["resolution"]))

    chosen = overall_fits(fits, K)
    angles = []
    for target in TARGETS:
        layer = fit_layer(chosen.get(target), K, d)
        if layer is not None and (target != "origin" or chosen[target].get("hard_margin")):
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
    save(fig, output, int(settings["dpi"]))

