"""How far is a last layer from the SVMs fitted on its features? One call, no pipeline.

:func:`measure` takes a last layer (W, b) and the features H it acts on (with their labels),
fits every SVM target (:func:`nnboundary.svm.fit_svm`) and returns the rows of the metrics
table (:mod:`nnboundary.measures.metrics`: the same columns, validity and invalid reasons as
``metrics.parquet``). The pipeline's ``metrics`` stage builds its rows with the same functions
(:func:`nnboundary.measures.metrics.checkpoint` and
:func:`~nnboundary.measures.metrics.checkpoint_rows`), so the two cannot drift apart.

Shapes: W (K, d), or (d,) / (1, d) for a binary problem (the logit of class 1 over class 0:
W = [0; w]); b (K,), or a scalar for a binary problem; H (n, d); y (n,) integer labels in
0..K−1, every class present. Bad input raises :class:`nnboundary.errors.InputError` naming the
argument, before any fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InputError
from ..formats.svmfile import fit_layer
from ..settings import schema
from ..svm import SCHEMES, TARGETS, fit_svm
from . import metrics

#: The schemes of a K-class problem: binary for K = 2, the multi-class ones otherwise.
BINARY = "binary"
MULTICLASS = tuple(s for s in SCHEMES if s != BINARY)


def as_array(name: str, value: Any, ndim: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """``value`` (an array, a list, a CPU or GPU tensor) as a numpy array of one of the
    dimensions ``ndim``, finite; InputError naming ``name`` otherwise."""
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().to("cpu").numpy()
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name}: cannot be read as an array of numbers ({error})") from None
    if array.ndim not in ndim:
        allowed = " or ".join(f"{n}-D" for n in ndim)
        raise InputError(f"{name}: has shape {array.shape}; expected {allowed}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{name}: holds {bad} NaN or infinite value(s); every value must be "
                         "finite")
    return array


def layer_of(W: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """(W (K, d), b (K,)) from the accepted shapes (module docstring)."""
    W = as_array("W", W, (1, 2))
    b = as_array("b", b, (0, 1))
    if W.ndim == 1 or W.shape[0] == 1:  # binary: the logit of class 1 over class 0
        w = W.reshape(-1)
        if b.size != 1:
            raise InputError(f"b: has {b.size} values but W is one row (binary): give one bias")
        return np.vstack([np.zeros_like(w), w]), np.array([0.0, float(b.reshape(-1)[0])])
    if b.ndim != 1 or b.shape[0] != W.shape[0]:
        raise InputError(f"b: has shape {b.shape} but W has {W.shape[0]} rows (K); expected "
                         f"({W.shape[0]},)")
    if W.shape[0] < 2:
        raise InputError(f"W: has shape {W.shape}; expected K ≥ 2 rows, or one row (binary)")
    return W, b


def labels_of(name: str, y: Any, n: int, K: int, every_class: bool) -> np.ndarray:
    """Integer labels in 0..K−1, one per row of the features."""
    y = as_array(name, y, (1,))
    if y.shape[0] != n:
        raise InputError(f"{name}: has {y.shape[0]} labels for {n} rows of features")
    if not np.all(y == np.round(y)):
        raise InputError(f"{name}: labels must be whole numbers 0..{K - 1}")
    y = y.astype(np.int64)
    outside = np.unique(y[(y < 0) | (y >= K)])
    if outside.size:
        raise InputError(f"{name}: labels {outside[:10].tolist()} are outside 0..{K - 1} (W has "
                         f"K = {K} rows)")
    present = np.unique(y)
    if every_class and present.size < 2:
        raise InputError(f"{name}: holds only class {present.tolist()}; an SVM needs two classes")
    if every_class and present.size != K:
        missing = sorted(set(range(K)) - set(present.tolist()))
        raise InputError(f"{name}: has no sample of class(es) {missing}, but W has K = {K} rows; "
                         "every class 0..K−1 must be in the train labels")
    return y


def features_of(name: str, H: Any, d: int) -> np.ndarray:
    H = as_array(name, H, (2,))
    if H.shape[1] != d:
        raise InputError(f"{name}: has {H.shape[1]} features per row but W has {d} columns")
    if H.shape[0] == 0:
        raise InputError(f"{name}: has no rows")
    return H


def _names(name: str, given: Iterable[str], allowed: tuple[str, ...]) -> list[str]:
    chosen = [given] if isinstance(given, str) else list(given)
    unknown = [g for g in chosen if g not in allowed]
    if unknown or not chosen:
        raise InputError(f"{name}: {unknown or chosen!r}; allowed: {', '.join(allowed)}")
    return chosen


def measure(W: Any, b: Any, H: Any, y: Any, *, targets: Iterable[str] = TARGETS,
            schemes: Iterable[str] | None = None, test: tuple[Any, Any] | None = None,
            C: float | None = None, tol: float | None = None, soft_margin: bool | None = None,
            grid_points: int | None = None):
    """The metrics rows of a last layer (W, b) against the SVMs fitted on its train features.

    W, b, H, y: module docstring. ``targets``: the SVM targets to fit (svc, homog, origin).
    ``schemes``: binary for K = 2; for K > 2 the multi-class schemes (default: the ``svm``
    settings' ``multiclass``, crammer_singer and ovr). ``test``: (H_test, y_test), for the
    test columns (test accuracy and loss, ``agreement_test``, the test bias gap); without it
    those are NaN. ``C``, ``tol``, ``soft_margin``: the fits' settings (default: the ``svm``
    settings' defaults); ``grid_points``: per axis of ``agreement_grid`` (the ``metrics``
    settings' default).

    Returns a pandas DataFrame with one row per target × scheme × class pair, plus for K > 2 a
    ``mean`` row per fit; the columns of :data:`nnboundary.measures.metrics.COLUMNS` (run keys
    and training columns empty: ``dataset`` "", ``seed`` −1, ...), ``valid`` and
    ``invalid_reason`` (:mod:`nnboundary.measures.validity`). The logits are H·Wᵀ + b.
    """
    W, b = layer_of(W, b)
    K, d = W.shape
    H = features_of("H", H, d)
    y = labels_of("y", y, H.shape[0], K, every_class=True)
    if test is None:
        H_test, y_test = np.zeros((0, d)), np.zeros(0, dtype=np.int64)
    else:
        if not isinstance(test, (tuple, list)) or len(test) != 2:
            raise InputError("test: expected a pair (H_test, y_test)")
        H_test = features_of("test[0] (H_test)", test[0], d)
        y_test = labels_of("test[1] (y_test)", test[1], H_test.shape[0], K, every_class=False)
    targets = _names("targets", targets, TARGETS)
    allowed = (BINARY,) if K == 2 else MULTICLASS
    defaults = schema.defaults("svm")
    schemes = _names("schemes", (BINARY,) if K == 2 and schemes is None else
                     defaults["multiclass"] if schemes is None else schemes, allowed)
    grid_points = schema.defaults("metrics")["grid_points"] if grid_points is None else grid_points
    if int(grid_points) != grid_points or grid_points < 2:
        raise InputError(f"grid_points: {grid_points!r}; allowed: a whole number of at least 2")
    fits = [{"epoch": 0, **fit_svm(H, y, target, scheme, C=C, tol=tol, n_classes=K,
                                   certificate=(W, b), soft=soft_margin).to_json()}
            for target in targets for scheme in schemes]
    point = metrics.checkpoint(W, b, H, y, H_test, y_test, has_test=test is not None)
    return metrics.table(metrics.checkpoint_rows(
        point, fits, lambda fit: fit_layer(fit, K, d, "measure()"), int(grid_points)))
