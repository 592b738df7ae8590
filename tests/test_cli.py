"""Every stage runs without Snakemake through ``python -m nnboundary <stage>``."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO
from nnboundary.cli import STAGES
from nnboundary.errors import InputFileError


def nnboundary(*args, check=True):
    env_path = str(REPO / "src")
    result = subprocess.run([sys.executable, "-m", "nnboundary", *args], capture_output=True,
                            text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_help_lists_every_stage():
    out = nnboundary("--help").stdout
    assert all(stage in out for stage in STAGES)


def test_unknown_stage_is_refused():
    result = nnboundary("trian", check=False)
    assert result.returncode == 2 and "unknown stage 'trian'" in result.stderr


def test_stages_chain_without_snakemake(tmp_path):
    data, ckpt, hist = tmp_path / "d.npz", tmp_path / "c.pt", tmp_path / "h.tsv"
    nnboundary("prepare", "--dataset", "blobs", "--seed", "0", "--output", str(data),
               "--settings", json.dumps({"n_samples": 200}))
    nnboundary("train", "--data", str(data), "--arch", "mlp", "--seed", "0", "--checkpoints",
               str(ckpt), "--history", str(hist), "--arch-settings", json.dumps({"hidden": 16}),
               "--settings", json.dumps({"epochs": 5, "optimizer": "adam", "n_checkpoints": 2}))
    nnboundary("features", "--checkpoints", str(ckpt), "--data", str(data), "--output-dir",
               str(tmp_path / "features"))
    nnboundary("svm", "--features", str(tmp_path / "features"), "--output",
               str(tmp_path / "svm.json"))
    nnboundary("metrics", "--features", str(tmp_path / "features"), "--svm",
               str(tmp_path / "svm.json"), "--output", str(tmp_path / "m.parquet"))
    assert (tmp_path / "m.parquet").stat().st_size > 1000


@pytest.mark.parametrize("stage,args", [
    ("train", ["--data", "x.npz", "--arch", "mlp", "--seed", "0", "--checkpoints", "c.pt",
               "--history", "h.tsv", "--settings", '{"lr_rate": 1}']),
    ("prepare", ["--dataset", "blobs", "--seed", "0", "--output", "d.npz",
                 "--settings", '{"nosie": 1}']),
])
def test_unknown_settings_keys_are_refused(tmp_path, stage, args):
    result = nnboundary(stage, *args, check=False)
    assert result.returncode != 0 and "unknown keys" in result.stderr


def test_a_bad_input_ends_with_the_message_and_no_traceback(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = subprocess.run(
        [sys.executable, "-m", "nnboundary", "train", "--data", str(bad), "--arch", "mlp", "--seed",
         "0", "--checkpoints", str(tmp_path / "c.pt"), "--history", str(tmp_path / "h.tsv")],
        capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin"})
    assert result.returncode == 1
    assert result.stderr.startswith("nnboundary train: error: prepared dataset ")
    assert "rerun the prepare step" in result.stderr and "Traceback" not in result.stderr


def test_benchmark_jobs_sums_the_rules_benchmark_files(tmp_path, capsys):
    from nnboundary.reporting.job_times import job_times
    from nnboundary.stages.benchmark import main as benchmark_main

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rule, name, wall, cpu in (("train", "a/seed0.tsv", 4.0, 3.0), ("train", "a/seed1.tsv", 6.0, 5.0),
                                  ("svm", "x.tsv", 1.0, 2.0)):
        path = tmp_path / rule / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{wall}\t0:00:0{int(wall)}\t1\t1\t1\t1\t0\t0\t0\t{cpu}\n")
    (tmp_path / "aggregate.tsv").write_text(header + "0.5\t0:00:00\t1\t1\t1\t1\t0\t0\t0\t0.0\n")
    table = {row["rule"]: row for row in job_times(str(tmp_path))}
    assert table["train"]["jobs"] == 2 and table["train"]["total_s"] == 10.0
    assert table["train"]["cpu_s"] == 8.0 and table["train"]["share"] == pytest.approx(0.8)
    assert table["train"]["max_s"] == 6.0 and table["train"]["max_job"] == "a/seed1"
    assert table["aggregate"]["jobs"] == 1  # a rule without wildcards: its file's name
    assert benchmark_main(["jobs", "--folder", str(tmp_path)]) == 0
    assert "train" in capsys.readouterr().out
    # --inputs: exactly these files (one grid's jobs), written as CSV and as an HTML page.
    csv, html = tmp_path / "out" / "jobs.csv", tmp_path / "out" / "jobs.html"
    csv.parent.mkdir()
    assert benchmark_main(["jobs", "--folder", str(tmp_path), "--inputs",
                           str(tmp_path / "train" / "a" / "seed0.tsv"),
                           str(tmp_path / "svm" / "x.tsv"), "--csv", str(csv),
                           "--html", str(html)]) == 0
    written = pd.read_csv(csv)
    assert list(written["rule"]) == ["train", "svm"] and list(written["jobs"]) == [1, 1]
    assert written["cpu_s"].sum() == 5.0
    page = html.read_text()
    assert "<caption>" in page and "<td>a/seed0</td>" in page and "<td>all</td>" in page
    with pytest.raises(InputFileError, match="is not under"):
        job_times(str(tmp_path / "train"), [tmp_path / "svm" / "x.tsv"])


def test_benchmark_steps_times_the_train_loop_per_dataset(tmp_path, capsys):
    """benchmark steps trains each chosen dataset of the config for exactly --steps accepted
    steps through the train stage's loop and prints (and keeps) ms per step."""
    from nnboundary.stages.benchmark import main as benchmark_main

    output = tmp_path / "steps.json"
    assert benchmark_main(["steps", "--config", str(REPO / "config.yaml"), "--datasets",
                           "digits01", "blobs", "--steps", "7", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "CPU ms" in out and "digits01" in out and "blobs" in out
    record = json.loads(output.read_text())
    assert [row["dataset"] for row in record["steps"]] == ["digits01", "blobs"]
    for row in record["steps"]:
        assert row["steps"] == 7 and row["redone"] >= 0
        assert row["wall_ms"] > 0 and row["cpu_ms"] > 0
    assert record["steps"][0]["train_n"] == 288 and record["steps"][1]["train_n"] == 4000
    # both through the fused kernel: digits 0/1's 64 inputs with their first layer by the BLAS
    assert [row["kernel"] for row in record["steps"]] == ["fused", "fused"]


def test_config_check_layers_files_as_snakemake_layers_configfile(tmp_path):
    # Alone, the ablation file falls back to the package defaults (constant step, momentum), so
    # its schedule and momentum variants would look like its base; on top of config.yaml they
    # do not, and the check names the duplicates snakemake --configfile will really skip.
    layered = nnboundary("config", "--check", str(REPO / "config.yaml"),
                         str(REPO / "configs" / "ablations.yaml")).stderr
    assert "valid: 135 runs" in layered
    assert "blobs/mlp optimizer-sgd = base" in layered and "schedule-constant" not in layered
    alone = nnboundary("config", "--check", str(REPO / "configs" / "ablations.yaml")).stderr
    assert "schedule-constant = base" in alone
    # Lists are replaced, mappings merged: the second file's seeds win, the first's datasets stay.
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("grid: {datasets: [blobs, sectors], archs: [mlp], seeds: [0, 1, 2]}\n")
    second.write_text("grid: {seeds: [7]}\n")
    out = nnboundary("config", "--check", str(first), str(second)).stderr
    assert "2 dataset x arch pairs" in out and "x 1 seeds" in out
