"""One optimisation step, as an object: the forward pass (:meth:`Step.probe`), its gradient
(:meth:`Step.gradient`), the update (calling the step) and, where a kernel computes it, the
loss alone (:meth:`Step.loss`). :func:`make_step` picks what takes the gradient (``kernel``,
kept in the training record):

- ``fused`` (:class:`FusedChainStep`): the default MLP (or a retrained last layer) in float64 on
  the CPU, by the one-pass kernels of :mod:`nnboundary.training.kernels`;
- ``closed_form`` (:class:`ChainStep`): any other chain of linear layers and ReLUs under the
  cross-entropy, its gradient in closed form in PyTorch;
- ``autograd`` (:class:`AutogradStep`): every other network, loss or precision.

All three give the same loss and gradient to float64 round-off (``tests/test_kernels.py``).
The loss is taken in float64 from the logits (:mod:`nnboundary.training.losses`): with
cross-entropy, past a per-sample loss of ~6e-8 float32 rounds p_y to 1, so the true class's
gradient (p_y − 1) vanishes while the others' (p_k) does not, which skews the very late phase
in which the direction converges.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from . import kernels
from .batchnorm import chunks, kept_bn_buffers
from .losses import closed_form_loss, cross_entropy_gradient, make_loss
from .precision import autocast_dtype


class Probe(NamedTuple):
    """A forward pass: the loss and correct count at the current weights, and ``finish()``,
    which leaves their gradient in ``.grad``."""

    loss: torch.Tensor
    correct: torch.Tensor
    finish: Callable[[], None]


class Step:
    """One optimisation step of a model under the run's loss. ``step(xb, yb) -> (loss,
    n_correct)`` (tensors, no host sync) takes the gradient and updates the weights;
    :meth:`gradient` is its first half; :meth:`probe` the forward pass alone, whose ``finish``
    the full-batch loop calls only once the loss has accepted the epoch
    (:func:`nnboundary.training.loop.run_loop`). ``optimizer`` may be None for a step used only
    for its gradient."""

    #: What takes the gradient: ``fused``, ``closed_form`` or ``autograd``.
    kernel = "autograd"
    #: Whether :meth:`loss` computes the loss by the step's own kernel.
    own_loss = False

    def __init__(self, optimizer=None):
        self.optimizer = optimizer

    def probe(self, xb: torch.Tensor, yb: torch.Tensor) -> Probe:
        raise NotImplementedError

    def gradient(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and correct count at the current weights, their gradient in ``.grad``."""
        loss, correct, finish = self.probe(xb, yb)
        finish()
        return loss, correct

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, correct = self.gradient(xb, yb)
        self.optimizer.step()
        return loss, correct

    def loss(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        """The loss alone, by the step's own kernel (only where :attr:`own_loss`)."""
        raise NotImplementedError(f"a {self.kernel} step computes no loss of its own")


class AutogradStep(Step):
    """The gradient by autograd, through the model (``compile: true``: ``torch.compile``'d) and
    the configured loss; the backbone under bf16 autocast with ``amp: bf16``, the bottleneck,
    last layer and loss in full precision (the max-margin limit is approached at per-sample
    losses far below bf16's resolution)."""

    def __init__(self, model: nn.Module, optimizer, settings: dict[str, Any]):
        super().__init__(optimizer)
        self.amp = autocast_dtype(settings)
        self.forward = torch.compile(model) if settings.get("compile", False) else model
        self.loss_fn = make_loss(settings)

    def probe(self, xb: torch.Tensor, yb: torch.Tensor) -> Probe:
        logits = (self.forward(xb, autocast_dtype=self.amp) if self.amp is not None
                  else self.forward(xb))
        loss = self.loss_fn(logits.double(), yb)

        def finish() -> None:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()

        return Probe(loss.detach(), (logits.detach().argmax(1) == yb).sum(), finish)


def linear_chain(model: nn.Module) -> list[tuple[nn.Linear, bool]] | None:
    """The layers of a network that is a chain of linear layers, each followed by a ReLU or by
    nothing: ``[(layer, relu after it), ...]``, the last layer last; None for any other network.

    A :class:`~nnboundary.models.networks.BottleneckNet` is one when its backbone only flattens
    (the ``mlp``), its hidden layer is Linear + ReLU or absent, its bottleneck's activation is
    ``relu`` or ``identity`` (or it has none), and it holds no dropout, BatchNorm or user
    module; a lone ``nn.Linear`` (a retrained last layer) is the chain of one layer."""
    if isinstance(model, nn.Linear):
        return [(model, False)] if model.bias is not None else None
    from ..models.networks import BottleneckNet

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


class _Generations:
    """Which probe is the latest: a probe's ``finish`` needs buffers that a later probe
    overwrites, so a ``finish`` after a later probe is refused."""

    def __init__(self, name: str):
        self.name, self.latest = name, 0

    def next(self) -> int:
        self.latest += 1
        return self.latest

    def check(self, generation: int) -> None:
        if generation != self.latest:
            raise RuntimeError(f"{self.name}: finish() after a later probe overwrote the "
                               f"buffers it needs")


class ChainStep(Step):
    """The gradient of a :func:`linear_chain` network under the cross-entropy without label
    smoothing, in closed form instead of by autograd: the forward pass a_l = h_{l−1} W_lᵀ + b_l,
    h_l = relu(a_l) (or a_l), the logits' gradient G_L from
    :func:`nnboundary.training.losses.cross_entropy_gradient`, then for each layer from the last
    ∇W_l = G_lᵀ h_{l−1}, ∇b_l = Σ_i G_l,i and G_{l−1} = (G_l W_l) ⊙ [h_{l−1} > 0]. The same
    products autograd computes, without building its graph or keeping its saved tensors: a
    full-batch step of the default MLP in 0.56-0.65x the time on the default grid's datasets
    (``benchmark steps``, ``docs/benchmarks/train_steps_cpu.json``). The logits and G are taken
    in float64, G cast back to the network's dtype.

    The activations and the hidden layers' gradients are written into buffers kept from one
    call to the next (one per role, layer, shape and dtype): a full-batch step of 4,000 points
    otherwise allocates and frees several 3.2 MB arrays, and each fresh one is zero-filled page
    by page by the kernel. A probe's ``finish()`` must come before the next probe."""

    kernel = "closed_form"

    def __init__(self, layers: list[tuple[nn.Linear, bool]], optimizer=None):
        super().__init__(optimizer)
        self.layers = layers
        self.buffers: dict[tuple, torch.Tensor] = {}
        self.generations = _Generations("ChainStep")

    def _buffer(self, key: tuple, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        spec = (key, rows, cols, like.dtype, like.device)
        if spec not in self.buffers:
            self.buffers[spec] = torch.empty(rows, cols, dtype=like.dtype, device=like.device)
        return self.buffers[spec]

    @torch.no_grad()
    def probe(self, xb: torch.Tensor, yb: torch.Tensor) -> Probe:
        generation, rows = self.generations.next(), xb.shape[0]
        inputs = [xb.flatten(1)]
        for i, (layer, relu) in enumerate(self.layers[:-1]):
            a = torch.addmm(layer.bias, inputs[-1], layer.weight.t(),
                            out=self._buffer(("a", i), rows, layer.out_features, inputs[-1]))
            inputs.append(a.clamp_(min=0.0) if relu else a)
        last = self.layers[-1][0]
        logits = torch.addmm(last.bias, inputs[-1], last.weight.t())
        loss, grad = cross_entropy_gradient(logits.double(), yb)

        @torch.no_grad()
        def finish() -> None:
            self.generations.check(generation)
            self._backward(inputs, grad.to(logits.dtype), rows)

        return Probe(loss, (logits.argmax(1) == yb).sum(), finish)

    def _backward(self, inputs: list[torch.Tensor], g: torch.Tensor, rows: int) -> None:
        for i in range(len(self.layers) - 1, -1, -1):
            layer, inputs_i = self.layers[i][0], inputs[i]
            # Gᵀh, with the narrower factor transposed on the left (up to 2x faster for
            # tall thin factors, e.g. the 2-D inputs of 4,000 points against 100 units).
            if inputs_i.shape[1] < g.shape[1]:
                layer.weight.grad = (inputs_i.t() @ g).t()
            else:
                layer.weight.grad = g.t() @ inputs_i
            layer.bias.grad = g.sum(0)
            if i > 0:
                g = torch.mm(g, layer.weight,
                             out=self._buffer(("g", i), rows, layer.in_features, g))
                if self.layers[i - 1][1]:  # in place: zero where the ReLU's output is 0
                    torch.ops.aten.threshold_backward.grad_input(g, inputs_i, 0.0,
                                                                 grad_input=g)


class FusedChainStep(Step):
    """:class:`ChainStep` for the chains :func:`nnboundary.training.kernels.fusable` accepts
    (the default MLP on the CPU in float64), computed by the fused kernel
    :func:`nnboundary.training.kernels.chain_step`: the same loss and gradient to float64
    round-off, 2.6-4x faster per step on the 2-D sets, 2-2.6x on digits; a lone linear layer (a
    retrained last layer) by :func:`nnboundary.training.kernels.linear_step`. A wide input
    (:func:`nnboundary.training.kernels.wide`) has its first layer's products by the BLAS:
    Z = X W1ᵀ before the kernel, ∇W1 = G1ᵀ X after it, in buffers kept between calls.

    The kernel takes the gradient in the same pass as the loss (a fused pass with the gradient
    costs well under a forward pass now plus a second pass later for the 5 epochs in 6 that are
    accepted), into one of two sets of buffers; ``finish()`` hands that set to ``.grad``, and
    the next probe writes into the other one, so that the gradient in ``.grad`` outlives an
    undone epoch (:func:`nnboundary.training.loop.run_loop`)."""

    kernel = "fused"
    own_loss = True

    def __init__(self, layers: list[tuple[nn.Linear, bool]], optimizer=None):
        super().__init__(optimizer)
        self.params = [p for layer, _ in layers for p in (layer.weight, layer.bias)]
        self.first = layers[0][0]
        self.relu2 = len(layers) == 3 and layers[1][1]
        self.lone = len(layers) == 1  # a retrained last layer: kernels.linear_step
        self.wide = not self.lone and kernels.wide(self.first.in_features)
        self.rows: dict[str, torch.Tensor] = {}  # wide inputs: X W1ᵀ and G1, n × H
        # wide inputs: the kernel gets no W1ᵀ and writes no ∇W1ᵀ (empty stand-ins)
        self.no_first = np.empty((0, self.first.out_features))
        # numpy views, taken once, of what keeps its storage from call to call: the parameters
        # (updated in place; taken again if one's storage moved), the gradient buffers and the
        # last input (the full batch, the same tensors every epoch). Fourteen .numpy() calls
        # and copies per step cost about a tenth of the kernel's time on the 2-D sets.
        self.pointers: list[int] | None = None
        self.views: list[np.ndarray] = []
        self.input: tuple | None = None
        # W1ᵀ as the chain kernel reads it (d × H), refreshed every call; a wide input's first
        # layer goes to the BLAS and a lone layer has no W1ᵀ
        self.first_t = (None if self.wide or self.lone
                        else np.empty((self.first.in_features, self.first.out_features)))
        self.sets = [self._gradient_set(), self._gradient_set()]
        self.set_views = [[g.numpy() for g in grads] for grads in self.sets]
        self.held = 1  # the set handed to .grad last
        self.generations = _Generations("FusedChainStep")

    def _gradient_set(self) -> list[torch.Tensor]:
        # ∇W1 transposed (d × H) as the chain kernel writes it; for a wide input or a lone
        # layer in W1's own layout (H × d): for a wide input the faster of the two products
        # G1ᵀ X (3.2 against 4.2 ms on MNIST 0/1)
        shape = (self.first.out_features, self.first.in_features)
        first_grad = torch.empty(shape if self.wide or self.lone else shape[::-1],
                                 dtype=torch.float64)
        return [first_grad, *(torch.empty_like(p, memory_format=torch.contiguous_format)
                              for p in self.params[1:])]

    def _row_buffer(self, name: str, n: int) -> torch.Tensor:
        if name not in self.rows or self.rows[name].shape[0] != n:
            self.rows[name] = torch.empty(n, self.first.out_features, dtype=torch.float64)
        return self.rows[name]

    def _weights(self) -> list[np.ndarray]:
        pointers = [p.data_ptr() for p in self.params]
        if pointers != self.pointers:
            self.pointers = pointers
            self.views = [p.detach().numpy() for p in self.params]
        return self.views

    def _inputs(self, xb: torch.Tensor, yb: torch.Tensor):
        if self.input is None or self.input[0] is not xb or self.input[1] is not yb:
            X = xb.flatten(1).contiguous()
            self.input = (xb, yb, X, X.numpy(), yb.contiguous().numpy())
        return self.input[2:]

    def _run(self, xb: torch.Tensor, yb: torch.Tensor, index: int | None) -> tuple[float, int]:
        """The kernel's loss and count; with ``index``, the gradient into that set."""
        X, X_np, y_np = self._inputs(xb, yb)
        arrays = list(self.set_views[index]) if index is not None else None
        current = self._weights()
        if self.lone:
            return kernels.linear_step(X_np, y_np, current, arrays)
        if not self.wide:
            np.copyto(self.first_t, current[0].T)
            return kernels.chain_step(X_np, y_np, [self.first_t, *current[1:]], self.relu2,
                                      arrays)
        # the first layer's products by the BLAS: Z = X W1ᵀ before, ∇W1 = G1ᵀ X after
        Z = torch.mm(X, self.first.weight.t(), out=self._row_buffer("Z", X.shape[0]))
        G1 = self._row_buffer("G1", X.shape[0]) if index is not None else None
        if arrays is not None:
            arrays[0] = self.no_first
        result = kernels.chain_step(X_np, y_np, [self.no_first, *current[1:]], self.relu2,
                                    arrays, Z.numpy(), None if G1 is None else G1.numpy())
        if index is not None:
            torch.mm(G1.t(), X, out=self.sets[index][0])
        return result

    @torch.no_grad()
    def probe(self, xb: torch.Tensor, yb: torch.Tensor) -> Probe:
        generation, index = self.generations.next(), 1 - self.held
        grads = self.sets[index]
        loss, correct = self._run(xb, yb, index)

        def finish() -> None:
            self.generations.check(generation)
            self.first.weight.grad = grads[0] if self.wide or self.lone else grads[0].t()
            for param, grad in zip(self.params[1:], grads[1:]):
                param.grad = grad
            self.held = index

        return Probe(torch.tensor(loss, dtype=torch.float64),
                     torch.tensor(correct, dtype=torch.int64), finish)

    @torch.no_grad()
    def loss(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        return self._run(xb, yb, None)[0]


def make_step(model: nn.Module, optimizer, settings: dict[str, Any]) -> Step:
    """The step of ``model`` under ``settings`` (module docstring): fused or closed form for a
    :func:`linear_chain` under the cross-entropy without label smoothing, autocast or
    ``torch.compile``; autograd otherwise."""
    layers = linear_chain(model)
    if (layers is not None and autocast_dtype(settings) is None
            and not settings.get("compile", False) and closed_form_loss(settings)):
        if settings.get("kernel", "auto") == "auto" and kernels.fusable(layers):
            return FusedChainStep(layers, optimizer)
        return ChainStep(layers, optimizer)
    return AutogradStep(model, optimizer, settings)


def make_evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, size: int,
                  settings: dict[str, Any], fmt: torch.memory_format = torch.contiguous_format,
                  step: Step | None = None) -> Callable[[], float]:
    """``evaluate() -> float``: the configured loss on the whole train set at the current
    weights, in the model's current modes, in chunks of ``size`` (BatchNorm statistics
    untouched), taken in float64 from the logits. For a full-batch ``step`` with a loss of its
    own (:class:`FusedChainStep`), that kernel's loss, so that a loss evaluate() measures and one
    measured by a step are the same number, not two roundings of it."""
    if step is not None and step.own_loss and size >= X.shape[0]:
        return lambda: step.loss(X, y)
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
