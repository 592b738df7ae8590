"""Stage ``benchmark`` (``nnboundary benchmark <what>``; ``workflow/rules/job_times.smk`` runs
``benchmark jobs``): speed benchmarks that print numbers (never timed tests).

- ``svm``: seconds per SVM fit on 60,000 2-D points, separable and overlapping, every target
  and scheme (goal: under 1 s per binary fit); then the hard Crammer–Singer fit of wide
  ten-class features up to n = 50,000, d = 512 with each fit's peak memory (goal: ≤ 30 s and
  ≤ 4 GB at that size, exact). ``--wide-only`` skips the 2-D table, ``--no-wide`` the wide one.
- ``jobs``: where a workflow run's time went, from the ``benchmark:`` file every rule writes
  (``results/benchmarks/<rule>/…tsv``, the first row of each file: Snakemake's wall-clock ``s``
  and ``cpu_time``): per rule the number of jobs, their total, mean and largest wall-clock
  seconds (and which job was the largest), their CPU seconds and its share of the total
  (:func:`nnboundary.reporting.job_times.job_times`). The workflow's ``job_times`` rule writes the same table for the
  report, over exactly the jobs of its grid (``--inputs``, ``--csv``, ``--html``).
- ``steps``: milliseconds per full-batch training step of a config's runs (default: the
  default grid's MLP on each of its datasets, seed 0), wall-clock and CPU, through the train
  stage's own loop (:func:`nnboundary.training.train.train_run`) for ``--steps`` accepted steps with the
  config's settings but no stopping loss: the cost that, times the number of steps to the
  stopping loss, makes a run's training time (:func:`nnboundary.bench.training.benchmark_steps`). Epochs undone by the
  loss-scaled step's backtracking are counted and cost time too. To compare two versions,
  run it in each checkout in turn.
- ``train``: training images/s of the paper's three image experiments (``resnet`` on 1×28×28,
  ``densenet40`` on 1×28×28 with 3 classes and on 3×32×32) on the current device, for

  * ``fast``: the pipeline's own path (:func:`nnboundary.training.step.make_step`): the whole data set
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
import os

from ..bench.training import TRAIN_CASES, benchmark_steps, benchmark_train, device_name
from ..formats.tables import write_json
from ..reporting.job_times import job_times, print_job_times, write_job_times


def _arguments() -> argparse.ArgumentParser:
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
    return parser


def _svm(args) -> None:
    from ..bench.svm import benchmark, benchmark_real, benchmark_wide

    record = {"device": f"{device_name()}, {os.cpu_count()} cores"}
    if args.features:
        record["real"] = benchmark_real(args.features, threads=args.threads or 1)
    elif not args.wide_only:
        record["planar"] = benchmark(n=args.n)
        print()
    if not args.no_wide and not args.features:
        record["wide"] = benchmark_wide()
    if args.output:
        write_json(args.output, record)


def _steps(args) -> None:
    rows = benchmark_steps(args.config, args.steps or 500, args.datasets,
                           threads=args.threads or 1)
    if args.output:
        write_json(args.output, {"device": f"{device_name()}, {os.cpu_count()} cores",
                                 "config": args.config, "steps": rows})


def _jobs(args) -> None:
    table = job_times(args.folder, args.inputs)
    print_job_times(table)
    write_job_times(table, args.csv, args.html)


def _train(parser, args) -> None:
    cases = [c for c in TRAIN_CASES if args.only is None or c[0] in args.only]
    unknown = set(args.only or ()) - {c[0] for c in TRAIN_CASES}
    if unknown:
        parser.error(f"--only {sorted(unknown)}: allowed {[c[0] for c in TRAIN_CASES]}")
    record = benchmark_train(args.device, args.steps or 20, args.warmup, args.amp, args.compile,
                             args.threads, cases)
    if args.output:
        write_json(args.output, record)


def main(argv: list[str] | None = None) -> int:
    parser = _arguments()
    args = parser.parse_args(argv)
    if args.what == "svm":
        _svm(args)
    elif args.what == "steps":
        _steps(args)
    elif args.what == "jobs":
        _jobs(args)
    else:
        _train(parser, args)
    return 0
