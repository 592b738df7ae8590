"""Stage ``svm`` (``workflow/rules/svm.smk``): fit every SVM target and scheme
(:func:`nnboundary.svm.fit_svm`) on the train features of every checkpoint of a run, and write
them to ``svm.json`` (:mod:`nnboundary.formats.svmfile`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..formats.features import list_feature_files, read_features
from ..formats.svmfile import write_svm
from ..settings.commandline import block_settings, per_run
from ..settings.keys import RUN_KEYS
from ..svm import TARGETS, fit_svm


def fit_run(features_dir, settings: dict[str, Any], log=None) -> tuple[dict, list[dict]]:
    """Fit every target and scheme for every checkpoint of one run: (run keys, fits)."""
    log = sys.stderr if log is None else log  # looked up at call time (pytest swaps it)
    keys: dict[str, Any] = {}
    fits = []
    for path in list_feature_files(features_dir):
        fs = read_features(path)
        keys = {k: fs.keys[k] for k in RUN_KEYS if k in fs.keys}
        H, y = fs.part("train")
        K = fs.n_classes
        schemes = ["binary"] if K == 2 else list(settings["multiclass"])
        for target in TARGETS:
            for scheme in schemes:
                fit = fit_svm(H, y, target, scheme, C=settings["C"], tol=settings["tol"],
                              n_classes=K, max_memory_gb=settings["max_memory_gb"],
                              certificate=(fs.W, fs.b),  # the network's layer proves separability
                              soft=settings["soft_margin"])
                print(
                    f"svm: epoch {fs.epoch} {target}/{scheme}: separable={fit.separable} "
                    f"hard={fit.hard_margin} min_margin={fit.min_margin:.4g} "
                    f"support={len(fit.support)} {fit.seconds:.3f}s",
                    file=log,
                    flush=True,
                )
                fits.append({"epoch": fs.epoch, **fit.to_json()})
    return keys, fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nnboundary svm",
        description="Fit hard-margin SVM targets (svc, homog, origin) on the last hidden layer "
        "of every checkpoint.",
    )
    parser.add_argument(
        "--features", required=True, nargs="+",
        help="a run's folder of epoch*.parquet feature files, one per run",
    )
    parser.add_argument("--output", required=True, nargs="+", help="svm.json to write, one per run")
    parser.add_argument(
        "--settings",
        default=None,
        help='JSON object, keys C (1.0), tol (1e-3), multiclass (["crammer_singer","ovr"]), '
             "max_memory_gb (null), soft_margin (true: fit the soft margin when the train "
             "features are not separable; false: record the fit as not separable, no weights)",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="BLAS threads the fits may use (default 1: the job's one core; on a shared "
             "machine more threads than cores make the dense solves several times slower)",
    )
    args = parser.parse_args(argv)
    runs = per_run(parser, args, ("features", "output"))
    settings = block_settings(args.settings, "svm")
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: allowed a whole number of at least 1")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):
        for features, output in runs:
            write_svm(output, *fit_run(features, settings))
    return 0
