"""The stages: one module per Snakemake rule file of ``workflow/rules/``, in the order of the
data flow: ``prepare`` → ``train`` (and ``retrain``) → ``features`` → ``svm`` → ``metrics`` and
``collapse`` → ``aggregate`` → ``figures``, with ``config`` (the config record) and
``benchmark`` (the job times). Each parses its command line, reads its inputs, calls the
library and writes its outputs; ``nnboundary <stage>`` (:mod:`nnboundary.cli`) runs its
``main``. The library never imports a stage.
"""
