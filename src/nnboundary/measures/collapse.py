"""The neural-collapse geometry of every checkpoint (Papyan, Han & Donoho,
PNAS 2020; the ETF distance of Zhu et al., NeurIPS 2021), on the same feature files the SVMs are
fitted on.

Notation, on the train features of one checkpoint, in float64: h_i (n × d) with labels
y_i ∈ 0..K−1; class means μ_k = mean of the h_i of class k; the global mean μ_G = (1/K) Σ_k μ_k,
the mean of the class means (not of the points, so class imbalance does not move it);
M̃ = [μ_0 − μ_G, …, μ_{K−1} − μ_G] (d × K); W the last layer (K × d) and W̃ = W − 1 w̄ᵀ, W with
its row mean w̄ = (1/K) Σ_k W_k subtracted (the layer is defined only up to a common row shift,
which changes no prediction).

========================= ==================================================================
``nc1``                   Tr(Σ_W Σ_B⁺) / K: within-class variability against between-class,
                          Σ_W = (1/n) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, Σ_B = (1/K) M̃M̃ᵀ,
                          ⁺ the Moore–Penrose pseudo-inverse (:func:`nc1`)
``nc2_norm_cv_means``     std / mean over k of ‖μ_k − μ_G‖ (std with ddof 0): equinorm means
``nc2_norm_cv_weights``   std / mean over k of ‖w̃_k‖, the rows of W̃: equinorm classifiers
``nc2_cos_shift_means``   mean over k ≠ l of |cos(μ_k − μ_G, μ_l − μ_G) + 1/(K − 1)|:
                          equiangular means (0 for a simplex ETF)
``nc2_etf_distance``      ‖M̃ᵀM̃ / ‖M̃ᵀM̃‖_F − (I − 11ᵀ/K) / √(K − 1)‖_F (0 for a simplex ETF
                          of any scale)
``nc3_self_duality``      ‖W̃ / ‖W̃‖_F − M̃ᵀ / ‖M̃‖_F‖²_F: the classifier against the centred
                          means (0 when W̃ ∝ M̃ᵀ), in [0, 4]
``nc4_ncc_mismatch``      share of train points whose network prediction argmax_k (W h + b)_k
                          differs from the nearest class mean's argmin_k ‖h − μ_k‖
========================= ==================================================================

A simplex ETF needs d ≥ K − 1: with a 2-D bottleneck only K ≤ 3 can collapse fully, so NC2
cannot reach 0 for K > 3 there.

Conventions, marked and never averaged: ``nc_degenerate`` is true where a quantity has no
value, namely a class without train points, all class means equal (M̃ = 0: no between-class
spread, so NC1, NC2 of the means and NC3 are undefined) or W̃ = 0 (NC2 of the weights and
NC3 undefined); those columns are NaN there, and the collapse table's validity rule
(:func:`nnboundary.reporting.collapse.collapse_table`) marks the checkpoint ``convention``.

Output: one row per checkpoint, the run keys, ``epoch``, ``step``, ``n_classes``,
``feature_dim``, the columns above and ``nc_degenerate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..formats.features import FeatureSet, read_features
from ..settings.keys import RUN_KEYS

NC_COLUMNS = ["nc1", "nc2_norm_cv_means", "nc2_norm_cv_weights", "nc2_cos_shift_means",
              "nc2_etf_distance", "nc3_self_duality", "nc4_ncc_mismatch"]
#: Relative cut-off of the pseudo-inverse in NC1 (singular values of M̃ below it count as 0).
PINV_RTOL = 1e-10
COLUMNS = [*RUN_KEYS, "epoch", "step", "n_classes", "feature_dim", *NC_COLUMNS, "nc_degenerate"]


def class_means(H: np.ndarray, y: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, d) class means and the (K,) class counts; a class without points has mean NaN."""
    counts = np.bincount(y, minlength=K).astype(np.float64)
    sums = np.zeros((K, H.shape[1]))
    np.add.at(sums, y, H)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


