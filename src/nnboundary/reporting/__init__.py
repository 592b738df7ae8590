"""Reporting: the grid's tables and documents, built by the aggregate stage from every run's
metrics and neural-collapse tables.

``tables`` reads metrics tables (run keys, the row that summarises a fit, the final
checkpoint); ``summary``, ``findings`` (per cell and the paper's claims), ``depth`` (every run
at the same train losses), ``convergence`` (the 1/log t fits) and ``collapse`` (neural
collapse) build the tables; ``stats`` holds the sign test behind every verdict, ``text`` how
numbers are printed, ``document`` the blocks rendered as Markdown and HTML, and ``job_times``
where a workflow run's time went.
"""
