"""The fused CPU kernel of the MLP's full-batch step (nnboundary.training.kernels) against PyTorch's
closed form and autograd, its double-buffered gradients, where it is used, and the resumable
checkpoint's packed history and states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnboundary.formats.history import Epoch
from nnboundary.training import schedule as schedules
from nnboundary.training.resume import Resume
from nnboundary.training import kernels
from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.models.networks import build_model
from nnboundary.training.optim import GradientDescent
from nnboundary.training.losses import _cross_entropy_terms
from nnboundary.training.step import ChainStep, FusedChainStep, linear_chain, make_step


def _net(width: int, classes: int, bottleneck_relu: bool = True, seed: int = 0,
         bottleneck: int = 2):
    torch.manual_seed(seed)
    arch = dict(DEFAULT_ARCH["mlp"], hidden=24, bottleneck=bottleneck,
                activation="relu" if bottleneck_relu else "identity")
    return build_model("mlp", (width,), classes, arch).double()


def _gradients(probe, model, X, y):
    loss, correct, finish = probe(X, y)
    finish()
    return float(loss), int(correct), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("width,classes,relu,bottleneck", [
    (2, 2, True, 2), (2, 3, True, 2), (5, 4, False, 2), (16, 3, True, 2), (1, 2, False, 2),
    (2, 3, True, 3), (3, 2, False, 1), (17, 2, True, 2), (64, 3, True, 2), (64, 4, False, 3)])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_the_fused_kernel_is_the_closed_form_and_autograd(width, classes, relu, bottleneck,
                                                          scale):
    """The same loss, correct count and weight gradients as chain_gradient and as autograd
    through the exact-tail cross-entropy, to float64 round-off: in the bulk and at margins of
    hundreds (per-sample losses far below 1e-16, where a log-sum-exp would round them to 0),
    with and without the bottleneck's ReLU, 1 to 64 inputs (above 16 the first layer's
    products by the BLAS), 2 to 4 classes, the 2-unit bottleneck's one-pass loops and the
    general ones (1 and 3 units)."""
    model = _net(width, classes, relu, bottleneck=bottleneck)
    model.last.weight.data *= scale
    _assert_kernel_agrees(model, torch.randn(70, width, dtype=torch.float64),
                          torch.randint(0, classes, (70,)))


def _assert_kernel_agrees(model, X, y):
    """The fused kernel and chain_gradient (:func:`_gradients`) on ``model`` agree with each
    other and with autograd through the exact-tail cross-entropy, to float64 round-off."""
    layers = linear_chain(model)
    assert kernels.fusable(layers)
    fused = _gradients(FusedChainStep(layers).probe, model, X, y)
    closed = _gradients(ChainStep(layers).probe, model, X, y)
    model.zero_grad(set_to_none=True)
    logits = model(X)
    reference = _cross_entropy_terms(logits, y)[0].mean()
    reference.backward()
    auto = [p.grad.clone() for p in model.parameters()]
    assert fused[0] == pytest.approx(reference.item(), rel=1e-12)
    assert fused[0] == pytest.approx(closed[0], rel=1e-12)
    assert fused[1] == closed[1] == int((logits.argmax(1) == y).sum())
    for a, b, c in zip(fused[2], closed[2], auto):
        assert a.shape == b.shape == c.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-300)
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("features,classes", [(2, 2), (2, 3), (1, 2), (5, 4), (3, 10)])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_the_lone_layer_kernel_is_the_closed_form_and_autograd(features, classes, scale):
    """A retrained last layer (a lone nn.Linear on fixed features) through
    kernels.linear_step: the same loss, correct count and gradients as chain_gradient and as
    autograd through the exact-tail cross-entropy, to float64 round-off, in the bulk and at
    margins of hundreds; its gradients land in .grad in the layer's own layout."""
    torch.manual_seed(features * 10 + classes)
    layer = torch.nn.Linear(features, classes).double()
    layer.weight.data *= scale
    _assert_kernel_agrees(layer, torch.randn(90, features, dtype=torch.float64),
                          torch.randint(0, classes, (90,)))


