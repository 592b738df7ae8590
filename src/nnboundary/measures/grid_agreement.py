"""Where two classifiers agree beyond the train points: the share of a grid over the features'
bounding box on which the network's pair boundary and an SVM's put a point on the same side
(the metrics table's ``agreement_grid``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .geometry import vector

#: Seed of the uniform draws that replace the regular grid when the features are not 2-D.
GRID_SEED = 0
#: Grid points handled at once (bounds memory for wide features).
GRID_CHUNK = 16384


def _grid_chunks(
    low: np.ndarray, high: np.ndarray, grid_points: int, seed: int = GRID_SEED
) -> Iterator[np.ndarray]:
    low, high = vector(low), vector(high)
    d = low.size
    if d == 2:
        axis_0 = np.linspace(low[0], high[0], grid_points)
        axis_1 = np.linspace(low[1], high[1], grid_points)
        grid = np.stack(np.meshgrid(axis_0, axis_1, indexing="ij"), axis=-1).reshape(-1, 2)
        for start in range(0, grid.shape[0], GRID_CHUNK):
            yield grid[start : start + GRID_CHUNK]
        return
    rng = np.random.default_rng(seed)
    total = grid_points * grid_points
    for start in range(0, total, GRID_CHUNK):
        rows = min(GRID_CHUNK, total - start)
        yield low + (high - low) * rng.random((rows, d))


def box_grid(low: Any, high: Any, grid_points: int, seed: int = GRID_SEED) -> np.ndarray:
    """Points filling the box [low, high] (per-coordinate bounds).

    d = 2: the regular grid of ``grid_points`` per axis (np.linspace, both ends included),
    grid_points² points. d ≠ 2: grid_points² points drawn uniformly in the box with
    ``np.random.default_rng(seed)`` (seed GRID_SEED = 0), in chunks of GRID_CHUNK rows.
    A zero-width axis (e.g. a dead unit) puts every point on its single value.
    """
    return np.concatenate(list(_grid_chunks(low, high, grid_points, seed)), axis=0)


def pair_grid_agreement(
    W: Any,
    b: Any,
    U: Any,
    c: Any,
    pairs: Sequence[tuple[int, int]],
    low: Any,
    high: Any,
    grid_points: int,
) -> np.ndarray:
    """For each pair (i, j): share of grid points where [(W_j − W_i)·h + b_j − b_i > 0] equals
    [(U_j − U_i)·h + c_j − c_i > 0], over :func:`box_grid` (low, high, grid_points)."""
    return PairGrid(W, b, pairs, low, high, grid_points).agreement(U, c)


#: The largest grid (bytes) a :class:`PairGrid` keeps between fits; a larger one is drawn again
#: (the same points) for every fit.
KEEP_GRID_BYTES = 32 * 2**20


class PairGrid:
    """:func:`pair_grid_agreement` of one network layer (W, b) against many fits (U, c) over
    the same box: the grid and the network's side of every pair boundary at every grid point
    are computed once, each fit's side once per fit. The same numbers as computing both per fit."""

    def __init__(self, W: Any, b: Any, pairs: Sequence[tuple[int, int]], low: Any, high: Any,
                 grid_points: int):
        W, b = np.asarray(W, dtype=np.float64), vector(b)
        self.first = np.array([i for i, _ in pairs], dtype=np.int64)
        self.second = np.array([j for _, j in pairs], dtype=np.int64)
        self.box = (low, high, grid_points)
        keep = grid_points * grid_points * max(1, vector(low).size) * 8 <= KEEP_GRID_BYTES
        self.grids = list(_grid_chunks(low, high, grid_points)) if keep else None
        self.net_sides = []
        for grid in self._chunks():
            net = grid @ W.T + b
            self.net_sides.append((net[:, self.second] - net[:, self.first]) > 0)
        self.total = sum(side.shape[0] for side in self.net_sides)

    def _chunks(self) -> Iterator[np.ndarray]:
        return iter(self.grids) if self.grids is not None else _grid_chunks(*self.box)

    def agreement(self, U: Any, c: Any) -> np.ndarray:
        """Per pair, the share of grid points on whose side the fit (U, c) agrees."""
        U, c = np.asarray(U, dtype=np.float64), vector(c)
        agree = np.zeros(self.first.size, dtype=np.int64)
        if self.total == 0:
            return np.ones(self.first.size)
        for grid, net_side in zip(self._chunks(), self.net_sides):
            svm = grid @ U.T + c
            svm_side = (svm[:, self.second] - svm[:, self.first]) > 0
            agree += np.sum(net_side == svm_side, axis=0)
        return agree / self.total
