"""Does the last layer of a network trained with cross-entropy converge to a linear SVM?

A Snakemake pipeline and its Python package: prepare → train → features → svm → metrics →
aggregate → figures. Each stage is a module of :mod:`nnboundary.stages` with a command-line
entry (``nnboundary <stage> --help``), so every stage also runs without Snakemake; the library
it calls sits in packages that follow the data flow: ``settings``, ``data``, ``models``,
``training``, ``formats``, ``svm``, ``measures``, ``reporting``, ``figures`` (ARCHITECTURE.md
has the map).

From Python, any network (docs/api.md)::

    import nnboundary
    H = nnboundary.features(model, X)        # the input of its last nn.Linear, (n, d)
    W, b = nnboundary.last_layer(model)      # that layer, (K, d) and (K,)
    rows = nnboundary.measure(W, b, H, y)    # against the SVM targets: the metrics rows

The names below are imported on first use, so ``import nnboundary`` (and every stage) stays
as fast as the module it needs.
"""

__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "measure": "nnboundary.measures.measure",
    "features": "nnboundary.models.probe",
    "last_layer": "nnboundary.models.probe",
    "fit_svm": "nnboundary.svm",
    "SVMFit": "nnboundary.svm",
    "TARGETS": "nnboundary.svm",
    "SCHEMES": "nnboundary.svm",
    "NNBoundaryError": "nnboundary.errors",
    "InputError": "nnboundary.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nnboundary' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
