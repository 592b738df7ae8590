"""Interrupting a run (SIGINT, as Ctrl-C) and starting it again with the same command, which
loads the default workflow profile by itself (profiles/default: it reruns the jobs the
interruption left incomplete), finishes
with the same results as an uninterrupted run; truncated inputs stop a stage with the file and
the fix named."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from conftest import REPO, TINY_CONFIG, snakemake

from nnboundary.errors import InputFileError
from nnboundary.formats import features as feature_files
from nnboundary.formats.checkpoint import load_checkpoints

pytestmark = pytest.mark.e2e


def test_an_interrupted_run_finishes_with_the_uninterrupted_results(tmp_path):
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    for workdir in (whole, interrupted):
        workdir.mkdir()
        shutil.copy(TINY_CONFIG, workdir / "config.yaml")
    snakemake(whole, "--cores", "2")

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
    # Ctrl-C must reach Snakemake as KeyboardInterrupt even when the suite itself runs with
    # SIGINT ignored (a background job of a non-interactive shell, `cmd &`, inherits SIG_IGN,
    # and Python then installs no handler): restore the default disposition in the child.
    job = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                            "--cores", "2"], cwd=interrupted, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = interrupted / "results/runs/blobs/mlp/base/full/seed0/features"
    deadline = time.monotonic() + 180
    while not first.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.poll() is None, "the run finished before it could be interrupted"
    job.send_signal(signal.SIGINT)
    out, _ = job.communicate(timeout=120)
    assert job.returncode != 0, out[-3000:]
    assert not (interrupted / "results/metrics.parquet").exists()

    # Jobs that were running when Snakemake was interrupted are marked incomplete; the default
    # workflow profile, loaded without a flag, reruns them (rerun-incomplete) instead of
    # stopping to ask.
    again = snakemake(interrupted, "--cores", "2")
    assert "workflow specific profile" in again.stdout + again.stderr
    assert "Nothing to be done" not in again.stdout + again.stderr
    a = pd.read_parquet(whole / "results/metrics.parquet")
    b = pd.read_parquet(interrupted / "results/metrics.parquet")
    pd.testing.assert_frame_equal(a, b)
    for path in (whole / "results/runs").rglob("*.parquet"):
        assert path.read_bytes() == (interrupted / path.relative_to(whole)).read_bytes(), path


def test_truncated_checkpoint_and_feature_files_name_the_file_and_the_fix(tmp_path):
    from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
    from nnboundary.stages.features import dump_run
    from nnboundary.data.make import make_dataset
    from nnboundary.formats.checkpoint import save_checkpoints
    from nnboundary.training.train import train_run

    data = make_dataset("blobs", 0, {"n_samples": 100, "test_fraction": 0.2, "seed": 1})
    result = train_run(data, "mlp", 0, dict(DEFAULT_ARCH["mlp"], hidden=8),
                       dict(DEFAULT_TRAIN, epochs=3, n_checkpoints=1, log_every=100))
    checkpoint = tmp_path / "checkpoints.pt"
    save_checkpoints(checkpoint, result)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(InputFileError, match=r"checkpoints.pt is missing or corrupt.*--forcerun \S*/checkpoints.pt\)"):
        load_checkpoints(checkpoint)

    *_, path = dump_run(result, data, tmp_path / "features", torch.device("cpu"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputFileError, match=r"epoch000003.parquet is missing or corrupt.*--forcerun \S*/features\)"):
        feature_files.read_features(path)
