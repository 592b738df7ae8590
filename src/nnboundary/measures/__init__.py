"""Measurement: each checkpoint's last layer against the SVM targets and the neural-collapse
geometry, per run.

``geometry`` holds the metric functions (formulas and conventions), ``grid_agreement`` the
agreement of two classifiers on a grid, ``metrics`` the metrics table of a run, ``collapse``
the neural-collapse metrics (NC1–NC4) of a run, and ``validity`` the rule that says which rows
are measurements.
"""
