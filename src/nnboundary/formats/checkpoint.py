"""The checkpoint file of a run (``checkpoints.pt``), written by the ``train`` and ``retrain``
stages with ``torch.save`` and read by every stage that needs the network.

A dict: ``keys`` (the run keys: dataset, arch, variant, regime, seed), ``arch_settings``,
``train_settings``, ``training`` (the training record,
:func:`nnboundary.training.train.training_record`), ``input_shape``, ``n_classes``,
``device``, ``epochs`` (the checkpoint epochs) and ``states`` (epoch → the model's
``state_dict``), ``feature_shifts`` (epoch → BatchNorm or bf16 feature shifts) and ``history``
(plain tuples, :class:`nnboundary.formats.history.Epoch`). A ``retrain_last`` run adds
``retrain_settings``, ``from_epoch`` and ``initial_last``.

:func:`load_checkpoints` reads it with torch, or with ``numpy=True`` without importing torch
(:mod:`nnboundary.formats.ptfile`: tensors as numpy arrays).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ptfile
from .atomic import write_bytes_with


def save_checkpoints(path: str | Path, result: dict[str, Any]) -> None:
    """Write ``result`` with ``torch.save``, atomically (through a file object, so that a full
    disk is reported as one)."""
    import torch

    write_bytes_with(path, lambda handle: torch.save(result, handle))


def load_checkpoints(path: str | Path, numpy: bool = False) -> dict[str, Any]:
    """The checkpoint file at ``path``: with torch (tensors), or with ``numpy`` without it
    (arrays; :class:`nnboundary.formats.ptfile.Unsupported` for content only torch reads). A
    missing, truncated or foreign file raises :class:`nnboundary.errors.InputFileError`."""
    if numpy:
        return ptfile.load(path)
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        raise ptfile.corrupt_checkpoint(path, err) from err
