"""The training loop shared by the ``train`` and ``retrain`` stages.

One readable loop (:func:`run_loop`, given a :class:`LoopSpec`): batches are slices of a seeded permutation of the device-resident (X, y),
the step size follows a schedule (:mod:`nnboundary.training.schedule`), the run stops at a train loss or at its epoch cap, the chosen
epochs are kept as checkpoints, and a resumable checkpoint lets a killed job continue.

**Stopping** (``until_loss``): the run stops after the first epoch whose train loss is below
``until_loss`` (the measured end-of-epoch loss for ``loss_scaled``, else the epoch's mean batch
loss) and that is at least ``min_epochs`` (so that its checkpoints span as many decades of
steps as asked; the loss keeps falling meanwhile); ``epochs`` stays the cap. It also stops
when the loss is not finite (``diverged``: the last checkpoint saved before is the run's final
one), and, with ``until_loss``, when the loss stopped falling (``stalled``: backtracking found no step that lowers it, g < 1e-12, or it fell by
less than 1e-4 over 100 epochs, e.g. a dead bottleneck), instead of spending the whole cap there.
With ``stop_unreachable`` = f > 0 it also stops a run that cannot reach its next depth by the
cap (``unreachable``): in the terminal phase (every train point classified, the loss below
log(2)/n over the whole window), with r the mean fall of log L per epoch over the last
w = max(200, ⌈epoch/5⌉) epochs and T the next depth below the current loss L (the largest
``loss_milestones`` value below it, else ``until_loss``), it stops once
(log L − log T) / r > f × (epochs − epoch): even at f times its recent rate the run would reach
neither T nor ``until_loss`` before the cap, so it would end ``epochs`` anyway, with no
checkpoint deeper than it has now. Such a run is judged like one that hit the cap
(:mod:`nnboundary.measures.validity`: ``not_terminal``). Measured on the default grid's 36 whole-network
runs (f = 2): the three that hit the 20,000 cap would stop at 7,131, 9,440 and 10,267 epochs,
right after their last milestone, and none of the 33 that reach 1e-100 would stop.
The reason is the ``stop`` column of the history's last row and the last line of the log.

**How deep float64 goes.** The loss is taken in its exact-tail form (:mod:`nnboundary.training.losses`),
so a per-sample loss is exact down to float64's smallest normal number, about 2.2e-308 (a margin of
about 708); a sample past a margin of about 745 has loss exactly 0 and no gradient. The
loss-scaled step is lr · L₀/L and must stay below float64's largest number, 1.8e308. So a
float64 run can go to a mean loss of about 1e-300; the default grid stops at 1e-100 (a margin
log(1/L) of 230, against 18 at 1e-8), far inside both limits.

"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import TrainingDiverged
from ..formats.history import Epoch
from .resume import Resume
from .schedule import Plan, Schedule
from .step import Step

#: With ``until_loss``: the run stops as ``stalled`` when its train loss fell by less than
#: PLATEAU_DROP (relative) over the last PLATEAU_EPOCHS epochs (a dead bottleneck, a plateau
#: it does not leave), instead of spending the whole epoch cap there.
PLATEAU_EPOCHS = 100
PLATEAU_DROP = 1e-4
#: Why a loop stopped: the loss fell below ``until_loss``, the ``epochs`` cap, a non-finite loss,
#: or no step that lowers the loss.
STOP_REASONS = ("until_loss", "epochs", "diverged", "stalled", "unreachable")
STOP_TEXT = {
    "until_loss": "the train loss fell below until_loss",
    "epochs": "it reached the epochs cap",
    "diverged": "the loss was not finite (diverged)",
    "stalled": "the loss stopped falling: no step lowers it, or it fell by less than "
               f"{PLATEAU_DROP:g} over {PLATEAU_EPOCHS} epochs (stalled)",
    "unreachable": "at stop_unreachable times its recent rate the loss would reach neither its "
                   "next milestone nor until_loss by the epochs cap (unreachable)",
}


@dataclass
class LoopSpec:
    """Everything one training loop needs; :func:`nnboundary.training.train.train_run` and
    :func:`nnboundary.training.retrain.retrain_run` build one.

    ``evaluate()`` returns the train loss on the whole set at the current weights (used by the
    ``loss_scaled`` schedule); ``snapshot(epoch)`` returns the state kept as a checkpoint;
    ``before_epoch(epoch)`` runs after ``model.train()`` at the start of every epoch; ``lr`` is
    the base step (default ``settings["lr"]``); ``extra`` is a dict of per-checkpoint
    measurements the snapshot fills, saved with a resumable checkpoint. ``run`` and ``block``
    name the run and its settings block in messages.

    ``fused`` (full batch and ``loss_scaled`` only, for models whose modes do not change between
    epochs, i.e. without BatchNorm or dropout): the loss after an epoch's step is the loss
    before the next one, so one forward and backward pass serves both, ``step.probe`` taking
    the forward pass and, once the loss has accepted the epoch, its ``finish()`` the gradient
    for the next step. A rejected epoch costs a forward pass: it restores the weights, and
    ``.grad`` still holds the gradient at them. The same steps as the other path, in about two
    thirds of the time."""

    model: nn.Module
    optimizer: Any
    step: Step
    evaluate: Callable[[], float]
    X: torch.Tensor
    y: torch.Tensor
    settings: dict[str, Any]
    plan: Plan
    snapshot: Callable[[int], dict]
    shuffle: torch.Generator
    run: str
    block: str
    fmt: torch.memory_format = torch.contiguous_format
    resume: Resume | None = None
    before_epoch: Callable[[int], None] | None = None
    lr: float | None = None
    extra: dict = field(default_factory=dict)
    fused: bool = False

    def begin(self, epoch: int) -> None:
        """The model in training mode, and the start-of-epoch hook."""
        self.model.train()
        if self.before_epoch is not None:
            self.before_epoch(epoch)


@dataclass
class LoopResult:
    states: dict[int, dict[str, torch.Tensor]]  # the kept checkpoints, by epoch
    history: list[Epoch]
    stop: str  # one of STOP_REASONS
    stop_epoch: int  # the epoch of the final checkpoint


def _copy_tensors(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """A copy of a model's parameters and buffers (BatchNorm's statistics), listed once per
    loop, to undo an epoch with :func:`_restore_tensors`: the state_dict's tensors without its
    module walk and deepcopy (those took a tenth of a full-batch step of the default MLP)."""
    return [t.detach().clone() for t in tensors]


@torch.no_grad()
def _restore_tensors(tensors: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    for tensor, value in zip(tensors, saved):
        tensor.copy_(value)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class _FullBatch:
    """The epochs of a ``fused`` loop (:class:`LoopSpec`): one step on the whole set, the loss
    after it from the step's forward pass, whose gradient serves the next epoch."""

    def __init__(self, spec: LoopSpec, epoch: int):
        self.spec = spec
        spec.begin(epoch)
        self.now = spec.step.gradient(spec.X, spec.y)  # the loss and gradient at the weights
        self.after = None

    def begin(self, epoch: int) -> None:
        """Nothing: the model's modes do not change between epochs."""

    def run(self, epoch: int, measured: bool) -> tuple[float, int, float]:
        """(the loss before the step, correct count before it, the loss after it)."""
        self.spec.optimizer.step()
        self.after = self.spec.step.probe(self.spec.X, self.spec.y)  # no gradient yet
        return float(self.now[0]), int(self.now[1]), float(self.after.loss)

    def accept(self) -> None:
        """The gradient at the accepted weights, for the next epoch's step (an undone epoch
        keeps the gradient at the restored weights in .grad)."""
        self.after.finish()
        self.now = (self.after.loss, self.after.correct)


