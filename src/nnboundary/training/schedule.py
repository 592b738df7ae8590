"""The step size of each epoch, and the plan of a loop: its epochs, batches and which epochs
it keeps as checkpoints. Used by :func:`nnboundary.training.loop.run_loop`.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..settings.layers import checkpoint_epochs

SCHEDULES = ("constant", "loss_scaled")
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
#: ``stop_unreachable``: the recent rate is taken over the last max(UNREACHABLE_WINDOW,
#: epoch × UNREACHABLE_SHARE) epochs.
UNREACHABLE_WINDOW = 200
UNREACHABLE_SHARE = 0.2
#: With ``until_loss``, this many candidate epochs are kept per final checkpoint.
CANDIDATES_PER_CHECKPOINT = 4


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
    #: Below this train loss g may exceed 1 (:func:`nnboundary.training.loop.run_loop` sets log(2)/n: every train point
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
