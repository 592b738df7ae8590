"""Hard-margin linear SVM targets for a network's last layer.

The theory (Soudry et al., JMLR 2018) says gradient descent on a separable cross-entropy problem
converges in *direction* to a hard-margin SVM; which SVM depends on how the bias is treated.
This package fits those targets on the last hidden layer's features ``h`` (one row per train
sample); the ``svm`` stage writes them to ``svm.json`` for the metrics step. numpy, scipy,
clarabel and scikit-learn's liblinear: no torch.

The public API is below (``__all__``); the private modules, read in this order:

* ``_problems``: the targets and schemes (their formulas are in its docstring), their
  constraint rows and the exact change of variables that makes network features well
  conditioned;
* ``_qp``: exact QPs by constraint generation (clarabel, HiGHS, NNLS), for any size, and
  how they stay exact on badly conditioned network features (its docstring);
* ``_interior``: the exact hard margin of mid-sized wide problems (K·(d + 1) ≥ 300 variables
  whose dense normal matrix is cheap: a ten-class MLP's last layer), an interior-point solve of
  the whole QP whose active set ``_active`` then certifies;
* ``_active``: the exact hard margin of wide features at scale (up to n = 50,000, d = 512), from
  an approximate dual solution (liblinear) to a verified KKT point of all constraints;
* ``_fit``: ``fit_svm``, one verified fit;
* ``_memory``: how much memory a fit may use.

The stage is :mod:`nnboundary.stages.svm`, the benchmark :mod:`nnboundary.bench.svm`.
"""

from ..errors import SVMError, SVMMemoryError
from ._fit import SVMFit, fit_svm, load_fits
from ._problems import SCHEMES, TARGETS, functional_margins

__all__ = [
    "SCHEMES",
    "SVMError",
    "SVMFit",
    "SVMMemoryError",
    "TARGETS",
    "fit_svm",
    "functional_margins",
    "load_fits",
]
