"""The training loop shared by the ``train`` and ``retrain`` stages.

One readable loop: batches are slices of a seeded permutation of the device-resident (X, y),
the step size follows a schedule, the run stops at a train loss or at its epoch cap, the chosen
epochs are kept as checkpoints, and a resumable checkpoint lets a killed job continue.

**Schedules** (``schedule``; :class:`Schedule`):

- ``constant``: the step is ``lr`` at every epoch. With gradient descent on separable data the
  loss then falls like 1/(η t) (Soudry et al., JMLR 2018), so a loss of 1e-8 takes about 1e8
  steps.
- ``loss_scaled``: the step grows as the loss falls,
  η_e = min(lr · g · L₀ / L_{e−1}, lr · cap, 2 · η_{e−1}), with L₀ the train loss before the
  first step, L_{e−1} the train loss after the last accepted epoch, ``cap`` = ``schedule_cap``
  and g > 0 an adaptive factor (1 at the start); the step at most doubles from one epoch to the
  next. After every epoch the train loss L_e is measured on the whole train set; if it rose
  (L_e > L_{e−1}·(1 + 1e-3), or is not finite) the epoch is undone (the weights restored, the
  optimizer's momentum or moments cleared) and redone with g halved and at most half the
  step. After an accepted epoch whose step g set (neither the cap nor the doubling limit), g
  grows by 2^(1/5): up to 1 while the train loss is at least log(2)/n (a train point may still
  be misclassified),
  without upper limit below it, in the terminal phase, where the loss falls slowly when the
  normalised margin is small and a larger step is safe until the loss would rise. This is the
  loss-based step of Lyu & Li (ICLR 2020, "Gradient descent maximizes the margin of
  homogeneous neural networks", code ``vfleaking/max-margin``: η = α/L from the point where
  every sample is classified, α × 2^(1/5) after every successful epoch, cut and the epoch
  redone when the loss rises), close to normalised gradient descent (Nacson et al., AISTATS
  2019), which reaches small losses, and with them the max-margin direction, in thousands of
  steps instead of 1e8. Before the terminal phase a step larger than lr · L₀/L can silence a
  ReLU unit of a narrow bottleneck for good (measured: blobs3 seed 2 stalled at loss 0.46),
  hence the limit there. What it keeps: for a linear model on separable data (``retrain_last``)
  the limit direction is still the max-margin one, reached faster; for the whole network
  (``full``), gradient flow on a homogeneous network converges in direction to a KKT point of
  the margin problem, and a loss-scaled step keeps that (Lyu & Li). Our networks have biases in
  every layer, so they are not homogeneous: for ``full`` this is a hypothesis the figures test,
  not a guarantee. Only accepted epochs count as epochs and steps.

**Stopping** (``until_loss``): the run stops after the first epoch whose train loss is below
``until_loss`` (the measured end-of-epoch loss for ``loss_scaled``, else the epoch's mean batch
loss) and that is at least ``min_epochs`` (so that its checkpoints span as many decades of
steps as asked; the loss keeps falling meanwhile); ``epochs`` stays the cap. It also stops when the loss is not finite (``diverged``: the
last checkpoint saved before is the run's final one), and, with ``until_loss``, when the loss
stopped falling (``stalled``: backtracking found no step that lowers it, g < 1e-12, or it fell by
less than 1e-4 over 100 epochs, e.g. a dead bottleneck), instead of spending the whole cap there.
With ``stop_unreachable`` = f > 0 it also stops a run that cannot reach its next depth by the
cap (``unreachable``): in the terminal phase (every train point classified, the loss below
log(2)/n over the whole window), with r the mean fall of log L per epoch over the last
w = max(200, ⌈epoch/5⌉) epochs and T the next depth below the current loss L (the largest
``loss_milestones`` value below it, else ``until_loss``), it stops once
(log L − log T) / r > f × (epochs − epoch): even at f times its recent rate the run would reach
neither T nor ``until_loss`` before the cap, so it would end ``epochs`` anyway, with no
checkpoint deeper than it has now. Such a run is judged like one that hit the cap
(:mod:`nnboundary.validity`: ``not_terminal``). Measured on the default grid's 36 whole-network
runs (f = 2): the three that hit the 20,000 cap would stop at 7,131, 9,440 and 10,267 epochs,
right after their last milestone, and none of the 33 that reach 1e-100 would stop.
The reason is the ``stop`` column of the history's last row and the last line of the log.

**Checkpoints**: without ``until_loss`` exactly the configured epochs (``checkpoints``, resolved
by the config). With ``until_loss`` the stop is not known in advance, so a denser log-spaced set
of candidates is kept while training, and at the stop ``n_checkpoints`` log-spaced epochs up to
it are chosen among them (nearest in log t), plus every configured epoch that is not on the
default log grid (e.g. ``retrain.from_epoch``) up to the stop, plus the stop itself. Epochs are
log-spaced in optimizer steps as well: steps = epoch × steps per epoch.

**Checkpoints by depth** (``loss_milestones``, both cases): the first accepted epoch whose train
loss (as for the stop) is below each milestone is kept too, so that every seed is measured at
the same depths (loss 1e-8, 1e-16, ...), whatever step it gets there at. A milestone the run
never reaches has no checkpoint.

**How deep float64 goes.** The loss is taken in its exact-tail form (:mod:`nnboundary.train`), so
a per-sample loss is exact down to float64's smallest normal number, about 2.2e-308 (a margin of
about 708); a sample past a margin of about 745 has loss exactly 0 and no gradient. The
loss-scaled step is lr · L₀/L and must stay below float64's largest number, 1.8e308. So a
float64 run can go to a mean loss of about 1e-300; the default grid stops at 1e-100 (a margin
log(1/L) of 230, against 18 at 1e-8), far inside both limits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from . import io
from .config import checkpoint_epochs

SCHEDULES = ("constant", "loss_scaled")
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
#: ``stop_unreachable``: the recent rate is taken over the last max(UNREACHABLE_WINDOW,
#: epoch × UNREACHABLE_SHARE) epochs.
UNREACHABLE_WINDOW = 200
UNREACHABLE_SHARE = 0.2
#: The adaptive factor g of ``loss_scaled``: cut on a rejected epoch, grown after an accepted one
#: whose step it set (Lyu & Li's 2^(1/5); no upper limit).
FACTOR_CUT = 0.5
FACTOR_GROWTH = 2.0 ** 0.2
FACTOR_MIN = 1e-12
#: ``loss_scaled``: the step grows at most by this factor from one epoch to the next, so that a
#: loss that collapses in a few steps cannot take the step with it (the direction converges with
#: the number of steps taken at small loss, not with the loss alone).
RATE_GROWTH = 2.0
#: ``loss_scaled``: an epoch is rejected when its loss exceeds the last accepted one by more than
#: this relative amount (rounding and mini-batch noise near a plateau are not a rise).
RISE_TOLERANCE = 1e-3
#: With ``until_loss``, this many candidate epochs are kept per final checkpoint.
CANDIDATES_PER_CHECKPOINT = 4


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite before any checkpoint could be kept."""


