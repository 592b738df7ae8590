"""The aggregate step: final checkpoint, mean and sample sd over seeds, Markdown rendering."""

import numpy as np
import pandas as pd

from nnboundary import io
from nnboundary.aggregate import SUMMARY_METRICS, aggregate, final_rows


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
    assert "| blobs | mlp | svc | binary | 10 | 3 | 1.00 | 3 ± 2.6 |" in (tmp_path / "s.md").read_text()


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
    assert "| mnist01 | resnet | svc | binary | 10 | 1 | 1.00 |" in text
    assert text.splitlines()[-1].endswith("| 0.997 ± 0 | 0.998 |")
