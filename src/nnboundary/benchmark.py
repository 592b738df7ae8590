"""``nnboundary benchmark <what>``: speed benchmarks that print numbers (never timed tests).

- ``svm``: seconds per SVM fit on 60,000 2-D points, separable and overlapping, every target
  and scheme (goal: under 1 s per binary fit); then the hard Crammer–Singer fit of wide
  ten-class features up to n = 50,000, d = 512 with each fit's peak memory (goal: ≤ 30 s and
  ≤ 4 GB at that size, exact). ``--wide-only`` skips the 2-D table, ``--no-wide`` the wide one.
- ``jobs``: where a workflow run's time went, from the ``benchmark:`` file every rule writes
  (``results/benchmarks/<rule>/…tsv``, the first row of each file: Snakemake's wall-clock ``s``
  and ``cpu_time``): per rule the number of jobs, their total, mean and largest wall-clock
  seconds (and which job was the largest), their CPU seconds and its share of the total
  (:func:`job_times`). The workflow's ``job_times`` rule writes the same table for the
  report, over exactly the jobs of its grid (``--inputs``, ``--csv``, ``--html``).
- ``steps``: milliseconds per full-batch training step of a config's runs (default: the
  default grid's MLP on each of its datasets, seed 0), wall-clock and CPU, through the train
  stage's own loop (:func:`nnboundary.train.train_run`) for ``--steps`` accepted steps with the
  config's settings but no stopping loss: the cost that, times the number of steps to the
  stopping loss, makes a run's training time (:func:`benchmark_steps`). Epochs undone by the
  loss-scaled step's backtracking are counted and cost time too. To compare two versions,
  run it in each checkout in turn.
- ``train``: training images/s of the paper's three image experiments (``resnet`` on 1×28×28,
  ``densenet40`` on 1×28×28 with 3 classes and on 3×32×32) on the current device, for

  * ``fast``: the pipeline's own path (:func:`nnboundary.train.make_step`): the whole data set
    resident on the device, batches indexed from it, channels-last, cuDNN autotuning, plus
    bf16 autocast of the backbone (``--amp bf16``) and ``torch.compile`` (``--compile``) when
    asked for;
  * ``baseline``: a plain loop measured in the same run: a ``DataLoader`` over the same
    tensors (host memory, shuffled, copied to the device per batch), default memory format,
    float32, no compilation;

  with the peak memory of each (GPU: ``torch.cuda.max_memory_allocated``; CPU: the process's
  peak resident set, which only grows, so the baseline's CPU figure includes the fast run's)
  and the original TensorFlow 1 code's images/s from its own logs. ``--output`` keeps the
  numbers in a JSON file with the device they came from.
"""

from __future__ import annotations

import argparse
import json
import os
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

    from .config import DEFAULT_ARCH, DEFAULT_TRAIN
    from .models import build_model
    from .train import make_optimizer, make_step, memory_format

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

    from .train import resolve_device

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

    from .config import dataset_settings, load_config, train_settings
    from .config import arch_settings as arch_of
    from .prepare import make_dataset
    from .train import train_run

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


def _read_benchmark(path) -> tuple[float, float]:
    """Wall-clock ``s`` and ``cpu_time`` (NaN if absent) of a Snakemake benchmark file's first
    row."""
    rows = path.read_text().splitlines()
    if len(rows) < 2:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no row after the header)")
    header, first = rows[0].split("\t"), rows[1].split("\t")
    if "s" not in header:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no column 's')")
    wall = float(first[header.index("s")])
    cpu = float(first[header.index("cpu_time")]) if "cpu_time" in header else float("nan")
    return wall, cpu


