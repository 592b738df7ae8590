"""Statistics over seeds: the summary of one cell's values and the sign test behind a verdict.

A verdict over seeds is a count with a test, never a mean: :func:`sign_test` gives the exact
two-sided p-value of k successes in n independent seeds under "each seed is as likely to go
either way", and :func:`count_verdict` turns a count into ``holds``, ``fails`` or ``undecided``.
With n seeds the smallest two-sided p-value is 2·2⁻ⁿ: five seeds can never reach p < 0.05
(0.0625), six can (0.031) only if all six agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Significance level of every verdict.
ALPHA = 0.05
#: A verdict needs at least this many valid seeds; with fewer it is ``undecided``.
MIN_SEEDS = 5


def describe(values: Any) -> dict[str, float]:
    """n, mean, sd (sample, ddof = 1; 0 for one value), median, q25, q75 (quartiles by linear
    interpolation, NumPy's default), min and max of the finite ``values``; NaN for none."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "sd": nan, "median": nan, "q25": nan, "q75": nan,
                "min": nan, "max": nan}
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    return {"n": n, "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if n > 1 else 0.0,
            "median": float(median), "q25": float(q25), "q75": float(q75),
            "min": float(values.min()), "max": float(values.max())}


def sign_test(k: int, n: int) -> float:
    """Exact two-sided sign test of k successes in n trials against success probability 1/2:

        p = min(1, 2 · Σ_{i=0}^{min(k, n−k)} C(n, i) / 2ⁿ)

    (the binomial distribution with p = 1/2 is symmetric, so doubling the smaller tail is the
    exact two-sided test). p = 1 for n = 0."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"sign_test: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return min(1.0, 2.0 * tail / 2.0**n)


@dataclass(frozen=True)
class Count:
    """k of n seeds satisfy a condition; p is the sign test's two-sided p-value."""

    k: int
    n: int
    p: float
    verdict: str  # holds | fails | undecided


def count_verdict(k: int, n: int, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS) -> Count:
    """``holds`` when more than half of the n seeds satisfy the condition and the sign test
    rejects "either way with probability 1/2" (p < alpha); ``fails`` when fewer than half do,
    with p < alpha; ``undecided`` otherwise, and always when n < min_seeds."""
    p = sign_test(k, n)
    if n < min_seeds or p >= alpha:
        verdict = "undecided"
    else:
        verdict = "holds" if 2 * k > n else "fails"
    return Count(int(k), int(n), p, verdict)


def threshold_count(values: Any, threshold: float, below: bool = True, **kwargs) -> Count:
    """:func:`count_verdict` for "value < threshold" (``below``) or "value ≥ threshold" over the
    finite ``values``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    hits = values < threshold if below else values >= threshold
    return count_verdict(int(hits.sum()), int(values.size), **kwargs)


def both(first: Count, second: Count) -> Count:
    """Two conditions that must both hold (an intersection–union test): ``holds`` when both
    hold, with p = the larger p-value; ``fails`` when either fails (p: the failing one's);
    else ``undecided`` (p: the larger). k and n are the first condition's."""
    parts = (first, second)
    if all(c.verdict == "holds" for c in parts):
        return Count(first.k, first.n, max(c.p for c in parts), "holds")
    failing = [c.p for c in parts if c.verdict == "fails"]
    if failing:
        return Count(first.k, first.n, min(failing), "fails")
    return Count(first.k, first.n, max(c.p for c in parts), "undecided")
