"""Stage ``figures``: pictures of the network's last layer against the hard-margin SVMs.

Four kinds of figure, one PNG each (written atomically), one module each, read in this order:

* ``run``: one run at its final checkpoint in the bottleneck space h, the network's boundary
  on the SVMs' (the original study's picture);
* ``convergence``: one dataset × arch × variant, every regime and seed, against the depth
  −log10(train loss): where each regime's last layer is heading as the loss goes to 0;
* ``overview``: the final checkpoint of every run of the grid;
* ``collapse``: the angle to each SVM target against neural collapse (NC3), per run;

``common`` holds what they share (colours, reading the tables, axis scales) and ``stage`` the
command line, ``nnboundary figures <kind> ...``. Every figure draws valid checkpoints
(:mod:`nnboundary.validity`) as measurements and marks the others.
"""

from .collapse import collapse_figure
from .common import DEFAULT_SETTINGS, final_overall_rows, overall_rows
from .convergence import convergence_figure
from .overview import overview_figure
from .run import box, draw_run, plane_grid, projection_basis, run_figure
from .stage import main, parse_figure_settings

__all__ = [
    "DEFAULT_SETTINGS",
    "box",
    "collapse_figure",
    "convergence_figure",
    "draw_run",
    "final_overall_rows",
    "main",
    "overall_rows",
    "overview_figure",
    "parse_figure_settings",
    "plane_grid",
    "projection_basis",
    "run_figure",
]
