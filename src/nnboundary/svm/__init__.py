"""Hard-margin linear SVM targets for a network's last layer, and the ``svm`` pipeline stage.

The theory (Soudry et al., JMLR 2018) says gradient descent on a separable cross-entropy problem
converges in *direction* to a hard-margin SVM; which SVM depends on how the bias is treated.
This package fits those targets on the last hidden layer's features ``h`` (one row per train
sample) and writes them to ``svm.json`` for the metrics step. numpy, scipy, clarabel and scikit-learn's
liblinear: no torch.

The package, read in this order:

* ``problems``: the targets and schemes (their formulas are in its docstring), their
  constraint rows and the exact change of variables that makes network features well
  conditioned;
* ``qp``: exact QPs by constraint generation (clarabel, HiGHS, NNLS), for any size, and
  how they stay exact on badly conditioned network features (its docstring);
* ``interior``: the exact hard margin of mid-sized wide problems (K·(d + 1) ≥ 300 variables
  whose dense normal matrix is cheap: a ten-class MLP's last layer), an interior-point solve of
  the whole QP whose active set ``active`` then certifies;
* ``active``: the exact hard margin of wide features at scale (up to n = 50,000, d = 512), from
  an approximate dual solution (liblinear) to a verified KKT point of all constraints;
* ``fit``: ``fit_svm``, one verified fit; ``stage``: the pipeline stage and its CLI;
  ``bench``: ``nnboundary benchmark svm``.
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
