"""The aggregate step: final checkpoint, statistics over valid seeds, Markdown rendering, the
findings, claims, per-seed and excluded tables and the convergence table it writes."""

import numpy as np
import pandas as pd
import pytest
from test_convergence import synthetic_metrics

from nnboundary.stages import aggregate as aggregate_module
from nnboundary.formats import tables as table_io
from nnboundary.reporting.summary import SUMMARY_METRICS
from nnboundary.reporting.tables import final_rows
from nnboundary.reporting.claims import claims, claims_blocks
from nnboundary.reporting.findings import excluded, findings, findings_markdown, seed_table

GOOD = {"separable": True, "hard_margin": True, "degenerate": False, "diverged": False,
        "train_acc": 1.0, "margin_nn": 0.1, "dead_units": 0}


def _run_table(dataset, seed, angle_final, pairs=("0-1",), scheme="binary", **final):
    """A run with checkpoints 1 and 10; ``final`` sets columns of the final checkpoint."""
    rows = []
    for epoch in (1, 10):
        for target in ("svc", "homog"):
            for pair in pairs:
                row = {"dataset": dataset, "arch": "mlp", "seed": seed, "epoch": epoch,
                       "step": epoch, "target": target, "scheme": scheme, "pair": pair,
                       "optimizer": "sgd", "loss": "cross_entropy", "lr": 0.5}
                row.update({m: 0.0 for m in SUMMARY_METRICS})
                row.update(GOOD)
                row["angle_deg"] = angle_final if epoch == 10 else 90.0
                if pair not in ("mean", "0-1"):
                    row["angle_deg"] = 1e6  # per-pair rows must not enter the summary
                if epoch == 10:
                    row.update(final)
                rows.append(row)
    return pd.DataFrame(rows)


def test_summary_is_over_valid_seeds_at_the_final_epoch(tmp_path):
    inputs = []
    for seed, angle in enumerate([1.0, 2.0, 6.0, 4.0]):
        path = tmp_path / f"m{seed}.parquet"
        table_io.write_table(path, _run_table("blobs", seed, angle))
        inputs.append(path)
    # A dead bottleneck: its conventions (90°, ...) must never enter a statistic.
    path = tmp_path / "dead.parquet"
    table_io.write_table(path, _run_table("blobs", 4, 90.0, dead_units=2, degenerate=True,
                                    train_acc=0.5, margin_nn=0.0))
    inputs.append(path)
    path = tmp_path / "multi.parquet"
    table_io.write_table(path, _run_table("blobs3", 0, 4.0, pairs=("0-1", "0-2", "1-2", "mean"),
                                    scheme="crammer_singer"))
    inputs.append(path)
    summary = aggregate_module.aggregate(inputs, tmp_path / "all.parquet", tmp_path / "s.csv", tmp_path / "s.md")
    blobs = summary[(summary["dataset"] == "blobs") & (summary["target"] == "svc")].iloc[0]
    assert blobs["n_seeds"] == 5 and blobs["n_valid"] == 4 and blobs["final_epoch"] == 10
    assert blobs["angle_deg_mean"] == pytest.approx(3.25)
    assert blobs["angle_deg_sd"] == pytest.approx(np.std([1.0, 2.0, 6.0, 4.0], ddof=1))
    assert blobs["angle_deg_median"] == pytest.approx(3.0)
    assert blobs["angle_deg_q25"] == pytest.approx(1.75)
    assert blobs["angle_deg_q75"] == pytest.approx(4.5)
    assert blobs["lr"] == "0.5" and blobs["optimizer"] == "sgd"
    multi = summary[summary["dataset"] == "blobs3"].iloc[0]
    assert multi["angle_deg_mean"] == 4.0 and multi["angle_deg_sd"] == 0.0
    combined = pd.read_parquet(tmp_path / "all.parquet")
    assert len(combined) == 5 * 4 + 16
    assert combined["valid"].sum() == len(combined) - 2  # the dead run's final rows
    assert pd.read_csv(tmp_path / "s.csv").shape[0] == len(summary) == 4
    # A table without regime/variant columns is a whole-network, base run.
    assert ("| blobs | mlp | base | full | svc | binary | 10 | 4/5 | 0.5 | 3.25 ± 2.2 (3) |"
            in (tmp_path / "s.md").read_text())
    assert list(combined.columns[:4]) == ["dataset", "arch", "variant", "regime"]