def test_the_lone_layer_kernel_keeps_the_losss_tail_and_counts_ties_as_argmax_does():
    """Margin 700: loss and gradient e^-700 exactly (log1p, no log-sum-exp); a tie between
    logits goes to the first class, as argmax decides it; without the gradient the same loss
    and count, and no gradient written."""
    H = np.array([[1.0, 0.0], [0.0, 0.0]])
    W = np.array([[0.0, 0.0], [700.0, 0.0]])
    b = np.zeros(2)
    y = np.array([1, 0])
    grads = [np.full_like(W, np.nan), np.full_like(b, np.nan)]
    loss, correct = kernels.linear_step(H, y, [W, b], grads)
    # sample 0: z = (0, 700), label 1: loss e^-700; sample 1: z = (0, 0), label 0: log 2
    assert loss == pytest.approx((math.exp(-700) + math.log(2.0)) / 2, rel=1e-15)
    assert correct == 2
    assert grads[0][0, 0] == pytest.approx(math.exp(-700) / 2, rel=1e-12)
    assert grads[0][1, 0] == pytest.approx(-math.exp(-700) / 2, rel=1e-12)
    assert grads[1] == pytest.approx([math.exp(-700) / 2 - 0.25, 0.25 - math.exp(-700) / 2])
    assert kernels.linear_step(H, y, [W, b], None) == (loss, correct)


def test_the_fused_kernel_keeps_the_losss_tail():
    """A sample at margin 700 (loss e^-700) keeps its loss and its gradient exactly, as the
    closed form does: log1p, not a log-sum-exp that rounds 1 + e^-700 to 1."""
    model = _net(2, 2)
    with torch.no_grad():
        for layer in (model.hidden[0], model.bottleneck, model.last):
            layer.weight.zero_()
            layer.bias.zero_()
        model.hidden[0].bias[0] = 1.0  # a1 = (1, 0, ...)
        model.bottleneck.weight[0, 0] = 1.0  # a2 = (1, 0)
        model.last.weight[1, 0] = 700.0  # z = (0, 700)
    X = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.tensor([1])
    loss, correct, grads = _gradients(FusedChainStep(linear_chain(model)).probe, model, X, y)
    assert loss == pytest.approx(math.exp(-700), rel=1e-12) and correct == 1
    last_weight_grad = grads[4]
    assert last_weight_grad[0, 0].item() == pytest.approx(math.exp(-700), rel=1e-12)
    assert last_weight_grad[1, 0].item() == pytest.approx(-math.exp(-700), rel=1e-12)


