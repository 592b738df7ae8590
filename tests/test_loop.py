"""The training loop: the loss-scaled schedule, stopping, checkpoint choice, backtracking,
resuming, the exact cross-entropy tail, plain gradient descent, float64, BatchNorm consistency."""

from __future__ import annotations

import io as text_io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from nnboundary.formats.history import Epoch
from nnboundary.training import loop
from nnboundary.training import schedule as schedules
from nnboundary.training.resume import Resume
from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.stages.features import dump_run
from nnboundary.formats.features import list_feature_files, read_features
from nnboundary.data.make import make_dataset
from nnboundary.training.optim import GradientDescent
from nnboundary.training.losses import (_cross_entropy_terms, cross_entropy_gradient, cross_entropy_loss)
from nnboundary.training.step import linear_chain, make_step
from nnboundary.training.train import train_run
from nnboundary.models.networks import build_model

BLOBS = {"n_samples": 300, "test_fraction": 0.2, "seed": 1}
ARCH = dict(DEFAULT_ARCH["mlp"], hidden=16)
SILENT = {"log_every": 10**9, "device": "cpu"}


def _run(**settings):
    data = make_dataset("blobs", 0, BLOBS)
    merged = dict(DEFAULT_TRAIN, optimizer="sgd", lr=0.5, epochs=400, n_checkpoints=5, **SILENT)
    merged.update(settings)
    log = text_io.StringIO()
    return data, train_run(data, "mlp", 0, ARCH, merged, log=log), log.getvalue()


# --------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------


def test_constant_schedule_is_lr():
    schedule = schedules.Schedule("constant", 0.3)
    assert not schedule.measured and schedule.rate() == 0.3
    assert schedule.judge(5.0, 0.3) and not schedule.judge(float("nan"), 0.3)


def test_loss_scaled_rate_follows_the_loss_with_cap_growth_limit_and_backtracking():
    schedule = schedules.Schedule("loss_scaled", 0.5, cap=100.0)
    schedule.start(1.0)
    assert schedule.rate() == 0.5  # L0 / L = 1, g = 1
    assert schedule.judge(0.1, 0.5)  # accepted, and its step was g's: g grows (Lyu & Li)
    assert schedule.factor == pytest.approx(schedules.FACTOR_GROWTH) == pytest.approx(2 ** 0.2)
    assert schedule.rate() == pytest.approx(1.0)  # 0.5 · g · 10, but at most twice the last
    assert schedule.judge(1e-6, 1.0)  # the doubling limit set that step: g stays
    assert schedule.factor == pytest.approx(schedules.FACTOR_GROWTH)
    assert schedule.rate() == pytest.approx(2.0)
    schedule.last_rate = None
    assert schedule.rate() == pytest.approx(0.5 * 100)  # lr · g · 1e6, capped at lr · 100
    # A rise beyond the tolerance is rejected: the factor and the step are halved.
    schedule.last_rate = 50.0
    assert not schedule.judge(2e-6, 50.0)
    assert schedule.factor == pytest.approx(0.5 * schedules.FACTOR_GROWTH)
    assert schedule.rate() == pytest.approx(25.0)  # half the last accepted step
    # Within the tolerance (noise, rounding) it is accepted; the cap set the step, g stays.
    assert schedule.judge(1e-6 * (1 + 0.5 * schedules.RISE_TOLERANCE), 25.0)
    assert schedule.factor == pytest.approx(0.5 * schedules.FACTOR_GROWTH)
    state = schedule.state()
    copy = schedules.Schedule("loss_scaled", 0.5, cap=100.0)
    copy.load(state)
    assert copy.rate() == schedule.rate()


def test_loss_scaled_factor_grows_without_limit_while_the_loss_falls_slowly():
    # A loss that falls by 1 % per epoch: L0 / L grows slowly, so the step is g's, and g grows
    # by 2^(1/5) every epoch with no upper limit (the old rule stopped g at 1).
    schedule = schedules.Schedule("loss_scaled", 1.0, cap=1e100)
    schedule.start(1.0)
    loss = 1.0
    for _ in range(50):
        rate = schedule.rate()
        loss *= 0.99
        assert schedule.judge(loss, rate)
    assert schedule.factor == pytest.approx(schedules.FACTOR_GROWTH ** 50)  # 1024
    assert schedule.rate() > 500


