"""Figures: pictures of the network's last layer against the hard-margin SVMs.

Four kinds of figure, one PNG each (written atomically), one module each, read in this order:

* ``run``: one run at its final checkpoint in the bottleneck space h, the network's boundary
  on the SVMs' (the original study's picture);
* ``convergence``: one dataset × arch × variant, every regime and seed, against the depth
  −log10(train loss): where each regime's last layer is heading as the loss goes to 0;
* ``overview``: the final checkpoint of every run of the grid;
* ``collapse``: the angle to each SVM target against neural collapse (NC3), per run;

``common`` holds what they share (colours, reading the tables, axis scales); the command line,
``nnboundary figures <kind> ...``, is :mod:`nnboundary.stages.figures`. Every figure draws
valid checkpoints (:mod:`nnboundary.measures.validity`) as measurements and marks the others.
The modules are imported one at a time (the run figure needs neither pandas nor torch).
"""
