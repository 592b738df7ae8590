"""Stage ``train``: train a bottleneck network with the configured loss and save checkpoints.

The whole prepared train set is held on the device as tensors; a batch is a slice of a seeded
permutation (no DataLoader, no per-sample Python). Nothing regularises the network unless the
config asks for it: weight decay, label smoothing, dropout or an EMA of the weights change the
limit that the theory predicts (Soudry et al., JMLR 2018), so all are off by default.

The loss (``loss``; formulas in :func:`cross_entropy_loss`, :func:`exponential_loss`,
:func:`hinge_loss`, :func:`mse_loss`) is taken in float64 from the logits z. ``cross_entropy``
(the default) and ``exponential`` have an exponential tail, for which gradient descent is
predicted to reach the max-margin direction; ``hinge`` and ``mse`` have none (hinge is zero once
every margin is 1; mse pulls the logits to the one-hot targets), as ablations. The optimizer
(``optimizer``) is ``sgd``, ``momentum``, ``adam`` or ``rmsprop``.

Outputs: one checkpoint file (a ``torch.save`` dict with the run keys, the arch settings and the
model's ``state_dict`` at every checkpoint epoch, the history and the training record) and a
per-epoch table (tab-separated, :data:`nnboundary.loop.HISTORY_COLUMNS`): ``epoch``, ``step``
(optimizer steps so far), ``loss`` = the configured loss (``loss`` setting; cross-entropy by
default), the mean over the epoch's batches weighted by batch size, before each step;
``end_loss`` = the train loss after the epoch (measured by the ``loss_scaled`` schedule, else
empty); ``train_acc`` = share of correctly classified train samples during the epoch; ``lr`` =
the step used; ``backtracks`` = epochs undone and redone before this one was accepted;
``seconds`` since the start; ``stop`` = on the last row, why the loop stopped. The step-size
schedule, the stopping rule and the checkpoint choice are :mod:`nnboundary.loop`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import catalog, io, kernels, ptfile
from .config import (
    BASE_VARIANT,
    DEFAULT_ARCH,
    ConfigError,
    DEFAULT_TRAIN,
    parse_settings,
    to_json,
)
from .loop import (  # noqa: F401  (TrainingDiverged and write_history are part of this API)
    Plan,
    Resume,
    TrainingDiverged,
    plan_loop,
    run_loop,
    write_history,
)
from .cli import per_run
from .models import build_model
from .prepare import Dataset, load_datasets


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


class GradientDescent:
    """Plain gradient descent, θ ← θ − lr·(∇L + weight_decay·θ): the algorithm the max-margin
    theory is about, with the interface the loop uses (``param_groups``, ``state``, ``step``,
    ``zero_grad``, ``state_dict``, ``load_state_dict``). It does what ``torch.optim.SGD`` without
    momentum does, one ``add_`` per parameter, but the first use of any ``torch.optim`` optimizer
    imports the compiler stack (torch._dynamo), about 1.2 s in every job that trains."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        self.param_groups = [{"params": list(params), "lr": float(lr),
                              "weight_decay": float(weight_decay)}]
        self.state: dict = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                p.add_(grad, alpha=-group["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"state": {}, "param_groups": [{"lr": g["lr"], "weight_decay": g["weight_decay"]}
                                               for g in self.param_groups]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for group, saved in zip(self.param_groups, state["param_groups"]):
            group["lr"], group["weight_decay"] = float(saved["lr"]), float(saved["weight_decay"])


def make_optimizer(params, settings: dict[str, Any]):
    name, lr, wd = settings["optimizer"], float(settings["lr"]), float(settings["weight_decay"])
    if name == "sgd":
        return GradientDescent(params, lr=lr, weight_decay=wd)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=float(settings["momentum"]), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":  # PyTorch's default alpha (0.99) and eps (1e-8)
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; allowed: sgd, momentum, adam, rmsprop")


# --------------------------------------------------------------------------------------------
# Losses: each maps logits z (n, K) and labels y (n,) to a scalar, the mean over the n samples.
# --------------------------------------------------------------------------------------------


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """mean_i [log Σ_k exp(z_ik) − z_{i,y_i}]; with label smoothing ε the target is
    (1 − ε)·onehot(y_i) + ε/K instead of onehot(y_i) (PyTorch's cross_entropy).

    Without label smoothing it is computed as mean_i log(1 + s_i), s_i = Σ_{k≠y_i}
    exp(z_ik − z_{i,y_i}), with log1p when every other logit is below the true one (M = 0) and
    M + log(e^{−M} + Σ_k exp(d_k − M)) otherwise (d_k = z_ik − z_{i,y_i}, M = max(0, max d_k)):
    the same value, but a sample's loss and gradient stay exact down to float64's smallest
    numbers. The log-sum-exp form rounds 1 + s to 1 once s < 1e-16 (a margin above 37), which
    sets the loss to 0 and the true class's gradient p_y − 1 to 0 while the others' stay: the
    terminal phase, where the direction converges, would be cut off and skewed."""
    if label_smoothing:
        return nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if logits.requires_grad and torch.is_grad_enabled():
        return _ExactCrossEntropy.apply(logits, y)
    return _cross_entropy_terms(logits, y)[0].mean()


class _ExactCrossEntropy(torch.autograd.Function):
    """:func:`cross_entropy_loss` without label smoothing, whose backward pass is the closed-form
    gradient of :func:`cross_entropy_gradient` (taken in the forward pass, with the loss): the
    same loss, the same gradient up to rounding, without the backward pass of the dozen
    elementwise operations of the exact-tail form (about a quarter of a full-batch step of the
    default MLP)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss, grad = cross_entropy_gradient(logits, y)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return upstream * grad, None


def _cross_entropy_terms(logits: torch.Tensor, y: torch.Tensor):
    """The per-sample loss of :func:`cross_entropy_loss` in its exact-tail form, and the terms it
    is made of: the one-hot mask of y, e_ik = exp(d_ik − M_i) (0 at k = y_i), e^{−M_i} and s_i."""
    true, mask = _true_class(logits, y)
    d = (logits - true).masked_fill(mask, -torch.inf)
    top = d.amax(1).clamp(min=0.0)
    e = torch.exp(d - top[:, None])
    s = e.sum(1)
    below = torch.exp(-top)
    loss = torch.where(top > 0, top + torch.log(below + s), torch.log1p(s))
    return loss, mask, e, below, s


def cross_entropy_gradient(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """The loss of :func:`cross_entropy_loss` (no label smoothing) and its gradient with respect
    to the logits, G = (P − onehot(y)) / n, P the softmax, in closed form.

    With d, M and s_i as there, e_ik = exp(d_ik − M_i) (k ≠ y_i), D_i = e^{−M_i} + s_i: P_ik =
    e_ik / D_i for k ≠ y_i and, for the true class, P_iy − 1 = −s_i / D_i, taken from the other
    classes' terms rather than as a difference from 1, so that the gradient, like the loss, stays
    exact far below float64's 1e-16 relative resolution. The same numbers as autograd through
    :func:`cross_entropy_loss`, without building its graph (``retrain_last`` uses it)."""
    n = logits.shape[0]
    loss, mask, e, below, s = _cross_entropy_terms(logits, y)
    denominator = (below + s)[:, None]
    grad = torch.where(mask, -s[:, None], e) / (denominator * max(n, 1))
    return loss.mean(), grad


def _true_class(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z_{i,y_i} as a column (n, 1) and the boolean one-hot mask of y (n, K)."""
    mask = nn.functional.one_hot(y, logits.shape[1]).bool()
    return logits.gather(1, y[:, None]), mask


def exponential_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_i Σ_{k≠y_i} exp(−(z_{i,y_i} − z_{i,k})); binary: exp(−y f) with f = z₁ − z₀, y = ±1.

    The k = y_i term (always 1) is masked out rather than subtracted, so that terms far below
    float64's 1e-16 relative resolution still count. Large margins of the wrong sign overflow
    to inf, which the training loop reports as divergence.
    """
    true, mask = _true_class(logits, y)
    return torch.exp(logits - true).masked_fill(mask, 0.0).sum(1).mean()


def hinge_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Crammer–Singer multi-class hinge mean_i max(0, 1 − (z_{i,y_i} − max_{k≠y_i} z_ik));
    binary: max(0, 1 − y f). Zero, with zero gradient, once every margin is at least 1."""
    true, mask = _true_class(logits, y)
    runner_up = logits.masked_fill(mask, -torch.inf).amax(1)
    return torch.clamp(1.0 - (true[:, 0] - runner_up), min=0.0).mean()


def mse_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_i Σ_k (z_ik − onehot(y_i)_k)², on the logits (no softmax)."""
    target = nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
    return (logits - target).square().sum(1).mean()


LOSSES = {
    "cross_entropy": cross_entropy_loss,
    "exponential": exponential_loss,
    "hinge": hinge_loss,
    "mse": mse_loss,
}


def make_loss(settings: dict[str, Any]):
    """The loss ``loss_fn(logits, y) -> scalar`` named by ``settings["loss"]`` (default
    cross_entropy). ``label_smoothing`` is applied to cross_entropy and must be 0 otherwise."""
    name = settings.get("loss", "cross_entropy")
    smoothing = float(settings.get("label_smoothing", 0.0))
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
    if name == "cross_entropy":
        return lambda logits, y: cross_entropy_loss(logits, y, label_smoothing=smoothing)
    if smoothing != 0:
        raise ValueError(
            f"train.label_smoothing is {smoothing} but train.loss is {name!r}: label smoothing "
            f"applies to cross_entropy only; set label_smoothing: 0 or loss: cross_entropy"
        )
    return LOSSES[name]


def set_determinism(seed: int, device: torch.device) -> None:
    """Seed every generator; on the CPU the same seed gives bit-identical results.

    Deterministic algorithms are switched on through the flag itself: the public
    ``torch.use_deterministic_algorithms`` also imports the compiler stack (torch._dynamo and
    torch._inductor), about 1.7 s in every training job, to set an option of theirs that only
    matters with ``compile: true``, which then imports it anyway."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if device.type == "cpu":
        flag = getattr(torch._C, "_set_deterministic_algorithms", None)
        if flag is None:  # pragma: no cover - older or newer torch without the private setter
            torch.use_deterministic_algorithms(True)
        else:
            flag(True)


def memory_format(settings: dict[str, Any], input_ndim: int) -> torch.memory_format:
    """channels-last for image batches (n, C, H, W) when ``settings["channels_last"]``."""
    if input_ndim == 4 and settings.get("channels_last", True):
        return torch.channels_last
    return torch.contiguous_format


def autocast_dtype(settings: dict[str, Any]) -> torch.dtype | None:
    """The backbone's autocast dtype: bf16 with ``amp: bf16``, else None (all float32)."""
    amp = settings.get("amp", "none")
    if amp == "bf16":
        return torch.bfloat16
    if amp != "none":
        raise ValueError(f"unknown amp {amp!r}; allowed: none, bf16")
    return None


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, settings: dict[str, Any]):
    """One optimisation step ``step(xb, yb) -> (loss, n_correct)`` (tensors, no host sync);
    ``step.gradient(xb, yb)`` is its first half (the loss and its gradient, no update),
    ``step.probe(xb, yb)`` its forward pass (:func:`step_of`).

    The backbone runs under bf16 autocast when ``amp: bf16``; the bottleneck, the last layer and
    the loss stay in full precision: the max-margin limit is approached at per-sample losses far
    below bf16's resolution (its 8-bit mantissa resolves about 4e-3 relative). The loss
    (:func:`make_loss`) is taken in float64: with cross-entropy, past a per-sample loss of ~6e-8
    float32 rounds p_y to 1, so the true class's gradient (p_y − 1) vanishes while the others'
    (p_k) does not, which skews the very late phase in which the direction converges; the
    exponential loss's terms likewise fall below float32's range. ``compile: true`` wraps the
    model in ``torch.compile``.
    """
    amp = autocast_dtype(settings)
    layers = linear_chain(model)
    if layers is not None and amp is None and not settings.get("compile", False) \
            and _closed_form_loss(settings):
        if settings.get("kernel", "auto") == "auto" and kernels.fusable(layers):
            return step_of(fused_chain_gradient(layers), optimizer, "fused")
        return step_of(chain_gradient(layers), optimizer, "closed_form")
    forward = torch.compile(model) if settings.get("compile", False) else model
    loss_fn = make_loss(settings)

    def probe(xb: torch.Tensor, yb: torch.Tensor):
        """The loss and correct count at the current weights; ``finish()`` leaves their
        gradient in .grad."""
        logits = forward(xb, autocast_dtype=amp) if amp is not None else forward(xb)
        loss = loss_fn(logits.double(), yb)

        def finish() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()

        return loss.detach(), (logits.detach().argmax(1) == yb).sum(), finish

    return step_of(probe, optimizer, "autograd")