def test_choose_keeps_the_configured_epochs_without_a_stopping_loss():
    plan = schedules.Plan(epochs=100, batch=10, n=10, configured=[1, 10, 100], n_checkpoints=3)
    assert plan.choose(100, {1, 10, 100}) == [1, 10, 100]
    assert plan.choose(40, {1, 10}) == [1, 10]  # diverged after epoch 40: what was saved


def test_choose_is_log_spaced_up_to_the_stop_plus_off_grid_epochs():
    settings = dict(DEFAULT_TRAIN, epochs=1000, n_checkpoints=4, until_loss=1e-8,
                    checkpoints=[1, 10, 100, 1000, 37])  # 37: e.g. retrain.from_epoch
    plan = schedules.plan_loop(settings, n=50)
    assert len(plan.candidates) > 4 * 4 - 4
    chosen = plan.choose(200, set(plan.candidates) | {200})
    assert chosen[0] == 1 and chosen[-1] == 200 and 37 in chosen
    logs = np.log([e for e in chosen if e != 37])
    assert np.all(np.diff(logs) > 0.5)  # spread over the decades, not bunched


def test_milestones_keep_the_first_epoch_below_each_loss():
    plan = schedules.Plan(epochs=100, batch=10, n=10, configured=[1, 100], n_checkpoints=2,
                     milestones=(1e-2, 1e-4, 1e-8))
    assert plan.crossed(5e-3, 2e-2) and not plan.crossed(5e-3, 6e-3)  # 1e-2 already passed
    assert plan.crossed(1e-9, 5e-3)  # one epoch may pass several
    losses = [(1, 0.5), (2, 0.02), (3, 0.009), (4, 0.011), (5, 2e-5), (6, 1e-6)]
    assert plan.milestone_epochs(losses) == {3, 5}  # 1e-8 never reached: no checkpoint
    assert plan.choose(100, {1, 3, 5, 100}, {3, 5}) == [1, 3, 5, 100]


def test_a_run_keeps_a_checkpoint_at_each_milestone_it_reaches():
    milestones = [1e-2, 1e-4, 1e-8, 1e-16]
    _, result, _ = _run(until_loss=1e-12, schedule="loss_scaled", dtype="float64",
                        schedule_cap=1e100,
                        loss_milestones=milestones, n_checkpoints=3)
    rows = [Epoch(*row) for row in result["history"]]
    firsts = {m: next(r.epoch for r in rows if r.end_loss < m) for m in milestones[:3]}
    assert set(firsts.values()) <= set(result["epochs"])  # every reached milestone kept
    assert result["training"]["stop"] == "until_loss"  # 1e-16 is beyond the stop: not kept
    assert result["training"]["loss_milestones"] == milestones
    assert len(result["epochs"]) > 3  # more than the log-spaced ones


# --------------------------------------------------------------------------------------------
# Stopping
# --------------------------------------------------------------------------------------------


def test_loss_scaled_reaches_the_stopping_loss_where_a_constant_step_does_not():
    _, constant, _ = _run(until_loss=1e-8)
    _, scaled, log = _run(until_loss=1e-8, schedule="loss_scaled", dtype="float64")
    assert constant["training"]["stop"] == "epochs" and constant["history"][-1][1] > 1e-4
    assert scaled["training"]["stop"] == "until_loss"
    assert scaled["training"]["final_loss"] < 1e-8 and scaled["history"][-1][-1] == "until_loss"
    assert scaled["epochs"][-1] == scaled["training"]["stop_epoch"] < 400
    assert "stopped after epoch" in log and "fell below until_loss" in log
    # The step grew by orders of magnitude as the loss fell; accepted losses never rose much.
    rows = [Epoch(*row) for row in scaled["history"]]
    assert rows[-1].lr > 100 * rows[0].lr
    ends = np.array([r.end_loss for r in rows])
    assert np.all(ends[1:] <= ends[:-1] * (1 + schedules.RISE_TOLERANCE))