def nc1(H: np.ndarray, y: np.ndarray, means: np.ndarray) -> float:
    """Tr(Σ_W Σ_B⁺)/K (module docstring). Computed from the SVD M̃ = U S Vᵀ: Σ_B⁺ =
    K U S⁻² Uᵀ, so Tr(Σ_W Σ_B⁺)/K = Σ_j u_jᵀ Σ_W u_j / s_j², without forming a d × d inverse.
    The pseudo-inverse keeps at most K − 1 singular values (the centred means sum to 0, so
    that is M̃'s rank) and only those above :data:`PINV_RTOL` · s_max, as ``numpy.linalg.pinv``
    with that ``rcond`` does: a direction with no between-class spread is not inverted."""
    K = means.shape[0]
    M = (means - means.mean(axis=0)).T  # d × K
    U, s, _ = np.linalg.svd(M, full_matrices=False)
    keep = (s > PINV_RTOL * (s[0] if s.size else 0.0)) & (np.arange(s.size) < K - 1)
    if not keep.any():
        return float("nan")
    centred = H - means[y]  # within-class deviations, n × d
    projected = centred @ U[:, keep]  # n × r
    within = (projected**2).sum(axis=0) / len(H)  # u_jᵀ Σ_W u_j
    return float((within / s[keep] ** 2).sum())


def _cv(values: np.ndarray) -> float:
    mean = values.mean()
    return float(values.std() / mean) if mean > 0 else float("nan")


def neural_collapse(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The NC metrics of the module docstring for train features ``H`` (n × d), labels ``y``
    and the last layer (``W`` K × d, ``b`` (K,)); ``nc_degenerate`` where one has no value."""
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    W = np.asarray(W, dtype=np.float64)
    K = W.shape[0]
    nan = float("nan")
    row = dict.fromkeys(NC_COLUMNS, nan)
    means, counts = class_means(H, y, K)
    if (counts == 0).any() or len(H) == 0:
        return {**row, "nc_degenerate": True}
    centred_means = means - means.mean(axis=0)  # K × d, rows μ_k − μ_G
    W_tilde = W - W.mean(axis=0)
    norm_M, norm_W = np.linalg.norm(centred_means), np.linalg.norm(W_tilde)
    degenerate = bool(norm_M == 0 or norm_W == 0)
    # NC4 needs neither norm: the network's prediction against the nearest class mean.
    predicted = (H @ W.T + b).argmax(axis=1)
    squared = (H**2).sum(axis=1)[:, None] - 2 * H @ means.T + (means**2).sum(axis=1)[None, :]
    row["nc4_ncc_mismatch"] = float((predicted != squared.argmin(axis=1)).mean())
    if norm_W > 0:
        row["nc2_norm_cv_weights"] = _cv(np.linalg.norm(W_tilde, axis=1))
    if norm_M == 0:
        return {**row, "nc_degenerate": True}
    row["nc1"] = nc1(H, y, means)
    lengths = np.linalg.norm(centred_means, axis=1)
    row["nc2_norm_cv_means"] = _cv(lengths)
    if (lengths > 0).all():
        unit = centred_means / lengths[:, None]
        cosines = unit @ unit.T
        off = ~np.eye(K, dtype=bool)
        row["nc2_cos_shift_means"] = float(np.abs(cosines[off] + 1.0 / (K - 1)).mean())
    else:
        degenerate = True
    gram = centred_means @ centred_means.T  # M̃ᵀM̃, K × K
    etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
    row["nc2_etf_distance"] = float(np.linalg.norm(gram / np.linalg.norm(gram) - etf))
    if norm_W > 0:
        row["nc3_self_duality"] = float(
            np.linalg.norm(W_tilde / norm_W - centred_means / norm_M) ** 2)
    return {**row, "nc_degenerate": degenerate}


def checkpoint_row(features: FeatureSet) -> dict[str, Any]:
    """One checkpoint's row: its keys and :func:`neural_collapse` of its train part."""
    H, y = features.part("train")
    return {**features.row_keys, "n_classes": features.n_classes,
            "feature_dim": int(features.W.shape[1]),
            **neural_collapse(H, y, features.W, features.b)}


def run_collapse(files: Sequence[Path]):
    """The table of one run: a row per feature file, in epoch order."""
    import pandas as pd

    return pd.DataFrame([checkpoint_row(read_features(path)) for path in files],
                        columns=COLUMNS)
