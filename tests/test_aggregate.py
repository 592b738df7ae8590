"""The aggregate step: final checkpoint, mean and sample sd over seeds, Markdown rendering,
the findings table and the convergence table it writes."""

import numpy as np
import pandas as pd
import pytest
from test_convergence import synthetic_metrics

from nnboundary import aggregate as aggregate_module
from nnboundary import io
from nnboundary.aggregate import (
    SUMMARY_METRICS,
    aggregate,
    final_rows,
    findings,
    findings_markdown,
)


def _run_table(dataset, seed, angle_final, pairs=("0-1",), scheme="binary"):
    rows = []
    for epoch in (1, 10):
        for target in ("svc", "homog"):
            for pair in pairs:
                row = {"dataset": dataset, "arch": "mlp", "seed": seed, "epoch": epoch,
                       "target": target, "scheme": scheme, "pair": pair, "separable": True,
                       "hard_margin": True, "degenerate": False}
                row.update({m: 0.0 for m in SUMMARY_METRICS})
                row["angle_deg"] = angle_final if epoch == 10 else 90.0
                if pair not in ("mean", "0-1"):
                    row["angle_deg"] = 1e6  # per-pair rows must not enter the summary
                rows.append(row)
    return pd.DataFrame(rows)


def test_summary_is_mean_and_sd_over_seeds_at_the_final_epoch(tmp_path):
    inputs = []
    for seed, angle in enumerate([1.0, 2.0, 6.0]):
        path = tmp_path / f"m{seed}.parquet"
        io.write_table(path, _run_table("blobs", seed, angle))
        inputs.append(path)
    path = tmp_path / "m3.parquet"
    io.write_table(path, _run_table("blobs3", 0, 4.0, pairs=("0-1", "0-2", "1-2", "mean"),
                                    scheme="crammer_singer"))
    inputs.append(path)
    summary = aggregate(inputs, tmp_path / "all.parquet", tmp_path / "s.csv", tmp_path / "s.md")
    blobs = summary[(summary["dataset"] == "blobs") & (summary["target"] == "svc")].iloc[0]
    assert blobs["angle_deg_mean"] == 3.0
    assert np.isclose(blobs["angle_deg_sd"], np.std([1.0, 2.0, 6.0], ddof=1))
    assert blobs["n_seeds"] == 3 and blobs["final_epoch"] == 10
    multi = summary[summary["dataset"] == "blobs3"].iloc[0]
    assert multi["angle_deg_mean"] == 4.0 and multi["angle_deg_sd"] == 0.0
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 3 * 4 + 16
    assert pd.read_csv(tmp_path / "s.csv").shape[0] == len(summary) == 4
    # A table without regime/variant columns is a whole-network, base run.
    assert "| blobs | mlp | base | full | svc | binary | 10 | 3 | 1.00 | 3 ± 2.6 |" in (
        tmp_path / "s.md").read_text()
    combined = pd.read_parquet(tmp_path / "all.parquet")
    assert list(combined.columns[:4]) == ["dataset", "arch", "variant", "regime"]


def test_final_rows_take_each_runs_last_epoch():
    table = pd.concat([_run_table("blobs", 0, 1.0), _run_table("blobs", 1, 2.0)])
    table.loc[(table["seed"] == 1) & (table["epoch"] == 10), "epoch"] = 5
    final = final_rows(table)
    assert sorted(final.groupby("seed")["epoch"].max().tolist()) == [5, 10]