def test_min_epochs_keeps_training_past_the_stopping_loss():
    _, result, _ = _run(until_loss=1e-8, schedule="loss_scaled", dtype="float64", min_epochs=300)
    assert result["training"]["stop"] == "until_loss" and result["training"]["stop_epoch"] == 300
    assert result["training"]["final_loss"] < 1e-8


def test_a_run_that_stops_learning_stalls_instead_of_spending_the_cap():
    """A step too small to move the loss (as for a dead bottleneck, whose gradient is 0): the run
    stops after PLATEAU_EPOCHS epochs without progress, not after the epoch cap."""
    _, result, log = _run(until_loss=1e-8, lr=1e-30, epochs=2000)
    assert result["training"]["stop"] == "stalled"
    assert result["training"]["stop_epoch"] == loop.PLATEAU_EPOCHS + 1
    assert result["history"][-1][-1] == "stalled" and "(stalled)" in log


def test_unreachable_projects_the_recent_rate_to_the_next_depth():
    """Stop when, at f times the mean fall of log L over the last max(200, epoch/5) epochs, the
    next depth below the loss (a milestone, else until_loss) lies beyond the cap; only in the
    terminal phase (the whole window below log(2)/n), only with a factor and a stopping loss."""
    plan = schedules.Plan(epochs=10_000, batch=10, n=10, configured=[], n_checkpoints=2,
                     until_loss=1e-100, milestones=(1e-8, 1e-16, 1e-32, 1e-100))
    terminal = math.log(2) / 10

    def stops(losses, epoch, factor, at=plan):
        return replace(at, unreachable_factor=factor).unreachable(losses, epoch, terminal)

    def losses(epochs, decades_per_epoch, start=-9.0):
        return [10.0 ** (start - decades_per_epoch * e) for e in range(epochs)]

    # at epoch 1,000 the loss is 10^-9.999 and falls 0.001 decade per epoch: 1e-16 is 5,999
    # epochs away at that rate, 9,000 remain before the cap
    slow = losses(1000, 0.001)
    need, remaining = 5.999 / 0.001, 9000
    assert stops(slow, 1000, need / remaining * 0.99)
    assert not stops(slow, 1000, need / remaining * 1.01)
    assert not stops(slow, 1000, 2.0)
    assert not stops(slow, 1000, 0.0)  # no factor: run to the cap
    assert not stops(slow[:200], 200, 0.1)  # window not yet full
    early = losses(1000, 0.0005, start=0.0)  # the window starts above log(2)/n
    assert not stops(early, 1000, 0.1)
    flat = [1e-20] * 1000  # no progress: the plateau test's case, not this one
    assert not stops(flat, 1000, 0.1)
    no_stop = schedules.Plan(epochs=10_000, batch=10, n=10, configured=[], n_checkpoints=2,
                        milestones=(1e-16,))
    assert not stops(slow, 1000, 0.1, at=no_stop)
    # the window grows with the run: at epoch 5,000 it is the last 1,000 epochs
    bent = losses(4000, 0.02) + [10.0 ** (-89 - 0.0001 * e) for e in range(1, 1001)]
    assert len(bent) == 5000  # 1e-89 then 0.1 decade per 1,000 epochs: 1e-100 is out of reach
    assert stops(bent, 5000, 2.0)


def test_a_run_that_cannot_reach_its_next_depth_stops_as_unreachable():
    """With the loss-scaled step capped low, the loss falls slowly once every point is
    classified: with stop_unreachable the run stops (``unreachable``, a final checkpoint kept,
    every milestone it passed kept) long before its cap; without, it runs to the cap."""
    settings = dict(until_loss=1e-100, schedule="loss_scaled", dtype="float64", schedule_cap=20,
                    epochs=3000, loss_milestones=[1e-2, 1e-4, 1e-100], n_checkpoints=3)
    _, stopped, log = _run(stop_unreachable=2.0, **settings)
    assert stopped["training"]["stop"] == "unreachable" and "(unreachable)" in log
    epoch = stopped["training"]["stop_epoch"]
    assert schedules.UNREACHABLE_WINDOW < epoch < 3000 and epoch in stopped["epochs"]
    rows = [Epoch(*row) for row in stopped["history"]]
    assert rows[-1].stop == "unreachable" and rows[-1].end_loss > 1e-100
    firsts = [next(r.epoch for r in rows if r.end_loss < m) for m in (1e-2, 1e-4)
              if rows[-1].end_loss < m]
    assert set(firsts) <= set(stopped["epochs"])
    _, capped, _ = _run(**settings)
    assert capped["training"]["stop"] == "epochs"
    assert capped["training"]["stop_epoch"] == 3000
    assert capped["training"]["final_loss"] > 1e-100


