"""Seed blocks (grid.seeds_per_job): one job of a per-seed stage covers several seeds, with the
same per-seed outputs as one job per seed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY_CONFIG, snakemake
from nnboundary.formats.checkpoint import load_checkpoints
from nnboundary.formats.dataset import load_dataset
from nnboundary.formats.features import list_feature_files, read_features
from nnboundary.formats.tables import read_json
from nnboundary.settings.commandline import block_settings
from nnboundary.stages import collapse, features, metrics, prepare, retrain, train
from nnboundary.training import train as train_module
from nnboundary.training.train import train_run
from nnboundary.settings.grid import job_names, seed_blocks, SeedBlock
from nnboundary.training.loop import run_loop as loop
from nnboundary.stages import svm as svm_stage

ARCH = json.dumps({"hidden": 16})
SETTINGS = json.dumps({"epochs": 8, "optimizer": "adam", "lr": 0.01, "n_checkpoints": 3,
                       "log_every": 100})


def grid(seeds, size=None):
    config = {"grid": {"seeds": seeds}}
    if size is not None:
        config["grid"]["seeds_per_job"] = size
    return config


def test_seeds_are_grouped_by_seed_div_block_size():
    blocks = seed_blocks(grid([11, 0, 3, 1, 2], 10))
    assert [b.seeds for b in blocks] == [(0, 1, 2, 3), (11,)]
    assert [b.name for b in blocks] == ["seeds0-3", "seeds11-11"]
    assert blocks[0].rule("train") == "train_seeds0_3"
    assert blocks[0].paths("r/{dataset}/seed{seed}/c.pt") == [
        "r/{dataset}/seed0/c.pt", "r/{dataset}/seed1/c.pt", "r/{dataset}/seed2/c.pt",
        "r/{dataset}/seed3/c.pt"]
    assert blocks[1].named("logs/{dataset}/seed{seed}.log") == "logs/{dataset}/seeds11-11.log"
    assert job_names(grid([0, 1, 2, 3, 11], 10)) == ["seeds0-3", "seeds11-11"]
    with pytest.raises(ValueError, match="no seed"):
        blocks[0].paths("r/{dataset}/c.pt")


def test_one_seed_per_job_keeps_the_plain_rules_and_names():
    (block,) = seed_blocks(grid([0, 1, 2]))
    assert block == SeedBlock() and block.rule("svm") == "svm"
    assert block.paths("r/seed{seed}/svm.json") == ["r/seed{seed}/svm.json"]
    assert block.named("logs/seed{seed}.log") == "logs/seed{seed}.log"
    assert block.of(type("W", (), {"seed": "7"})()) == [7]
    assert job_names(grid([0, 2], 1)) == ["seed0", "seed2"]


def test_seeds_added_past_the_last_full_block_leave_the_old_blocks_as_they_were():
    before = seed_blocks(grid(list(range(10)), 5))
    after = seed_blocks(grid(list(range(20)), 5))
    assert after[:len(before)] == before and len(after) == 4


def test_one_prepare_job_writes_a_blocks_files_as_one_job_per_seed_would(tmp_path):
    settings = ["--settings", json.dumps({"n_samples": 200})]
    prepare.main(["--dataset", "sectors", "--seed", "3", "0", *settings,
                  "--output", str(tmp_path / "b3.npz"), str(tmp_path / "b0.npz")])
    for seed in (0, 3):
        prepare.main(["--dataset", "sectors", "--seed", str(seed), *settings,
                      "--output", str(tmp_path / f"a{seed}.npz")])
        block, alone = (np.load(tmp_path / f"{k}{seed}.npz") for k in "ba")
        assert sorted(block.files) == sorted(alone.files)
        for key in alone.files:
            assert np.array_equal(block[key], alone[key]), (seed, key)
    assert not np.array_equal(np.load(tmp_path / "b0.npz")["X_train"],
                              np.load(tmp_path / "b3.npz")["X_train"])
    with pytest.raises(SystemExit):  # one output per seed
        prepare.main(["--dataset", "sectors", "--seed", "0", "1", *settings,
                      "--output", str(tmp_path / "c.npz")])
    with pytest.raises(SystemExit):  # a set prepared once has one output, whatever the seeds
        prepare.main(["--dataset", "digits01", "--seed", "0", "--output",
                      str(tmp_path / "d.npz"), str(tmp_path / "e.npz")])
    assert not (tmp_path / "c.npz").exists() and not (tmp_path / "d.npz").exists()


def test_prepare_jobs_are_named_after_the_block_of_a_seeded_set():
    from nnboundary.settings.grid import prepare_job

    assert prepare_job(grid([0, 1, 2], 2), "blobs", 2) == "blobs/seeds2-2"
    assert prepare_job(grid([0, 1, 2], 2), "blobs", 1) == "blobs/seeds0-1"
    assert prepare_job(grid([0, 1, 2]), "blobs", 1) == "blobs/seed1"
    assert prepare_job(grid([0, 1, 2], 2), "digits01", 1) == "digits01/fixed"


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """blobs for seeds 0 and 1, trained in one job and each alone."""
    tmp = tmp_path_factory.mktemp("blocks")
    data = []
    for seed in (0, 1):
        data.append(tmp / f"d{seed}.npz")
        prepare.main(["--dataset", "blobs", "--seed", str(seed), "--output", str(data[-1]),
                      "--settings", json.dumps({"n_samples": 200})])
    together = [tmp / "together" / f"seed{s}" for s in (0, 1)]
    alone = [tmp / "alone" / f"seed{s}" for s in (0, 1)]
    for folder in together + alone:
        folder.mkdir(parents=True)
    common = ["--arch", "mlp", "--arch-settings", ARCH, "--settings", SETTINGS]
    # Two seeds at a time, in forked workers (--cpus 2, one thread each).
    train.main(["--data", *map(str, data), "--seed", "0", "1", *common, "--cpus", "2",
                "--checkpoints", *(str(f / "c.pt") for f in together),
                "--history", *(str(f / "h.tsv") for f in together)])
    for seed, folder in enumerate(alone):
        train.main(["--data", str(data[seed]), "--seed", str(seed), *common,
                    "--checkpoints", str(folder / "c.pt"), "--history", str(folder / "h.tsv")])
    retrain_settings = json.dumps({"epochs": 5, "n_checkpoints": 2, "log_every": 100,
                                   "until_loss": None})
    for folders in (together, alone):
        chunks = [folders] if folders is together else [[f] for f in folders]
        for chunk in chunks:
            seeds = [int(f.name[-1]) for f in chunk]
            retrain.main(["--checkpoints", *(str(f / "c.pt") for f in chunk),
                          "--data", *(str(data[s]) for s in seeds), "--settings",
                          retrain_settings,
                          "--output", *(str(f / "r.pt") for f in chunk),
                          "--history", *(str(f / "rh.tsv") for f in chunk)])
            features.main(["--checkpoints", *(str(f / "c.pt") for f in chunk),
                           "--data", *(str(data[s]) for s in seeds),
                           "--output-dir", *(str(f / "features") for f in chunk)])
            svm_stage.main(["--features", *(str(f / "features") for f in chunk),
                            "--output", *(str(f / "svm.json") for f in chunk)])
            metrics.main(["--features", *(str(f / "features") for f in chunk),
                          "--svm", *(str(f / "svm.json") for f in chunk),
                          "--output", *(str(f / "m.parquet") for f in chunk)])
            collapse.main(["--features", *(str(f / "features") for f in chunk),
                           "--output", *(str(f / "nc.parquet") for f in chunk)])
    return tmp, data, together, alone


def _states_equal(a: Path, b: Path) -> None:
    a, b = load_checkpoints(a), load_checkpoints(b)
    assert a["keys"] == b["keys"] and a["epochs"] == b["epochs"]
    for epoch in a["epochs"]:
        for name, tensor in a["states"][epoch].items():
            assert torch.equal(tensor, b["states"][epoch][name]), (epoch, name)


def test_a_job_of_several_seeds_gives_each_seed_exactly_what_training_it_alone_gives(two_seeds):
    """Trained two at a time in one job, retrained, dumped, fitted and measured in one job
    each: every tensor, feature, fit and metric equals the seed's own job's."""
    _, _, together, alone = two_seeds
    for a, b in zip(together, alone):
        _states_equal(a / "c.pt", b / "c.pt")
        _states_equal(a / "r.pt", b / "r.pt")
        history = [pd.read_csv(f / "h.tsv", sep="\t").drop(columns="seconds") for f in (a, b)]
        pd.testing.assert_frame_equal(*history)
        files = [list_feature_files(f / "features") for f in (a, b)]
        assert [p.name for p in files[0]] == [p.name for p in files[1]]
        for fa, fb in zip(*files):
            ra, rb = read_features(fa), read_features(fb)
            assert np.array_equal(ra.h, rb.h) and np.array_equal(ra.logits, rb.logits)
        fits = [[_untimed(fit) for fit in read_json(f / "svm.json")["fits"]] for f in (a, b)]
        assert fits[0] == fits[1]
        for name in ("m.parquet", "nc.parquet"):
            frames = [pd.read_parquet(f / name) for f in (a, b)]
            timing = [c for c in frames[0] if "seconds" in c]
            pd.testing.assert_frame_equal(frames[0].drop(columns=timing),
                                          frames[1].drop(columns=timing))
    seeds = [pd.read_parquet(f / "m.parquet")["seed"].unique().tolist() for f in together]
    assert seeds == [[0], [1]]


def test_a_block_job_started_again_takes_its_finished_seeds_as_they_are(two_seeds, monkeypatch):
    tmp, data, together, _ = two_seeds
    again = [tmp / "again" / f"seed{s}" for s in (0, 1)]
    for folder in again:
        folder.mkdir(parents=True)
    # The job was killed after seed 0: its finished result is kept beside its output.
    settings = block_settings(SETTINGS, "train")
    arch = train.parse_arch_settings("mlp", ARCH)
    train_run(load_dataset(data[0]), "mlp", 0, arch, settings,
              resume_path=f"{again[0] / 'c.pt'}.resume", keep_finished=True)
    trained = []
    monkeypatch.setattr(train_module, "run_loop",
                        lambda spec, log: trained.append(spec.run) or loop(spec, log))
    train.main(["--data", *map(str, data), "--seed", "0", "1", "--arch", "mlp",
                "--arch-settings", ARCH, "--settings", SETTINGS,
                "--checkpoints", *(str(f / "c.pt") for f in again),
                "--history", *(str(f / "h.tsv") for f in again)])
    assert trained == ["dataset blobs, arch mlp, variant base, seed 1"]  # seed 0 was kept
    for a, b in zip(again, together):
        _states_equal(a / "c.pt", b / "c.pt")
        assert not Path(f"{a / 'c.pt'}.resume").exists()


def test_per_run_arguments_must_pair_up(two_seeds):
    _, data, together, _ = two_seeds
    with pytest.raises(SystemExit):
        train.main(["--data", *map(str, data), "--seed", "0", "1", "2", "--arch", "mlp",
                    "--checkpoints", "a.pt", "b.pt", "--history", "a.tsv", "b.tsv"])


@pytest.mark.e2e
def test_the_workflow_runs_seed_blocks_and_new_seeds_form_new_blocks(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["grid"].update(datasets=["blobs"], archs=["mlp"], seeds=[0, 1, 2], seeds_per_job=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--cores", "2")
    results = tmp_path / "results"
    for regime in ("full", "retrain_last"):
        for seed in (0, 1, 2):
            run = results / "runs/blobs/mlp/base" / regime / f"seed{seed}"
            assert (run / "metrics.parquet").exists() and (run / "neural_collapse.parquet").exists()
            assert len(list_feature_files(run / "features")) >= 3
        for rule in ("features", "svm", "metrics", "collapse"):
            logs = sorted(p.name for p in (results / "logs" / rule / "blobs/mlp/base"
                                           / regime).iterdir())
            assert logs == ["seeds0-1.log", "seeds2-2.log"]
    for stage in ("train", "prepare"):
        folder = results / "benchmarks" / stage / ("blobs/mlp/base" if stage == "train" else
                                                    "blobs")
        assert sorted(p.name for p in folder.iterdir()) == ["seeds0-1.tsv", "seeds2-2.tsv"]
    assert sorted(p.name for p in (results / "data/blobs").iterdir()) == [
        "seed0.npz", "seed1.npz", "seed2.npz"]
    times = pd.read_csv(results / "job_times.csv").set_index("rule")
    assert times.loc["train", "jobs"] == 2 and times.loc["svm", "jobs"] == 4
    assert times.loc["prepare", "jobs"] == 2
    metrics_table = pd.read_parquet(results / "metrics.parquet")
    assert sorted(metrics_table["seed"].unique()) == [0, 1, 2]
    # A block's wall-time request is the per-run runtime (30 min) times its seeds.
    forced = snakemake(tmp_path, "-n", "--forcerun", "train_seeds0_1", "--until", "train_seeds0_1")
    job = (forced.stdout + forced.stderr).split("rule train_seeds0_1:")[1].split("\n\n")[0]
    assert "runtime=60" in job
    # Seeds 4 and 5 form a new block: only its jobs run, the seeds done are not trained again.
    config["grid"]["seeds"] = [0, 1, 2, 4, 5]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "--cores", "2", "-n", "--quiet", "rules").stdout
    assert "train_seeds4_5" in dry and "train_seeds0_1" not in dry and "train_seeds2_2" not in dry
    assert "retrain_seeds4_5" in dry and "svm_seeds0_1" not in dry
    assert "prepare_seeds4_5" in dry and "prepare_seeds0_1" not in dry


def _untimed(value):
    """``value`` (an svm.json fit) without its wall-clock entries, at any depth (the solver
    record times each solve)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


