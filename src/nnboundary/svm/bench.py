"""``nnboundary benchmark svm``: seconds per fit on generated data (printed, never a timed test)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .fit import fit_svm
from .problems import TARGETS


def _bench_sets(n: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    half = n // 2
    out = {}
    # Separable: two unit Gaussians, points within 0.5 of the bisector dropped, refilled to n.
    X = np.r_[rng.normal(0, 1, (2 * half, 2)) + 3, rng.normal(0, 1, (2 * half, 2)) - 3]
    yy = np.r_[np.ones(2 * half, int), np.zeros(2 * half, int)]
    keep = np.abs(X.sum(axis=1)) / np.sqrt(2) > 0.5
    keep &= np.where(yy == 1, X.sum(axis=1) > 0, X.sum(axis=1) < 0)
    idx = np.r_[np.flatnonzero(keep & (yy == 1))[:half], np.flatnonzero(keep & (yy == 0))[:half]]
    out["separable"] = (X[idx], yy[idx])
    # Overlapping: unit Gaussians at ±(1, 1).
    X = np.r_[rng.normal(0, 1, (half, 2)) + 1, rng.normal(0, 1, (half, 2)) - 1]
    out["overlap"] = (X, np.r_[np.ones(half, int), np.zeros(half, int)])
    # Nearly separable: the separable set with 10 labels flipped.
    Xs, ys = out["separable"]
    ys = ys.copy()
    ys[rng.choice(len(ys), 10, replace=False)] ^= 1
    out["10 flipped"] = (Xs, ys)
    return out


def benchmark(n: int = 60000, n_multi: int | None = None, file=None) -> list[dict[str, Any]]:
    """Time fit_svm on 2-D sets of n points (binary) and n_multi points (3 classes); print a table."""
    file = sys.stdout if file is None else file
    rng = np.random.default_rng(0)
    n_multi = n if n_multi is None else n_multi
    rows = []
    cases = []
    for name, (X, y) in _bench_sets(n, rng).items():
        for target in TARGETS:
            cases.append((name, X, y, target, "binary"))
    # Three classes: Gaussians at the vertices of a triangle (radius 6: separable; 1.5: overlap).
    third = n_multi // 3
    for name, radius, gap in (("3-class separable", 6.0, True), ("3-class overlap", 1.5, False)):
        centres = radius * np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * np.arange(3) / 3])
        X = np.concatenate([rng.normal(0, 1, (2 * third, 2)) + c for c in centres])
        y = np.repeat(np.arange(3), 2 * third)
        if gap:
            # Keep points nearer their own centre by a clear gap.
            dist = np.linalg.norm(X[:, None, :] - centres[None], axis=2)
            own = dist[np.arange(len(y)), y]
            dist[np.arange(len(y)), y] = np.inf
            ok = dist.min(axis=1) - own > 1.0
            idx = np.concatenate([np.flatnonzero(ok & (y == k))[:third] for k in range(3)])
        else:
            idx = np.concatenate([np.flatnonzero(y == k)[:third] for k in range(3)])
        for target in TARGETS:
            for scheme in ("crammer_singer", "ovr"):
                cases.append((name, X[idx], y[idx], target, scheme))
    header = f"{'data':<18} {'n':>7} {'scheme':<15} {'target':<6} {'separable':>9} {'hard':>5} {'support':>8} {'seconds':>8}"
    print(header, file=file)
    print("-" * len(header), file=file)
    for name, X, y, target, scheme in cases:
        fit = fit_svm(X, y, target, scheme)
        row = {
            "data": name,
            "n": len(y),
            "scheme": scheme,
            "target": target,
            "separable": fit.separable,
            "hard": fit.hard_margin,
            "support": len(fit.support),
            "seconds": fit.seconds,
        }
        rows.append(row)
        print(
            f"{name:<18} {len(y):>7} {scheme:<15} {target:<6} {str(fit.separable):>9} "
            f"{str(fit.hard_margin):>5} {len(fit.support):>8} {fit.seconds:>8.3f}",
            file=file,
            flush=True,
        )
    return rows
