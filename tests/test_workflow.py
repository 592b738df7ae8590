"""End-to-end runs of the real Snakefile on the tiny config, in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake
from nnboundary.formats import features as feature_files
from nnboundary.formats.tables import read_json
from nnboundary.training.schedule import Plan
from nnboundary.settings.layers import DEFAULT_TRAIN
from nnboundary.measures.metrics import NOT_APPLICABLE_NAN
from nnboundary.settings.targets import TARGETS

pytestmark = pytest.mark.e2e

RUNS = ["blobs/mlp/base/full/seed0", "digits012/cnn/base/full/seed0",
        "blobs/mlp/base/retrain_last/seed0", "digits012/cnn/base/retrain_last/seed0"]
# Logs of the training steps name no regime (train is always full, retrain always retrain_last).
TRAIN_LOGS = {"train": ["blobs/mlp/base/seed0", "digits012/cnn/base/seed0"],
              "retrain": ["blobs/mlp/base/seed0", "digits012/cnn/base/seed0"]}


def test_every_output_exists_and_is_not_trivial(finished):
    results = finished / "results"
    for run in RUNS:
        run_dir = results / "runs" / run
        assert (run_dir / "checkpoints.pt").stat().st_size > 1000
        history = pd.read_csv(run_dir / "history.tsv", sep="\t")
        epochs = 60 if "/full/" in run else 80
        assert len(history) == epochs and history["loss"].iloc[-1] < history["loss"].iloc[0]
        features = feature_files.list_feature_files(run_dir / "features")
        # The log-spaced checkpoints, and the first epoch below each loss milestone reached
        # (the epoch's mean loss: the tiny runs use a constant step).
        epochs = {1, 8, 60} if "/full/" in run else {1, 9, 80}
        plan = Plan(0, 1, 1, [], 0, milestones=DEFAULT_TRAIN["loss_milestones"])
        depth = plan.milestone_epochs(list(zip(history["epoch"], history["loss"])))
        assert [f.name for f in features] == [feature_files.feature_file_name(e)
                                              for e in sorted(epochs | depth)]
        fits = read_json(run_dir / "svm.json")["fits"]
        schemes = 1 if run.startswith("blobs") else 2
        assert len(fits) == len(features) * len(TARGETS) * schemes
        assert (results / "figures" / "runs" / f"{run}.png").stat().st_size > 10_000
        for rule in ("features", "svm", "metrics"):
            assert (results / "logs" / rule / f"{run}.log").exists()
    for rule, names in TRAIN_LOGS.items():
        for name in names:
            assert (results / "logs" / rule / f"{name}.log").exists()
    assert "epoch     60" in (results / "logs/train/blobs/mlp/base/seed0.log").read_text()
    metrics = pd.read_parquet(results / "metrics.parquet")
    assert set(metrics["dataset"]) == {"blobs", "digits012"}
    assert set(metrics["regime"]) == {"full", "retrain_last"} and set(metrics["variant"]) == {"base"}
    assert set(metrics["target"]) == set(TARGETS)
    assert set(metrics[metrics["dataset"] == "digits012"]["pair"]) == {"0-1", "0-2", "1-2", "mean"}
    numeric = metrics.select_dtypes("number").drop(columns=list(NOT_APPLICABLE_NAN))
    assert not numeric.isna().any().any()
    # Every row says what its run trained with: the config's settings, resolved.
    full = metrics[metrics["regime"] == "full"]
    assert set(full["optimizer"]) == {"adam"} and set(full["lr"]) == {0.01}
    assert set(metrics["loss"]) == {"cross_entropy"} and (metrics["step"] == metrics["epoch"]).all()
    retrain = metrics[metrics["regime"] == "retrain_last"]
    assert set(retrain["optimizer"]) == {"sgd"} and (retrain["lr"] < 1.0).all()  # 1/L units
    assert metrics["valid"].dtype == bool and "invalid_reason" in metrics
    seeds = pd.read_csv(results / "seeds.csv")
    claims = pd.read_csv(results / "claims.csv")
    assert len(seeds) == len(RUNS) and claims["claim"].nunique() == 5
    assert "final" in set(claims["milestone"])
    theory = pd.read_csv(results / "linear_theory.csv")  # binary retrain_last runs only
    assert set(theory["dataset"]) == {"blobs"} and set(theory["regime"]) == {"retrain_last"}
    assert theory["final"].sum() == (retrain["dataset"] == "blobs").groupby(
        retrain["seed"]).any().sum()
    assert "The linear case" in (results / "linear_theory.html").read_text()
    assert (results / "figures/theory/blobs/mlp/base.png").stat().st_size > 10_000
    general = pd.read_csv(results / "generalisation.csv")
    assert set(general["regime"]) == {"full", "retrain_last"} and "spearman_error_rho" in general
    assert len(pd.read_csv(results / "excluded.csv")) == (~seeds["valid"]).sum()
    summary = pd.read_csv(results / "summary.csv")
    assert len(summary) == 2 * (3 + 6)  # 2 regimes x (blobs: 3 targets; digits012: 3 x 2 schemes)
    assert "±" in (results / "summary.md").read_text()
    findings = pd.read_csv(results / "findings.csv")
    assert len(findings) == 4 and set(findings["regime"]) == {"full", "retrain_last"}
    assert (results / "convergence.csv").stat().st_size > 0
    assert yaml.safe_load((results / "config.yaml").read_text())["grid"]["regimes"] == [
        "full", "retrain_last"]
    for name in ("overview.png", "convergence/blobs/mlp/base.png",
                 "convergence/digits012/cnn/base.png"):
        assert (results / "figures" / name).stat().st_size > 10_000
    final = metrics[(metrics["dataset"] == "blobs") & (metrics["epoch"] == 60)
                    & (metrics["regime"] == "full")]
    assert (final["train_acc"] == 1.0).all()


def test_metrics_agree_with_an_independent_recomputation(finished):
    """Recompute the blobs svc metrics from the feature files with scikit-learn and NumPy."""
    from sklearn.svm import SVC

    metrics = pd.read_parquet(finished / "results" / "metrics.parquet")
    folder = finished / "results" / "runs" / "blobs/mlp/base/full/seed0" / "features"
    for path in feature_files.list_feature_files(folder):
        features = feature_files.read_features(path)
        frame = pd.read_parquet(path)
        train = frame[frame["split"] == "train"]
        h = train[["h_0", "h_1"]].to_numpy(np.float64)
        y = np.where(train["label"].to_numpy() == 1, 1.0, -1.0)
        row = metrics[(metrics["dataset"] == "blobs") & (metrics["epoch"] == features.epoch)
                      & (metrics["target"] == "svc") & (metrics["regime"] == "full")].iloc[0]
        w = features.W[1] - features.W[0]
        b = features.b[1] - features.b[0]
        margin_nn = np.min(y * (h @ w + b)) / np.linalg.norm(w)
        assert row["margin_nn"] == pytest.approx(margin_nn, rel=1e-6, abs=1e-9)
        logits = train[["logit_0", "logit_1"]].to_numpy(np.float64)
        assert row["train_acc"] == pytest.approx(np.mean(logits.argmax(1) == train["label"]))
        if not row["separable"]:
            continue
        svc = SVC(kernel="linear", C=1e8, tol=1e-8).fit(h, y)
        u, c = svc.coef_[0], svc.intercept_[0]
        cos = w @ u / np.linalg.norm(w) / np.linalg.norm(u)
        assert row["angle_deg"] == pytest.approx(np.degrees(np.arccos(np.clip(cos, -1, 1))),
                                                 abs=0.05)
        assert row["margin_svm"] == pytest.approx(1 / np.linalg.norm(u), rel=1e-3)
        offset = (b / np.linalg.norm(w) - c / np.linalg.norm(u)) * np.linalg.norm(u)
        assert row["bias_offset"] == pytest.approx(offset, abs=1e-2 * max(1, abs(offset)))


def origin_solve(H: np.ndarray, y: np.ndarray, K: int) -> np.ndarray | None:
    """The hard-margin SVM through the origin written out in full and solved by clarabel,
    independently of nnboundary.svm (no preconditioning, no working set): binary
    min ½‖u‖² s.t. sᵢ u·hᵢ ≥ 1, returned as the pair normal of classes (0, 1); K > 2
    Crammer–Singer min ½Σ‖w_k‖² s.t. (w_{yᵢ} − w_k)·hᵢ ≥ 1, returned as W (K × d). None when
    clarabel proves it infeasible."""
    import clarabel
    import scipy.sparse as sp

    n, d = H.shape
    if K == 2:
        A = -(H * np.where(y == 1, 1.0, -1.0)[:, None])
        p = d
    else:
        rows = []
        for i in range(n):
            for k in range(K):
                if k != y[i]:
                    row = np.zeros(K * d)
                    row[y[i] * d:(y[i] + 1) * d] = H[i]
                    row[k * d:(k + 1) * d] = -H[i]
                    rows.append(row)
        A, p = -np.array(rows), K * d
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-10
    solution = clarabel.DefaultSolver(sp.identity(p, format="csc"), np.zeros(p),
                                      sp.csc_matrix(A), -np.ones(A.shape[0]),
                                      [clarabel.NonnegativeConeT(A.shape[0])], settings).solve()
    status = str(solution.status)
    if "Infeasible" in status:
        return None
    assert status.endswith("Solved"), status
    x = np.asarray(solution.x)
    return x if K == 2 else x.reshape(K, d)


def test_origin_rows_agree_with_an_independent_solve(finished):
    """The rows of target origin, from the feature files alone and clarabel: the angle to the
    network's normal and the SVM's margin, per class pair; not separable where it is not."""
    metrics = pd.read_parquet(finished / "results" / "metrics.parquet")
    compared = checked = 0
    for run in RUNS:
        dataset, arch, variant, regime, seed = run.split("/")
        for path in feature_files.list_feature_files(finished / "results" / "runs" / run / "features"):
            features = feature_files.read_features(path)
            H, y = features.part("train")
            K = features.n_classes
            scheme = "binary" if K == 2 else "crammer_singer"
            rows = metrics[(metrics["dataset"] == dataset) & (metrics["regime"] == regime)
                           & (metrics["epoch"] == features.epoch) & (metrics["target"] == "origin")
                           & (metrics["scheme"] == scheme)].set_index("pair")
            solved = origin_solve(H.astype(np.float64), y, K)
            checked += 1
            if solved is None:  # e.g. a class mapped to h = 0: nothing through 0 separates it
                assert not rows["separable"].any() and not rows["valid"].any()
                continue
            assert rows["separable"].all() and rows["hard_margin"].all()
            U = np.vstack([-solved / 2, solved / 2]) if K == 2 else solved
            for i in range(K):
                for j in range(i + 1, K):
                    row = rows.loc[f"{i}-{j}"]
                    w, u = features.W[j] - features.W[i], U[j] - U[i]
                    cos = w @ u / np.linalg.norm(w) / np.linalg.norm(u)
                    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
                    assert row["angle_deg"] == pytest.approx(angle, abs=0.05)
                    pair = (y == i) | (y == j)
                    sign = np.where(y[pair] == j, 1.0, -1.0)
                    margin = np.min(sign * (H[pair] @ u)) / np.linalg.norm(u)
                    assert row["margin_svm"] == pytest.approx(margin, rel=1e-3)
                    compared += 1
    assert compared >= 1 and checked >= 10  # every checkpoint checked, some separable


def test_provenance_records_what_made_the_results(finished):
    """results/provenance.json: the workflow checkout's commit, the config of the record and its
    hash, the command, the machine, the jobs' span and the package versions."""
    import hashlib
    import platform

    record = json.loads((finished / "results" / "provenance.json").read_text())
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert record["commit"] == head and isinstance(record["clean"], bool)
    config = yaml.safe_load((finished / "results" / "config.yaml").read_text())
    assert record["config"] == config
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    assert record["config_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert record["command"].startswith("snakemake ") and "--cores 2" in record["command"]
    assert record["cores"] == os.cpu_count() and record["cpu"]
    assert platform.machine() in record["platform"]
    benchmarks = list((finished / "results" / "benchmarks").rglob("*.tsv"))
    assert record["jobs"] == len(benchmarks)
    assert 0 < record["wall_seconds"] < 3600 and record["cpu_seconds"] > 0
    assert record["packages"]["torch"] == "2.14.1" and record["packages"]["snakemake"]


def test_second_run_does_nothing(finished):
    result = snakemake(finished, "--cores", "2")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_svm_C_reruns_svm_but_never_training(finished):
    config = yaml.safe_load((finished / "config.yaml").read_text())
    config.setdefault("svm", {})["C"] = 7.5
    changed = finished / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = snakemake(finished, "-n", "--configfile", str(changed))
    out = result.stdout + result.stderr
    scheduled = set(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.M))
    assert "svm" in scheduled and "metrics" in scheduled
    assert not any("train" in name for name in scheduled), out[-3000:]
    assert "prepare" not in scheduled and "features" not in scheduled


