"""Training benchmarks that print numbers (never timed tests): milliseconds per full-batch step
of a config's runs (:func:`benchmark_steps`), and training images/s of the paper's three image
experiments against a plain DataLoader loop (:func:`benchmark_train`). The command line is
``nnboundary benchmark steps`` and ``nnboundary benchmark train``
(:mod:`nnboundary.stages.benchmark`).
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from typing import Any

# The original code's training speed, from its logs: CIFAR-10 0v2 DenseNet-40 30.7 s per epoch
# of 10,000 images; MNIST 0/1/2 DenseNet-40 about 700 images/s; MNIST 0v1 ResNet about 1.1 s
# per epoch of MNIST's 12,665 train images of digits 0 and 1.
ORIGINAL_IMAGES_PER_S = {"mnist01": 12665 / 1.1, "mnist012": 700.0, "cifar10_0v2": 10000 / 30.7}

# (experiment, arch, input shape, classes, batch): the paper configuration's batch sizes.
TRAIN_CASES = (
    ("mnist01", "resnet", (1, 28, 28), 2, 128),
    ("mnist012", "densenet40", (1, 28, 28), 3, 1024),
    ("cifar10_0v2", "densenet40", (3, 32, 32), 2, 256),
)


def device_name(device=None) -> str:
    """The accelerator's or CPU's model name, for the record (``device`` None: the CPU)."""
    if device is not None and device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _time_steps(run_step, steps: int, warmup: int, device) -> float:
    """Seconds for ``steps`` calls of ``run_step`` after ``warmup`` untimed calls."""
    import torch

    for _ in range(warmup):
        run_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        run_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench_train_case(arch: str, shape: tuple[int, ...], n_classes: int, batch: int, *,
                     device, steps: int, warmup: int, amp: str = "none",
                     compile_model: bool = False) -> dict[str, Any]:
    """images/s and peak memory of the fast path and of the DataLoader baseline for one case."""
    import torch
    from torch import nn

    from ..models.networks import build_model
    from ..settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
    from ..training.optim import make_optimizer
    from ..training.precision import memory_format
    from ..training.step import make_step

    settings = dict(DEFAULT_TRAIN, optimizer="momentum", lr=1e-3, amp=amp, compile=compile_model)
    generator = torch.Generator().manual_seed(0)
    n = batch * max(4, steps + warmup)
    X_host = torch.randn((n, *shape), generator=generator)
    y_host = torch.randint(0, n_classes, (n,), generator=generator)
    result: dict[str, Any] = {"arch": arch, "input_shape": list(shape), "classes": n_classes,
                              "batch": batch, "steps": steps}

    # Fast path: the pipeline's own training step on device-resident, channels-last data.
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    fmt = memory_format(settings, 4)
    model = build_model(arch, shape, n_classes, DEFAULT_ARCH[arch]).to(device=device,
                                                                       memory_format=fmt)
    step = make_step(model, make_optimizer(model.parameters(), settings), settings)
    X = X_host.to(device).contiguous(memory_format=fmt)
    y = y_host.to(device)
    order = torch.randperm(n, device=device)
    position = [0]

    def fast_step():
        lo = position[0] % (n - batch + 1)
        position[0] += batch
        idx = order[lo:lo + batch]
        step(X[idx].contiguous(memory_format=fmt), y[idx])

    seconds = _time_steps(fast_step, steps, warmup, device)
    result["fast_images_per_s"] = steps * batch / seconds
    result["fast_peak_mb"] = _peak_memory_mb(device)
    del model, step, X, y

    # Baseline: DataLoader over host tensors, default memory format, float32, eager.
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = build_model(arch, shape, n_classes, DEFAULT_ARCH[arch]).to(device)
    optimizer = make_optimizer(model.parameters(), settings)
    loss_fn = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X_host, y_host),
                                         batch_size=batch, shuffle=True, drop_last=True)
    batches = iter(())

    def baseline_step():
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        xb, yb = xb.to(device), yb.to(device)
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = _time_steps(baseline_step, steps, warmup, device)
    result["baseline_images_per_s"] = steps * batch / seconds
    result["baseline_peak_mb"] = _peak_memory_mb(device)
    result["speedup"] = result["fast_images_per_s"] / result["baseline_images_per_s"]
    return result


def benchmark_train(device_spec: str = "auto", steps: int = 20, warmup: int = 3,
                    amp: str = "none", compile_model: bool = False, threads: int | None = None,
                    cases=TRAIN_CASES, file=sys.stdout) -> dict[str, Any]:
    """Run every case of ``cases``; print a table and return the numbers with the device."""
    import torch

    from ..models.networks import resolve_device

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_spec)
    record: dict[str, Any] = {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "amp": amp,
        "compile": compile_model,
        "date": time.strftime("%Y-%m-%d"),
        "cases": [],
    }
    print(f"training throughput on {record['device']} ({device.type}, torch {torch.__version__}, "
          f"{record['threads']} threads, amp {amp}, compile {compile_model})", file=file)
    header = (f"{'experiment':<12} {'arch':<10} {'input':<9} {'batch':>5} {'fast img/s':>11} "
              f"{'base img/s':>11} {'speedup':>7} {'fast MB':>8} {'base MB':>8} "
              f"{'orig img/s':>10} {'x orig':>7}")
    print(header, file=file)
    for experiment, arch, shape, n_classes, batch in cases:
        row = bench_train_case(arch, shape, n_classes, batch, device=device, steps=steps,
                               warmup=warmup, amp=amp, compile_model=compile_model)
        row["experiment"] = experiment
        row["original_images_per_s"] = ORIGINAL_IMAGES_PER_S.get(experiment)
        original = row["original_images_per_s"]
        row["x_original"] = row["fast_images_per_s"] / original if original else None
        record["cases"].append(row)
        print(f"{experiment:<12} {arch:<10} {'x'.join(map(str, shape)):<9} {batch:>5} "
              f"{row['fast_images_per_s']:>11.1f} {row['baseline_images_per_s']:>11.1f} "
              f"{row['speedup']:>7.2f} {row['fast_peak_mb']:>8.0f} {row['baseline_peak_mb']:>8.0f} "
              f"{original or float('nan'):>10.0f} {row['x_original'] or float('nan'):>7.2f}",
              file=file, flush=True)
    return record


def benchmark_steps(configs: list[str], steps: int = 500, datasets: list[str] | None = None,
                    arch: str | None = None, threads: int = 1, seed: int = 0,
                    file=None) -> list[dict[str, Any]]:
    """Per dataset of the config's grid (or ``datasets``): wall and CPU milliseconds per
    accepted training step of ``arch`` (default: the grid's first), one run of ``steps`` epochs
    with the config's train settings, ``until_loss`` and the loss milestones off (module
    docstring); printed as a table, returned as rows."""
    import io as text_io

    import torch

    from ..data.make import make_dataset
    from ..settings.config import load_config
    from ..settings.layers import arch_settings as arch_of
    from ..settings.layers import dataset_settings, train_settings
    from ..training.train import train_run

    torch.set_num_threads(threads)
    config = load_config(*configs)
    arch = arch or config["grid"]["archs"][0]
    names = datasets or list(config["grid"]["datasets"])
    file = sys.stdout if file is None else file
    print(f"{'dataset':12s} {'train n':>8s} {'steps':>6s} {'redone':>6s} {'wall ms':>8s} "
          f"{'CPU ms':>8s} {'kernel':>11s}  per step, {arch}, {threads} thread(s), "
          f"{device_name()}", file=file)
    rows = []
    for i, name in enumerate(names):
        data = make_dataset(name, seed, dataset_settings(config, name))
        settings = dict(train_settings(config, name, arch), epochs=int(steps), until_loss=None,
                        loss_milestones=[], checkpoints=[], min_epochs=0, log_every=10**9,
                        device="cpu" if threads else "auto")
        if i == 0:  # untimed: imports and compiled kernels loaded on first use
            train_run(data, arch, seed, arch_of(config, arch), dict(settings, epochs=2),
                      log=text_io.StringIO())
        wall, cpu = time.perf_counter(), time.process_time()
        result = train_run(data, arch, seed, arch_of(config, arch), settings,
                           log=text_io.StringIO())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = int(result["training"]["stop_step"])
        redone = sum(int(row[7]) for row in result["history"])
        row = {"dataset": name, "train_n": int(data.X_train.shape[0]), "steps": done,
               "redone": redone, "wall_ms": 1e3 * wall / done, "cpu_ms": 1e3 * cpu / done,
               "kernel": result["training"].get("kernel", "")}
        rows.append(row)
        print(f"{name:12s} {row['train_n']:8d} {done:6d} {redone:6d} {row['wall_ms']:8.2f} "
              f"{row['cpu_ms']:8.2f} {row['kernel']:>11s}", file=file, flush=True)
    return rows