def test_backtracking_undoes_rising_epochs():
    _, result, _ = _run(until_loss=1e-8, schedule="loss_scaled", dtype="float64", lr=40.0)
    rows = [Epoch(*row) for row in result["history"]]
    assert sum(r.backtracks for r in rows) > 0
    assert result["training"]["stop"] == "until_loss"


@pytest.mark.parametrize("loss", ["cross_entropy", "exponential"])
def test_the_one_pass_loop_takes_the_two_pass_loops_steps(monkeypatch, loss):
    """The fused full-batch loop (one forward pass per epoch, the gradient finished only for
    an accepted epoch, a rejected one undone without touching .grad) takes the same steps as
    the plain loop (a forward pass for the loss after each epoch, then the next epoch's
    forward and backward pass): the same accepted and rejected epochs, losses and weights, for
    the closed-form gradient (cross-entropy) and autograd (exponential loss)."""
    settings = dict(until_loss=1e-8, schedule="loss_scaled", dtype="float64", lr=40.0,
                    loss=loss)
    runs = {}
    for fused in (True, False):
        monkeypatch.setattr("nnboundary.training.train.run_loop", lambda spec, log: loop.run_loop(
            replace(spec, fused=fused), log))
        runs[fused] = _run(**settings)[1]
    one, two = runs[True], runs[False]
    rows = [Epoch(*row) for row in one["history"]]
    assert sum(r.backtracks for r in rows) > 0 and one["training"]["stop"] == "until_loss"
    assert [row[:2] for row in one["history"]] == [row[:2] for row in two["history"]]
    assert [Epoch(*r).backtracks for r in one["history"]] == \
        [Epoch(*r).backtracks for r in two["history"]]
    for a, b in zip(one["history"], two["history"]):
        assert Epoch(*a).end_loss == pytest.approx(Epoch(*b).end_loss, rel=1e-9)
    assert one["states"].keys() == two["states"].keys()
    for epoch, state in one["states"].items():
        for name, tensor in state.items():
            torch.testing.assert_close(tensor, two["states"][epoch][name], rtol=1e-9, atol=0)


def test_a_loss_scaled_run_resumes_bit_for_bit(tmp_path):
    settings = dict(schedule="loss_scaled", dtype="float64", epochs=60, resume_every=20,
                    resume_min_seconds=0, until_loss=None)
    data = make_dataset("blobs", 0, BLOBS)
    merged = dict(DEFAULT_TRAIN, optimizer="sgd", lr=0.5, n_checkpoints=5, **SILENT, **settings)
    path = tmp_path / "run.resume"
    first = train_run(data, "mlp", 0, ARCH, merged, log=text_io.StringIO(), resume_path=path)
    assert path.exists()  # written after epoch 40, the last due before the end
    log = text_io.StringIO()
    again = train_run(data, "mlp", 0, ARCH, merged, log=log, resume_path=path)
    assert "resumed from" in log.getvalue() and "after epoch 40" in log.getvalue()
    for epoch in first["states"]:
        for name, tensor in first["states"][epoch].items():
            assert torch.equal(tensor, again["states"][epoch][name]), (epoch, name)
    assert [row[:3] for row in first["history"]] == [row[:3] for row in again["history"]]


