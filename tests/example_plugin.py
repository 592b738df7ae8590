"""An example of a user's own dataset and network, as docs/usage.md's "Your own data and network"
shows them; the end-to-end test copies this file into the working directory and names its
functions in the config (``source: "example_plugin:rings"``, ``source: "example_plugin:small_net"``).

It also holds the broken variants the error tests use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def rings(seed: int, n_samples: int = 300, gap: float = 0.5):
    """Two noisy concentric rings in 2-D (class 0 inside, radius 1; class 1 at 1 + gap),
    balanced; made from ``seed`` (the config says ``seeded: true``)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 2
    radius = 1.0 + gap * y + rng.normal(scale=0.05, size=n_samples)
    angle = rng.uniform(0, 2 * np.pi, size=n_samples)
    X = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    return X, y


class SmallNet(nn.Module):
    """Flatten → Linear → tanh → Linear(·, width) → ReLU, then ``last``: ``features`` is the
    last hidden layer, after its activation."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: int, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.Tanh(),
                                  nn.Linear(hidden, width), nn.ReLU())
        self.last = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.features(x))


def small_net(input_shape, n_classes, hidden: int = 16, width: int = 3):
    return SmallNet(int(np.prod(input_shape)), n_classes, hidden, width)


# --- broken on purpose (the error tests) ---------------------------------------------------


def labels_one_two(seed: int):
    """Labels 1 and 2 instead of 0..K-1."""
    X, y = rings(seed, 40)
    return X, y + 1


def only_x(seed: int):
    """Returns X alone."""
    return rings(seed, 40)[0]


class NoLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 2)

    def features(self, x):
        return x

    def forward(self, x):
        return self.head(x)


def net_without_last(input_shape, n_classes):
    return NoLast()


class Shifted(SmallNet):
    """forward adds 1 to the logits: not last ∘ features."""

    def forward(self, x):
        return super().forward(x) + 1.0


def net_forward_differs(input_shape, n_classes):
    return Shifted(int(np.prod(input_shape)), n_classes, 8, 2)
