"""The hard-margin SVM targets a network's last layer is compared with, declared once.

Binary form (labels y ∈ {−1, +1}, features h, the SVM's normal u and bias c):

``svc``     free bias:                min ½‖u‖²         s.t. yᵢ(u·hᵢ + c) ≥ 1
``homog``   bias penalised as weight: min ½(‖u‖² + c²)  s.t. yᵢ(u·hᵢ + c) ≥ 1  (the SVM without
            intercept on [h, 1])
``origin``  through the origin:       min ½‖u‖²         s.t. yᵢ u·hᵢ ≥ 1        (c = 0)

Scaling the features by s moves ``homog`` between the other two: as s → 0 the constant
coordinate of [s·h, 1] is cheap and ``homog`` → ``svc``; as s → ∞ the bias costs more and more
and ``homog`` → ``origin`` (tests/test_svm.py checks both limits). Which one a last layer
approaches is what the tables measure: a linear model whose bias is one more weight heads for
``homog`` (Soudry et al., JMLR 2018); at a KKT point of a homogeneous network's margin problem
the last layer is the max-margin separator through the origin of its final features (Lyu & Li,
ICLR 2020), so a whole network whose biases become negligible may head for ``origin``.

No imports: every stage, light or heavy, reads the names from here.
"""

from __future__ import annotations

import itertools

#: Target name → what it is, in the order of every table, figure and legend.
TARGETS: dict[str, str] = {
    "svc": "free bias",
    "homog": "bias penalised like a weight",
    "origin": "through the origin (no bias)",
}
#: Final angles to two targets closer than this (degrees) are a tie: neither is "the nearer".
TIE_DEG = 0.01
#: Every pair of targets, in table order: (svc, homog), (svc, origin), (homog, origin).
TARGET_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(TARGETS, 2))


def pair_angle_column(first: str, second: str) -> str:
    """The metrics column holding the angle between two targets' normals, e.g.
    ``svc_homog_angle_deg`` (the pair in :data:`TARGET_PAIRS` order, whichever order given)."""
    a, b = sorted((first, second), key=list(TARGETS).index)
    return f"{a}_{b}_angle_deg"


#: The columns of the angles between targets: svc_homog_angle_deg, svc_origin_angle_deg,
#: homog_origin_angle_deg.
PAIR_ANGLE_COLUMNS: tuple[str, ...] = tuple(pair_angle_column(a, b) for a, b in TARGET_PAIRS)
