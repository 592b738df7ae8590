"""The ``retrain_last`` regime (:func:`retrain_run`).

Take the ``full`` run's network at epoch ``from_epoch`` (default: its last checkpoint), freeze
every parameter, replace the last layer by a freshly initialised ``nn.Linear(d, K)`` (``init``:
``original`` = truncated normal std 0.01 and bias 0.1, or ``pytorch``'s default; seeded by the
run's seed) and train only that layer, with its own optimizer, learning rate, epochs and
checkpoints, on the run's training loss (``lr_relative``: lr in units of 1/L, see
:func:`curvature_bound`). Nothing else changes: the network runs in eval mode
(BatchNorm uses its running statistics), so the features h are fixed. They are computed once and
the last layer is trained on them: (W, b) then is a linear model on fixed features, for which
gradient descent on an exponential-tailed loss converges in direction to the ``homog`` SVM
(Soudry et al., JMLR 2018).

Output: a checkpoint file in the ``train`` stage's format (so the feature, SVM and metric stages
treat both regimes alike): every saved state is the whole network, the frozen part identical to
the full run's at ``from_epoch``, with keys ``regime = retrain_last``; plus ``from_epoch``,
``initial_last`` (the re-initialised layer before training) and ``retrain_settings``.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from ..errors import InputFileError
from ..formats.dataset import Dataset
from ..models.networks import initialise, resolve_device
from ..models.restore import forward_features, model_at
from ..settings.commandline import to_json
from ..settings.layers import DEFAULT_TRAIN
from .loop import LoopSpec, run_loop
from .optim import make_optimizer
from .precision import set_determinism, torch_dtype
from .schedule import plan_loop
from .step import make_evaluate, make_step
from .train import finish, training_record


# Settings the last layer's training shares with the train stage's (make_step, make_optimizer).
_STEP_DEFAULTS = {"amp": "none", "compile": False, "channels_last": False}


def curvature_bound(H: torch.Tensor) -> float:
    """L = max_i (‖h_i‖² + 1) / 2: the mean cross-entropy of a linear layer (W, b) on features
    H has a Hessian whose largest eigenvalue is at most L (the softmax covariance is at most
    1/2 in operator norm, and [h, 1] is the layer's input), so gradient descent with step 1/L
    is stable whatever the features' scale. ``lr_relative`` expresses lr in units of 1/L."""
    if H.shape[0] == 0:
        return 1.0
    return float(((H.double() ** 2).sum(dim=1).max() + 1.0) / 2.0)


def _frozen_network(checkpoints: dict[str, Any], start: int, data: Dataset, device, dtype):
    """(network, its frozen tensors, train features H, labels y): the full run's network at
    epoch ``start``, frozen, and its features of the train set, on ``device`` in ``dtype``."""
    if start not in checkpoints["states"]:
        raise InputFileError(
            f"retrain from_epoch {start} is not saved in the full run's checkpoints (saved: "
            f"{checkpoints['epochs']}); rerun its train step so that it saves epoch {start}"
        )
    network = model_at(checkpoints, start).to(device)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    frozen = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()
              if not k.startswith("last.")}
    H, _ = forward_features(network, data.X_train, device)
    H = torch.from_numpy(H).to(device=device, dtype=dtype)
    return network, frozen, H, torch.from_numpy(data.y_train).to(device)


def retrain_run(checkpoints: dict[str, Any], data: Dataset, settings: dict[str, Any],
                log=sys.stderr) -> dict[str, Any]:
    """Retrain the last layer of ``checkpoints`` (a full run) on ``data``; see the module
    docstring."""
    keys = dict(checkpoints["keys"])
    if keys.get("dataset") != data.name:
        raise InputFileError(
            f"checkpoints are for dataset {keys.get('dataset')!r} but the data file holds {data.name!r}"
        )
    seed = int(keys["seed"])
    device = resolve_device(settings["device"])
    set_determinism(seed, device)
    start = settings["from_epoch"] or checkpoints["epochs"][-1]
    dtype = torch_dtype(settings)
    network, frozen, H, y = _frozen_network(checkpoints, start, data, device, dtype)

    torch.manual_seed(seed)
    last = nn.Linear(network.last.in_features, network.last.out_features, device=device,
                     dtype=dtype)
    initialise(last, settings["init"])
    initial = {name: value.detach().cpu().clone() for name, value in last.state_dict().items()}

    step_settings = {**DEFAULT_TRAIN, **settings, **_STEP_DEFAULTS}
    if settings.get("lr_relative", True):
        step_settings["lr"] = float(settings["lr"]) / curvature_bound(H)
    optimizer = make_optimizer(last.parameters(), step_settings)
    # the lone-layer kernel (kernels.linear_step) in float64 on the CPU, else PyTorch's closed
    # form (nnboundary.training.step.ChainStep)
    step = make_step(last, optimizer, step_settings)
    n = H.shape[0]
    plan = plan_loop(settings, n)
    batch, epochs = plan.batch, plan.epochs
    evaluate = make_evaluate(last, H, y, batch, step_settings)

    def snapshot(epoch: int) -> dict[str, torch.Tensor]:
        # The frozen tensors are the same objects in every state: torch.save stores them once.
        state = dict(frozen)
        state.update({f"last.{k}": v.detach().cpu().clone() for k, v in last.state_dict().items()})
        return state

    record = training_record(step_settings, n, batch, lr_setting=float(settings["lr"]),
                             lr_relative=bool(settings.get("lr_relative", True)),
                             from_epoch=int(start))
    run = (f"dataset {keys['dataset']}, arch {keys['arch']}, variant "
           f"{keys.get('variant', 'base')}, seed {seed}, regime retrain_last")
    print(f"retraining the last layer of {keys['dataset']}/{keys['arch']} seed {seed} from "
          f"epoch {start} on {device}: {n} samples, batch {batch}, at most {epochs} epochs, "
          f"{settings['optimizer']} lr {step_settings['lr']:.4g} "
          f"({settings.get('schedule', 'constant')}), loss {settings['loss']}, {dtype}", file=log)
    print(f"ran with: {to_json(record)}", file=log)
    result = run_loop(LoopSpec(
        last, optimizer, step, evaluate, H, y, step_settings, plan, snapshot,
        torch.Generator(device=device).manual_seed(seed), run, "retrain", fused=True), log)
    keys["regime"] = "retrain_last"
    return {
        "keys": keys,
        "arch_settings": dict(checkpoints["arch_settings"]),
        "train_settings": dict(checkpoints["train_settings"]),
        "retrain_settings": dict(settings),
        "training": finish(record, result),
        "from_epoch": int(start),
        "initial_last": initial,
        "input_shape": list(checkpoints["input_shape"]),
        "n_classes": int(checkpoints["n_classes"]),
        "device": str(device),
        "epochs": sorted(result.states),
        "states": result.states,
        "history": [tuple(row) for row in result.history],  # plain tuples: torch.load-safe
    }
