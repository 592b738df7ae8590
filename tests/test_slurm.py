"""The SLURM profile against a real SLURM: a single-node cluster on localhost started by
``scripts/slurm-local.sh`` (apt packages, needs root), stopped again whatever happens.

Checks: every non-local job goes through sbatch (SLURM logs kept, ``sacct`` shows each job
COMPLETED), training jobs ask for ``--gpus=1``, the results equal a local run's, and a training
job cancelled with ``scancel`` is resubmitted and resumes from its last resumable checkpoint.
Skipped, with the reason, where no local SLURM can be set up (not root, no apt-get).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_CONFIG, snakemake

pytestmark = pytest.mark.slurm

SCRIPT = REPO / "scripts" / "slurm-local.sh"
PROFILE = REPO / "profiles" / "slurm"
# Rules that run on the submit host (localrules); every other job must go through sbatch.
LOCAL_RULES = {"prepare", "aggregate", "run_figure", "convergence_figure", "overview_figure",
               "theory_figure", "theory_table", "provenance",
               "config_record", "job_times", "collapse_figure", "all"}
# Poll SLURM every few seconds instead of the profile's 20 s: the jobs here take seconds.
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "3")


def _script(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True,
                          check=False)


@pytest.fixture(scope="module")
def slurm():
    """A running local SLURM for this module; stopped (jobs cancelled first) on the way out."""
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (scripts/slurm-local.sh)")
    if shutil.which("sbatch") is None:
        if shutil.which("apt-get") is None:
            pytest.skip("no sbatch and no apt-get to install SLURM with")
        installed = _script("install")
        assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        started = _script("start")
        assert started.returncode == 0, started.stdout + started.stderr
        print(started.stdout)
        yield
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True, check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            queue = subprocess.run(["squeue", "-h", "-u", "root"], capture_output=True, text=True,
                                   check=False)
            if queue.returncode != 0 or not queue.stdout.strip():
                break
            time.sleep(1)
        stopped = _script("stop")
        print(stopped.stdout + stopped.stderr)


def _run_on_slurm(workdir: Path, *extra: str, timeout: float = 420) -> subprocess.CompletedProcess:
    """snakemake --workflow-profile <slurm profile> in ``workdir`` (it replaces the default
    workflow profile); SIGINT on timeout (Snakemake then cancels its SLURM jobs; SIGTERM would
    leave it waiting for them)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--workflow-profile", str(PROFILE), *FAST_POLL, *extra]
    job = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.send_signal(signal.SIGINT)
        out, _ = job.communicate(timeout=120)
        raise AssertionError(f"snakemake on SLURM did not finish in {timeout} s:\n{out[-6000:]}")
    return subprocess.CompletedProcess(command, job.returncode, out, "")


def _slurm_logs(workdir: Path) -> dict[str, list[int]]:
    """SLURM job ids per rule (``group_<name>`` for a group job), from the plugin's kept logs
    .snakemake/slurm_logs/rule_<r>/…/<id>.log and group_<name>/…/<id>.log."""
    found: dict[str, list[int]] = {}
    for path in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        part = next(p for p in path.relative_to(workdir).parts
                    if p.startswith(("rule_", "group_")))
        rule = part[5:] if part.startswith("rule_") else part
        found.setdefault(rule, []).append(int(path.stem))
    return found


def _sacct(job_ids: list[int]) -> dict[int, tuple[str, str]]:
    """State and requested TRES of each job, from SLURM's accounting database."""
    result = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(map(str, job_ids)),
         "-o", "JobIDRaw,State,ReqTRES"], capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in result.stdout.splitlines() if line.strip()]
    return {int(r[0]): (r[1], r[2]) for r in rows}


def test_the_tiny_grid_runs_through_slurm_and_equals_a_local_run(slurm, tmp_path, capsys):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for workdir in (local, cluster):
        workdir.mkdir()
        shutil.copy(TINY_CONFIG, workdir / "config.yaml")
    started = time.monotonic()
    result = _run_on_slurm(cluster, "--verbose")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:]
    # The status command actually used, from the plugin's own log lines: squeue, as the profile
    # asks. The plugin falls back to sacct without an error when it cannot read MinJobAge or
    # finds it below 3 x the first poll delay, and then a scancel'd job hangs the run.
    used = set(re.findall(r"Status query timing \(cycle\): command=(\w+)", result.stdout))
    assert used == {"squeue"}, result.stdout[-6000:]
    assert "Falling back to 'sacct'" not in result.stdout

    jobs = _slurm_logs(cluster)
    # The profile groups each run's features, svm, metrics and collapse into one submission: 4
    # runs give 4 group jobs instead of 16 single ones; with the 2 retrained layers' theory
    # tables, 10 sbatch calls in all instead of 22. The plugin names a group job's log folder
    # group_<group>_<its rules>.
    expected = {"train": 2, "retrain": 2, "group_run_collapse_features_metrics_svm": 4,
                "theory": 2}
    assert {rule: len(ids) for rule, ids in jobs.items()} == expected
    assert not set(jobs) & LOCAL_RULES
    records = _sacct([i for ids in jobs.values() for i in ids])
    rule_of = {i: rule for rule, ids in jobs.items() for i in ids}
    with capsys.disabled():  # into the CI log: the tiny grid through SLURM, job by job
        print(f"\ntiny grid through the local SLURM in {seconds:.0f} s; sacct records:")
        for job_id, (state, tres) in sorted(records.items()):
            print(f"  job {job_id:>4}  rule {rule_of[job_id]:<9} {state:<10} {tres}")
    assert len(records) == sum(expected.values())
    assert all(state == "COMPLETED" for state, _ in records.values()), records
    for rule, ids in jobs.items():
        for job_id in ids:
            asks_gpu = "gres/gpu=1" in records[job_id][1]
            # train, retrain and the group holding the feature dump ask for the GPU.
            assert asks_gpu == (rule in ("train", "retrain", "group_run_collapse_features_metrics_svm")), (
                rule, records[job_id])

    snakemake(local, "--cores", "2")
    for name in ("metrics.parquet", "findings.csv"):
        a = pd.read_parquet(local / "results" / name) if name.endswith(".parquet") else \
            pd.read_csv(local / "results" / name)
        b = pd.read_parquet(cluster / "results" / name) if name.endswith(".parquet") else \
            pd.read_csv(cluster / "results" / name)
        pd.testing.assert_frame_equal(a, b)
    for path in (local / "results" / "runs").rglob("*.parquet"):
        twin = cluster / path.relative_to(local)
        assert path.read_bytes() == twin.read_bytes(), path