class Epoch(NamedTuple):
    """One row of the history (``history.tsv``); the first four fields keep their old places."""

    epoch: int
    loss: float  # mean over the epoch's batches of the loss before each step
    train_acc: float  # share of train samples classified correctly during the epoch
    seconds: float  # since the start of training
    step: int = 0  # optimizer steps after this epoch
    end_loss: float = float("nan")  # the train loss after the epoch (loss_scaled: measured)
    lr: float = float("nan")  # the step size of the epoch
    backtracks: int = 0  # epochs undone and redone before this one was accepted
    stop: str = ""  # on the last row: why the loop stopped


HISTORY_COLUMNS = ("epoch", "step", "loss", "end_loss", "train_acc", "lr", "backtracks",
                   "seconds", "stop")


@dataclass
class Schedule:
    """The step size of each epoch (module docstring). ``measured``: the schedule needs the
    train loss after every epoch."""

    name: str
    lr: float
    cap: float = 1e6
    reference: float | None = None
    previous: float | None = None
    factor: float = 1.0
    last_rate: float | None = None
    ceiling: float | None = None  # after a rejected epoch: half its step, until one is accepted
    #: Below this train loss g may exceed 1 (:func:`run_loop` sets log(2)/n: every train point
    #: is then classified correctly, the terminal phase Lyu & Li's step is made for).
    terminal: float = float("inf")

    @classmethod
    def from_settings(cls, settings: dict[str, Any], lr: float | None = None) -> "Schedule":
        name = settings.get("schedule", "constant")
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
        return cls(name, float(settings["lr"] if lr is None else lr),
                   float(settings.get("schedule_cap", 1e6)))

    @property
    def measured(self) -> bool:
        return self.name == "loss_scaled"

    def start(self, loss: float) -> None:
        if self.reference is None:
            self.reference = self.previous = float(loss)

    def _adaptive(self) -> float:
        """lr · g · L₀ / L_{e−1}, the step g sets (inf once the loss is exactly 0)."""
        if self.previous <= 0:
            return float("inf")
        return self.lr * self.factor * max(self.reference / self.previous, 0.0)

    def rate(self) -> float:
        """η_e = min(lr · g · L₀ / L_{e−1}, lr · cap, RATE_GROWTH · η_{e−1}), and after a
        rejected epoch at most half its step (``constant``: lr)."""
        if not self.measured:
            return self.lr
        target = min(self._adaptive(), self.lr * self.cap)
        if self.last_rate is not None:
            target = min(target, RATE_GROWTH * self.last_rate)
        if self.ceiling is not None:
            target = min(target, self.ceiling)
        return target

    def judge(self, loss: float, rate: float) -> bool:
        """Accept the epoch run at step ``rate`` whose train loss after it is ``loss`` (and move
        the reference), or reject it (cut the factor): it is rejected when ``loss`` is not
        finite or exceeds the last accepted loss by more than :data:`RISE_TOLERANCE`. After an
        accepted epoch whose step g set (not the cap, not the doubling limit), g grows by
        :data:`FACTOR_GROWTH`."""
        if not self.measured:
            return bool(np.isfinite(loss))
        if np.isfinite(loss) and loss <= self.previous * (1.0 + RISE_TOLERANCE):
            if rate >= self._adaptive() * (1.0 - 1e-12):
                self.factor *= FACTOR_GROWTH
                if loss >= self.terminal:  # some point may still be misclassified
                    self.factor = min(self.factor, 1.0)
            self.previous = float(loss)
            self.last_rate = float(rate)
            self.ceiling = None
            return True
        self.factor *= FACTOR_CUT
        self.ceiling = float(rate) * FACTOR_CUT
        return False

    @property
    def stalled(self) -> bool:
        return self.factor < FACTOR_MIN

    def state(self) -> dict[str, Any]:
        return {"reference": self.reference, "previous": self.previous, "factor": self.factor,
                "last_rate": self.last_rate, "ceiling": self.ceiling}

    def load(self, state: dict[str, Any]) -> None:
        self.reference, self.previous = state["reference"], state["previous"]
        self.factor = float(state["factor"])
        self.last_rate = state.get("last_rate")
        self.ceiling = state.get("ceiling")


