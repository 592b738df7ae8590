"""Does the last layer of a network trained with cross-entropy converge to a linear SVM?

A Snakemake pipeline and its Python package: prepare → train → features → svm → metrics →
aggregate → figures. Each stage is a module of this package with a command-line entry
(``nnboundary <stage> --help``), so every stage also runs without Snakemake.
"""

__version__ = "0.1.0"