@pytest.mark.parametrize("cores", [8, 64, 1])
def test_train_jobs_take_half_the_cores_and_start_longest_request_first(tmp_path, cores):
    """The shipped grid (all its seeds in one block, 1 thread per run): a train job asks for
    one thread per seed, at most --cores // 2 of them, and trains that many seeds at a time
    (--cpus); its priority is its wall-time request."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    grid = yaml.safe_load((REPO / "config.yaml").read_text())["grid"]
    seeds = grid["seeds"]
    assert len(seeds) <= grid["seeds_per_job"] and seeds == list(range(len(seeds)))
    block = f"seeds0_{len(seeds) - 1}"
    threads = max(1, min(len(seeds), cores // 2))
    dry = snakemake(tmp_path, "-n", "-p", "--cores", str(cores))
    out = dry.stdout + dry.stderr
    jobs = {}
    for job in out.split(f"rule train_{block}:")[1:]:
        job = job.split("\n\n")[0]
        jobs[job.split("dataset=")[1].split(",")[0]] = job
    assert len(jobs) == 6
    for dataset, job in jobs.items():
        assert (f"threads: {threads}" in job) == (threads > 1), job
        assert f"--cpus {threads} " in job
        # Longest wall-time request first: sectors asks for 60 min per run, the others 30.
        minutes = 60 if dataset == "sectors" else 30
        assert f"priority: {minutes * len(seeds)}" in job, job
    assert out.count(f"rule prepare_{block}:") == 3 and out.count("rule prepare:") == 3