@dataclass
class Plan:
    """Epochs, batch size and checkpoints of one loop over ``n`` samples."""

    epochs: int
    batch: int
    n: int
    configured: list[int]  # the configured checkpoint epochs (as resolved by the config)
    n_checkpoints: int
    until_loss: float | None = None
    min_epochs: int = 0
    candidates: set[int] = field(default_factory=set)
    milestones: tuple[float, ...] = ()  # losses below which the first epoch is kept
    unreachable_factor: float = 0.0  # ``stop_unreachable``; 0: run to the cap

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n // max(self.batch, 1))

    def crossed(self, loss: float, lowest: float) -> bool:
        """Whether an epoch with train loss ``loss`` is the first below a milestone, the lowest
        loss before it being ``lowest``."""
        return any(loss < m <= lowest for m in self.milestones)

    def unreachable(self, losses: list[float], epoch: int, terminal: float) -> bool:
        """Whether a run whose accepted epochs' losses are ``losses`` (the last one at
        ``epoch``) cannot reach its next depth by the cap even at ``unreachable_factor`` times
        its recent rate (module docstring, ``stop_unreachable``); ``terminal``: the loss below
        which every train point is classified. False without ``until_loss`` or a factor."""
        factor = self.unreachable_factor
        if not factor or self.until_loss is None or epoch >= self.epochs:
            return False
        window = max(UNREACHABLE_WINDOW, math.ceil(epoch * UNREACHABLE_SHARE))
        if len(losses) <= window:
            return False
        now, before = losses[-1], losses[-1 - window]
        if not (0.0 < now <= before < terminal):
            return False
        deeper = [m for m in (*self.milestones, self.until_loss) if m < now]
        if not deeper:
            return False
        rate = (math.log(before) - math.log(now)) / window
        if rate <= 0.0:
            return False  # no progress at all: the plateau test's case
        return (math.log(now) - math.log(max(deeper))) / rate > factor * (self.epochs - epoch)

    def milestone_epochs(self, losses: list[tuple[int, float]]) -> set[int]:
        """The first epoch below each milestone, from (epoch, loss) of every accepted epoch."""
        chosen = set()
        for milestone in self.milestones:
            first = next((e for e, loss in losses if loss < milestone), None)
            if first is not None:
                chosen.add(first)
        return chosen

    def choose(self, stop: int, saved: set[int], depth: set[int] = frozenset()) -> list[int]:
        """The checkpoints kept when the loop stops after epoch ``stop`` (module docstring);
        ``depth``: the milestone epochs (:meth:`milestone_epochs`), always kept."""
        depth = {e for e in depth if e in saved and e <= stop}
        if self.until_loss is None or stop == self.epochs and set(self.configured) <= saved:
            return sorted(e for e in set(self.configured) | {stop} | depth
                          if e in saved and e <= stop)
        available = sorted(e for e in saved if e <= stop)
        chosen = {stop} | depth
        for target in checkpoint_epochs(stop, [], self.n_checkpoints):
            chosen.add(min(available, key=lambda e: (abs(math.log(e) - math.log(target)), e)))
        off_grid = set(self.configured) - set(checkpoint_epochs(self.epochs, [],
                                                                self.n_checkpoints))
        chosen |= {e for e in off_grid if e <= stop}
        return sorted(e for e in chosen if e in saved)


