"""Stage ``train``: train a bottleneck network with cross-entropy and save checkpoints.

The whole prepared train set is held on the device as tensors; a batch is a slice of a seeded
permutation (no DataLoader, no per-sample Python). Nothing regularises the network unless the
config asks for it: weight decay, label smoothing, dropout or an EMA of the weights change the
limit that the theory predicts (Soudry et al., JMLR 2018), so all are off by default.

Outputs: one checkpoint file (a ``torch.save`` dict with the run keys, the arch settings and the
model's ``state_dict`` at every checkpoint epoch) and a per-epoch table (tab-separated:
``epoch``, ``loss`` = mean cross-entropy over the epoch's batches, ``train_acc`` = share of
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
from .config import DEFAULT_ARCH, DEFAULT_TRAIN, checkpoint_epochs, parse_settings
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
    raise ValueError(f"unknown optimizer {name!r}; allowed: sgd, momentum, adam")


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
    below bf16's resolution (its 8-bit mantissa resolves about 4e-3 relative). The loss is taken
    in float64: past a per-sample loss of ~6e-8 float32 rounds p_y to 1, so the true class's
    gradient (p_y − 1) vanishes while the others' (p_k) does not, which skews the very late phase
    in which the direction converges. ``compile: true`` wraps the model in ``torch.compile``.
    """
    amp = autocast_dtype(settings)
    forward = torch.compile(model) if settings.get("compile", False) else model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(settings["label_smoothing"]))

    def step(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(xb, autocast_dtype=amp) if amp is not None else forward(xb)
        loss = loss_fn(logits.double(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == yb).sum()

    return step


def train_run(data: Dataset, arch: str, seed: int, arch_settings: dict[str, Any],
              settings: dict[str, Any], log=sys.stderr) -> dict[str, Any]:
    """Train one run; return the checkpoint dict (see the module docstring) with its history."""
    device = resolve_device(settings["device"])
    set_determinism(seed, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed batch shape
    epochs = int(settings["epochs"])
    save_at = set(checkpoint_epochs(epochs, settings["checkpoints"], settings["n_checkpoints"]))

    fmt = memory_format(settings, data.X_train.ndim)
    model = build_model(arch, data.input_shape, data.n_classes, arch_settings)
    model = model.to(device=device, memory_format=fmt)
    # The whole train set lives on the device; a batch is an index into it.
    X = torch.from_numpy(data.X_train).to(device).contiguous(memory_format=fmt)
    y = torch.from_numpy(data.y_train).to(device)
    n = X.shape[0]
    batch = n if settings["batch_size"] in (0, None) else min(int(settings["batch_size"]), n)
    optimizer = make_optimizer(model.parameters(), settings)
    step = make_step(model, optimizer, settings)
    shuffle = torch.Generator(device=device).manual_seed(seed)

    states: dict[int, dict[str, torch.Tensor]] = {}
    history = []
    start = time.perf_counter()
    print(f"training {data.name}/{arch} seed {seed} on {device}: {n} samples, batch {batch}, "
          f"{epochs} epochs, {settings['optimizer']} lr {settings['lr']}", file=log)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=shuffle, device=device) if batch < n else None
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
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
                f"training diverged: loss is {epoch_loss} at epoch {epoch} "
                f"(dataset {data.name}, arch {arch}, seed {seed}); lower train.lr "
                f"(now {settings['lr']}) or change train.optimizer (now {settings['optimizer']})"
            )
        history.append((epoch, epoch_loss, int(correct) / n, time.perf_counter() - start))
        if epoch in save_at:
            states[epoch] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if epoch % int(settings["log_every"]) == 0 or epoch == epochs:
            print(f"epoch {epoch:6d}  loss {epoch_loss:.3e}  train_acc {history[-1][2]:.4f}  "
                  f"{history[-1][3]:.1f}s", file=log)
    return {
        "keys": {"dataset": data.name, "arch": arch, "seed": seed},
        "arch_settings": dict(arch_settings),
        "train_settings": dict(settings),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="prepared dataset (.npz)")
    parser.add_argument("--arch", required=True, choices=sorted(DEFAULT_ARCH))
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--arch-settings", default="", help="JSON object of arch settings")
    parser.add_argument("--settings", default="", help="JSON object of train settings")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--checkpoints", required=True, help="checkpoint file to write (.pt)")
    parser.add_argument("--history", required=True, help="per-epoch table to write (.tsv)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    arch_settings = parse_settings(args.arch_settings, DEFAULT_ARCH[args.arch])
    settings = parse_settings(args.settings, DEFAULT_TRAIN)
    data = load_dataset(args.data)
    result = train_run(data, args.arch, args.seed, arch_settings, settings)
    write_history(args.history, result["history"])
    save_checkpoints(args.checkpoints, result)
    return 0
