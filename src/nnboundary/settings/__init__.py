"""Settings: the config schema and what is derived from it, the first step of the data flow.

``catalog`` declares each built-in dataset and architecture once; ``schema`` reads the config
schema and its defaults; ``config`` reads and validates a config (``checks`` holds what the
schema cannot express); ``entries`` knows the datasets and archs a config can name; ``layers``
resolves each stage's settings for one run; ``grid`` expands the grid of runs and seed blocks;
``keys`` names runs, cells, regimes and variants and where their files live; ``commandline``
reads a stage's per-run arguments and ``--settings``; ``space`` estimates what a grid writes.
None of them imports torch or Snakemake.
"""