def plan_loop(settings: dict[str, Any], n: int) -> Plan:
    """The :class:`Plan` of a loop over ``n`` samples; ``batch_size`` 0 means the full set."""
    epochs = int(settings["epochs"])
    batch = n if settings["batch_size"] in (0, None) else min(int(settings["batch_size"]), n)
    configured = checkpoint_epochs(epochs, settings["checkpoints"], settings["n_checkpoints"])
    until = settings.get("until_loss")
    plan = Plan(epochs, batch, n, configured, int(settings["n_checkpoints"]),
                None if until is None else float(until),
                min(int(settings.get("min_epochs") or 0), epochs),
                milestones=tuple(sorted(float(m) for m in settings.get("loss_milestones") or ())),
                unreachable_factor=float(settings.get("stop_unreachable") or 0.0))
    plan.candidates = set(configured)
    if plan.until_loss is not None:
        dense = CANDIDATES_PER_CHECKPOINT * plan.n_checkpoints
        plan.candidates |= set(checkpoint_epochs(epochs, [], dense))
    return plan


@dataclass
class LoopResult:
    states: dict[int, dict[str, torch.Tensor]]  # the kept checkpoints, by epoch
    history: list[Epoch]
    stop: str  # one of STOP_REASONS
    stop_epoch: int  # the epoch of the final checkpoint