@pytest.mark.parametrize("width", [3, 40])
def test_the_fused_gradient_outlives_a_later_probe(width):
    """finish() hands the probe's gradient to .grad; a later probe (the loss after a step that
    may be undone) writes into the other set of buffers, so .grad still holds the gradient at
    the weights an undo restores; a finish() after a later probe is refused; the same numbers
    call after call; also for a wide input, whose n × H buffers the probes share."""
    model = _net(width, 3)
    X = torch.randn(50, width, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    probe = FusedChainStep(linear_chain(model)).probe
    first = _gradients(probe, model, X, y)
    held = [p.grad for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    _, _, stale = probe(X, y)  # the weights moved: other gradients, elsewhere
    for p, grad, value in zip(model.parameters(), held, first[2]):
        assert p.grad is grad and torch.equal(p.grad, value)
    probe(X[:9], y[:9])
    with pytest.raises(RuntimeError, match="later probe"):
        stale()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(0.1)
    again = _gradients(probe, model, X, y)
    assert again[:2] == first[:2]
    for a, b in zip(again[2], first[2]):
        assert torch.equal(a, b)


def test_the_fused_kernel_serves_only_what_it_was_written_for():
    """make_step takes the fused kernel for the default MLP on a float64 input on the CPU
    (``kernel: auto``; a wide input's first layer by the BLAS), and PyTorch's closed form with
    ``kernel: torch``, in float32, without a hidden layer or with another loss."""
    settings = dict(DEFAULT_TRAIN)

    def kernel(model, **changes):
        optimizer = GradientDescent(model.parameters(), lr=0.1)
        return make_step(model, optimizer, dict(settings, **changes)).kernel

    assert kernel(_net(2, 3)) == "fused"
    assert kernel(_net(16, 3)) == "fused"
    assert kernel(_net(2, 3), kernel="torch") == "closed_form"
    assert kernel(_net(784, 2)) == "fused"
    assert kernels.wide(17) and not kernels.wide(16)
    assert kernel(_net(2, 3).float()) == "closed_form"
    assert kernel(_net(2, 3), loss="exponential") == "autograd"
    no_hidden = build_model("mlp", (2,), 3, dict(DEFAULT_ARCH["mlp"], hidden=0)).double()
    assert kernel(no_hidden) == "closed_form"
    # a retrained last layer: the lone-layer kernel in float64, PyTorch's closed form else
    assert kernel(torch.nn.Linear(2, 3).double()) == "fused"
    assert kernel(torch.nn.Linear(2, 3).double(), kernel="torch") == "closed_form"
    assert kernel(torch.nn.Linear(2, 3)) == "closed_form"


def test_a_training_run_records_its_kernel_and_is_deterministic():
    """Two runs of the same seed through the fused kernel give the same weights bit for bit,
    and their record names the kernel; the PyTorch closed form's run ends at the same loss
    depth with the same accuracy (the trajectories differ by round-off only)."""
    from nnboundary.data.make import make_dataset
    from nnboundary.training.train import train_run
    import io as text_io

    data = make_dataset("blobs", 0, {"n_samples": 300, "test_fraction": 0.2, "seed": 1})
    arch = dict(DEFAULT_ARCH["mlp"], hidden=16)
    settings = dict(DEFAULT_TRAIN, optimizer="sgd", lr=0.5, schedule="loss_scaled",
                    dtype="float64", epochs=400, until_loss=1e-8, n_checkpoints=3,
                    log_every=1000, device="cpu")
    runs = [train_run(data, "mlp", 0, arch, dict(settings, kernel=k), log=text_io.StringIO())
            for k in ("auto", "auto", "torch")]
    assert runs[0]["training"]["kernel"] == "fused"
    assert runs[2]["training"]["kernel"] == "closed_form"
    for epoch, state in runs[0]["states"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, runs[1]["states"][epoch][name])
    assert runs[0]["training"]["stop"] == runs[2]["training"]["stop"] == "until_loss"
    assert abs(runs[0]["training"]["stop_epoch"] - runs[2]["training"]["stop_epoch"]) <= 5


def test_the_resumable_checkpoint_packs_history_and_states(tmp_path):
    """The resume file keeps the history as one array and the states stacked: it restores
    the same rows (numbers exact, the stop reason) and the same tensors, across saves that
    convert only the rows added since the last one; a file in the older per-value layout still
    loads."""
    model = torch.nn.Linear(3, 2).double()
    optimizer = GradientDescent(model.parameters(), lr=0.1)
    resume = Resume(tmp_path / "r.pt", 1, "fp", model, optimizer,
                         torch.Generator().manual_seed(0))
    history = [Epoch(e, 1.0 / e, 0.5, 0.01 * e, e, 0.9 / e, 1e30 * e, e % 3)
               for e in range(1, 6)]
    states = {e: {k: v + e for k, v in model.state_dict().items()} for e in (1, 4)}
    schedule = schedules.Schedule(name="loss_scaled", lr=0.5)
    resume.save(5, states, history, schedule, {})
    history += [Epoch(6, 1e-300, 1.0, 0.06, 6, 5e-301, 1e300, 2, "until_loss")]
    resume.save(6, states, history, schedule, {})
    first, restored_states, rows = resume.restore(open(tmp_path / "log", "w"), schedule, {})
    assert first == 7 and rows == history
    assert restored_states.keys() == states.keys()
    for e in states:
        for k in states[e]:
            assert torch.equal(restored_states[e][k], states[e][k])
    assert Resume._history_rows([list(r) for r in history]) == history
    assert Resume._unpacked_states(states).keys() == states.keys()
    assert np.isfinite(resume._rows).all() and resume._rows.shape == (6, 8)


def test_the_fused_kernel_lets_a_nan_through():
    """A NaN weight in the first layer makes the loss NaN (the loop then stops the run as
    diverged), as in PyTorch: the kernel's ReLU is not max(a, 0), which would hide it."""
    model = _net(2, 2)
    with torch.no_grad():
        model.hidden[0].weight[0, 0] = float("nan")
    X = torch.randn(10, 2, dtype=torch.float64)
    loss, _, _ = FusedChainStep(linear_chain(model)).probe(X, torch.randint(0, 2, (10,)))
    assert math.isnan(float(loss))
