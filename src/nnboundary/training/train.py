"""The ``full`` regime: train a bottleneck network with the configured loss and keep its
checkpoints (:func:`train_run`).

The whole prepared train set is held on the device as tensors; a batch is a slice of a seeded
permutation (no DataLoader, no per-sample Python). Nothing regularises the network unless the
config asks for it: weight decay, label smoothing, dropout or an EMA of the weights change the
limit that the theory predicts (Soudry et al., JMLR 2018), so all are off by default. The loss
(``loss``) is one of :mod:`nnboundary.training.losses`, taken in float64 from the logits; the
optimizer (``optimizer``) is ``sgd``, ``momentum``, ``adam`` or ``rmsprop``
(:mod:`nnboundary.training.optim`); the step size, the stopping rule and the checkpoints are
:mod:`nnboundary.training.loop`'s.

The result is the checkpoint file's content (:mod:`nnboundary.formats.checkpoint`), its
history the per-epoch table (:mod:`nnboundary.formats.history`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..formats.dataset import Dataset
from ..models.networks import build_model, resolve_device
from ..settings.commandline import to_json
from ..settings.keys import BASE_VARIANT
from .batchnorm import batch_norms, dropouts, recalibrate_bn, relative_shift, train_features
from .loop import LoopSpec, run_loop
from .optim import make_optimizer
from .precision import autocast_dtype, memory_format, set_determinism, torch_dtype
from .resume import Resume
from .schedule import plan_loop
from .step import make_evaluate, make_step


def training_record(settings: dict[str, Any], n: int, batch: int, lr: float | None = None,
                    **extra: Any) -> dict[str, Any]:
    """What a training loop actually ran with, after every layer of the config was applied: the
    optimizer, the learning rate used (``lr``: for ``retrain_last`` with ``lr_relative`` the
    absolute step, not the configured multiple of 1/L; with ``schedule: loss_scaled`` the base
    step that the schedule scales), the loss, the step-size schedule and its cap, the stopping
    loss, the float dtype, the epoch cap, the batch size (the full set for full-batch
    training), the optimizer steps per epoch (⌈n / batch⌉: the last batch may be smaller), the
    number of train samples, and the momentum and weight decay. After training, :func:`finish`
    adds why and when the loop stopped. It is stored in the checkpoint file, every feature file
    and every row of the metrics table, so anyone can check which settings produced a number."""
    record = {
        "optimizer": str(settings["optimizer"]),
        "lr": float(settings["lr"] if lr is None else lr),
        "loss": str(settings.get("loss", "cross_entropy")),
        "schedule": str(settings.get("schedule", "constant")),
        "schedule_cap": float(settings.get("schedule_cap", 0.0)),
        "until_loss": settings.get("until_loss"),
        "min_epochs": int(settings.get("min_epochs") or 0),
        "loss_milestones": [float(m) for m in settings.get("loss_milestones") or []],
        "dtype": str(settings.get("dtype", "float32")),
        "epochs": int(settings["epochs"]),
        "batch_size": int(batch),
        "steps_per_epoch": -(-int(n) // max(int(batch), 1)),
        "n_train": int(n),
        "momentum": float(settings["momentum"]) if settings["optimizer"] == "momentum" else 0.0,
        "weight_decay": float(settings.get("weight_decay", 0.0)),
    }
    record.update(extra)
    return record


def finish(record: dict[str, Any], result) -> dict[str, Any]:
    """The training record with how the loop ended: ``stop`` (a reason of
    :data:`nnboundary.training.loop.STOP_REASONS`), ``stop_epoch``, ``stop_step`` and the final
    train loss of the history (``final_loss``: the measured end-of-epoch loss when there is
    one)."""
    last = result.history[-1] if result.history else None
    final = float("nan")
    if last is not None:
        final = last.end_loss if np.isfinite(last.end_loss) else last.loss
    return {**record, "stop": result.stop, "stop_epoch": int(result.stop_epoch),
            "stop_step": int(result.stop_epoch) * int(record["steps_per_epoch"]),
            "final_loss": float(final)}


class _Checkpoints:
    """What a checkpoint keeps of the whole network, and BatchNorm's statistics around it.

    BatchNorm networks: while they train with batch statistics, their running statistics are
    recomputed on the whole train set before every checkpoint (:func:`recalibrate_bn`), so the
    saved network's eval-mode features, which the SVM is fitted on, use the train set's
    statistics for those weights. With ``bn_eval_after: N`` the statistics are recomputed once
    more after epoch N and then frozen (:meth:`before_epoch`): the later epochs train with
    BatchNorm in eval mode, so the last layer is trained on exactly the features the SVM sees.
    Each checkpoint records in :attr:`shifts` ``bn_feature_shift`` = ‖H_seen − H_eval‖_F /
    ‖H_eval‖_F over the train set, H_seen the features in the mode the network was trained in
    at that epoch and H_eval the saved network's eval-mode features (about 0 for full-batch
    training, 0 once the statistics are frozen); with ``amp: bf16`` also ``amp_feature_shift``,
    the same between its bf16-autocast and float32 eval-mode features."""

    def __init__(self, model: nn.Module, X: torch.Tensor, batch: int, fmt, settings: dict):
        self.model, self.X, self.batch, self.fmt = model, X, batch, fmt
        self.has_bn = bool(batch_norms(model))
        self.eval_after = settings.get("bn_eval_after")
        self.amp = autocast_dtype(settings)
        self.shifts: dict[int, dict[str, float]] = {}

    def frozen(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` trains with BatchNorm frozen on the train set's statistics."""
        return self.has_bn and self.eval_after is not None and epoch > int(self.eval_after)

    def before_epoch(self, epoch: int) -> None:
        if self.frozen(epoch):
            if epoch == int(self.eval_after) + 1:  # (a resumed job restored the frozen ones)
                recalibrate_bn(self.model, self.X, self.batch, self.fmt)
            for module in batch_norms(self.model):
                module.eval()

    def snapshot(self, epoch: int) -> dict[str, torch.Tensor]:
        if self.has_bn or self.amp is not None:
            self.shifts[epoch] = self._measured_shifts(epoch)
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def _measured_shifts(self, epoch: int) -> dict[str, float]:
        model, X, batch, fmt = self.model, self.X, self.batch, self.fmt
        modes = [(m, m.training) for m in model.modules()]
        seen = train_features(model, X, batch, fmt) if self.has_bn else None
        if self.has_bn and not self.frozen(epoch):  # frozen statistics stay as trained
            recalibrate_bn(model, X, batch, fmt)
        model.eval()
        evaluated = train_features(model, X, batch, fmt)  # what the SVM is fitted on
        measured = {}
        if self.has_bn:
            measured["bn_feature_shift"] = relative_shift(seen, evaluated)
        if self.amp is not None:
            measured["amp_feature_shift"] = relative_shift(
                train_features(model, X, batch, fmt, self.amp), evaluated)
        for m, mode in modes:
            m.train(mode)
        return measured


