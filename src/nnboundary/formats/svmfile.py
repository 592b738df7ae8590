"""The SVM fits of one run (``svm.json``), written by the ``svm`` stage and read by ``metrics``
and the ``run`` figure.

A JSON object: ``keys`` (the run keys, from its feature files) and ``fits``, one entry per
checkpoint epoch × target × scheme: ``epoch`` and the fit
(:meth:`nnboundary.svm.SVMFit.to_json`: ``target``, ``scheme``, ``W`` (K × d, empty for a fit
made without weights), ``b``, ``separable``, ``hard_margin``, ``C``, ``min_margin``,
``support``, ``seconds``, ``status``, ``solver``). :func:`write_svm` writes it, :func:`read_svm`
reads and checks it; :func:`fit_layer` turns one fit into the (U, c) of a last layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..settings.keys import RUN_KEYS
from .tables import read_json, write_json


def write_svm(path: str | Path, keys: dict[str, Any], fits: list[dict[str, Any]]) -> None:
    """``{"keys": keys, "fits": fits}``, atomically; each fit holds its ``epoch``."""
    write_json(path, {"keys": keys, "fits": fits})


def svm_error(path: str | Path, what: str) -> InputFileError:
    """An error about the svm.json at ``path``: ``what`` is wrong, and the fix."""
    return InputFileError(f"SVM file {path}: {what}; rerun the svm step for this run "
                          f"(snakemake --forcerun {path})")


@dataclass
class SVMFile:
    """The content of one svm.json."""

    path: Path
    keys: dict[str, Any]
    fits: list[dict[str, Any]]

    @property
    def epochs(self) -> list[int]:
        return sorted({int(fit.get("epoch", -1)) for fit in self.fits})

    def at(self, epoch: int, what: str = "") -> list[dict[str, Any]]:
        """The fits of checkpoint ``epoch`` (``what``: the feature file it is for, in the
        message when there is none)."""
        fits = [fit for fit in self.fits if int(fit.get("epoch", -1)) == int(epoch)]
        if not fits:
            raise svm_error(self.path, f"no fit for epoch {epoch}{what} (fitted epochs: "
                                       f"{self.epochs})")
        return fits

    def check_keys(self, keys: dict[str, Any], what: str) -> None:
        """Raise when a run key of the file differs from ``keys`` (those of ``what``, e.g. a
        feature file): the SVMs were fitted on another run."""
        for name in RUN_KEYS:
            if name in self.keys and name in keys and str(self.keys[name]) != str(keys[name]):
                raise svm_error(
                    self.path, f"key {name}={self.keys[name]!r} differs from {what} "
                               f"({name}={keys[name]!r}); the SVM was fitted on another run")


def read_svm(path: str | Path) -> SVMFile:
    """The svm.json at ``path``; :class:`nnboundary.errors.InputFileError` when it is missing,
    damaged or not an svm.json."""
    content = read_json(path)
    if not isinstance(content, dict) or not isinstance(content.get("fits"), list):
        raise svm_error(path, "no 'fits' list: not an svm.json")
    return SVMFile(Path(path), dict(content.get("keys") or {}), list(content["fits"]))


def fit_layer(fit: dict[str, Any] | None, K: int, d: int,
              path: str | Path = "svm.json") -> tuple[np.ndarray, np.ndarray] | None:
    """(U, c) of a fit for a K × d last layer; None when there is no fit or it has no weights
    (a fit of features that are not separable made without its soft-margin solve)."""
    if fit is None or fit.get("W") is None or len(fit["W"]) == 0:
        return None
    U = np.asarray(fit["W"], dtype=np.float64)
    c = np.zeros(K) if fit.get("b") is None else np.asarray(fit["b"], dtype=np.float64).ravel()
    if U.shape != (K, d) or c.shape != (K,):
        raise svm_error(path, f"fit (epoch {fit.get('epoch')}, target {fit.get('target')}, "
                              f"scheme {fit.get('scheme')}) has W of shape {U.shape} and b of "
                              f"shape {c.shape}, but the network's last layer is {K}×{d}")
    return U, c
