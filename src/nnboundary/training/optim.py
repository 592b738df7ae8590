"""Optimizers: plain gradient descent (the algorithm the max-margin theory is about) and
PyTorch's momentum SGD, Adam and RMSprop, chosen by the ``optimizer`` setting.
"""

from __future__ import annotations

from typing import Any

import torch


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
