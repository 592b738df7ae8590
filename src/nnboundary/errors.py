"""The errors a person can act on, under one base class; no imports, so every stage has them.

Each message says what was wrong, the value, what is allowed and what to do. The command line
(:mod:`nnboundary.cli`) catches :class:`NNBoundaryError` and prints the message instead of a
traceback; anything else is a bug and keeps its traceback.
"""


class NNBoundaryError(Exception):
    """An expected error: bad input, config or run, explained in its message."""


class ConfigError(NNBoundaryError, ValueError):
    """The configuration, or a stage's ``--settings``, is invalid; the message lists every
    problem found."""


class SourceError(NNBoundaryError, ValueError):
    """A user's ``source`` cannot be imported, or what it returns is not what the pipeline
    needs; the message names the entry, what was expected and what came back."""


class InputFileError(NNBoundaryError, RuntimeError):
    """An input file is missing, truncated or not what the step expects."""


class DatasetNotAvailable(InputFileError):
    """The files of a torchvision dataset are not in ``data_root`` and could not be downloaded."""


class DiskFullError(NNBoundaryError, OSError):
    """A write failed because its file system has no room left; the message names the file,
    the free space and what to do."""


class TrainingDiverged(NNBoundaryError, RuntimeError):
    """The loss became NaN or infinite before any checkpoint could be kept, or no step lowered
    it before the first epoch."""


class SVMError(NNBoundaryError, RuntimeError):
    """A fit that cannot be trusted (a claimed hard margin that fails its check, a solver
    failure)."""


class SVMMemoryError(SVMError):
    """A fit that would need more memory than it may use; raised before the allocation."""


class InputError(NNBoundaryError, ValueError):
    """An argument of the Python API (:func:`nnboundary.measure`, :func:`nnboundary.features`,
    :func:`nnboundary.last_layer`) that cannot be used; the message names the argument."""