class _Batches:
    """The epochs of any other loop: every batch of a seeded permutation (one batch: the whole
    set), each a step; the loss after the epoch measured by ``evaluate`` when the schedule
    needs it."""

    def __init__(self, spec: LoopSpec):
        self.spec = spec

    def begin(self, epoch: int) -> None:
        self.spec.begin(epoch)

    def run(self, epoch: int, measured: bool) -> tuple[float, int, float]:
        """(the mean loss of the epoch's batches before each step, the correct count, the loss
        after the epoch: measured, inf when the epoch's loss is not finite, else NaN)."""
        spec, n = self.spec, self.spec.X.shape[0]
        batch = spec.plan.batch
        order = (torch.randperm(n, generator=spec.shuffle, device=spec.X.device)
                 if batch < n else None)
        loss_sum = torch.zeros((), device=spec.X.device, dtype=torch.float64)
        correct = torch.zeros((), device=spec.X.device, dtype=torch.int64)
        for lo in range(0, n, batch):
            if order is None:
                xb, yb = spec.X, spec.y
            else:
                idx = order[lo:lo + batch]
                xb, yb = spec.X[idx].contiguous(memory_format=spec.fmt), spec.y[idx]
            loss, n_correct = spec.step(xb, yb)
            loss_sum += loss.double() * len(yb)
            correct += n_correct
        # one batch: its mean loss as it is (not times n over n, one rounding off)
        epoch_loss = float(loss_sum) / n if order is not None else float(loss)
        end_loss = float("nan")
        if measured:
            end_loss = spec.evaluate() if np.isfinite(epoch_loss) else float("inf")
        return epoch_loss, int(correct), end_loss

    def accept(self) -> None:
        """Nothing to carry to the next epoch."""