def test_summary_means_equal_the_mean_of_the_valid_final_rows(tmp_path):
    """The judged property: every summary mean is the mean over that cell's valid final rows
    of metrics.parquet, and n_valid is their count."""
    tables = [_run_table("blobs", seed, 1.0 + seed, bias_gap=0.1 * seed) for seed in range(4)]
    tables.append(_run_table("blobs", 4, 90.0, separable=False, hard_margin=False,
                             bias_gap=0.0))
    paths = []
    for i, table in enumerate(tables):
        paths.append(tmp_path / f"{i}.parquet")
        table_io.write_table(paths[-1], table)
    summary = aggregate_module.aggregate(paths, tmp_path / "all.parquet", tmp_path / "s.csv", tmp_path / "s.md")
    combined = pd.read_parquet(tmp_path / "all.parquet")
    final = combined[(combined["epoch"] == 10) & combined["valid"]]
    for _, row in summary.iterrows():
        cell = final[final["target"] == row["target"]]
        assert row["n_valid"] == len(cell) == 4
        for name in ("angle_deg", "bias_gap", "train_loss"):
            assert row[f"{name}_mean"] == pytest.approx(cell[name].mean())


def test_a_cell_without_a_valid_seed_shows_no_numbers(tmp_path):
    path = tmp_path / "a.parquet"
    table_io.write_table(path, _run_table("moons", 0, 90.0, dead_units=2, degenerate=True))
    summary = aggregate_module.aggregate([path], tmp_path / "all.parquet", tmp_path / "s.csv", tmp_path / "s.md")
    assert (summary["n_valid"] == 0).all() and summary["angle_deg_mean"].isna().all()
    assert "| moons | mlp | base | full | svc | binary | 10 | 0/1 | 0.5 | no valid seed |" in (
        tmp_path / "s.md").read_text()


def test_final_rows_take_each_runs_last_epoch():
    table = pd.concat([_run_table("blobs", 0, 1.0), _run_table("blobs", 1, 2.0)])
    table.loc[(table["seed"] == 1) & (table["epoch"] == 10), "epoch"] = 5
    final = final_rows(table)
    assert sorted(final.groupby("seed")["epoch"].max().tolist()) == [5, 10]


