"""End to end through the real Snakefile with the paper's image networks (tiny versions) on
MNIST-format files the test writes itself: the dataset is prepared once for every seed, the
training jobs declare their GPU and resources, and every stage runs."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from conftest import REPO, snakemake
from fake_data import write_mnist

CONFIG = REPO / "tests" / "data" / "tiny_images_config.yaml"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("images")
    shutil.copy(CONFIG, workdir / "config.yaml")
    write_mnist(workdir / "data", "MNIST", seed=3)
    snakemake(workdir, "--cores", "2")
    return workdir


def test_every_output_exists_and_the_data_is_prepared_once(image_run):
    data = sorted(p.relative_to(image_run / "results" / "data").as_posix()
                  for p in (image_run / "results" / "data").rglob("*.npz"))
    assert data == ["mnist01/fixed.npz", "mnist012/fixed.npz"]
    for run in ("mnist01/resnet/base/full/seed0", "mnist01/resnet/base/full/seed1",
                "mnist012/densenet40/base/full/seed0", "mnist012/densenet40/base/full/seed1"):
        assert (image_run / "results" / "runs" / run / "metrics.parquet").stat().st_size > 0
        assert (image_run / "results" / "figures" / "runs" / f"{run}.png").stat().st_size > 0
    metrics = pd.read_parquet(image_run / "results" / "metrics.parquet")
    assert set(metrics["arch"]) == {"resnet", "densenet40"}
    assert metrics["test_acc"].between(0, 1).all()
    summary = pd.read_csv(image_run / "results" / "summary.csv")
    original = summary.groupby(["dataset", "arch"])["original_test_acc"].first()
    assert original[("mnist01", "resnet")] == 0.998
    assert original[("mnist012", "densenet40")] == 0.996


def test_training_jobs_declare_the_configured_resources(image_run):
    result = snakemake(image_run, "--cores", "2", "-n", "--forcerun", "train", "-p")
    assert "resources: " in result.stdout
    train_jobs = [block for block in result.stdout.split("\n\n") if "rule train:" in block]
    assert len(train_jobs) == 4
    for block in train_jobs:
        assert "gpu=1" in block and "mem_mb=1000" in block and "runtime=10" in block


def test_seeds_share_the_prepared_data_but_not_the_weights(image_run):
    runs = image_run / "results" / "runs" / "mnist01" / "resnet" / "base" / "full"
    a = json.loads((runs / "seed0" / "svm.json").read_text())
    b = json.loads((runs / "seed1" / "svm.json").read_text())
    assert a != b