def test_invalid_config_stops_before_any_job(tiny_workdir):
    config = yaml.safe_load((tiny_workdir / "config.yaml").read_text())
    config["train"]["optimiser"] = "adam"
    (tiny_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tiny_workdir, "--cores", "1", check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "'optimiser' was unexpected" in out and "allowed keys here" in out
    assert not (tiny_workdir / "results").exists()


def _clean_copy(tmp_path: Path) -> Path:
    """The repository's tracked files, as a fresh clone has them."""
    copy = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def _plain_snakemake(workdir: Path, *args: str) -> str:
    """``snakemake <args>`` as a user types it: no -s, no profile flag."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                            capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    return out


def test_the_default_workflow_profile_loads_without_a_flag(tmp_path):
    clone = _clean_copy(tmp_path)
    assert "Using workflow specific profile profiles/default" in _plain_snakemake(clone, "-n")
    # A setting of the profile in effect: its gpu=1 resource limit (a run prints its resources).
    out = _plain_snakemake(clone, "--cores", "1", "results/config.yaml")
    assert "Using workflow specific profile profiles/default" in out
    assert re.search(r"Provided resources: gpu=\S*\s?1\b", out), out[-3000:]
    off = _plain_snakemake(clone, "--cores", "1", "--workflow-profile", "none", "-f",
                           "results/config.yaml")
    assert "workflow specific profile" not in off and "Provided resources: gpu" not in off


def test_lint_is_clean(tiny_workdir):
    result = snakemake(tiny_workdir, "--lint", check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]


def test_snakefmt_check():
    paths = [str(REPO / "Snakefile"), str(REPO / "workflow")]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *paths],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_schedules_each_training_job_with_its_intended_lr(tmp_path):
    """A config with a base lr, a dataset-level and ablation-level overrides: the train jobs of a
    dry run carry exactly the lr the specificity rule gives them."""
    from test_config import INTENDED, SPECIFICITY

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(SPECIFICITY))
    result = snakemake(tmp_path, "-n", "-p", "--cores", "1")
    output = result.stdout + result.stderr
    scheduled = {}
    for line in output.splitlines():
        match = re.search(r"nnboundary train --data results/data/(\w+)/\S+ --arch mlp --seed 0 "
                          r"--variant (\S+) .*--settings '(\{.*?\})'", line)
        if match:
            settings = json.loads(match.group(3))
            scheduled[(match.group(1), match.group(2))] = (settings["lr"], settings["epochs"])
    assert scheduled == INTENDED


def test_summary_means_are_means_of_the_valid_final_rows(finished):
    """The judged property on a real run: each summary mean is the mean over that cell's valid
    final rows of metrics.parquet, and n_valid is their count."""
    results = finished / "results"
    metrics = pd.read_parquet(results / "metrics.parquet")
    summary = pd.read_csv(results / "summary.csv")
    last = metrics.groupby(["dataset", "arch", "variant", "regime", "seed"])["epoch"].transform("max")
    final = metrics[(metrics["epoch"] == last)
                    & ((metrics["scheme"] == "binary") | (metrics["pair"] == "mean"))]
    names = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    for _, row in summary.iterrows():
        keys = ["dataset", "arch", "variant", "regime", "target", "scheme"]
        cell = final[np.logical_and.reduce([final[k] == row[k] for k in keys])]
        valid = cell[cell["valid"]]
        assert row["n_valid"] == len(valid) and row["n_seeds"] == len(cell)
        for name in names:
            expected = valid[name].mean() if len(valid) else np.nan
            assert row[f"{name}_mean"] == pytest.approx(expected, rel=1e-5, abs=1e-12,
                                                        nan_ok=True), name


def test_neural_collapse_table_agrees_with_a_recomputation_from_the_feature_files(finished):
    """results/neural_collapse.parquet, row by row, against NC1 (with numpy's pinv), NC3 and
    NC4 recomputed here from the raw feature columns and the last layer in the metadata."""
    import pyarrow.parquet as pq

    table = pd.read_parquet(finished / "results" / "neural_collapse.parquet")
    assert set(zip(table["dataset"], table["regime"])) == {
        (d, r) for d in ("blobs", "digits012") for r in ("full", "retrain_last")}
    checked = 0
    for run in RUNS:
        for path in sorted((finished / "results" / "runs" / run / "features").glob("*.parquet")):
            raw = pq.read_table(path)
            layer = json.loads(raw.schema.metadata[b"last_layer"])
            frame = raw.to_pandas()
            frame = frame[frame["split"] == "train"]
            H = frame[[c for c in frame.columns if c.startswith("h_")]].to_numpy(np.float64)
            y = frame["label"].to_numpy()
            W, b = np.asarray(layer["W"]), np.asarray(layer["b"])
            K = W.shape[0]
            means = np.stack([H[y == k].mean(0) for k in range(K)])
            M = means - means.mean(0)
            sw = (H - means[y]).T @ (H - means[y]) / len(H)
            nc1 = np.trace(sw @ np.linalg.pinv(M.T @ M / K, rcond=1e-10)) / K
            Wc = W - W.mean(0)
            nc3 = np.sum((Wc / np.linalg.norm(Wc) - M / np.linalg.norm(M)) ** 2)
            ncc = np.argmin(((H[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
            nc4 = np.mean((H @ W.T + b).argmax(1) != ncc)
            epoch = int(path.stem.removeprefix("epoch"))
            dataset, arch, variant, regime, seed = run.split("/")
            row = table[(table["dataset"] == dataset) & (table["regime"] == regime)
                        & (table["epoch"] == epoch)].iloc[0]
            assert row["nc3_self_duality"] == pytest.approx(nc3, rel=1e-6, abs=1e-12)
            assert row["nc4_ncc_mismatch"] == pytest.approx(nc4)
            if nc1 < 1e6:  # near-equal means make NC1 ill-conditioned: compared where it is not
                assert row["nc1"] == pytest.approx(nc1, rel=1e-5)
            checked += 1
    assert checked == len(table) == 12
    collapse = pd.read_csv(finished / "results" / "collapse.csv")
    assert len(collapse) == 4 and (collapse["n_seeds"] == 1).all()