def job_times(folder: str = "results/benchmarks", files=None) -> list[dict[str, Any]]:
    """Per rule (the first folder under ``folder``, or the file name for a rule without
    wildcards): ``jobs``, the ``total_s``, ``mean_s`` and largest (``max_s``) wall-clock seconds
    of their Snakemake benchmark files, which job was the largest (``max_job``: its path under
    the rule's folder), their CPU seconds ``cpu_s`` and its ``share`` of the total
    (cpu_s / Σ cpu_s); sorted by CPU seconds, largest first. ``files``: the benchmark files to
    read (all ``*.tsv`` under ``folder`` when None), e.g. exactly the jobs of one grid."""
    from pathlib import Path

    root = Path(folder)
    if files is None:
        if not root.is_dir():
            raise SystemExit(f"nnboundary benchmark jobs: no folder {root}; run the workflow "
                             f"first (every rule writes a benchmark file under {root}/)")
        files = sorted(root.rglob("*.tsv"))
    per_rule: dict[str, list[tuple[float, float, str]]] = {}
    for path in map(Path, files):
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            raise SystemExit(f"nnboundary benchmark jobs: {path} is not under {root}") from None
        rule = parts[0] if len(parts) > 1 else path.stem
        job = "/".join(parts[1:]).removesuffix(".tsv") if len(parts) > 1 else ""
        wall, cpu = _read_benchmark(path)
        per_rule.setdefault(rule, []).append((wall, cpu, job))
    total = sum(c for v in per_rule.values() for _, c, _ in v) or 1.0
    table = []
    for rule, v in per_rule.items():
        walls, cpus = [w for w, _, _ in v], [c for _, c, _ in v]
        largest = max(v, key=lambda item: item[0])
        table.append({"rule": rule, "jobs": len(v), "total_s": sum(walls),
                      "mean_s": sum(walls) / len(v), "max_s": largest[0],
                      "max_job": largest[2], "cpu_s": sum(cpus), "share": sum(cpus) / total})
    return sorted(table, key=lambda row: (-row["cpu_s"], row["rule"]))


def print_job_times(table: list[dict[str, Any]], file=None) -> None:
    """The table of :func:`job_times`: wall-clock seconds per job (which include waiting for a
    core when more jobs run than there are cores) and CPU seconds, whose shares say where the
    work goes."""
    file = file or sys.stdout
    print(f"{'rule':<20} {'jobs':>5} {'wall s':>9} {'mean s':>8} {'max s':>8} {'cpu s':>9} "
          f"{'cpu share':>9}", file=file)
    for row in table:
        print(f"{row['rule']:<20} {row['jobs']:>5d} {row['total_s']:>9.1f} {row['mean_s']:>8.2f} "
              f"{row['max_s']:>8.2f} {row['cpu_s']:>9.1f} {row['share']:>9.1%}", file=file)
    print(f"{'all':<20} {sum(r['jobs'] for r in table):>5d} "
          f"{sum(r['total_s'] for r in table):>9.1f} {'':>8} {'':>8} "
          f"{sum(r['cpu_s'] for r in table):>9.1f}  (summed over jobs, also parallel ones)",
          file=file)


JOB_TIMES_CAPTION = (
    "Per rule, from the benchmark file Snakemake writes for each job of this grid: the number "
    "of jobs, their total and largest wall-clock seconds (the largest job named), and their CPU "
    "seconds with the rule's share of all CPU seconds. Wall seconds of jobs that ran side by "
    "side overlap and include waiting for a core, so their sum is not the run's duration; the "
    "CPU shares say where the work went.")


def job_times_document(table: list[dict[str, Any]]):
    """The job-times table as a :mod:`nnboundary.document` (for the report's HTML page)."""
    from . import document

    header = ["rule", "jobs", "total wall s", "mean wall s", "largest wall s", "largest job",
              "CPU s", "CPU share"]
    rows = [[r["rule"], str(r["jobs"]), f"{r['total_s']:.1f}", f"{r['mean_s']:.2f}",
             f"{r['max_s']:.2f}", r["max_job"] or "–", f"{r['cpu_s']:.1f}",
             f"{100 * r['share']:.1f} %"] for r in table]
    rows.append(["all", str(sum(r["jobs"] for r in table)),
                 f"{sum(r['total_s'] for r in table):.1f}", "", "", "",
                 f"{sum(r['cpu_s'] for r in table):.1f}", "100 %"])
    return [document.Heading("Job times per rule"),
            document.Table(header, rows, caption=JOB_TIMES_CAPTION)]


