"""The ``svm`` pipeline stage: every target and scheme for every checkpoint of one run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import io as fio
from ..cli import per_run
from ..config import RUN_KEYS, ConfigError, parse_settings
from .fit import SVMFit, fit_svm
from .problems import TARGETS

DEFAULT_SETTINGS: dict[str, Any] = {
    "C": 1.0,
    "tol": 1e-3,
    "multiclass": ["crammer_singer", "ovr"],
    "max_memory_gb": None,
    "soft_margin": True,
}


def _parse_settings(text: str | None) -> dict[str, Any]:
    try:
        settings = parse_settings(text, DEFAULT_SETTINGS)
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    settings["C"], settings["tol"] = float(settings["C"]), float(settings["tol"])
    limit = settings["max_memory_gb"]
    if limit is not None and not (isinstance(limit, (int, float)) and limit > 0):
        raise SystemExit(f"--settings max_memory_gb = {limit!r}; allowed: a positive number or null")
    if not isinstance(settings["soft_margin"], bool):
        raise SystemExit(
            f"--settings soft_margin = {settings['soft_margin']!r}; allowed: true or false"
        )
    if isinstance(settings["multiclass"], str):
        settings["multiclass"] = [settings["multiclass"]]
    bad = [s for s in settings["multiclass"] if s not in ("crammer_singer", "ovr")]
    if bad:
        raise SystemExit(f"--settings multiclass has {bad}; allowed: ['crammer_singer', 'ovr']")
    return settings


def fit_run(features_dir, settings: dict[str, Any], log=None) -> dict[str, Any]:
    """Fit every target and scheme for every checkpoint of one run; the svm.json content."""
    log = sys.stderr if log is None else log  # looked up at call time (pytest swaps it)
    files = fio.list_feature_files(features_dir)
    keys: dict[str, Any] = {}
    fits = []
    for path in files:
        fs = fio.read_features(path)
        keys = {k: fs.keys[k] for k in RUN_KEYS if k in fs.keys}
        H, y = fs.part("train")
        K = fs.n_classes
        schemes = ["binary"] if K == 2 else list(settings["multiclass"])
        for target in TARGETS:
            for scheme in schemes:
                fit = fit_svm(
                    H,
                    y,
                    target,
                    scheme,
                    C=settings["C"],
                    tol=settings["tol"],
                    n_classes=K,
                    max_memory_gb=settings["max_memory_gb"],
                    certificate=(fs.W, fs.b),  # the network's last layer proves separability
                    soft=settings["soft_margin"],
                )
                print(
                    f"svm: epoch {fs.epoch} {target}/{scheme}: separable={fit.separable} "
                    f"hard={fit.hard_margin} min_margin={fit.min_margin:.4g} "
                    f"support={len(fit.support)} {fit.seconds:.3f}s",
                    file=log,
                    flush=True,
                )
                fits.append({"epoch": fs.epoch, **fit.to_json()})
    return {"keys": keys, "fits": fits}


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
    settings = _parse_settings(args.settings)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: allowed a whole number of at least 1")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):
        for features, output in runs:
            fio.write_json(output, fit_run(features, settings))
    return 0


def load_fits(path) -> list[tuple[int, SVMFit]]:
    """The fits of an svm.json, as (epoch, SVMFit) pairs in file order."""
    obj = fio.read_json(path)
    if not isinstance(obj, dict) or "fits" not in obj:
        raise fio.InputFileError(f"{path} is not an svm.json (no 'fits' list); rerun the svm step")
    out = []
    for entry in obj["fits"]:
        entry = dict(entry)
        epoch = int(entry.pop("epoch"))
        out.append((epoch, SVMFit.from_json(entry)))
    return out