def test_a_resumable_checkpoint_waits_its_minimum_interval(tmp_path, monkeypatch):
    """A save due by resume_every is skipped until resume_min_seconds have passed since the
    last save (or the start), then made; the epoch count alone with 0 seconds."""
    clock = [100.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    model = torch.nn.Linear(2, 2).double()
    resume = Resume(tmp_path / "r.pt", 10, "fp", model,
                    GradientDescent(model.parameters(), lr=0.1),
                    torch.Generator().manual_seed(0), min_seconds=5.0)
    assert not resume.due(10, 100)  # due by epochs, but 0 s after the start
    clock[0] += 4.9
    assert not resume.due(20, 100) and not resume.due(25, 100)
    clock[0] += 0.2
    assert resume.due(30, 100) and not resume.due(31, 100) and not resume.due(100, 100)
    resume.save(30, {}, [], schedules.Schedule(name="loss_scaled", lr=0.5), {})
    assert not resume.due(40, 100)  # 0 s after that save
    clock[0] += 5.0
    assert resume.due(40, 100)
    eager = Resume(tmp_path / "e.pt", 10, "fp", model,
                   GradientDescent(model.parameters(), lr=0.1),
                   torch.Generator().manual_seed(0))
    assert eager.due(10, 100) and not eager.due(15, 100)


# --------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------


def test_cross_entropy_matches_torch_and_keeps_its_tail():
    torch.manual_seed(0)
    z = torch.randn(20, 3, dtype=torch.float64) * 4
    y = torch.randint(0, 3, (20,))
    assert cross_entropy_loss(z, y).item() == pytest.approx(
        torch.nn.functional.cross_entropy(z, y).item(), rel=1e-12)
    tail = torch.tensor([[0.0, 50.0], [0.0, 700.0]], dtype=torch.float64, requires_grad=True)
    loss = cross_entropy_loss(tail, torch.tensor([1, 1]))
    assert loss.item() == pytest.approx((math.exp(-50) + math.exp(-700)) / 2, rel=1e-12)
    assert torch.nn.functional.cross_entropy(tail, torch.tensor([1, 1])).item() == 0.0
    loss.backward()
    grad = tail.grad[0]
    assert grad[0].item() == pytest.approx(math.exp(-50) / 2, rel=1e-12)
    assert grad[1].item() == pytest.approx(-math.exp(-50) / 2, rel=1e-12)  # symmetric


def test_closed_form_cross_entropy_gradient_is_autograds_in_the_bulk_and_in_the_tail():
    torch.manual_seed(0)
    z = torch.randn(30, 4, dtype=torch.float64) * 3
    z[:5] *= 200  # margins of hundreds: per-sample losses far below 1e-16
    y = torch.randint(0, 4, (30,))
    leaf = z.clone().requires_grad_(True)
    reference = _cross_entropy_terms(leaf, y)[0].mean()  # autograd through the exact-tail form
    reference.backward()
    loss, grad = cross_entropy_gradient(z, y)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-13)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-12, atol=0.0)
    # The true class's entry is minus the others' sum, exactly, even at a margin of 700.
    loss, grad = cross_entropy_gradient(torch.tensor([[0.0, 700.0]], dtype=torch.float64),
                                        torch.tensor([1]))
    assert grad[0, 1].item() == pytest.approx(-math.exp(-700), rel=1e-12)
    assert grad[0, 0].item() == pytest.approx(math.exp(-700), rel=1e-12)


def test_the_training_losss_backward_pass_is_autograd_through_its_exact_tail_form():
    """cross_entropy_loss differentiates through its closed-form gradient: the weights' gradient
    of a small network equals autograd through the exact-tail terms, in the bulk and at margins
    of hundreds, and the loss is the same number."""
    torch.manual_seed(3)
    X = torch.randn(40, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    for scale in (1.0, 300.0):
        nets = [torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(),
                                    torch.nn.Linear(8, 3)).double() for _ in range(2)]
        nets[1].load_state_dict(nets[0].state_dict())
        for net in nets:
            net[2].weight.data *= scale
        fast = cross_entropy_loss(nets[0](X), y)
        slow = _cross_entropy_terms(nets[1](X), y)[0].mean()
        fast.backward()
        slow.backward()
        assert fast.item() == slow.item()
        for a, b in zip(nets[0].parameters(), nets[1].parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=0.0)
    assert torch.autograd.gradcheck(
        lambda z: cross_entropy_loss(z, y[:6]),
        (torch.randn(6, 3, dtype=torch.float64, requires_grad=True),))