def write_job_times(table: list[dict[str, Any]], csv_path=None, html_path=None) -> None:
    """The table as CSV (one row per rule) and as an HTML page, each written atomically."""
    from . import document, io

    if csv_path is not None:
        import pandas as pd

        with io.atomic_path(csv_path) as tmp:
            pd.DataFrame(table).to_csv(tmp, index=False, float_format="%.6g")
    if html_path is not None:
        with io.atomic_path(html_path) as tmp:
            tmp.write_text(document.html(job_times_document(table), "Job times"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["svm", "train", "jobs", "steps"])
    parser.add_argument("--config", nargs="+", default=["config.yaml"],
                        help="steps: config files, each layered on the ones before it")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="steps: these datasets (default: the config's grid)")
    parser.add_argument("--folder", default="results/benchmarks",
                        help="jobs: the workflow's benchmark folder")
    parser.add_argument("--inputs", nargs="*", default=None,
                        help="jobs: these benchmark files under --folder (default: all)")
    parser.add_argument("--csv", default=None, help="jobs: also write the table as CSV")
    parser.add_argument("--html", default=None, help="jobs: also write it as an HTML page")
    parser.add_argument("--n", type=int, default=60000, help="svm: points per 2-D data set")
    parser.add_argument("--wide-only", action="store_true", help="svm: only the wide table")
    parser.add_argument("--no-wide", action="store_true", help="svm: only the 2-D table")
    parser.add_argument("--features", nargs="+", default=None, metavar="RUN_FEATURES",
                        help="svm: real checkpoints instead of generated data: a run's folder "
                             "of epoch*.parquet feature files, one or more")
    parser.add_argument("--device", default="auto", help="train: auto, cpu or cuda[:N]")
    parser.add_argument("--steps", type=int, default=None,
                        help="train: timed steps per case (default 20); steps: accepted "
                             "training steps per dataset (default 500)")
    parser.add_argument("--warmup", type=int, default=3, help="train: untimed steps first")
    parser.add_argument("--amp", choices=["none", "bf16"], default="none",
                        help="train: bf16 autocast of the backbone on the fast path")
    parser.add_argument("--compile", action="store_true", help="train: torch.compile the fast path")
    parser.add_argument("--threads", type=int, default=None,
                        help="train: torch CPU threads; svm --features: BLAS threads (default 1)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="train: experiments to run (default: all of "
                             + ", ".join(c[0] for c in TRAIN_CASES) + ")")
    parser.add_argument("--output", default=None,
                        help="train, svm, steps: JSON file to write the numbers to")
    args = parser.parse_args(argv)
    if args.what == "svm":
        from .svm import benchmark
        from .svm.bench import benchmark_wide

        record = {"device": f"{device_name()}, {os.cpu_count()} cores"}
        if args.features:
            from .svm.bench import benchmark_real

            record["real"] = benchmark_real(args.features, threads=args.threads or 1)
        elif not args.wide_only:
            record["planar"] = benchmark(n=args.n)
            print()
        if not args.no_wide and not args.features:
            record["wide"] = benchmark_wide()
        if args.output:
            from .io import write_json

            write_json(args.output, record)
        return 0
    if args.what == "steps":
        rows = benchmark_steps(args.config, args.steps or 500, args.datasets,
                               threads=args.threads or 1)
        if args.output:
            from .io import write_json

            write_json(args.output, {"device": f"{device_name()}, {os.cpu_count()} cores",
                                     "config": args.config, "steps": rows})
        return 0
    if args.what == "jobs":
        table = job_times(args.folder, args.inputs)
        print_job_times(table)
        write_job_times(table, args.csv, args.html)
        return 0
    cases = [c for c in TRAIN_CASES if args.only is None or c[0] in args.only]
    unknown = set(args.only or ()) - {c[0] for c in TRAIN_CASES}
    if unknown:
        parser.error(f"--only {sorted(unknown)}: allowed {[c[0] for c in TRAIN_CASES]}")
    record = benchmark_train(args.device, args.steps or 20, args.warmup, args.amp, args.compile,
                             args.threads, cases)
    if args.output:
        from .io import write_json

        write_json(args.output, record)
    return 0