def test_summary_puts_the_original_test_accuracy_next_to_the_paper_experiments(tmp_path):
    table = _run_table("blobs", 0, 1.0)
    paper = _run_table("mnist01", 0, 1.0).assign(arch="resnet", test_acc=0.997)
    io.write_table(tmp_path / "a.parquet", table)
    io.write_table(tmp_path / "b.parquet", paper)
    summary = aggregate([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "all.parquet",
                        tmp_path / "s.csv", tmp_path / "s.md")
    by_dataset = summary.groupby("dataset")["original_test_acc"].first()
    assert by_dataset["mnist01"] == 0.998 and np.isnan(by_dataset["blobs"])
    text = (tmp_path / "s.md").read_text()
    assert "original test_acc" in text
    assert "| mnist01 | resnet | base | full | svc | binary | 10 | 1 | 1.00 |" in text
    assert text.splitlines()[-1].endswith("| 0.997 ± 0 | 0.998 |")


def test_regimes_and_variants_are_separate_runs_and_groups(tmp_path):
    """The same seed in two regimes is two runs: each has its own last epoch and summary row."""
    full = _run_table("blobs", 0, 1.0).assign(regime="full", variant="base")
    retrain = _run_table("blobs", 0, 7.0).assign(regime="retrain_last", variant="base")
    retrain.loc[retrain["epoch"] == 10, "epoch"] = 4  # a shorter retraining
    hinge = _run_table("blobs", 0, 3.0).assign(regime="full", variant="loss-hinge")
    final = final_rows(pd.concat([full, retrain, hinge], ignore_index=True))
    assert sorted(final.groupby(["variant", "regime"])["epoch"].max().items()) == [
        (("base", "full"), 10), (("base", "retrain_last"), 4), (("loss-hinge", "full"), 10)]
    paths = []
    for name, table in (("a", full), ("b", retrain), ("c", hinge)):
        paths.append(tmp_path / f"{name}.parquet")
        io.write_table(paths[-1], table)
    summary = aggregate(paths, tmp_path / "all.parquet", tmp_path / "s.csv", tmp_path / "s.md")
    svc = summary[summary["target"] == "svc"].set_index(["variant", "regime"])
    assert svc.loc[("base", "retrain_last"), "angle_deg_mean"] == 7.0
    assert svc.loc[("base", "retrain_last"), "final_epoch"] == 4
    assert svc.loc[("loss-hinge", "full"), "angle_deg_mean"] == 3.0
    assert "| blobs | mlp | base | retrain_last | svc | binary | 4 | 1 |" in (
        tmp_path / "s.md").read_text()


def _final_table(rows):
    """A metrics table of final epochs: rows of (variant, regime, seed, target, angle, offset)."""
    records = []
    for variant, regime, seed, target, angle, offset in rows:
        for epoch, scale in ((1, 30.0), (100, 1.0)):  # epoch 1 must not count
            records.append({
                "dataset": "blobs", "arch": "mlp", "variant": variant, "regime": regime,
                "seed": seed, "epoch": epoch, "target": target, "scheme": "binary",
                "pair": "0-1", "separable": True, "hard_margin": True, "degenerate": False,
                "angle_deg": angle * scale, "bias_offset": offset * scale,
                "margin_ratio": 0.9 if target == "svc" else 0.8,
                "midpoint_position": 0.4 + 0.1 * seed,
            })
    return pd.DataFrame(records)


FINAL_ROWS = [
    # full: svc angles 1, 3, 0.5 (mean 1.5), homog 2, 2.5, 1 (mean 1.83): svc closer, 2/3 seeds
    ("base", "full", 0, "svc", 1.0, 0.05), ("base", "full", 0, "homog", 2.0, 1.0),
    ("base", "full", 1, "svc", 3.0, -0.1), ("base", "full", 1, "homog", 2.5, 1.0),
    ("base", "full", 2, "svc", 0.5, 0.02), ("base", "full", 2, "homog", 1.0, 1.0),
    # retrain_last: svc 10, 12, 14, homog 1, 2, 3 (mean exactly 2°: not below the threshold)
    ("base", "retrain_last", 0, "svc", 10.0, 0.5), ("base", "retrain_last", 0, "homog", 1.0, 0.0),
    ("base", "retrain_last", 1, "svc", 12.0, 0.5), ("base", "retrain_last", 1, "homog", 2.0, 0.0),
    ("base", "retrain_last", 2, "svc", 14.0, 0.5), ("base", "retrain_last", 2, "homog", 3.0, 0.0),
    # a variant with one seed and equal angles: a tie
    ("loss-hinge", "full", 0, "svc", 5.0, 0.0), ("loss-hinge", "full", 0, "homog", 5.0, 0.0),
]


def test_findings_known_answers():
    table = findings(_final_table(FINAL_ROWS)).set_index(["variant", "regime"])
    assert list(table.index) == [("base", "full"), ("base", "retrain_last"),
                                 ("loss-hinge", "full")]
    full = table.loc[("base", "full")]
    assert full["n_seeds"] == 3 and full["final_epoch"] == 100
    assert full["angle_svc_mean"] == pytest.approx(1.5)
    assert full["angle_svc_sd"] == pytest.approx(np.std([1.0, 3.0, 0.5], ddof=1))
    assert full["angle_homog_mean"] == pytest.approx(5.5 / 3)
    assert full["closer_target"] == "svc"
    assert full["closer_share_svc"] == pytest.approx(2 / 3)
    assert full["seeds_closer_svc"] == 2 and full["seeds_closer_homog"] == 1
    assert full["direction_converged"]  # 1.5° < 2°
    assert full["bias_offset_svc_mean"] == pytest.approx(-0.01)
    assert full["bias_at_svm"] and not full["bias_at_homog"]
    assert full["margin_ratio_svc_mean"] == pytest.approx(0.9)
    assert full["margin_ratio_homog_mean"] == pytest.approx(0.8)
    assert full["midpoint_position_mean"] == pytest.approx(0.5)
    assert full["midpoint_position_sd"] == pytest.approx(0.1)

    retrain = table.loc[("base", "retrain_last")]
    assert retrain["closer_target"] == "homog" and retrain["closer_share_svc"] == 0.0
    assert retrain["angle_homog_mean"] == pytest.approx(2.0)
    assert not retrain["direction_converged"]  # 2° is not below 2°
    assert not retrain["bias_at_svm"] and retrain["bias_at_homog"]

    hinge = table.loc[("loss-hinge", "full")]
    assert hinge["closer_target"] == "tie" and hinge["closer_share_svc"] == 0.0
    assert hinge["angle_svc_sd"] == 0.0 and hinge["n_seeds"] == 1


def test_findings_markdown_has_a_row_per_group_and_sentences():
    text = findings_markdown(findings(_final_table(FINAL_ROWS)))
    assert "| blobs | mlp | base | full | 100 | 3 | 1.5 ± 1.3 | 1.83 ± 0.76 | svc (2/3) |" in text
    assert "| blobs | mlp | base | retrain_last | 100 | 3 |" in text
    sentence = next(line for line in text.splitlines() if line.startswith("- blobs/mlp/base:"))
    assert "full ends closer to svc (2/3 seeds), angle 1.5 ± 1.3°" in sentence
    assert "retrain_last ends closer to homog (3/3 seeds), angle 2 ± 1°, bias offset 0 ± 0" \
        in sentence
    assert sentence.index("full ends") < sentence.index("retrain_last ends")
    assert "- blobs/mlp/loss-hinge: full ends equally close to svc and homog" in text


def test_findings_of_an_old_table_and_a_multiclass_run():
    old = synthetic_metrics(keys=False, regimes=("full",), seeds=(0, 1))
    multi = _run_table("blobs3", 0, 4.0, pairs=("0-1", "0-2", "1-2", "mean"),
                       scheme="crammer_singer")
    multi.loc[multi["target"] == "homog", "angle_deg"] = 9.0
    table = findings(pd.concat([old, multi], ignore_index=True))
    assert list(zip(table["dataset"], table["variant"], table["regime"])) == [
        ("blobs", "base", "full"), ("blobs3", "base", "full")]
    blobs3 = table[table["dataset"] == "blobs3"].iloc[0]
    assert blobs3["angle_svc_mean"] == 4.0 and blobs3["angle_homog_mean"] == 9.0
    assert blobs3["closer_target"] == "svc" and blobs3["scheme"] == "crammer_singer"
    blobs = table[table["dataset"] == "blobs"].iloc[0]
    assert blobs["closer_target"] == "svc" and blobs["n_seeds"] == 2


def test_aggregate_cli_writes_every_table(tmp_path):
    inputs = []
    for regime in ("full", "retrain_last"):
        for seed in (0, 1):
            path = tmp_path / f"{regime}{seed}.parquet"
            io.write_table(path, synthetic_metrics(regimes=(regime,), seeds=(seed,)))
            inputs.append(str(path))
    out = {name: tmp_path / "out" / name for name in
           ("metrics.parquet", "summary.csv", "summary.md", "findings.csv", "findings.md",
            "convergence.csv")}
    assert aggregate_module.main([
        "--inputs", *inputs, "--metrics", str(out["metrics.parquet"]),
        "--summary-csv", str(out["summary.csv"]), "--summary-md", str(out["summary.md"]),
        "--findings-csv", str(out["findings.csv"]), "--findings-md", str(out["findings.md"]),
        "--convergence-csv", str(out["convergence.csv"]),
    ]) == 0
    found = pd.read_csv(out["findings.csv"])
    assert list(found["regime"]) == ["full", "retrain_last"]
    assert set(found["closer_target"]) == {"svc"}  # svc slope 1 (+1 retrain) < homog slope 2
    conv = pd.read_csv(out["convergence.csv"])
    mean = conv[(conv["seed"] == -1) & (conv["regime"] == "full") & (conv["target"] == "svc")]
    assert mean["angle_gap_slope"].iloc[0] == pytest.approx(1.05)  # seeds 0, 1: 1.0, 1.1
    assert "## Regimes compared" in out["findings.md"].read_text()


def test_aggregate_cli_requires_the_new_outputs(tmp_path):
    with pytest.raises(SystemExit):
        aggregate_module.main(["--inputs", "x.parquet", "--metrics", "m.parquet",
                               "--summary-csv", "s.csv", "--summary-md", "s.md"])