class _Record:
    """The accepted epochs of a loop: the history, the kept checkpoints and the stopping
    rules, and the resumable checkpoint."""

    def __init__(self, spec: LoopSpec, schedule: Schedule, states: dict, history: list):
        self.spec, self.schedule = spec, schedule
        self.states, self.history = states, history
        self.start = time.perf_counter() - (history[-1].seconds if history else 0.0)
        self.losses = [self.loss_of(row) for row in history]
        self.lowest = min(self.losses, default=float("inf"))  # the lowest loss so far

    def loss_of(self, row: Epoch) -> float:
        """The train loss the stop and the milestones go by (module docstring)."""
        return row.end_loss if self.schedule.measured else row.loss

    def add(self, epoch: int, epoch_loss: float, end_loss: float, train_acc: float,
            rate: float, backtracks: int) -> Epoch:
        row = Epoch(epoch, epoch_loss, train_acc, time.perf_counter() - self.start,
                    epoch * self.spec.plan.steps_per_epoch, end_loss, rate, backtracks)
        self.history.append(row)
        return row

    def accept(self, row: Epoch, log) -> str | None:
        """Keep an accepted epoch (checkpoint, log, resume); the stop reason if the loop
        should stop after it."""
        spec, plan, epoch = self.spec, self.spec.plan, row.epoch
        current = self.loss_of(row)
        if epoch in plan.candidates or plan.crossed(current, self.lowest):
            self.states[epoch] = spec.snapshot(epoch)
        self.lowest = min(self.lowest, current)
        reached = (plan.until_loss is not None and current < plan.until_loss
                   and epoch >= plan.min_epochs)
        self.losses.append(current)
        plateau = (plan.until_loss is not None and not reached
                   and current >= plan.until_loss and len(self.losses) > PLATEAU_EPOCHS
                   and current > self.losses[-1 - PLATEAU_EPOCHS] * (1.0 - PLATEAU_DROP))
        if epoch % int(spec.settings["log_every"]) == 0 or epoch == plan.epochs or reached:
            print(f"epoch {epoch:6d}  step {row.step:8d}  loss {row.loss:.3e}  "
                  f"end loss {row.end_loss:.3e}  train_acc {row.train_acc:.4f}  lr {row.lr:.3g}  "
                  f"{row.seconds:.1f}s", file=log)
        if reached:
            return "until_loss"
        if plateau:
            return "stalled"
        if plan.unreachable(self.losses, epoch, self.schedule.terminal):
            return "unreachable"
        if spec.resume is not None and spec.resume.due(epoch, plan.epochs):
            spec.resume.save(epoch, self.states, self.history, self.schedule, spec.extra)
        return None