def test_a_cancelled_training_job_is_resubmitted_and_resumes(slurm, tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["grid"] = {"datasets": ["blobs"], "archs": ["mlp"], "seeds": [0], "regimes": ["full"]}
    config["train"].update(epochs=2500, batch_size=32, resume_every=50, resume_min_seconds=0,
                           log_every=500)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    resume = tmp_path / "results/runs/blobs/mlp/base/full/seed0/checkpoints.pt.resume"

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
    # Only the training step is needed here: target its checkpoint file.
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--workflow-profile", str(PROFILE), *FAST_POLL,
               "results/runs/blobs/mlp/base/full/seed0/checkpoints.pt"]
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not resume.exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.5)
        assert resume.exists(), "the training job wrote no resumable checkpoint"
        queue = subprocess.run(["squeue", "-h", "-u", "root", "-o", "%i %k"], capture_output=True,
                               text=True, check=True).stdout
        train_jobs = [line.split()[0] for line in queue.splitlines() if "rule_train" in line]
        assert len(train_jobs) == 1, queue
        subprocess.run(["scancel", train_jobs[0]], check=True)
        out, _ = job.communicate(timeout=420)
    except BaseException:
        job.send_signal(signal.SIGINT)
        job.communicate(timeout=120)
        raise
    assert job.returncode == 0, out[-6000:]
    log = (tmp_path / "results/logs/train/blobs/mlp/base/seed0.log").read_text()
    match = re.search(r"resumed from \S+ after epoch (\d+)", log)
    assert match, log[-3000:]
    assert 0 < int(match.group(1)) < 2500
    history = pd.read_csv(tmp_path / "results/runs/blobs/mlp/base/full/seed0/history.tsv", sep="\t")
    assert history["epoch"].tolist() == list(range(1, 2501))
    assert not resume.exists()
    cancelled = _sacct([int(train_jobs[0])])
    assert cancelled[int(train_jobs[0])][0].startswith("CANCELLED")


def test_a_failing_job_is_reported_with_its_slurm_log(slurm, tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["grid"] = {"datasets": ["blobs"], "archs": ["mlp"], "seeds": [0], "regimes": ["full"]}
    # Diverges before its first checkpoint (the only one is the last epoch): nothing to keep.
    config["train"].update(optimizer="sgd", lr=1.0e30, checkpoints=[60])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = _run_on_slurm(tmp_path, "--retries", "0", timeout=240)
    assert result.returncode != 0
    logs = list((tmp_path / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in result.stdout, result.stdout[-4000:]
    assert "training diverged" in (tmp_path / "results/logs/train/blobs/mlp/base/seed0.log").read_text()


def test_own_data_and_network_run_through_slurm(slurm, tmp_path):
    """A config's own dataset function and network function (tests/example_plugin.py in the
    working directory) resolve in the SLURM jobs as they do locally: same metrics."""
    config = {
        "grid": {"datasets": ["rings"], "archs": ["mynet"], "seeds": [0], "regimes": ["full"]},
        "datasets": {"rings": {"source": "example_plugin:rings", "seeded": True,
                               "n_samples": 200, "gap": 1.0}},
        "archs": {"mynet": {"source": "example_plugin:small_net", "hidden": 16, "width": 3}},
        "train": {"optimizer": "adam", "lr": 0.02, "epochs": 40, "n_checkpoints": 3,
                  "log_every": 20},
        "metrics": {"grid_points": 40}, "figures": {"resolution": 60, "dpi": 50},
    }
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for workdir in (local, cluster):
        workdir.mkdir()
        shutil.copy(REPO / "tests" / "example_plugin.py", workdir / "example_plugin.py")
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = _run_on_slurm(cluster)
    assert result.returncode == 0, result.stdout[-6000:]
    jobs = _slurm_logs(cluster)
    assert {rule: len(ids) for rule, ids in jobs.items()} == {
        "train": 1, "group_run_collapse_features_metrics_svm": 1}
    records = _sacct([i for ids in jobs.values() for i in ids])
    assert all(state == "COMPLETED" for state, _ in records.values()), records
    snakemake(local, "--cores", "2")
    pd.testing.assert_frame_equal(pd.read_parquet(local / "results" / "metrics.parquet"),
                                  pd.read_parquet(cluster / "results" / "metrics.parquet"))