class Resume:
    """A resumable checkpoint of one training job, written atomically (temporary file, then
    rename) every ``every`` epochs, at least ``min_seconds`` apart, to ``path``: the epoch, the
    model's and the optimizer's state, every random generator the loop draws from (torch's
    global CPU and CUDA generators and the batch-order generator), the schedule's state, the
    checkpoints and history so far, and a fingerprint of the run's settings. A job started
    again with the same settings continues after that epoch; on the CPU it ends with exactly
    the weights an uninterrupted job ends with. A file whose fingerprint differs (other
    settings) is ignored and replaced. The job deletes it once its outputs are written."""

    def __init__(self, path: str | Path, every: int, fingerprint: str, model: nn.Module,
                 optimizer: torch.optim.Optimizer, shuffle: torch.Generator,
                 min_seconds: float = 0.0):
        self.path, self.every, self.fingerprint = Path(path), int(every), fingerprint
        self.model, self.optimizer, self.shuffle = model, optimizer, shuffle
        self.min_seconds = float(min_seconds)
        self.last = time.monotonic()  # of the last save (or the start)
        self._rows = np.empty((0, 8))  # the history's numbers converted so far

    def due(self, epoch: int, epochs: int) -> bool:
        """Every ``every`` epochs before the last, once ``min_seconds`` have passed since the
        last save (a save costs ~10 ms against ~1 ms per epoch of the default MLP: profiled on
        2,000 sectors epochs, 39 saves took 0.38 s against 2.8 s of steps)."""
        return (self.every > 0 and epoch % self.every == 0 and epoch < epochs
                and time.monotonic() - self.last >= self.min_seconds)

    def save(self, epoch: int, states: dict, history: list, schedule: Schedule,
             extra: dict) -> None:
        payload = {
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "shuffle_rng": self.shuffle.get_state(),
            "states": self._packed_states(states),
            "history": self._history_columns(history),
            "schedule": schedule.state(),
            "extra": extra,
        }
        with io.atomic_path(self.path) as tmp:
            torch.save(payload, tmp)
        self.last = time.monotonic()

    def _history_columns(self, history: list) -> dict:
        """The history as one float64 array of its numeric fields (rows × the 8 of
        :class:`Epoch` before ``stop``; epochs, steps and backtracks are exact in float64) and
        the non-empty ``stop`` values by row: pickled as a few objects instead of one per
        value, whose cost grew with the history at every save (3,000 epochs of sectors spent
        4.9 s in their saves against 8.1 s in their steps). Rows already converted at an
        earlier save are kept."""
        done = self._rows.shape[0] if len(history) >= self._rows.shape[0] else 0
        fresh = np.array([row[:8] for row in history[done:]], dtype=np.float64).reshape(-1, 8)
        self._rows = np.concatenate([self._rows[:done], fresh])
        return {"numbers": torch.from_numpy(self._rows),
                "stop": {i: row.stop for i, row in enumerate(history) if row.stop}}

    @staticmethod
    def _packed_states(states: dict) -> dict:
        """The kept checkpoints as one stacked tensor per state entry (their epochs in order):
        a run keeps dozens of small states, and pickling each tensor apart cost ~0.15 ms at
        every save."""
        epochs = sorted(states)
        if not epochs:
            return {"epochs": []}
        names = list(states[epochs[0]])
        if any(list(states[e]) != names for e in epochs):  # not one network's states
            return {"epochs": epochs, "each": states}
        return {"epochs": epochs, "stacked": {k: torch.stack([states[e][k] for e in epochs])
                                              for k in names}}

    @staticmethod
    def _unpacked_states(saved: dict) -> dict:
        if "epochs" not in saved:  # a file from before the packing
            return dict(saved)
        if "each" in saved:
            return dict(saved["each"])
        stacked = saved.get("stacked", {})
        return {e: {k: v[i].clone() for k, v in stacked.items()}
                for i, e in enumerate(saved["epochs"])}

    @staticmethod
    def _history_rows(saved) -> list[Epoch]:
        if isinstance(saved, list):  # a file from before the columns
            return [Epoch(*row) for row in saved]
        stops = saved["stop"]
        return [Epoch(int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4]), float(r[5]),
                      float(r[6]), int(r[7]), stops.get(i, ""))
                for i, r in enumerate(saved["numbers"].tolist())]

    def _load(self, log) -> dict | None:
        """The file's payload if it exists, is readable and has this run's fingerprint."""
        if not self.path.exists():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a foreign or damaged file: start over, say so
            print(f"ignoring unreadable resumable checkpoint {self.path} ({err})", file=log)
            return None
        if payload.get("fingerprint") != self.fingerprint:
            print(f"ignoring resumable checkpoint {self.path}: written with other settings",
                  file=log)
            return None
        return payload

    def save_result(self, result: dict) -> None:
        """Keep a finished run's whole result (a job covering several seeds keeps each seed's
        until all are written, so that a killed job does not train the finished ones again)."""
        with io.atomic_path(self.path) as tmp:
            torch.save({"fingerprint": self.fingerprint, "result": result}, tmp)

    def finished(self, log) -> dict | None:
        """The result :meth:`save_result` kept for this run, if any."""
        payload = self._load(log)
        if payload is None or "result" not in payload:
            return None
        print(f"took the finished run from {self.path}", file=log)
        return payload["result"]

    def restore(self, log, schedule: Schedule, extra: dict) -> tuple[int, dict, list]:
        """(first epoch to run, states, history): from the file if it fits, else a fresh start;
        ``schedule`` and ``extra`` (per-checkpoint measurements) are restored in place."""
        payload = self._load(log)
        if payload is None or "model" not in payload:
            return 1, {}, []
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.shuffle.set_state(payload["shuffle_rng"])
        schedule.load(payload["schedule"])
        extra.update(payload.get("extra") or {})
        epoch = int(payload["epoch"])
        print(f"resumed from {self.path} after epoch {epoch}", file=log)
        return (epoch + 1, self._unpacked_states(payload["states"]),
                self._history_rows(payload["history"]))


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