def _start(spec: LoopSpec, log) -> tuple[Schedule, int, dict, list]:
    """The schedule, the first epoch to run, the kept states and the history: from the
    resumable checkpoint where there is one, and the loss before the first step."""
    schedule = Schedule.from_settings(spec.settings, spec.lr)
    schedule.terminal = math.log(2.0) / max(spec.X.shape[0], 1)
    first, states, history = 1, {}, []
    if spec.resume is not None:
        first, states, history = spec.resume.restore(log, schedule, spec.extra)
    if schedule.measured and schedule.reference is None:
        spec.begin(1)
        schedule.start(spec.evaluate())
    return schedule, first, states, history


def run_loop(spec: LoopSpec, log) -> LoopResult:
    """Train ``spec.model`` with ``spec.step`` (module docstring; :class:`LoopSpec`)."""
    schedule, epoch, states, history = _start(spec, log)
    record = _Record(spec, schedule, states, history)
    n, plan, optimizer = spec.X.shape[0], spec.plan, spec.optimizer
    # The model's tensors, listed once (the loop never adds or replaces one).
    tensors = [*spec.model.parameters(), *spec.model.buffers()]
    fused = spec.fused and schedule.measured and plan.batch >= n
    epochs = _FullBatch(spec, epoch) if fused else _Batches(spec)
    stop, stop_epoch, backtracks = "epochs", plan.epochs, 0
    while epoch <= plan.epochs:
        epochs.begin(epoch)
        rate = schedule.rate()
        _set_lr(optimizer, rate)
        saved = _copy_tensors(tensors) if schedule.measured else None  # to undo the epoch
        epoch_loss, correct, end_loss = epochs.run(epoch, schedule.measured)
        if schedule.measured and not schedule.judge(end_loss, rate):
            # Undo the epoch and redo it with a smaller step. The optimizer's state (momentum,
            # Adam's moments) is cleared, not restored: a stale momentum need not point
            # downhill at any step size, a fresh first step (the gradient, or Adam's sign-like
            # step) does.
            _restore_tensors(tensors, saved)
            optimizer.state.clear()
            backtracks += 1
            if schedule.stalled:
                stop, stop_epoch = "stalled", epoch - 1
                break
            continue
        if not schedule.measured and not np.isfinite(epoch_loss):
            stop, stop_epoch = "diverged", max(states, default=0)
            record.add(epoch, epoch_loss, end_loss, correct / n, rate, backtracks)
            break
        epochs.accept()
        reason = record.accept(record.add(epoch, epoch_loss, end_loss, correct / n, rate,
                                          backtracks), log)
        backtracks = 0
        if reason is not None:
            stop, stop_epoch = reason, epoch
            break
        epoch += 1
    return _finish(spec, record, stop, stop_epoch, log)


def _finish(spec: LoopSpec, record: _Record, stop: str, stop_epoch: int, log) -> LoopResult:
    """The loop's result: the checkpoints kept at its stop, the history with the stop reason
    on its last row; a run that diverged or stalled before any checkpoint raises."""
    states, history, settings, block = record.states, record.history, spec.settings, spec.block
    if stop == "diverged" and not states:
        raise TrainingDiverged(
            f"training diverged before its first checkpoint: loss is {history[-1].loss} at "
            f"epoch {history[-1].epoch} ({spec.run}); lower {block}.lr (now {settings['lr']}), "
            f"use {block}.schedule: loss_scaled, or change {block}.optimizer (now "
            f"{settings['optimizer']})")
    if stop == "stalled" and stop_epoch < 1:
        raise TrainingDiverged(f"training stalled before its first epoch ({spec.run}): no step "
                               f"lowers the loss; lower {block}.lr (now {settings['lr']})")
    if stop != "diverged" and stop_epoch not in states:
        states[stop_epoch] = spec.snapshot(stop_epoch)
    depth = spec.plan.milestone_epochs([(row.epoch, record.loss_of(row)) for row in history])
    kept = spec.plan.choose(stop_epoch, set(states), depth)
    states = {e: states[e] for e in kept}
    if history:
        history[-1] = history[-1]._replace(stop=stop)
    print(f"stopped after epoch {stop_epoch} (step {stop_epoch * spec.plan.steps_per_epoch}): "
          f"{STOP_TEXT[stop]}; checkpoints {kept}", file=log)
    return LoopResult(states, history, stop, stop_epoch)
