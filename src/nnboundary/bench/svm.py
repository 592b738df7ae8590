"""``nnboundary benchmark svm``: seconds per fit (printed, never a timed test).

Three tables: 2-D sets of 60,000 points (binary, three classes); wide ten-class features
(``collapsed_features``, up to n = 50,000, d = 512: a ResNet-18 on CIFAR-10), Crammer–Singer,
every target; and, with ``--features``, every checkpoint of real runs (the feature files the
pipeline wrote), every target. Wide and real fits each run in a fresh process so that the
peak resident memory is their own.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
from typing import Any

import numpy as np

from ..formats.features import list_feature_files, read_features
from ..formats.tables import plain
from ..measures.collapse import class_means, nc1
from ..svm import TARGETS, fit_svm

# (n, d, K, noise) of the wide table: NC1 ≈ 0.06 at noise 4 and 0.15 at noise 6 (less collapsed).
WIDE_SIZES = ((500, 64, 10, 4.0), (10000, 64, 10, 4.0), (50000, 128, 10, 4.0),
              (50000, 512, 10, 4.0), (50000, 512, 10, 6.0))


def collapsed_features(n: int, d: int, K: int, noise: float = 4.0, seed: int = 0):
    """Last-layer-like features near collapse: hᵢ = max(0, 1 + 2 m_{yᵢ} + noise · D εᵢ), with class
    means m_k ~ N(0, I_d), εᵢ ~ N(0, I_d) and D = diag(j^{−1/2}) scaled to ‖D‖_F = √d (a
    decaying spectrum, as trained features have); labels yᵢ = i mod K. Non-negative like
    post-ReLU features; larger ``noise`` means less collapse (a larger NC1)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (K, d))
    y = np.arange(n) % K
    spectrum = 1.0 / np.sqrt(np.arange(1, d + 1))
    spectrum *= np.sqrt(d) / np.linalg.norm(spectrum)
    H = 1.0 + 2.0 * means[y] + noise * rng.normal(0.0, 1.0, (n, d)) * spectrum
    return np.maximum(H, 0.0), y


def _wide_case(n: int, d: int, K: int, noise: float, target: str) -> dict[str, Any]:
    """One wide fit (run in a child process): its numbers and the process's peak memory."""
    H, y = collapsed_features(n, d, K, noise)
    fit = fit_svm(H, y, target, "crammer_singer", n_classes=K)
    return {
        "n": n, "d": d, "K": K, "noise": noise,
        "nc1": nc1(H, y, class_means(H, y, K)[0]),
        "target": target, "hard": fit.hard_margin, "min_margin": fit.min_margin,
        "support": len(fit.support), "seconds": fit.seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "exact": "exact KKT point" in fit.status, "status": fit.status,
    }


def _in_fresh_process(func, *args):
    """func(*args) in a fresh (spawned) process: its peak resident memory is this call's alone."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func, args)


def _print_header(header: str, file) -> None:
    print(header, file=file)
    print("-" * len(header), file=file)


def benchmark_wide(sizes=WIDE_SIZES, file=None) -> list[dict[str, Any]]:
    """Time the hard Crammer–Singer fit on ``collapsed_features`` of each size; print a table."""
    file = sys.stdout if file is None else file
    header = (f"{'n':>7} {'d':>5} {'K':>3} {'noise':>5} {'NC1':>7} {'target':<6} {'hard':>5} "
              f"{'exact':>5} {'min margin':>12} {'support':>8} {'seconds':>8} {'peak MB':>8}")
    _print_header(header, file)
    rows = []
    for n, d, K, noise in sizes:
        for target in TARGETS:
            row = _in_fresh_process(_wide_case, n, d, K, noise, target)
            rows.append(row)
            print(f"{n:>7} {d:>5} {K:>3} {noise:>5g} {row['nc1']:>7.3f} {target:<6} "
                  f"{str(row['hard']):>5} {str(row['exact']):>5} {row['min_margin']:>12.10f} "
                  f"{row['support']:>8} {row['seconds']:>8.2f} {row['peak_mb']:>8.0f}",
                  file=file, flush=True)
    return rows


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
    _print_header(header, file)
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


def _real_case(path: str, target: str, scheme: str, threads: int) -> dict[str, Any]:
    """One fit on a real checkpoint's train features (run in a child process), with the BLAS
    threads of the svm stage."""
    from threadpoolctl import threadpool_limits

    fs = read_features(path)
    H, y = fs.part("train")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with threadpool_limits(threads):
        fit = fit_svm(H, y, target, scheme, n_classes=fs.n_classes, certificate=(fs.W, fs.b))
    return {
        "file": str(path), "epoch": int(fs.epoch), "n": int(H.shape[0]), "d": int(H.shape[1]),
        "K": int(fs.n_classes), "target": target, "scheme": scheme,
        "separable": fit.separable, "hard": fit.hard_margin, "min_margin": fit.min_margin,
        "support": len(fit.support), "seconds": fit.seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "start_mb": before, "path": fit.solver.get("path"), "solver": fit.solver,
        "status": fit.status, "threads": threads,
    }


def benchmark_real(folders, threads: int = 1, file=None) -> list[dict[str, Any]]:
    """Time every target's fit on every checkpoint (``epoch*.parquet``) of each run folder:
    Crammer–Singer for K > 2 classes, binary for K = 2, each with ``threads`` BLAS threads
    (the svm stage's default: 1); print a table, return its rows."""
    file = sys.stdout if file is None else file
    header = (f"{'run':<36} {'epoch':>6} {'n':>6} {'d':>4} {'K':>3} {'target':<6} {'hard':>5} "
              f"{'path':<21} {'rounds':>6} {'seconds':>8} {'peak MB':>8}")
    _print_header(header, file)
    rows = []
    for folder in folders:
        for path in list_feature_files(folder):
            K = read_features(path).n_classes
            scheme = "binary" if K == 2 else "crammer_singer"
            for target in TARGETS:
                row = plain(_in_fresh_process(_real_case, str(path), target, scheme, threads))
                row["run"] = str(folder)
                rows.append(row)
                solver = row["solver"]
                rounds = solver.get("rounds", solver.get("iterations", ""))
                print(f"{str(folder)[-36:]:<36} {row['epoch']:>6} {row['n']:>6} {row['d']:>4} "
                      f"{row['K']:>3} {target:<6} {str(row['hard']):>5} {str(row['path']):<21} "
                      f"{rounds!s:>6} {row['seconds']:>8.2f} {row['peak_mb']:>8.0f}",
                      file=file, flush=True)
    return rows