def _closed_form_loss(settings: dict[str, Any]) -> bool:
    """Whether the loss is the cross-entropy without label smoothing, whose gradient with
    respect to the logits :func:`cross_entropy_gradient` gives in closed form."""
    return (settings.get("loss", "cross_entropy") == "cross_entropy"
            and not float(settings.get("label_smoothing", 0.0)))


def linear_chain(model: nn.Module) -> list[tuple[nn.Linear, bool]] | None:
    """The layers of a network that is a chain of linear layers, each followed by a ReLU or by
    nothing: ``[(layer, relu after it), ...]``, the last layer last; None for any other network.

    A :class:`~nnboundary.models.BottleneckNet` is one when its backbone only flattens (the
    ``mlp``), its hidden layer is Linear + ReLU or absent, its bottleneck's activation is ``relu``
    or ``identity`` (or it has none), and it holds no dropout, BatchNorm or user module; a lone
    ``nn.Linear`` (a retrained last layer) is the chain of one layer."""
    if isinstance(model, nn.Linear):
        return [(model, False)] if model.bias is not None else None
    from .models import BottleneckNet

    if type(model) is not BottleneckNet or type(model.backbone) is not nn.Flatten:
        return None
    chain: list[tuple[nn.Linear, bool]] = []
    if type(model.hidden) is nn.Sequential:
        parts = list(model.hidden)
        if [type(m) for m in parts] != [nn.Linear, nn.ReLU]:
            return None
        chain.append((parts[0], True))
    elif type(model.hidden) is not nn.Identity:
        return None
    if type(model.bottleneck) is nn.Linear:
        if type(model.activation) not in (nn.ReLU, nn.Identity):
            return None
        chain.append((model.bottleneck, type(model.activation) is nn.ReLU))
    elif type(model.bottleneck) is not nn.Identity or type(model.activation) is not nn.Identity:
        return None
    chain.append((model.last, False))
    if any(type(layer) is not nn.Linear or layer.bias is None for layer, _ in chain):
        return None
    return chain