def _autograd_gradient(model, X, y):
    """The reference: autograd through the exact-tail terms of the cross-entropy."""
    model.zero_grad(set_to_none=True)
    logits = model(X)
    loss = _cross_entropy_terms(logits, y)[0].mean()
    loss.backward()
    return loss.item(), int((logits.argmax(1) == y).sum()), [p.grad.clone()
                                                              for p in model.parameters()]


@pytest.mark.parametrize("arch", [
    {"hidden": 16, "bottleneck": 2, "activation": "relu"},
    {"hidden": 16, "bottleneck": 3, "activation": "identity"},
    {"hidden": 0, "bottleneck": 4, "activation": "relu"},
    {"hidden": 12, "bottleneck": None, "activation": "relu"},
])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_the_mlps_closed_form_gradient_is_autograds(arch, scale):
    """make_step takes the gradient of a chain of linear layers and ReLUs in closed form
    (chain_gradient): the same loss, correct count and weight gradients as autograd, in the bulk
    and at margins of hundreds (per-sample losses far below 1e-16), for the hidden layer and
    the bottleneck present or absent and an identity activation."""
    torch.manual_seed(4)
    X = torch.randn(60, 1, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (60,))
    model = build_model("mlp", (1, 3, 3), 3, dict(DEFAULT_ARCH["mlp"], **arch)).double()
    model.last.weight.data *= scale
    layers = linear_chain(model)
    assert layers is not None and len(layers) == 1 + (arch["hidden"] > 0) + (
        arch["bottleneck"] is not None)
    loss, correct, grads = _autograd_gradient(model, X, y)
    step = make_step(model, GradientDescent(model.parameters(), lr=0.1), DEFAULT_TRAIN)
    fast_loss, fast_correct = step.gradient(X, y)
    assert fast_loss.item() == pytest.approx(loss, rel=1e-13) and int(fast_correct) == correct
    for p, reference in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, reference, rtol=1e-12, atol=1e-300)


def test_the_closed_form_gradient_reuses_its_buffers_safely():
    """chain_gradient writes activations and hidden gradients into buffers it keeps: the same
    numbers call after call and for batches of another size in between, and a probe's
    finish() after a later probe (whose activations overwrote its own) is refused."""
    torch.manual_seed(5)
    model = build_model("mlp", (4,), 3, dict(DEFAULT_ARCH["mlp"], hidden=8)).double()
    X = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    step = make_step(model, GradientDescent(model.parameters(), lr=0.1), DEFAULT_TRAIN)
    first = step.gradient(X, y)
    grads = [p.grad.clone() for p in model.parameters()]
    step.gradient(X[:7], y[:7])  # another batch size in between
    again = step.gradient(X, y)
    assert torch.equal(first[0], again[0]) and int(first[1]) == int(again[1])
    for p, grad in zip(model.parameters(), grads):
        assert torch.equal(p.grad, grad)
    _, _, stale = step.probe(X, y)
    step.probe(X[:7], y[:7])
    with pytest.raises(RuntimeError, match="later probe"):
        stale()


def test_only_chains_of_linear_layers_and_relus_take_the_closed_form():
    mlp = dict(DEFAULT_ARCH["mlp"])
    assert linear_chain(build_model("mlp", (4,), 2, mlp)) is not None
    layer = torch.nn.Linear(3, 2)
    assert linear_chain(layer) == [(layer, False)]
    for other in (build_model("mlp", (4,), 2, dict(mlp, activation="tanh")),
                  build_model("cnn", (1, 8, 8), 2, dict(DEFAULT_ARCH["cnn"])),
                  torch.nn.Sequential(torch.nn.Linear(3, 2)),
                  torch.nn.Linear(3, 2, bias=False)):
        assert linear_chain(other) is None
    # Another loss, label smoothing or autocast keep autograd (the step still trains).
    model = build_model("mlp", (4,), 2, mlp).double()
    X, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 2, (10,))
    for settings in (dict(DEFAULT_TRAIN, loss="exponential"),
                     dict(DEFAULT_TRAIN, label_smoothing=0.1)):
        step = make_step(model, GradientDescent(model.parameters(), lr=0.1), settings)
        loss, _ = step.gradient(X, y)
        assert loss.grad_fn is None and model.last.weight.grad is not None


