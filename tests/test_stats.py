"""Statistics over seeds: the sign test against SciPy, summaries with known answers, verdicts."""

import numpy as np
import pytest
from scipy.stats import binomtest

from nnboundary.reporting import stats


@pytest.mark.parametrize("n", [0, 1, 3, 5, 6, 9, 10, 17])
def test_sign_test_equals_scipys_exact_binomial_test(n):
    for k in range(n + 1):
        expected = 1.0 if n == 0 else binomtest(k, n, 0.5, alternative="two-sided").pvalue
        assert stats.sign_test(k, n) == pytest.approx(expected, rel=1e-12)


def test_sign_test_known_values():
    assert stats.sign_test(5, 5) == pytest.approx(0.0625)  # 5 seeds can never reach 0.05
    assert stats.sign_test(6, 6) == pytest.approx(0.03125)
    assert stats.sign_test(3, 5) == 1.0  # "3 of 5 seeds" is what a coin gives
    assert stats.sign_test(4, 5) == pytest.approx(0.375)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.sign_test(4, 3)


def test_count_verdicts():
    assert stats.count_verdict(6, 6).verdict == "holds"
    assert stats.count_verdict(0, 6).verdict == "fails"
    assert stats.count_verdict(5, 5).verdict == "undecided"  # p = 0.0625
    assert stats.count_verdict(4, 4, min_seeds=3).verdict == "undecided"  # p = 0.125
    assert stats.count_verdict(9, 10).verdict == "holds"  # p = 0.021
    assert stats.count_verdict(8, 10).verdict == "undecided"  # p = 0.109
    assert stats.count_verdict(0, 0).verdict == "undecided"


def test_threshold_count_ignores_missing_values():
    count = stats.threshold_count([0.1, 0.2, np.nan, 3.0, 0.5, 0.4, 0.3, 0.2], 1.0)
    assert (count.k, count.n) == (6, 7)
    above = stats.threshold_count([0.1, 2.0, 3.0], 1.0, below=False)
    assert (above.k, above.n) == (2, 3)


def test_both_needs_both():
    holds, fails, open_ = (stats.count_verdict(6, 6), stats.count_verdict(0, 6),
                           stats.count_verdict(3, 6))
    assert stats.both(holds, holds).verdict == "holds"
    combined = stats.both(holds, fails)
    assert combined.verdict == "fails" and combined.p == fails.p
    assert stats.both(holds, open_).verdict == "undecided"
    assert stats.both(holds, open_).p == open_.p and stats.both(holds, open_).k == 6


def test_describe_known_values():
    summary = stats.describe([4.0, 1.0, np.nan, 2.0, 6.0])
    assert summary["n"] == 4 and summary["mean"] == 3.25
    assert summary["sd"] == pytest.approx(np.std([1, 2, 4, 6], ddof=1))
    assert (summary["q25"], summary["median"], summary["q75"]) == (1.75, 3.0, 4.5)
    assert (summary["min"], summary["max"]) == (1.0, 6.0)
    assert stats.describe([2.0])["sd"] == 0.0
    empty = stats.describe([])
    assert empty["n"] == 0 and np.isnan(empty["mean"]) and np.isnan(empty["median"])