def _on_device(data: Dataset, arch: str, arch_settings: dict[str, Any],
               settings: dict[str, Any], device: torch.device):
    """(model, X, y, memory format): the model built and the whole train set, on ``device``."""
    fmt = memory_format(settings, data.X_train.ndim)
    dtype = torch_dtype(settings)
    model = build_model(arch, data.input_shape, data.n_classes, arch_settings)
    model = model.to(device=device, dtype=dtype, memory_format=fmt)
    # The whole train set lives on the device; a batch is an index into it.
    X = torch.from_numpy(data.X_train).to(device=device, dtype=dtype).contiguous(
        memory_format=fmt)
    return model, X, torch.from_numpy(data.y_train).to(device), fmt


def train_run(data: Dataset, arch: str, seed: int, arch_settings: dict[str, Any],
              settings: dict[str, Any], log=sys.stderr, variant: str = BASE_VARIANT,
              resume_path: str | Path | None = None, keep_finished: bool = False
              ) -> dict[str, Any]:
    """Train one run; return the checkpoint file's content (module docstring) with its history.

    With ``resume_path``, a resumable checkpoint is kept there every ``settings["resume_every"]``
    epochs (at least ``resume_min_seconds`` apart) and a job started again continues from it
    (:class:`nnboundary.training.resume.Resume`); with ``keep_finished`` the finished run's
    result is kept there too and a job started again takes it as it is (a job of several
    seeds: see :mod:`nnboundary.stages.train`). BatchNorm networks: :class:`_Checkpoints`."""
    device = resolve_device(settings["device"])
    set_determinism(seed, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed batch shape
    model, X, y, fmt = _on_device(data, arch, arch_settings, settings, device)
    plan = plan_loop(settings, X.shape[0])
    optimizer = make_optimizer(model.parameters(), settings)
    step = make_step(model, optimizer, settings)
    shuffle = torch.Generator(device=device).manual_seed(seed)
    checkpoints = _Checkpoints(model, X, plan.batch, fmt, settings)
    record = training_record(settings, X.shape[0], plan.batch, kernel=step.kernel)
    print(f"training {data.name}/{arch}/{variant} seed {seed} on {device}: {X.shape[0]} "
          f"samples, batch {plan.batch}, at most {plan.epochs} epochs, {settings['optimizer']} lr "
          f"{settings['lr']} ({record['schedule']}), loss {record['loss']}, {X.dtype}", file=log)
    print(f"ran with: {to_json(record)}", file=log)
    resume = None
    if resume_path is not None:
        fingerprint = to_json({"keys": [data.name, arch, variant, seed], "data": data.meta,
                               "arch": arch_settings, "train": settings})
        resume = Resume(resume_path, int(settings.get("resume_every", 0)), fingerprint, model,
                        optimizer, shuffle, float(settings.get("resume_min_seconds", 0.0)))
        done = resume.finished(log)
        if done is not None:
            return done
    result = run_loop(LoopSpec(
        model, optimizer, step, make_evaluate(model, X, y, plan.batch, settings, fmt, step), X,
        y, settings, plan, checkpoints.snapshot, shuffle,
        f"dataset {data.name}, arch {arch}, variant {variant}, seed {seed}", "train", fmt,
        resume, checkpoints.before_epoch, extra=checkpoints.shifts,
        fused=not checkpoints.has_bn and not dropouts(model)), log)
    output = {
        "keys": {"dataset": data.name, "arch": arch, "variant": variant, "regime": "full",
                 "seed": seed},
        "arch_settings": dict(arch_settings),
        "train_settings": dict(settings),
        "training": finish(record, result),
        "input_shape": list(data.input_shape),
        "n_classes": data.n_classes,
        "device": str(device),
        "epochs": sorted(result.states),
        "states": result.states,
        "feature_shifts": {e: checkpoints.shifts[e] for e in result.states
                           if e in checkpoints.shifts},
        "history": [tuple(row) for row in result.history],  # plain tuples: torch.load-safe
    }
    if resume is not None and keep_finished:
        resume.save_result(output)
    return output
