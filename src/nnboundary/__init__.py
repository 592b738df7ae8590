"""Does the last layer of a network trained with cross-entropy converge to a linear SVM?

A Snakemake pipeline and its Python package: prepare → train → features → svm → metrics →
aggregate → figures. Each stage is a module of :mod:`nnboundary.stages` with a command-line
entry (``nnboundary <stage> --help``), so every stage also runs without Snakemake; the library
it calls sits in packages that follow the data flow: ``settings``, ``data``, ``models``,
``training``, ``formats``, ``svm``, ``measure``, ``reporting``, ``figures`` (ARCHITECTURE.md
has the map).
"""

__version__ = "0.1.0"