def run_loop(model: nn.Module, optimizer: torch.optim.Optimizer, step, evaluate: Callable[[], float],
             X: torch.Tensor, y: torch.Tensor, settings: dict[str, Any], plan: Plan,
             snapshot: Callable[[int], dict], shuffle: torch.Generator, run: str, block: str,
             log, fmt: torch.memory_format = torch.contiguous_format,
             resume: Resume | None = None, before_epoch: Callable[[int], None] | None = None,
             lr: float | None = None, extra: dict | None = None,
             fused: bool = False) -> LoopResult:
    """Train ``model`` with ``step(xb, yb) -> (loss, n_correct)`` (module docstring).

    ``evaluate()`` returns the train loss on the whole set at the current weights (used by the
    ``loss_scaled`` schedule); ``snapshot(epoch)`` returns the state kept as a checkpoint;
    ``before_epoch(epoch)`` runs after ``model.train()`` at the start of every epoch; ``lr`` is the
    base step (default ``settings["lr"]``); ``extra`` is a dict of per-checkpoint measurements
    the snapshot fills, saved with a resumable checkpoint. ``run`` and ``block`` name the run and
    its settings block in messages.

    ``fused`` (full batch and ``loss_scaled`` only, for models whose modes do not change between
    epochs, i.e. without BatchNorm): the loss after an epoch's step is the loss before the next
    one, so one forward and backward pass serves both, ``step.probe`` taking the forward pass
    and, once the loss has accepted the epoch, its ``finish()`` the gradient for the next step.
    A rejected epoch costs a forward pass: it restores the weights, and ``.grad`` still holds
    the gradient at them. The same steps as the unfused path, in about two thirds of the time.
    """
    n = X.shape[0]
    schedule = Schedule.from_settings(settings, lr)
    schedule.terminal = math.log(2.0) / max(n, 1)
    extra = {} if extra is None else extra
    states: dict[int, dict[str, torch.Tensor]] = {}
    history: list[Epoch] = []
    first = 1
    if resume is not None:
        first, states, history = resume.restore(log, schedule, extra)
    if schedule.measured and schedule.reference is None:
        model.train()
        if before_epoch is not None:
            before_epoch(1)
        schedule.start(evaluate())
    start = time.perf_counter() - (history[-1].seconds if history else 0.0)
    spe = plan.steps_per_epoch
    stop, stop_epoch = "epochs", plan.epochs
    epoch, backtracks = first, 0
    losses = [row.end_loss if schedule.measured else row.loss for row in history]
    lowest = [min(losses, default=float("inf"))]  # the lowest loss so far, kept as it goes

    def accepted(epoch: int, epoch_loss: float, end_loss: float, train_acc: float,
                 rate: float) -> str | None:
        """Record an accepted epoch (history, checkpoint, log, resume); the stop reason if the
        loop should stop after it."""
        history.append(Epoch(epoch, epoch_loss, train_acc, time.perf_counter() - start,
                             epoch * spe, end_loss, rate, backtracks))
        current = end_loss if schedule.measured else epoch_loss
        if epoch in plan.candidates or plan.crossed(current, lowest[0]):
            states[epoch] = snapshot(epoch)
        lowest[0] = min(lowest[0], current)
        reached = (plan.until_loss is not None and current < plan.until_loss
                   and epoch >= plan.min_epochs)
        losses.append(current)
        plateau = (plan.until_loss is not None and not reached
                   and current >= plan.until_loss and len(losses) > PLATEAU_EPOCHS
                   and current > losses[-1 - PLATEAU_EPOCHS] * (1.0 - PLATEAU_DROP))
        if epoch % int(settings["log_every"]) == 0 or epoch == plan.epochs or reached:
            row = history[-1]
            print(f"epoch {epoch:6d}  step {row.step:8d}  loss {epoch_loss:.3e}  "
                  f"end loss {end_loss:.3e}  train_acc {row.train_acc:.4f}  lr {rate:.3g}  "
                  f"{row.seconds:.1f}s", file=log)
        if reached:
            return "until_loss"
        if plateau:
            return "stalled"
        if plan.unreachable(losses, epoch, schedule.terminal):
            return "unreachable"
        if resume is not None and resume.due(epoch, plan.epochs):
            resume.save(epoch, states, history, schedule, extra)
        return None

    # The model's tensors, listed once (the loop never adds or replaces one).
    tensors = [*model.parameters(), *model.buffers()]
    fused = fused and schedule.measured and plan.batch >= n and hasattr(step, "probe")
    if fused:
        model.train()
        if before_epoch is not None:
            before_epoch(epoch)
        now = step.gradient(X, y)  # the loss and gradient at the current weights
    while fused and epoch <= plan.epochs:
        rate = schedule.rate()
        _set_lr(optimizer, rate)
        saved = _copy_tensors(tensors)
        optimizer.step()
        loss, correct, finish = step.probe(X, y)  # the loss after the step, no gradient yet
        end_loss = float(loss)
        if not schedule.judge(end_loss, rate):  # undo: .grad still holds the gradient there
            _restore_tensors(tensors, saved)
            optimizer.state.clear()
            backtracks += 1
            if schedule.stalled:
                stop, stop_epoch = "stalled", epoch - 1
                break
            continue
        finish()  # the gradient at the accepted weights, for the next epoch's step
        reason = accepted(epoch, float(now[0]), end_loss, int(now[1]) / n, rate)
        now = (loss, correct)
        backtracks = 0
        if reason is not None:
            stop, stop_epoch = reason, epoch
            break
        epoch += 1
    while not fused and epoch <= plan.epochs:
        model.train()
        if before_epoch is not None:
            before_epoch(epoch)
        rate = schedule.rate()
        _set_lr(optimizer, rate)
        saved = None
        if schedule.measured:  # to undo the epoch if the loss rises
            saved = _copy_tensors(tensors)
        order = torch.randperm(n, generator=shuffle, device=X.device) if plan.batch < n else None
        loss_sum = torch.zeros((), device=X.device, dtype=torch.float64)
        correct = torch.zeros((), device=X.device, dtype=torch.int64)
        for lo in range(0, n, plan.batch):
            if order is None:
                xb, yb = X, y
            else:
                idx = order[lo:lo + plan.batch]
                xb, yb = X[idx].contiguous(memory_format=fmt), y[idx]
            loss, n_correct = step(xb, yb)
            loss_sum += loss.double() * len(yb)
            correct += n_correct
        # one batch: its mean loss as it is (not times n over n, one rounding off)
        epoch_loss = float(loss_sum) / n if order is not None else float(loss)
        end_loss = float("nan")
        if schedule.measured:
            end_loss = evaluate() if np.isfinite(epoch_loss) else float("inf")
            if not schedule.judge(end_loss, rate):
                # Undo the epoch. The optimizer's state (momentum, Adam's moments) is cleared,
                # not restored: a stale momentum need not point downhill at any step size, a
                # fresh first step (the gradient, or Adam's sign-like step) does.
                _restore_tensors(tensors, saved)
                optimizer.state.clear()
                backtracks += 1
                if schedule.stalled:
                    stop, stop_epoch = "stalled", epoch - 1
                    break
                continue  # redo the epoch with a smaller step
        elif not np.isfinite(epoch_loss):
            stop, stop_epoch = "diverged", max(states, default=0)
            history.append(Epoch(epoch, epoch_loss, int(correct) / n,
                                 time.perf_counter() - start, epoch * spe, end_loss, rate,
                                 backtracks))
            break
        reason = accepted(epoch, epoch_loss, end_loss, int(correct) / n, rate)
        backtracks = 0
        if reason is not None:
            stop, stop_epoch = reason, epoch
            break
        epoch += 1
    if stop == "diverged" and not states:
        raise TrainingDiverged(
            f"training diverged before its first checkpoint: loss is {history[-1].loss} at "
            f"epoch {history[-1].epoch} ({run}); lower {block}.lr (now {settings['lr']}), use "
            f"{block}.schedule: loss_scaled, or change {block}.optimizer (now "
            f"{settings['optimizer']})")
    if stop == "stalled" and stop_epoch < 1:
        raise TrainingDiverged(f"training stalled before its first epoch ({run}): no step "
                               f"lowers the loss; lower {block}.lr (now {settings['lr']})")
    if stop != "diverged" and stop_epoch not in states:
        states[stop_epoch] = snapshot(stop_epoch)
    depth = plan.milestone_epochs([(row.epoch, row.end_loss if schedule.measured else row.loss)
                                   for row in history])
    kept = plan.choose(stop_epoch, set(states), depth)
    states = {e: states[e] for e in kept}
    if history:
        history[-1] = history[-1]._replace(stop=stop)
    print(f"stopped after epoch {stop_epoch} (step {stop_epoch * spe}): {STOP_TEXT[stop]}; "
          f"checkpoints {kept}", file=log)
    return LoopResult(states, history, stop, stop_epoch)


def write_history(path: str | Path, history: list) -> None:
    """The per-epoch table, tab-separated, columns :data:`HISTORY_COLUMNS` (rows: :class:`Epoch`
    or the plain tuples a checkpoint file holds)."""
    with io.atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write("\t".join(HISTORY_COLUMNS) + "\n")
            for row in map(lambda r: Epoch(*r), history):
                handle.write(f"{row.epoch}\t{row.step}\t{row.loss:.9e}\t{row.end_loss:.9e}\t"
                             f"{row.train_acc:.6f}\t{row.lr:.9e}\t{row.backtracks}\t"
                             f"{row.seconds:.3f}\t{row.stop}\n")
