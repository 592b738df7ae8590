"""Hard-margin linear SVM targets for a network's last layer, and the ``svm`` pipeline stage.

The theory (Soudry et al., JMLR 2018) says gradient descent on a separable cross-entropy problem
converges in *direction* to a hard-margin SVM; which SVM depends on how the bias is treated.
This module fits those targets on the last hidden layer's features ``h`` (one row per train
sample) and writes them to ``svm.json`` for the metrics step. Pure numpy/scipy/clarabel: no torch.

The package, read in this order:

* ``problems``: the targets and schemes (formulas below), their constraint rows and the exact
  change of variables that makes network features well conditioned;
* ``qp``: exact QPs by constraint generation (clarabel, HiGHS, NNLS), for any size;
* ``active``: the exact hard margin of wide features (K·(d + 1) ≥ 300 variables) at scale,
  from an approximate dual solution (liblinear) to a verified KKT point of all constraints;
* ``fit``: ``fit_svm``, one verified fit; ``stage``: the pipeline stage and its CLI;
  ``bench``: ``nnboundary benchmark svm``.

Targets (binary, labels y ∈ {−1, +1}, +1 for the larger class label)
-------------------------------------------------------------------
``svc``   (free bias)       min ½‖u‖²          s.t. yᵢ(u·hᵢ + c) ≥ 1  ∀i
``homog`` (penalised bias)  min ½(‖u‖² + c²)   s.t. yᵢ(u·hᵢ + c) ≥ 1  ∀i
          — the SVM without intercept on the augmented features [h, 1].

Schemes
-------
``binary``          K = 2 only. Stored in centred form W = [−u/2, u/2], b = [−c/2, c/2], so that
                    W₁ − W₀ = u, b₁ − b₀ = c and argmax(h Wᵀ + b) is the SVM's decision.
``crammer_singer``  min ½Σₖ‖wₖ‖² (+ ½Σₖbₖ² for homog)
                    s.t. (w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1  ∀i, ∀k ≠ yᵢ;
                    for svc the biases are free and their gauge is fixed by Σₖbₖ = 0.
                    (For homog the optimum is automatically centred: Σₖwₖ = 0 and Σₖbₖ = 0.)
                    With K = 2 it has the same optimum as ``binary`` (u = w₁ − w₀, c = b₁ − b₀).
``ovr``             K binary problems, class k (+1) against the rest (−1); row k of (W, b) is
                    (u_k, c_k) of problem k itself (not centred).

Not separable: the soft-margin version with hinge slacks ξᵢ ≥ 0 and penalty C,
    min ½‖u‖² (+ ½c² for homog) + C Σᵢ ξᵢ   s.t. yᵢ(u·hᵢ + c) ≥ 1 − ξᵢ,
    Crammer–Singer: one slack per point shared by its K − 1 constraints,
    (w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1 − ξᵢ.

Functional margins, reported over *all* train points from the returned (W, b):
    binary:          mᵢ = yᵢ((W₁ − W₀)·hᵢ + b₁ − b₀)
    crammer_singer:  mᵢ = min_{k≠yᵢ} (W_{yᵢ} − Wₖ)·hᵢ + b_{yᵢ} − bₖ
    ovr:             mᵢ = min_k  s_{ik}(Wₖ·hᵢ + bₖ),  s_{ik} = +1 if yᵢ = k else −1
``min_margin = minᵢ mᵢ`` and ``hard_margin = separable and min_margin ≥ 1 − tol``. The
geometric margin of a binary fit is 1/‖u‖.

How it is solved quickly
------------------------
* A linear constraint that holds at the vertices of a class's convex hull holds on the whole hull,
  so for d ≤ 3 the hull vertices of each class (scipy.spatial.ConvexHull) are the only possible
  support vectors in every scheme; they start the working set.
* Constraint generation: solve the QP (clarabel) on a working set, compute the margins of all
  points, add the violated ones, repeat. A working-set optimum that satisfies every constraint is
  the full optimum (it minimises a relaxation and is feasible for the full problem). A working
  set that is infeasible proves the full problem infeasible. After ``_CG_ROUNDS`` rounds the
  full problem is solved directly, so the loop cannot run away.
* Separability is decided first by an LP feasibility problem (HiGHS via scipy.optimize.linprog),
  also by constraint generation: any x with every margin > 0 certifies separability.
* Duplicate (h, y) rows are merged; in the soft fit a merged row's slack is weighted by its count.

How it stays exact on network features
--------------------------------------
Last-layer features are often badly conditioned: crowded near one point far from the origin
(h ≈ 0.1 ± 1e-3), nearly collinear (a principal spread 1e-9 next to 1e-3), or large (500·h).
Solved as given, the weights are huge, the bias cancels u·h₀ to many digits, and clarabel stops
(MaxIterations, InsufficientProgress) or returns points that violate their own constraints.
* Every problem is solved in whitened coordinates (``_Precond``), an exact change of variables:
  svc on the centred features (the free bias absorbs the shift), homog on the augmented
  features [h, 1], both rotated to their principal axes and scaled to unit spread; the objective
  becomes a diagonal ½Σⱼ wⱼvⱼ². Same problem, same optimum, mapped back at the end.
* Each hard QP is rescaled so that its optimal objective (and the duals) are O(1); otherwise
  clarabel's static regularisation or its absolute gap tolerance spoils the answer.
* No solver status is trusted: an answer counts when its active set's KKT system, solved exactly,
  has non-negative multipliers and satisfies every working-set constraint (``_polish``), or when
  clarabel says Solved at a sane scale with every working-set margin ≥ 1 − 1e-6. Otherwise
  clarabel is retried (rescaled, then with less regularisation), then the working set is solved
  by NNLS as a least-distance problem (``_ldp_fallback``) and polished.
* A problem the LP has proven separable never silently becomes a soft fit: a hard QP that cannot
  be solved raises SVMError.
"""

from .bench import benchmark
from .fit import SVMFit, fit_svm
from .problems import SCHEMES, TARGETS, SVMError, functional_margins
from .stage import DEFAULT_SETTINGS, fit_run, load_fits, main

__all__ = [
    "DEFAULT_SETTINGS",
    "SCHEMES",
    "SVMError",
    "SVMFit",
    "TARGETS",
    "benchmark",
    "fit_run",
    "fit_svm",
    "functional_margins",
    "load_fits",
    "main",
]
