"""Losses, each mapping logits z (n, K) and labels y (n,) to a scalar, the mean over the n
samples, taken in float64 from the logits.

``cross_entropy`` (the default) and ``exponential`` have an exponential tail, for which gradient
descent is predicted to reach the max-margin direction (Soudry et al., JMLR 2018); ``hinge`` and
``mse`` have none (hinge is zero once every margin is 1; mse pulls the logits to the one-hot
targets), as ablations. The cross-entropy is taken in its exact-tail form
(:func:`cross_entropy_loss`), with its gradient in closed form (:func:`cross_entropy_gradient`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


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


def closed_form_loss(settings: dict[str, Any]) -> bool:
    """Whether the loss is the cross-entropy without label smoothing, whose gradient with
    respect to the logits :func:`cross_entropy_gradient` gives in closed form."""
    return (settings.get("loss", "cross_entropy") == "cross_entropy"
            and not float(settings.get("label_smoothing", 0.0)))
