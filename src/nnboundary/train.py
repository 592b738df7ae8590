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
model's ``state_dict`` at every checkpoint epoch) and a per-epoch table (tab-separated:
``epoch``, ``loss`` = the configured loss (``loss`` setting; cross-entropy by default), the mean
over the epoch's batches weighted by batch size, ``train_acc`` = share of
correctly classified train samples during the epoch, ``seconds`` since the start).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import io
from .config import (
    BASE_VARIANT,
    DEFAULT_ARCH,
    DEFAULT_TRAIN,
    checkpoint_epochs,
    parse_settings,
    to_json,
)
from .models import build_model
from .prepare import Dataset, load_dataset


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def make_optimizer(params, settings: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = settings["optimizer"], float(settings["lr"]), float(settings["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
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
    (1 − ε)·onehot(y_i) + ε/K instead of onehot(y_i)."""
    return nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)


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
    """Seed every generator; on the CPU the same seed gives bit-identical results."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)


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
    """One optimisation step ``step(xb, yb) -> (loss, n_correct)`` (tensors, no host sync).

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
    forward = torch.compile(model) if settings.get("compile", False) else model
    loss_fn = make_loss(settings)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(xb, autocast_dtype=amp) if amp is not None else forward(xb)
        loss = loss_fn(logits.double(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == yb).sum()

    return step


def optimise(model: nn.Module, step, X: torch.Tensor, y: torch.Tensor, batch: int, epochs: int,
             save_at: set[int], snapshot, settings: dict[str, Any], shuffle: torch.Generator,
             run: str, block: str, log, fmt: torch.memory_format = torch.contiguous_format,
             resume: Resume | None = None):
    """The epoch loop shared by ``train`` and ``retrain``: batches are slices of a seeded
    permutation of the device-resident (X, y) (the whole set when ``batch`` ≥ n); ``snapshot()``
    is stored at every epoch of ``save_at``. Returns (states by epoch, history rows).

    With ``resume``, the loop continues where its last resumable checkpoint left it and writes a
    new one every ``resume.every`` epochs (see :class:`Resume`).

    A non-finite epoch loss stops at once with :class:`TrainingDiverged` naming ``run``, the
    epoch and the ``block`` (train or retrain) settings to change.
    """
    n = X.shape[0]
    states: dict[int, dict[str, torch.Tensor]] = {}
    history: list[tuple] = []
    first = 1
    if resume is not None:
        first, states, history = resume.restore(log)
    start = time.perf_counter() - (history[-1][3] if history else 0.0)
    for epoch in range(first, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=shuffle, device=X.device) if batch < n else None
        loss_sum = torch.zeros((), device=X.device, dtype=torch.float64)
        correct = torch.zeros((), device=X.device, dtype=torch.int64)
        for lo in range(0, n, batch):
            if order is None:
                xb, yb = X, y
            else:
                idx = order[lo:lo + batch]
                xb, yb = X[idx].contiguous(memory_format=fmt), y[idx]
            loss, n_correct = step(xb, yb)
            loss_sum += loss.double() * len(yb)
            correct += n_correct
        epoch_loss = float(loss_sum) / n
        if not np.isfinite(epoch_loss):
            raise TrainingDiverged(
                f"training diverged: loss is {epoch_loss} at epoch {epoch} ({run}); lower "
                f"{block}.lr (now {settings['lr']}) or change {block}.optimizer (now "
                f"{settings['optimizer']})"
            )
        history.append((epoch, epoch_loss, int(correct) / n, time.perf_counter() - start))
        if epoch in save_at:
            states[epoch] = snapshot()
        if epoch % int(settings["log_every"]) == 0 or epoch == epochs:
            print(f"epoch {epoch:6d}  loss {epoch_loss:.3e}  train_acc {history[-1][2]:.4f}  "
                  f"{history[-1][3]:.1f}s", file=log)
        if resume is not None and resume.due(epoch, epochs):
            resume.save(epoch, states, history)
    return states, history


class Resume:
    """A resumable checkpoint of one training job, written atomically (temporary file, then
    rename) every ``every`` epochs to ``path``: the epoch, the model's and the optimizer's
    state, every random generator the loop draws from (torch's global CPU and CUDA generators
    and the batch-order generator), the checkpoints and history so far, and a fingerprint of
    the run's settings. A job started again with the same settings continues after that epoch;
    on the CPU it ends with exactly the weights an uninterrupted job ends with. A file whose
    fingerprint differs (other settings) is ignored and replaced. The job deletes it once its
    outputs are written."""

    def __init__(self, path: str | Path, every: int, fingerprint: str, model: nn.Module,
                 optimizer: torch.optim.Optimizer, shuffle: torch.Generator):
        self.path, self.every, self.fingerprint = Path(path), int(every), fingerprint
        self.model, self.optimizer, self.shuffle = model, optimizer, shuffle

    def due(self, epoch: int, epochs: int) -> bool:
        return self.every > 0 and epoch % self.every == 0 and epoch < epochs

    def save(self, epoch: int, states: dict, history: list) -> None:
        payload = {
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "shuffle_rng": self.shuffle.get_state(),
            "states": states,
            "history": [list(row) for row in history],
        }
        with io.atomic_path(self.path) as tmp:
            torch.save(payload, tmp)

    def restore(self, log) -> tuple[int, dict, list]:
        """(first epoch to run, states, history): from the file if it fits, else a fresh start."""
        if not self.path.exists():
            return 1, {}, []
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a foreign or damaged file: start over, say so
            print(f"ignoring unreadable resumable checkpoint {self.path} ({err})", file=log)
            return 1, {}, []
        if payload.get("fingerprint") != self.fingerprint:
            print(f"ignoring resumable checkpoint {self.path}: written with other settings",
                  file=log)
            return 1, {}, []
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.shuffle.set_state(payload["shuffle_rng"])
        epoch = int(payload["epoch"])
        print(f"resumed from {self.path} after epoch {epoch}", file=log)
        return epoch + 1, dict(payload["states"]), [tuple(row) for row in payload["history"]]


def loop_plan(settings: dict[str, Any], n: int) -> tuple[int, int, set[int]]:
    """(epochs, batch size, checkpoint epochs) of a training loop over ``n`` samples;
    ``batch_size`` 0 means the full set (full-batch gradient descent)."""
    epochs = int(settings["epochs"])
    batch = n if settings["batch_size"] in (0, None) else min(int(settings["batch_size"]), n)
    save_at = set(checkpoint_epochs(epochs, settings["checkpoints"], settings["n_checkpoints"]))
    return epochs, batch, save_at


def training_record(settings: dict[str, Any], n: int, batch: int, lr: float | None = None,
                    **extra: Any) -> dict[str, Any]:
    """What a training loop actually ran with, after every layer of the config was applied: the
    optimizer, the learning rate used (``lr``: for ``retrain_last`` with ``lr_relative`` the
    absolute step, not the configured multiple of 1/L), the loss, the step-size schedule, the
    epochs, the batch size (the full set for full-batch training), the optimizer steps per epoch
    (⌈n / batch⌉: the last batch may be smaller), the number of train samples, and the momentum
    and weight decay. It is stored in the checkpoint file, every feature file and every row of
    the metrics table, so anyone can check which settings produced a number."""
    record = {
        "optimizer": str(settings["optimizer"]),
        "lr": float(settings["lr"] if lr is None else lr),
        "loss": str(settings.get("loss", "cross_entropy")),
        "schedule": "constant",
        "epochs": int(settings["epochs"]),
        "batch_size": int(batch),
        "steps_per_epoch": -(-int(n) // max(int(batch), 1)),
        "n_train": int(n),
        "momentum": float(settings["momentum"]) if settings["optimizer"] == "momentum" else 0.0,
        "weight_decay": float(settings.get("weight_decay", 0.0)),
    }
    record.update(extra)
    return record


def train_run(data: Dataset, arch: str, seed: int, arch_settings: dict[str, Any],
              settings: dict[str, Any], log=sys.stderr, variant: str = BASE_VARIANT,
              resume_path: str | Path | None = None) -> dict[str, Any]:
    """Train one run; return the checkpoint dict (see the module docstring) with its history.

    With ``resume_path``, a resumable checkpoint is kept there every ``settings["resume_every"]``
    epochs and a job started again continues from it (:class:`Resume`)."""
    device = resolve_device(settings["device"])
    set_determinism(seed, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed batch shape
    fmt = memory_format(settings, data.X_train.ndim)
    model = build_model(arch, data.input_shape, data.n_classes, arch_settings)
    model = model.to(device=device, memory_format=fmt)
    # The whole train set lives on the device; a batch is an index into it.
    X = torch.from_numpy(data.X_train).to(device).contiguous(memory_format=fmt)
    y = torch.from_numpy(data.y_train).to(device)
    n = X.shape[0]
    epochs, batch, save_at = loop_plan(settings, n)
    optimizer = make_optimizer(model.parameters(), settings)
    step = make_step(model, optimizer, settings)
    shuffle = torch.Generator(device=device).manual_seed(seed)

    record = training_record(settings, n, batch)
    print(f"training {data.name}/{arch}/{variant} seed {seed} on {device}: {n} samples, "
          f"batch {batch}, {epochs} epochs, {settings['optimizer']} lr {settings['lr']}, "
          f"loss {settings.get('loss', 'cross_entropy')}", file=log)
    print(f"ran with: {to_json(record)}", file=log)

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    resume = None
    if resume_path is not None:
        fingerprint = to_json({"keys": [data.name, arch, variant, seed], "data": data.meta,
                               "arch": arch_settings, "train": settings})
        resume = Resume(resume_path, int(settings.get("resume_every", 0)), fingerprint, model,
                        optimizer, shuffle)
    states, history = optimise(
        model, step, X, y, batch, epochs, save_at, snapshot, settings, shuffle,
        f"dataset {data.name}, arch {arch}, variant {variant}, seed {seed}", "train", log, fmt,
        resume,
    )
    return {
        "keys": {"dataset": data.name, "arch": arch, "variant": variant, "regime": "full",
                 "seed": seed},
        "arch_settings": dict(arch_settings),
        "train_settings": dict(settings),
        "training": record,
        "input_shape": list(data.input_shape),
        "n_classes": data.n_classes,
        "device": str(device),
        "epochs": sorted(states),
        "states": states,
        "history": history,
    }


def save_checkpoints(path: str | Path, result: dict[str, Any]) -> None:
    with io.atomic_path(path) as tmp:
        torch.save(result, tmp)


def load_checkpoints(path: str | Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        raise io.InputFileError(
            f"checkpoint file {path} is missing or corrupt ({err}); rerun the train step "
            f"(snakemake --forcerun train {path})"
        ) from err


def model_at(checkpoints: dict[str, Any], epoch: int) -> nn.Module:
    """Rebuild the model of ``checkpoints`` with its weights at ``epoch``, in eval mode on the CPU."""
    keys = checkpoints["keys"]
    model = build_model(keys["arch"], tuple(checkpoints["input_shape"]), checkpoints["n_classes"],
                        checkpoints["arch_settings"])
    model.load_state_dict(checkpoints["states"][epoch])
    return model.eval()


def write_history(path: str | Path, history: list[tuple]) -> None:
    with io.atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write("epoch\tloss\ttrain_acc\tseconds\n")
            for epoch, loss, acc, seconds in history:
                handle.write(f"{epoch}\t{loss:.9e}\t{acc:.6f}\t{seconds:.3f}\n")


def add_output_arguments(parser: argparse.ArgumentParser, checkpoint_flag: str) -> None:
    """The arguments every training-like stage shares: threads and its two outputs."""
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(checkpoint_flag, required=True, help="checkpoint file to write (.pt)")
    parser.add_argument("--history", required=True, help="per-epoch table to write (.tsv)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="prepared dataset (.npz)")
    parser.add_argument("--arch", required=True, choices=sorted(DEFAULT_ARCH))
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--variant", default=BASE_VARIANT, help="the run's ablation variant name")
    parser.add_argument("--arch-settings", default="", help="JSON object of arch settings")
    parser.add_argument("--settings", default="", help="JSON object of train settings")
    add_output_arguments(parser, "--checkpoints")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    arch_settings = parse_settings(args.arch_settings, DEFAULT_ARCH[args.arch])
    settings = parse_settings(args.settings, DEFAULT_TRAIN)
    data = load_dataset(args.data)
    resume_path = f"{args.checkpoints}.resume"
    result = train_run(data, args.arch, args.seed, arch_settings, settings, variant=args.variant,
                       resume_path=resume_path)
    write_history(args.history, result["history"])
    save_checkpoints(args.checkpoints, result)
    Path(resume_path).unlink(missing_ok=True)  # the outputs are complete: nothing to resume
    return 0