def chain_gradient(layers: list[tuple[nn.Linear, bool]]):
    """``probe(xb, yb) -> (loss, n_correct, finish)`` (:func:`step_of`) of a
    :func:`linear_chain` network under the cross-entropy without label smoothing, its gradient
    taken in closed form by ``finish()`` instead of by autograd: the
    forward pass a_l = h_{l−1} W_lᵀ + b_l, h_l = relu(a_l) (or a_l), the logits' gradient G_L
    from :func:`cross_entropy_gradient`, then for each layer from the last ∇W_l = G_lᵀ h_{l−1},
    ∇b_l = Σ_i G_l,i and G_{l−1} = (G_l W_l) ⊙ [h_{l−1} > 0]. The same products autograd
    computes, without building its graph or keeping its saved tensors: a full-batch step of
    the default MLP in 0.56-0.65x the time on the default grid's datasets (``benchmark steps``,
    ``docs/benchmarks/train_steps_cpu.json``). The logits and G are taken in float64 (as
    :func:`make_step` does), G cast back to the network's dtype."""

    # The activations and the hidden layers' gradients are written into buffers kept from one
    # call to the next (one per role, layer, shape and dtype): a full-batch step of 4,000 points
    # otherwise allocates and frees several 3.2 MB arrays, and each fresh one is zero-filled
    # page by page by the kernel. A probe's finish() must come before the next probe.
    buffers: dict[tuple, torch.Tensor] = {}
    latest = [0]

    def buffer(key: tuple, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        spec = (key, rows, cols, like.dtype, like.device)
        if spec not in buffers:
            buffers[spec] = torch.empty(rows, cols, dtype=like.dtype, device=like.device)
        return buffers[spec]

    @torch.no_grad()
    def probe(xb: torch.Tensor, yb: torch.Tensor):
        latest[0] += 1
        generation, rows = latest[0], xb.shape[0]
        inputs = [xb.flatten(1)]
        for i, (layer, relu) in enumerate(layers[:-1]):
            a = torch.addmm(layer.bias, inputs[-1], layer.weight.t(),
                            out=buffer(("a", i), rows, layer.out_features, inputs[-1]))
            inputs.append(a.clamp_(min=0.0) if relu else a)
        last = layers[-1][0]
        logits = torch.addmm(last.bias, inputs[-1], last.weight.t())
        loss, grad = cross_entropy_gradient(logits.double(), yb)

        @torch.no_grad()
        def finish() -> None:
            if generation != latest[0]:
                raise RuntimeError("chain_gradient: finish() after a later probe overwrote "
                                   "the activations it needs")
            g = grad.to(logits.dtype)
            for i in range(len(layers) - 1, -1, -1):
                layer, inputs_i = layers[i][0], inputs[i]
                # Gᵀh, with the narrower factor transposed on the left (up to 2x faster for
                # tall thin factors, e.g. the 2-D inputs of 4,000 points against 100 units).
                if inputs_i.shape[1] < g.shape[1]:
                    layer.weight.grad = (inputs_i.t() @ g).t()
                else:
                    layer.weight.grad = g.t() @ inputs_i
                layer.bias.grad = g.sum(0)
                if i > 0:
                    g = torch.mm(g, layer.weight,
                                 out=buffer(("g", i), rows, layer.in_features, g))
                    if layers[i - 1][1]:  # in place: zero where the ReLU's output is 0
                        torch.ops.aten.threshold_backward.grad_input(g, inputs_i, 0.0,
                                                                     grad_input=g)

        return loss, (logits.argmax(1) == yb).sum(), finish

    return probe


def fused_chain_gradient(layers: list[tuple[nn.Linear, bool]]):
    """:func:`chain_gradient`'s ``probe`` for the chains that :func:`nnboundary.kernels.fusable`
    accepts (the default MLP on the CPU in float64), computed by the fused kernel
    :func:`nnboundary.kernels.chain_step`: the same loss and gradient to float64 round-off,
    2.6-4x faster per step on the 2-D sets, 2-2.6x on digits; a lone linear layer (a retrained
    last layer) by :func:`nnboundary.kernels.linear_step`.
    A wide input (:func:`nnboundary.kernels.wide`) has its first layer's products by the BLAS:
    Z = X W1ᵀ before the kernel, ∇W1 = G1ᵀ X after it, in buffers kept between calls.

    The kernel takes the gradient in the same pass as the loss (a fused pass with the gradient
    costs well under a forward pass now plus a second pass later for the 5 epochs in 6 that
    are accepted), into one of two sets of buffers; ``finish()`` hands that set to ``.grad``,
    and the next probe writes into the other one, so that the gradient in ``.grad`` outlives an
    undone epoch (:func:`nnboundary.loop.run_loop`)."""
    params = [p for layer, _ in layers for p in (layer.weight, layer.bias)]
    first = layers[0][0]
    relu2 = len(layers) == 3 and layers[1][1]
    lone = len(layers) == 1  # a retrained last layer: kernels.linear_step
    wide = not lone and kernels.wide(first.in_features)
    rows: dict[str, torch.Tensor] = {}  # wide inputs: X W1ᵀ and G1, n × H, kept between calls
    # wide inputs: the kernel gets no W1ᵀ and writes no ∇W1ᵀ (empty stand-ins)
    no_first = np.empty((0, first.out_features))

    def buffers() -> list[torch.Tensor]:
        # ∇W1 transposed (d × H) as the chain kernel writes it; for a wide input or a lone
        # layer in W1's own layout (H × d): for a wide input the faster of the two products
        # G1ᵀ X (3.2 against 4.2 ms on MNIST 0/1)
        shape = (first.out_features, first.in_features)
        first_grad = torch.empty(shape if wide or lone else shape[::-1], dtype=torch.float64)
        return [first_grad, *(torch.empty_like(p, memory_format=torch.contiguous_format)
                              for p in params[1:])]

    def buffer(name: str, n: int) -> torch.Tensor:
        if name not in rows or rows[name].shape[0] != n:
            rows[name] = torch.empty(n, first.out_features, dtype=torch.float64)
        return rows[name]

    # numpy views, taken once, of what keeps its storage from call to call: the parameters
    # (updated in place; taken again if one's storage moved), the gradient buffers and the
    # last input (the full batch, the same tensors every epoch). Fourteen .numpy() calls and
    # copies per step cost about a tenth of the kernel's time on the 2-D sets.
    held_views: dict[str, Any] = {"pointers": None, "input": None}
    # W1ᵀ as the chain kernel reads it (d × H), refreshed every call; a wide input's first
    # layer goes to the BLAS and a lone layer has no W1ᵀ
    first_t = None if wide or lone else np.empty((first.in_features, first.out_features))

    def weights() -> list[np.ndarray]:
        pointers = [p.data_ptr() for p in params]
        if pointers != held_views["pointers"]:
            held_views["pointers"] = pointers
            held_views["weights"] = [p.detach().numpy() for p in params]
        return held_views["weights"]

    def inputs(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, np.ndarray,
                                                            np.ndarray]:
        last = held_views["input"]
        if last is None or last[0] is not xb or last[1] is not yb:
            X = xb.flatten(1).contiguous()
            last = held_views["input"] = (xb, yb, X, X.numpy(), yb.contiguous().numpy())
        return last[2:]

    def run(xb: torch.Tensor, yb: torch.Tensor, index: int | None):
        """The kernel's loss and count; with ``index``, the gradient into that set."""
        X, X_np, y_np = inputs(xb, yb)
        arrays = list(set_views[index]) if index is not None else None
        current = weights()
        if lone:
            return kernels.linear_step(X_np, y_np, current, arrays)
        if not wide:
            np.copyto(first_t, current[0].T)
            return kernels.chain_step(X_np, y_np, [first_t, *current[1:]], relu2, arrays)
        # the first layer's products by the BLAS: Z = X W1ᵀ before, ∇W1 = G1ᵀ X after
        Z = torch.mm(X, first.weight.t(), out=buffer("Z", X.shape[0]))
        G1 = buffer("G1", X.shape[0]) if index is not None else None
        if arrays is not None:
            arrays[0] = no_first
        result = kernels.chain_step(X_np, y_np, [no_first, *current[1:]], relu2, arrays,
                                    Z.numpy(), None if G1 is None else G1.numpy())
        if index is not None:
            torch.mm(G1.t(), X, out=sets[index][0])
        return result

    sets = [buffers(), buffers()]
    set_views = [[g.numpy() for g in grads] for grads in sets]
    held = [1]  # the set handed to .grad last
    latest = [0]

    @torch.no_grad()
    def probe(xb: torch.Tensor, yb: torch.Tensor):
        latest[0] += 1
        generation, index = latest[0], 1 - held[0]
        grads = sets[index]
        loss, correct = run(xb, yb, index)

        def finish() -> None:
            if generation != latest[0]:
                raise RuntimeError("fused_chain_gradient: finish() after a later probe")
            first.weight.grad = grads[0] if wide or lone else grads[0].t()
            for param, grad in zip(params[1:], grads[1:]):
                param.grad = grad
            held[0] = index

        return (torch.tensor(loss, dtype=torch.float64), torch.tensor(correct, dtype=torch.int64),
                finish)

    @torch.no_grad()
    def loss_only(xb: torch.Tensor, yb: torch.Tensor) -> float:
        return run(xb, yb, None)[0]

    probe.loss = loss_only  # the same loss without the gradient (make_evaluate)
    return probe


def step_of(probe, optimizer, kernel: str = "autograd"):
    """The step ``step(xb, yb) -> (loss, n_correct)`` from ``probe(xb, yb) -> (loss, n_correct,
    finish)``, the forward pass, ``finish()`` leaving the gradient in ``.grad``: the gradient,
    then the optimizer's update. ``step.gradient(xb, yb)`` is the first half alone (the loss,
    correct count and gradient, no update), ``step.probe`` the forward pass alone: the loop's
    full-batch path takes them apart (:func:`nnboundary.loop.run_loop`), and finishes the
    gradient of an epoch only once the loss has accepted it. ``step.kernel`` names what takes
    the gradient (``fused``, ``closed_form`` or ``autograd``; the training record keeps it)."""

    def gradient(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, correct, finish = probe(xb, yb)
        finish()
        return loss, correct

    def step(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, correct = gradient(xb, yb)
        optimizer.step()
        return loss, correct

    step.gradient, step.probe, step.kernel = gradient, probe, kernel
    return step


def training_record(settings: dict[str, Any], n: int, batch: int, lr: float | None = None,
                    **extra: Any) -> dict[str, Any]:
    """What a training loop actually ran with, after every layer of the config was applied: the
    optimizer, the learning rate used (``lr``: for ``retrain_last`` with ``lr_relative`` the
    absolute step, not the configured multiple of 1/L; with ``schedule: loss_scaled`` the base
    step that the schedule scales), the loss, the step-size schedule and its cap, the stopping
    loss, the float dtype, the epoch cap, the batch size (the full set for full-batch
    training), the optimizer steps per epoch (⌈n / batch⌉: the last batch may be smaller), the
    number of train samples, and the momentum and weight decay. After training, :func:`finish`
    adds why and when the loop stopped. It is stored in the checkpoint file, every feature file and every row of
    the metrics table, so anyone can check which settings produced a number."""
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


def torch_dtype(settings: dict[str, Any]) -> torch.dtype:
    """The parameters' and inputs' dtype: ``float32`` or ``float64`` (``dtype`` setting)."""
    name = settings.get("dtype", "float32")
    if name not in ("float32", "float64"):
        raise ValueError(f"unknown dtype {name!r}; allowed: float32, float64")
    return getattr(torch, name)


def dropouts(model: nn.Module) -> list[nn.Module]:
    """The dropout layers of a model (e.g. a torchvision backbone's): with them the training
    loss is not the eval-mode loss, so the fused one-pass loop does not apply."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def kept_bn_buffers(model: nn.Module):
    """Run a train-mode forward without changing any BatchNorm running statistic."""
    norms = batch_norms(model)
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        for module, buffers in zip(norms, saved):
            for name, value in buffers.items():
                getattr(module, name).copy_(value)


def chunks(X: torch.Tensor, size: int, fmt: torch.memory_format = torch.contiguous_format):
    for lo in range(0, X.shape[0], size):
        yield lo, X[lo:lo + size].contiguous(memory_format=fmt)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, X: torch.Tensor, size: int,
                   fmt: torch.memory_format = torch.contiguous_format) -> None:
    """Recompute every BatchNorm running statistic on the whole train set X for the current
    weights: the running mean and variance become the average of the statistics of chunks of
    ``size`` samples (PyTorch's cumulative average, momentum None), the statistics a forward
    pass in training mode normalises with. The model's modes are restored."""
    norms = batch_norms(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for _, xb in chunks(X, size, fmt):
        model.features(xb)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    for m, mode in modes:
        m.train(mode)


@torch.no_grad()
def train_features(model: nn.Module, X: torch.Tensor, size: int,
                   fmt: torch.memory_format = torch.contiguous_format,
                   amp: torch.dtype | None = None) -> torch.Tensor:
    """The features h of X in the model's current modes (BatchNorm statistics untouched), in
    chunks of ``size``, optionally under autocast."""
    with kept_bn_buffers(model):
        return torch.cat([model.features(xb, autocast_dtype=amp) if amp is not None else
                          model.features(xb) for _, xb in chunks(X, size, fmt)])


def relative_shift(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖_F / ‖b‖_F (0 when both are 0)."""
    a, b = a.double(), b.double()
    norm = float(torch.linalg.norm(b))
    return float(torch.linalg.norm(a - b)) / norm if norm > 0 else float(torch.linalg.norm(a))


def make_evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, size: int,
                  settings: dict[str, Any], fmt: torch.memory_format = torch.contiguous_format,
                  step=None):
    """``evaluate() -> float``: the configured loss on the whole train set at the current
    weights, in the model's current modes, in chunks of ``size`` (BatchNorm statistics
    untouched), taken in float64 from the logits. For a full-batch ``step`` whose kernel is
    ``fused``, that kernel's loss (:func:`fused_chain_gradient`), so that a loss measured here
    and one measured by a step are the same number, not two roundings of it."""
    fused_loss = getattr(getattr(step, "probe", None), "loss", None)
    if fused_loss is not None and size >= X.shape[0]:
        return lambda: fused_loss(X, y)
    loss_fn = make_loss(settings)
    amp = autocast_dtype(settings)

    @torch.no_grad()
    def evaluate() -> float:
        total = 0.0
        with kept_bn_buffers(model):
            for lo, xb in chunks(X, size, fmt):
                logits = model(xb, autocast_dtype=amp) if amp is not None else model(xb)
                yb = y[lo:lo + xb.shape[0]]
                total += float(loss_fn(logits.double(), yb)) * len(yb)
        return total / max(X.shape[0], 1)

    return evaluate


def finish(record: dict[str, Any], result) -> dict[str, Any]:
    """The training record with how the loop ended: ``stop`` (a reason of
    :data:`nnboundary.loop.STOP_REASONS`), ``stop_epoch``, ``stop_step`` and the final train loss
    of the history (``final_loss``: the measured end-of-epoch loss when there is one)."""
    last = result.history[-1] if result.history else None
    final = float("nan")
    if last is not None:
        final = last.end_loss if np.isfinite(last.end_loss) else last.loss
    return {**record, "stop": result.stop, "stop_epoch": int(result.stop_epoch),
            "stop_step": int(result.stop_epoch) * int(record["steps_per_epoch"]),
            "final_loss": float(final)}


def train_run(data: Dataset, arch: str, seed: int, arch_settings: dict[str, Any],
              settings: dict[str, Any], log=sys.stderr, variant: str = BASE_VARIANT,
              resume_path: str | Path | None = None, keep_finished: bool = False
              ) -> dict[str, Any]:
    """Train one run; return the checkpoint dict (see the module docstring) with its history.

    With ``resume_path``, a resumable checkpoint is kept there every ``settings["resume_every"]``
    epochs (at least ``resume_min_seconds`` apart) and a job started again continues from it
    (:class:`nnboundary.loop.Resume`); with ``keep_finished`` the finished run's result is kept
    there too and a job started again takes it as it is (a job of several seeds: see :func:`main`).

    BatchNorm networks: while they train with batch statistics, their running statistics are
    recomputed on the whole train set before every checkpoint (:func:`recalibrate_bn`), so the
    saved network's eval-mode features, which the SVM is fitted on, use the train set's
    statistics for those weights. With ``bn_eval_after: N`` the statistics are recomputed once
    more after epoch N and then frozen: the later epochs train with BatchNorm in eval mode, so
    the last layer is trained on exactly the features the SVM sees. Each checkpoint records
    ``bn_feature_shift`` = ‖H_seen − H_eval‖_F / ‖H_eval‖_F over the train set, H_seen the
    features in the mode the network was trained in at that epoch (batch statistics over batches
    of the training size, or the frozen statistics) and H_eval the saved network's eval-mode
    features: batch-statistics noise while it trains with batch statistics (about 0 for
    full-batch training), 0 once they are frozen. With ``amp: bf16`` also ``amp_feature_shift``,
    the same between its bf16-autocast and float32 eval-mode features."""
    device = resolve_device(settings["device"])
    set_determinism(seed, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed batch shape
    fmt = memory_format(settings, data.X_train.ndim)
    dtype = torch_dtype(settings)
    model = build_model(arch, data.input_shape, data.n_classes, arch_settings)
    model = model.to(device=device, dtype=dtype, memory_format=fmt)
    # The whole train set lives on the device; a batch is an index into it.
    X = torch.from_numpy(data.X_train).to(device=device, dtype=dtype).contiguous(
        memory_format=fmt)
    y = torch.from_numpy(data.y_train).to(device)
    n = X.shape[0]
    plan = plan_loop(settings, n)
    optimizer = make_optimizer(model.parameters(), settings)
    step = make_step(model, optimizer, settings)
    shuffle = torch.Generator(device=device).manual_seed(seed)
    evaluate = make_evaluate(model, X, y, plan.batch, settings, fmt, step)
    has_bn = bool(batch_norms(model))
    eval_after = settings.get("bn_eval_after")
    amp = autocast_dtype(settings)

    record = training_record(settings, n, plan.batch, kernel=step.kernel)
    print(f"training {data.name}/{arch}/{variant} seed {seed} on {device}: {n} samples, "
          f"batch {plan.batch}, at most {plan.epochs} epochs, {settings['optimizer']} lr "
          f"{settings['lr']} ({record['schedule']}), loss {record['loss']}, {dtype}", file=log)
    print(f"ran with: {to_json(record)}", file=log)

    def bn_eval_phase(epoch: int) -> bool:
        return has_bn and eval_after is not None and epoch > int(eval_after)

    def before_epoch(epoch: int) -> None:
        if bn_eval_phase(epoch):  # BatchNorm frozen on the train set's statistics
            if epoch == int(eval_after) + 1:  # (a resumed job restored the frozen ones)
                recalibrate_bn(model, X, plan.batch, fmt)
            for module in batch_norms(model):
                module.eval()

    shifts: dict = {}

    def snapshot(epoch: int) -> dict[str, torch.Tensor]:
        if has_bn or amp is not None:
            modes = [(m, m.training) for m in model.modules()]
            seen = train_features(model, X, plan.batch, fmt) if has_bn else None
            if has_bn and not bn_eval_phase(epoch):  # frozen statistics stay as trained
                recalibrate_bn(model, X, plan.batch, fmt)
            model.eval()
            evaluated = train_features(model, X, plan.batch, fmt)  # what the SVM is fitted on
            measured = {}
            if has_bn:
                measured["bn_feature_shift"] = relative_shift(seen, evaluated)
            if amp is not None:
                measured["amp_feature_shift"] = relative_shift(
                    train_features(model, X, plan.batch, fmt, amp), evaluated)
            for m, mode in modes:
                m.train(mode)
            shifts[epoch] = measured
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    resume = None
    if resume_path is not None:
        fingerprint = to_json({"keys": [data.name, arch, variant, seed], "data": data.meta,
                               "arch": arch_settings, "train": settings})
        resume = Resume(resume_path, int(settings.get("resume_every", 0)), fingerprint, model,
                        optimizer, shuffle, float(settings.get("resume_min_seconds", 0.0)))
        done = resume.finished(log)
        if done is not None:
            return done
    result = run_loop(
        model, optimizer, step, evaluate, X, y, settings, plan, snapshot, shuffle,
        f"dataset {data.name}, arch {arch}, variant {variant}, seed {seed}", "train", log, fmt,
        resume, before_epoch, extra=shifts, fused=not has_bn and not dropouts(model),
    )
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
        "feature_shifts": {e: shifts[e] for e in result.states if e in shifts},
        "history": [tuple(row) for row in result.history],  # plain tuples: torch.load-safe
    }
    if resume is not None and keep_finished:
        resume.save_result(output)
    return output


def save_checkpoints(path: str | Path, result: dict[str, Any]) -> None:
    with io.atomic_path(path) as tmp:
        torch.save(result, tmp)


def load_checkpoints(path: str | Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        raise ptfile.corrupt_checkpoint(path, err) from err


def model_at(checkpoints: dict[str, Any], epoch: int) -> nn.Module:
    """Rebuild the model of ``checkpoints`` with its weights at ``epoch``, in eval mode on the CPU."""
    keys = checkpoints["keys"]
    model = build_model(keys["arch"], tuple(checkpoints["input_shape"]), checkpoints["n_classes"],
                        checkpoints["arch_settings"])
    state = checkpoints["states"][epoch]
    # The saved dtypes: the network's, and the last layer's (a retrained one may differ).
    body = next((k for k, v in state.items() if not k.startswith("last.")
                 and v.is_floating_point()), "last.weight")
    model.to(state_dtype(state, body))
    model.last.to(state_dtype(state, "last.weight"))
    model.load_state_dict(state)
    return model.eval()


def state_dtype(state: dict[str, torch.Tensor], name: str) -> torch.dtype:
    """The dtype of tensor ``name`` of a saved state (float32 if absent)."""
    tensor = state.get(name)
    return tensor.dtype if tensor is not None and tensor.is_floating_point() else torch.float32


def parse_arch_settings(arch: str, text: str) -> dict[str, Any]:
    """``--arch-settings`` of a built-in arch (checked against its defaults) or of a user arch
    (which must hold its ``source`` or ``backbone``)."""
    if arch in catalog.ARCHS:
        return parse_settings(text, catalog.ARCHS[arch].defaults)
    settings = parse_settings(text)
    if "source" not in settings and "backbone" not in settings:
        raise ConfigError(f"--arch {arch}: not a built-in arch ({', '.join(DEFAULT_ARCH)}), and "
                          f"--arch-settings has neither source nor backbone")
    return settings


def add_output_arguments(parser: argparse.ArgumentParser, checkpoint_flag: str) -> None:
    """The arguments every training-like stage shares: threads and its two outputs."""
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(checkpoint_flag, required=True, nargs="+",
                        help="checkpoint file to write (.pt), one per run")
    parser.add_argument("--history", required=True, nargs="+",
                        help="per-epoch table to write (.tsv), one per run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, nargs="+",
                        help="prepared dataset (.npz): one per seed, or one for all")
    parser.add_argument("--arch", required=True,
                        help=f"a built-in arch ({', '.join(DEFAULT_ARCH)}) or your own (its "
                             f"--arch-settings hold its source or backbone)")
    parser.add_argument("--seed", type=int, required=True, nargs="+",
                        help="the run's seed; several: one run each, one after the other")
    parser.add_argument("--variant", default=BASE_VARIANT, help="the run's ablation variant name")
    parser.add_argument("--arch-settings", default="", help="JSON object of arch settings")
    parser.add_argument("--settings", default="", help="JSON object of train settings")
    add_output_arguments(parser, "--checkpoints")
    parser.add_argument("--cpus", type=int, default=None,
                        help="CPUs this job may use (default: --threads): with several seeds, "
                             "cpus // threads of them train at a time, each in its own process")
    args = parser.parse_args(argv)
    runs = per_run(parser, args, ("seed", "data", "checkpoints", "history"), shared=("data",))
    threads = max(1, args.threads)
    torch.set_num_threads(threads)
    arch_settings = parse_arch_settings(args.arch, args.arch_settings)
    settings = parse_settings(args.settings, DEFAULT_TRAIN)
    data = load_datasets(args.data)
    jobs = [(data[data_path], args.arch, seed, arch_settings, settings, args.variant,
             checkpoints, history, len(runs) > 1)
            for seed, data_path, checkpoints, history in runs]
    at_once = min(len(jobs), max(1, (args.cpus or threads) // threads))
    if at_once > 1:
        # Forked workers inherit the imported torch (no second import) and train one seed each,
        # single-threaded as configured: each seed's result is the one it gets alone.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(at_once, mp_context=multiprocessing.get_context("fork")) as pool:
            for done in [pool.submit(_train_and_write, *job) for job in jobs]:
                done.result()
    else:
        for job in jobs:
            _train_and_write(*job)
    for _, _, checkpoints, _ in runs:  # every output is complete: nothing to resume
        _resume_path(checkpoints).unlink(missing_ok=True)
    return 0


def _resume_path(checkpoints: str) -> Path:
    """The resumable checkpoint (:class:`nnboundary.loop.Resume`) kept beside a run's output."""
    return Path(f"{checkpoints}.resume")


def _train_and_write(data: Dataset, arch: str, seed: int, arch_settings: dict[str, Any],
                     settings: dict[str, Any], variant: str, checkpoints: str, history: str,
                     keep_finished: bool) -> None:
    """One seed of a train job: train it (resuming from ``<checkpoints>.resume``) and write its
    history and checkpoint file. In a job of several seeds its log lines start with
    ``[seed N]``, so that the seeds trained at the same time can be told apart."""
    log = _SeedLog(seed, sys.stderr) if keep_finished else sys.stderr
    result = train_run(data, arch, seed, arch_settings, settings, log=log, variant=variant,
                       resume_path=_resume_path(checkpoints), keep_finished=keep_finished)
    write_history(history, result["history"])
    save_checkpoints(checkpoints, result)


class _SeedLog:
    """A text stream that writes whole lines to ``stream``, each prefixed with ``[seed N]``."""

    def __init__(self, seed: int, stream):
        self.prefix, self.stream, self.pending = f"[seed {seed}] ", stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