def test_the_last_layers_closed_form_step_is_the_autograd_step():
    torch.manual_seed(2)
    H = torch.randn(50, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    layers = [torch.nn.Linear(6, 3, dtype=torch.float64) for _ in range(2)]
    layers[1].load_state_dict(layers[0].state_dict())
    settings = dict(DEFAULT_TRAIN, optimizer="sgd", lr=0.3, loss="cross_entropy")
    step = make_step(layers[0], GradientDescent(layers[0].parameters(), lr=0.3), settings)
    reference = GradientDescent(layers[1].parameters(), lr=0.3)
    for _ in range(5):
        loss_a, correct_a = step(H, y)
        loss_b, correct_b, _ = _autograd_gradient(layers[1], H, y)
        reference.step()
        assert loss_a.item() == pytest.approx(loss_b, rel=1e-13)
        assert int(correct_a) == correct_b
    torch.testing.assert_close(layers[0].weight, layers[1].weight, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(layers[0].bias, layers[1].bias, rtol=1e-12, atol=1e-15)


def test_gradient_descent_equals_torch_sgd():
    torch.manual_seed(1)
    a, b = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    b.load_state_dict(a.state_dict())
    ours = GradientDescent(a.parameters(), lr=0.3, weight_decay=0.01)
    theirs = torch.optim.SGD(b.parameters(), lr=0.3, weight_decay=0.01)
    x = torch.randn(8, 3, dtype=torch.float64)
    for _ in range(5):
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    state = ours.state_dict()
    ours.param_groups[0]["lr"] = 9.0
    ours.load_state_dict(state)
    assert ours.param_groups[0]["lr"] == 0.3


def test_a_float64_run_keeps_float64_weights_and_features(tmp_path):
    data, result, _ = _run(dtype="float64", epochs=5)
    state = result["states"][5]
    assert state["bottleneck.weight"].dtype == torch.float64
    dump_run(result, data, tmp_path / "features", torch.device("cpu"), log=text_io.StringIO())
    features = read_features(list_feature_files(tmp_path / "features")[-1])
    assert features.h.dtype == np.float64 and features.keys["training"]["dtype"] == "float64"
    logits = features.h @ features.W.T + features.b
    np.testing.assert_allclose(logits, features.logits, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# BatchNorm: the SVM sees the features the last layer is trained on
# --------------------------------------------------------------------------------------------

RESNET = dict(DEFAULT_ARCH["resnet"], width=8, blocks=[[4, 8, 1, 1], [8, 16, 1, 2]], hidden=16)


def _resnet(**settings):
    data = make_dataset("digits01", None, {"test_fraction": 0.2, "seed": 12345})
    merged = dict(DEFAULT_TRAIN, optimizer="adam", lr=0.01, epochs=40, n_checkpoints=4, **SILENT)
    merged.update(settings)
    return data, train_run(data, "resnet", 0, RESNET, merged, log=text_io.StringIO())


def test_tiny_resnet_final_features_are_those_the_last_layer_was_trained_on(tmp_path):
    """Mini-batches of 64 with batch statistics: the eval-mode features differ (measured); with
    the statistics frozen after epoch 20 the final checkpoint's shift is below 0.01 (0), and the
    feature files carry the shift."""
    _, batch_stats = _resnet(batch_size=64)
    shifts = {e: v["bn_feature_shift"] for e, v in batch_stats["feature_shifts"].items()}
    assert max(shifts.values()) > 0.01  # the measurement sees batch-statistics noise
    data, frozen = _resnet(batch_size=64, bn_eval_after=20)
    final = frozen["feature_shifts"][40]["bn_feature_shift"]
    assert final < 0.01
    dump_run(frozen, data, tmp_path / "f", torch.device("cpu"), log=text_io.StringIO())
    keys = read_features(list_feature_files(tmp_path / "f")[-1]).keys
    assert keys["bn_feature_shift"] == pytest.approx(final)
    # Full-batch training: batch statistics are the train set's, so the shift is about 0.
    _, full_batch = _resnet(batch_size=0)
    assert full_batch["feature_shifts"][40]["bn_feature_shift"] < 0.01


def test_networks_without_batchnorm_record_no_shift():
    _, result, _ = _run(epochs=5)
    assert result["feature_shifts"] == {}