def test_summary_puts_the_original_test_accuracy_next_to_the_paper_experiments(tmp_path):
    table = _run_table("blobs", 0, 1.0)
    paper = _run_table("mnist01", 0, 1.0).assign(arch="resnet", test_acc=0.997)
    table_io.write_table(tmp_path / "a.parquet", table)
    table_io.write_table(tmp_path / "b.parquet", paper)
    summary = aggregate_module.aggregate([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "all.parquet",
                        tmp_path / "s.csv", tmp_path / "s.md")
    by_dataset = summary.groupby("dataset")["original_test_acc"].first()
    assert by_dataset["mnist01"] == 0.998 and np.isnan(by_dataset["blobs"])
    text = (tmp_path / "s.md").read_text()
    assert "original test_acc" in text
    assert "| mnist01 | resnet | base | full | svc | binary | 10 | 1/1 | 0.5 |" in text
    assert text.splitlines()[-1].endswith("| 0.997 ± 0 (0.997) | 0.998 |")


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
        table_io.write_table(paths[-1], table)
    summary = aggregate_module.aggregate(paths, tmp_path / "all.parquet", tmp_path / "s.csv", tmp_path / "s.md")
    svc = summary[summary["target"] == "svc"].set_index(["variant", "regime"])
    assert svc.loc[("base", "retrain_last"), "angle_deg_mean"] == 7.0
    assert svc.loc[("base", "retrain_last"), "final_epoch"] == 4
    assert svc.loc[("loss-hinge", "full"), "angle_deg_mean"] == 3.0
    assert "| blobs | mlp | base | retrain_last | svc | binary | 4 | 1/1 |" in (
        tmp_path / "s.md").read_text()




# --------------------------------------------------------------------------------------------
# Findings and claims
# --------------------------------------------------------------------------------------------


def _final_table(rows, extra_epoch=True):
    """A metrics table of final epochs from dicts with keys regime, seed, target, angle and any
    metrics columns; an earlier epoch 1 with other values must not count."""
    records = []
    for spec in rows:
        spec = dict(spec)
        regime, seed, target, angle = (spec.pop(k) for k in ("regime", "seed", "target", "angle"))
        variant = spec.pop("variant", "base")
        epochs = ((1, 30.0), (100, 1.0)) if extra_epoch else ((100, 1.0),)
        for epoch, scale in epochs:
            record = {"dataset": "blobs", "arch": "mlp", "variant": variant, "regime": regime, "seed": seed, "epoch": epoch, "step": epoch * 10,
                      "target": target, "scheme": "binary", "pair": "0-1", **GOOD,
                      "angle_deg": angle * scale, "margin_ratio": 0.9, "bias_offset": 0.0,
                      "bias_offset_abs": 0.0, "bias_gap": 0.0, "bias_gap_abs": 0.0,
                      "svm_bias_gap": 0.0, "bias_gap_vs_svm_abs": 0.0,
                      "svc_homog_angle_deg": 0.5, "train_loss": 1e-3, "test_acc": 1.0,
                      "optimizer": "sgd", "loss": "cross_entropy", "lr": 0.5}
            if epoch == 100:
                record.update(spec)
            records.append(record)
    return pd.DataFrame(records)


def _seeds(regime, angles_svc, angles_homog, **columns):
    """Final rows of one regime: seed i has angles_svc[i] / angles_homog[i]; ``columns`` maps a
    column to per-seed values (the same for both targets)."""
    rows = []
    for seed, (a_svc, a_homog) in enumerate(zip(angles_svc, angles_homog)):
        extra = {name: values[seed] for name, values in columns.items()}
        rows.append({"regime": regime, "seed": seed, "target": "svc", "angle": a_svc, **extra})
        rows.append({"regime": regime, "seed": seed, "target": "homog", "angle": a_homog,
                     **extra})
    return rows


def test_closer_target_is_a_sign_test_over_valid_seeds():
    # 6 valid seeds all closer to svc: p = 2/64 = 0.031 < 0.05, decided.
    six = findings(_final_table(_seeds("full", [0.1] * 6, [0.5] * 6))).iloc[0]
    assert (six["seeds_closer_svc"], six["seeds_closer_homog"], six["seeds_tied"]) == (6, 0, 0)
    assert six["closer_p_value"] == pytest.approx(0.03125) and six["closer_target"] == "svc"
    # 5 of 5 agree: p = 0.0625 ≥ 0.05, undecided (five seeds can never decide).
    five = findings(_final_table(_seeds("full", [0.5] * 5, [0.1] * 5))).iloc[0]
    assert five["closer_p_value"] == pytest.approx(0.0625) and five["closer_target"] == "undecided"
    # The regimes case the review found: 4 of 5 closer to svc, the mean favouring homog.
    mixed = findings(_final_table(_seeds("full", [0.1, 0.1, 0.1, 0.1, 9.0],
                                         [0.2, 0.2, 0.2, 0.2, 1.0]))).iloc[0]
    assert mixed["angle_svc_mean"] > mixed["angle_homog_mean"]
    assert (mixed["seeds_closer_svc"], mixed["seeds_closer_homog"]) == (4, 1)
    assert mixed["closer_target"] == "undecided" and mixed["closer_p_value"] == pytest.approx(0.375)
    # Ties (within 0.01°) count for neither target.
    tied = findings(_final_table(_seeds("full", [1.0] * 6, [1.005] * 6))).iloc[0]
    assert tied["seeds_tied"] == 6 and tied["closer_target"] == "undecided"


def test_findings_statistics_use_valid_seeds_and_the_worst_seed():
    rows = _seeds("full", [0.5, 1.0, 1.5, 1.9, 90.0], [0.6, 1.2, 1.4, 2.5, 90.0],
                  bias_gap=[0.02, -0.03, 0.05, -0.08, 0.0],
                  bias_gap_vs_svm_abs=[0.02, 0.03, 0.05, 0.08, 0.0],
                  dead_units=[0, 0, 0, 0, 2], degenerate=[False] * 4 + [True])
    row = findings(_final_table(rows)).iloc[0]
    assert row["n_seeds"] == 5 and row["n_valid"] == 4  # the dead seed's 90° never counts
    assert row["angle_svc_mean"] == pytest.approx(np.mean([0.5, 1.0, 1.5, 1.9]))
    assert row["angle_svc_median"] == pytest.approx(1.25)
    assert row["angle_nearer_max"] == pytest.approx(1.9)  # min(1.9, 2.5) for the worst seed
    assert row["direction_converged"] == "yes"
    # Signed gaps: their mean is small, but the bias measure is the mean (and worst) |gap|.
    assert row["bias_gap_mean"] == pytest.approx(-0.01)
    assert row["bias_gap_svc_abs_mean"] == pytest.approx(0.045)
    assert row["bias_gap_svc_abs_max"] == pytest.approx(0.08) and row["bias_midway"] == "yes"
    assert row["final_step"] == 1000 and row["lr"] == "0.5"
    worse = findings(_final_table(_seeds("full", [0.5, 2.1], [0.6, 3.0]))).iloc[0]
    assert worse["direction_converged"] == "no"  # the mean (1.3°) would have said yes


def test_a_cell_without_a_valid_seed_says_so():
    rows = _seeds("full", [90.0, 90.0], [90.0, 90.0], dead_units=[2, 2], degenerate=[True, True],
                  train_acc=[0.5, 0.5])
    table = findings(_final_table(rows))
    row = table.iloc[0]
    assert row["n_valid"] == 0 and np.isnan(row["angle_svc_mean"])
    assert row["closer_target"] == row["direction_converged"] == "no valid seed"
    text = findings_markdown(table, claims_blocks(claims(_final_table(rows))),
                             excluded(seed_table(_final_table(rows))))
    assert "| blobs | mlp | base | full | 0/2 | sgd 0.5 | no valid seed |" in text
    assert "- blobs/mlp/base/full seed 0 (epoch 100): misclassified,dead_unit,convention" in text


def test_the_multiclass_bias_measure_is_the_distance_to_the_crammer_singer_pairs():
    """Per pair, the network's bias gap against the CS SVM's own (not against 0): pairs of
    opposite sign cannot cancel, and a CS pair whose own position is off-centre is the target."""
    rows = []
    gaps = {"0-1": (0.25, 0.25), "0-2": (-0.3, -0.2), "1-2": (0.1, 0.0)}  # network, svm
    for pair, (network, svm) in gaps.items():
        rows.append({"pair": pair, "bias_gap": network, "svm_bias_gap": svm,
                     "bias_gap_vs_svm_abs": abs(network - svm), "bias_gap_abs": abs(network)})
    mean = {name: float(np.mean([r[name] for r in rows])) for name in rows[0] if name != "pair"}
    records = []
    for target in ("svc", "homog"):
        for row in rows + [{"pair": "mean", **mean}]:
            records.append({"dataset": "blobs3", "arch": "mlp", "variant": "base",
                            "regime": "full", "seed": 0, "epoch": 5, "step": 5,
                            "target": target, "scheme": "crammer_singer", **GOOD,
                            "angle_deg": 1.0, "svc_homog_angle_deg": 2.0, "train_loss": 0.01,
                            "test_acc": 1.0, "margin_ratio": 1.0, "bias_offset_abs": 0.0,
                            "optimizer": "sgd", "loss": "cross_entropy", "lr": 0.1, **row})
    seeds = seed_table(pd.DataFrame(records))
    assert seeds["bias_gap_svc_abs"].iloc[0] == pytest.approx((0.0 + 0.1 + 0.1) / 3)
    assert seeds["bias_gap"].iloc[0] == pytest.approx(0.05 / 3)  # signed: pairs cancel


def test_findings_markdown_has_rows_sentences_claims_and_exclusions():
    rows = (_seeds("full", [0.1] * 6, [0.3] * 6)
            + _seeds("retrain_last", [3.0] * 6, [0.2] * 6,
                     train_acc=[1.0] * 5 + [0.99]))
    metrics = _final_table(rows)
    table = findings(metrics)
    text = findings_markdown(table, claims_blocks(claims(metrics)), excluded(seed_table(metrics)))
    assert "| blobs | mlp | base | full | 6/6 | sgd 0.5 | 0.1 [0.1, 0.1] | 0.3 [0.3, 0.3] |" in text
    assert "svc (svc 6, homog 0, origin 0, tied 0, p = 0.031)" in text
    sentence = next(line for line in text.splitlines() if line.startswith("- blobs/mlp/base:"))
    assert "full (6/6 valid seeds) ends closer to svc" in sentence
    assert "retrain_last (5/6 valid seeds) ends closer to no one target (undecided)" in sentence
    assert "## The paper's claims, by depth" in text
    assert "| blobs | mlp | base | direction | 0/6 **fails** (0.031) | 6/6 **holds** (0.031) |" \
        in text
    assert "- blobs/mlp/base/retrain_last seed 5 (epoch 100): misclassified (train acc 0.9900" \
        in text


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
    assert blobs3["seeds_closer_svc"] == 1 and blobs3["closer_target"] == "undecided"
    assert blobs3["scheme"] == "crammer_singer"
    blobs = table[table["dataset"] == "blobs"].iloc[0]
    assert blobs["seeds_closer_svc"] == 2 and blobs["n_seeds"] == 2 and blobs["n_valid"] == 2


def test_aggregate_cli_writes_every_table(tmp_path):
    inputs = []
    for regime in ("full", "retrain_last"):
        for seed in (0, 1):
            path = tmp_path / f"{regime}{seed}.parquet"
            table_io.write_table(path, synthetic_metrics(regimes=(regime,), seeds=(seed,)))
            inputs.append(str(path))
    names = ("metrics.parquet", "summary.csv", "summary.md", "findings.csv", "findings.md",
             "convergence.csv", "claims.csv", "seeds.csv", "excluded.csv")
    out = {name: tmp_path / "out" / name for name in names}
    assert aggregate_module.main([
        "--inputs", *inputs, "--metrics", str(out["metrics.parquet"]),
        "--summary-csv", str(out["summary.csv"]), "--summary-md", str(out["summary.md"]),
        "--findings-csv", str(out["findings.csv"]), "--findings-md", str(out["findings.md"]),
        "--convergence-csv", str(out["convergence.csv"]), "--claims-csv", str(out["claims.csv"]),
        "--seeds-csv", str(out["seeds.csv"]), "--excluded-csv", str(out["excluded.csv"]),
        "--generalisation-csv", str(tmp_path / "out" / "generalisation.csv"),
        "--generalisation-html", str(tmp_path / "out" / "generalisation.html"),
    ]) == 0
    found = pd.read_csv(out["findings.csv"])
    assert list(found["regime"]) == ["full", "retrain_last"]
    assert (found["seeds_closer_svc"] == 2).all()  # svc slope 1 (+1 retrain) < homog slope 2
    assert set(found["closer_target"]) == {"undecided"}  # 2 seeds cannot decide
    conv = pd.read_csv(out["convergence.csv"])
    mean = conv[(conv["seed"] == -1) & (conv["regime"] == "full") & (conv["target"] == "svc")]
    assert mean["angle_gap_slope"].iloc[0] == pytest.approx(1.05)  # seeds 0, 1: 1.0, 1.1
    assert "## Regimes compared" in out["findings.md"].read_text()
    written = pd.read_csv(out["claims.csv"])
    assert written["claim"].nunique() == 5 and "final" in set(written["milestone"])
    assert len(pd.read_csv(out["seeds.csv"])) == 4
    general = pd.read_csv(tmp_path / "out" / "generalisation.csv")
    assert {"spearman_error_rho", "spearman_loss", "whole_lower_error_verdict"} <= set(general)
    assert "Bias against generalisation" in (tmp_path / "out" / "generalisation.html").read_text()
    assert pd.read_csv(out["excluded.csv"]).empty


def test_aggregate_cli_requires_the_new_outputs(tmp_path):
    with pytest.raises(SystemExit):
        aggregate_module.main(["--inputs", "x.parquet", "--metrics", "m.parquet",
                               "--summary-csv", "s.csv", "--summary-md", "s.md"])


def test_distinct_values_and_markdown_cells():
    from nnboundary.reporting.document import md_row
    from nnboundary.reporting.findings import distinct_values

    assert distinct_values(pd.Series([0.5, 0.5])) == "0.5"
    assert distinct_values(pd.Series([0.01, 0.1, 0.01])) == "0.01/0.1"
    assert distinct_values(pd.Series([0.0317309, 0.0454864, 0.02851])) == "0.0285–0.0455"
    assert distinct_values(pd.Series(["adam", "sgd", "adam"])) == "adam/sgd"
    assert distinct_values(pd.Series([np.nan, ""], dtype=object)) == ""
    assert md_row(["a", "|gap| 0.1"]) == "| a | \\|gap\\| 0.1 |"


def test_html_pages_hold_the_markdown_tables(tmp_path):
    """summary/findings/claims as HTML pages for the report, from the same blocks as the
    Markdown: every Markdown table cell is a cell of the page."""
    from html import unescape

    rows = _seeds("full", [0.1] * 6, [0.3] * 6) + _seeds("retrain_last", [3.0] * 6, [0.2] * 6)
    path = tmp_path / "m.parquet"
    table_io.write_table(path, _final_table(rows))
    out = {name: tmp_path / name for name in ("s.md", "s.html", "f.md", "f.html", "c.html")}
    aggregate_module.aggregate([path], tmp_path / "all.parquet", tmp_path / "s.csv", out["s.md"],
              findings_csv=tmp_path / "f.csv", findings_md=out["f.md"],
              claims_csv=tmp_path / "c.csv", summary_html=out["s.html"],
              findings_html=out["f.html"], claims_html=out["c.html"])
    for md, page in (("s.md", "s.html"), ("f.md", "f.html")):
        html = unescape(out[page].read_text())
        assert html.startswith("<!DOCTYPE html>") and "<caption>" in html
        cells = {c.strip().replace("\\|", "|").replace("**", "")
                 for line in out[md].read_text().splitlines()
                 if line.startswith("| ") for c in line.strip("|").split(" | ")}
        assert len(cells) > 20
        for cell in cells:
            assert f">{cell}<" in html.replace("<strong>", "").replace("</strong>", ""), cell
    claims_page = out["c.html"].read_text()
    assert "<h1>The paper's claims, by depth</h1>" in claims_page
    assert "<strong>holds</strong>" in claims_page
    assert "retrain_direction_not_bias_absolute" in claims_page


def _three_targets(angles, origin_valid=None):
    """Final rows of the full regime with one row per target and seed: ``angles`` maps a target
    to its per-seed angles; ``origin_valid`` (per seed) makes origin rows not separable."""
    rows = []
    for target, values in angles.items():
        for seed, angle in enumerate(values):
            extra = {}
            if target == "origin" and origin_valid is not None and not origin_valid[seed]:
                extra = {"separable": False, "hard_margin": False}
            rows.append({"regime": "full", "seed": seed, "target": target, "angle": angle,
                         **extra})
    return _final_table(rows)


def test_closer_target_chooses_among_three_with_a_test_against_each_other_target():
    # origin is nearest in 6 of 6 seeds; against svc and against homog a sign test gives
    # p = 0.031 each: decided, p the larger (an intersection–union test).
    table = _three_targets({"svc": [1.0] * 6, "homog": [0.5] * 6, "origin": [0.1] * 6})
    row = findings(table).iloc[0]
    assert (row["seeds_closer_svc"], row["seeds_closer_homog"], row["seeds_closer_origin"],
            row["seeds_tied"]) == (0, 0, 6, 0)
    assert row["closer_target"] == "origin" and row["closer_p_value"] == pytest.approx(0.03125)
    assert row["angle_nearer_max"] == pytest.approx(0.1)
    # Pair by pair: homog is nearer than svc in 6, origin nearer than homog in 6.
    assert (row["seeds_svc_over_homog"], row["seeds_homog_over_svc"]) == (0, 6)
    assert (row["seeds_homog_over_origin"], row["seeds_origin_over_homog"]) == (0, 6)
    assert row["p_svc_homog"] == row["p_homog_origin"] == pytest.approx(0.03125)
    # origin nearest in 5 seeds, homog in 1: against homog 5/6 (p = 0.22) - undecided.
    table = _three_targets({"svc": [1.0] * 6, "homog": [0.5] * 5 + [0.05],
                            "origin": [0.1] * 6})
    row = findings(table).iloc[0]
    assert (row["seeds_closer_homog"], row["seeds_closer_origin"]) == (1, 5)
    assert row["closer_target"] == "undecided" and row["closer_p_value"] == pytest.approx(0.21875)
    # Two nearest targets within 0.01°: a tie for that seed.
    # homog and origin tied (pairwise 0:0), both nearer than svc: no single target wins.
    table = _three_targets({"svc": [1.0] * 6, "homog": [0.105] * 6, "origin": [0.1] * 6})
    row = findings(table).iloc[0]
    assert row["seeds_tied"] == 6 and row["closer_target"] == "undecided"
    assert (row["seeds_homog_over_origin"], row["seeds_origin_over_homog"]) == (0, 0)
    assert row["seeds_origin_over_svc"] == 6 and row["p_svc_origin"] == pytest.approx(0.03125)


def test_a_seed_without_a_separator_through_the_origin_stays_valid_for_the_other_targets():
    table = _three_targets({"svc": [0.2] * 6, "homog": [0.3] * 6, "origin": [0.1] * 6},
                           origin_valid=[True] * 4 + [False] * 2)
    seeds = seed_table(table)
    assert seeds["valid"].all()  # the network's own validity
    assert seeds["origin_valid"].tolist() == [True] * 4 + [False] * 2
    assert seeds["origin_invalid_reason"].iloc[-1] == "not_separable_origin,soft_margin"
    assert seeds["angle_origin"].isna().sum() == 2  # never a value of a soft fit
    row = findings(table).iloc[0]
    assert row["n_valid"] == 6 and row["n_valid_origin"] == 4
    # origin is nearest where it exists (4 seeds), svc elsewhere (2): against svc 4 of 6 seeds
    # decide (p = 0.125), undecided.
    assert (row["seeds_closer_origin"], row["seeds_closer_svc"]) == (4, 2)
    assert row["closer_target"] == "undecided"
