"""A training job killed with SIGKILL and started again resumes from its last resumable
checkpoint and ends, on the CPU, with exactly the weights of an uninterrupted job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from conftest import REPO

from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.settings.commandline import to_json
from nnboundary.data.make import make_dataset
from nnboundary.formats.dataset import save_dataset
from nnboundary.formats.checkpoint import load_checkpoints

SETTINGS = dict(DEFAULT_TRAIN, optimizer="momentum", lr=0.05, epochs=800, batch_size=32,
                n_checkpoints=5, log_every=500, resume_every=25, resume_min_seconds=0,
                device="cpu")
ARCH = dict(DEFAULT_ARCH["mlp"], hidden=64)


def _command(data, out, settings=SETTINGS):
    return [sys.executable, "-m", "nnboundary", "train", "--data", str(data), "--arch", "mlp",
            "--seed", "3", "--arch-settings", to_json(ARCH), "--settings", to_json(settings),
            "--checkpoints", str(out / "checkpoints.pt"), "--history", str(out / "history.tsv")]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO / "src"))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    save_dataset(path, make_dataset("blobs", 3, {"n_samples": 400, "test_fraction": 0.2, "seed": 1}))
    return path


def test_a_killed_job_resumes_and_ends_with_the_uninterrupted_weights(tmp_path, data_file):
    reference = tmp_path / "reference"
    subprocess.run(_command(data_file, reference), env=_env(), check=True, capture_output=True)
    assert not (reference / "checkpoints.pt.resume").exists()  # removed once the outputs exist

    killed = tmp_path / "killed"
    resume = killed / "checkpoints.pt.resume"
    job = subprocess.Popen(_command(data_file, killed), env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not resume.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # let it pass a few more epochs beyond the resumable checkpoint
    assert job.poll() is None, "the job ended before it could be killed; make it longer"
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert resume.exists() and not (killed / "checkpoints.pt").exists()
    saved_epoch = torch.load(resume, weights_only=True)["epoch"]
    assert 0 < saved_epoch < SETTINGS["epochs"]

    rerun = subprocess.run(_command(data_file, killed), env=_env(), check=True,
                           capture_output=True, text=True)
    assert f"resumed from {resume} after epoch {saved_epoch}" in rerun.stderr
    assert not resume.exists()
    a, b = load_checkpoints(reference / "checkpoints.pt"), load_checkpoints(killed / "checkpoints.pt")
    assert a["epochs"] == b["epochs"]
    for epoch in a["epochs"]:
        for name, value in a["states"][epoch].items():
            assert torch.equal(value, b["states"][epoch][name]), (epoch, name)
    history_a = pd.read_csv(reference / "history.tsv", sep="\t")
    history_b = pd.read_csv(killed / "history.tsv", sep="\t")
    assert history_b["epoch"].tolist() == list(range(1, SETTINGS["epochs"] + 1))
    pd.testing.assert_series_equal(history_a["loss"], history_b["loss"])


def test_a_resumable_checkpoint_of_other_settings_is_ignored(tmp_path, data_file):
    out = tmp_path / "run"
    short = dict(SETTINGS, epochs=60, resume_every=20)
    job = subprocess.run(_command(data_file, out, short), env=_env(), check=True,
                         capture_output=True, text=True)
    assert "resumed" not in job.stderr
    # A leftover file written with other settings (here: another learning rate).
    torch.save({"fingerprint": json.dumps({"other": 1}), "epoch": 40}, out / "checkpoints.pt.resume")
    job = subprocess.run(_command(data_file, out, dict(short, lr=0.01)), env=_env(), check=True,
                         capture_output=True, text=True)
    assert "ignoring resumable checkpoint" in job.stderr and "written with other settings" in job.stderr
    assert len(pd.read_csv(out / "history.tsv", sep="\t")) == 60
