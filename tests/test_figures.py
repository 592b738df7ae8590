"""Tests of the figures stage: each subcommand writes a real PNG from inputs made by the real code.

Every run is built through the pipeline's own functions (prepare → train → features → metrics);
only svm.json is hand-made (the network's own last layer, rotated a little for ``svc`` and
scaled for ``homog``), so these tests do not depend on the svm stage.
"""

from __future__ import annotations

import io as text_io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import nnboundary  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import pandas as pd
from test_convergence import synthetic_metrics

from nnboundary.errors import ConfigError
from nnboundary.figures import run as run_figure
from nnboundary.reporting import tables as metric_tables
from nnboundary.stages import figures
from nnboundary.formats import features as feature_files
from nnboundary.formats import tables as table_io
from nnboundary.measures import metrics
from nnboundary.settings.layers import DEFAULT_TRAIN
from nnboundary.stages.features import dump_run
from nnboundary.data.make import make_dataset
from nnboundary.formats.dataset import save_dataset
from nnboundary.formats.checkpoint import save_checkpoints
from nnboundary.training.train import train_run

FAST = {"dpi": 80, "resolution": 120}


def rotation(d: int, degrees: float) -> np.ndarray:
    """Rotation by ``degrees`` in the plane of the first two axes of R^d (identity for d = 1)."""
    R = np.eye(d)
    if d >= 2:
        t = np.radians(degrees)
        R[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return R


def hand_svm(features_dir: Path, keys: dict, origin_hard: bool = True) -> dict:
    """svm.json content with fits for every feature epoch: svc = the centred last layer rotated
    by 5°, homog = it scaled by 0.8 with half the bias, origin = it rotated by −3° without bias
    (hard-margin or not, ``origin_hard``); the first three class-0 and two class-1 train rows
    stand in for the support vectors."""
    fits = []
    for path in feature_files.list_feature_files(features_dir):
        fs = feature_files.read_features(path)
        K, d = fs.W.shape
        W = fs.W - fs.W.mean(axis=0)
        b = fs.b - fs.b.mean()
        schemes = ["binary"] if K == 2 else ["crammer_singer", "ovr"]
        _, y = fs.part("train")
        for scheme in schemes:
            for target, U, c in (("svc", W @ rotation(d, 5.0).T, b),
                                 ("homog", 0.8 * W, 0.5 * b),
                                 ("origin", W @ rotation(d, -3.0).T, 0.0 * b)):
                hard = origin_hard or target != "origin"
                fits.append({
                    "epoch": fs.epoch, "target": target, "scheme": scheme,
                    "W": U.tolist(), "b": c.tolist(), "separable": hard, "hard_margin": hard,
                    "C": None, "min_margin": 1.0,
                    "support": [int(i) for i in np.flatnonzero(y == 0)[:3]]
                    + [int(i) for i in np.flatnonzero(y == 1)[:2]],
                })
    return {"keys": keys, "fits": fits}


def make_run(root: Path, dataset: str, seed: int, bottleneck: int = 2, dead: bool = False,
             epochs: int = 12) -> dict[str, Path]:
    """Prepare, train (a few epochs), dump features, write a hand-made svm.json and metrics."""
    root.mkdir(parents=True, exist_ok=True)
    data = make_dataset(dataset, seed, {"n_samples": 200, "test_fraction": 0.2, "seed": 1})
    save_dataset(root / "data.npz", data)
    arch_settings = {"hidden": 16, "bottleneck": bottleneck, "activation": "relu",
                     "init": "original"}
    settings = dict(DEFAULT_TRAIN, epochs=epochs, n_checkpoints=4, device="cpu", lr=0.1,
                    log_every=10_000)
    result = train_run(data, "mlp", seed, arch_settings, settings, log=text_io.StringIO())
    if dead:  # every bottleneck unit below zero for every input: ReLU gives h = 0
        for state in result["states"].values():
            state["bottleneck.weight"].zero_()
            state["bottleneck.bias"].fill_(-1.0)
    save_checkpoints(root / "ckpt.pt", result)
    dump_run(result, data, root / "features", device=torch.device("cpu"),
             log=text_io.StringIO())
    table_io.write_json(root / "svm.json", hand_svm(root / "features", result["keys"]))
    frame = metrics.run_metrics(feature_files.list_feature_files(root / "features"), root / "svm.json", 20)
    table_io.write_table(root / "metrics.parquet", frame)
    return {"features": root / "features", "svm": root / "svm.json", "checkpoints":
            root / "ckpt.pt", "data": root / "data.npz", "metrics": root / "metrics.parquet"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("figures")
    return {
        "blobs": make_run(root / "blobs", "blobs", 0),
        "blobs_seed1": make_run(root / "blobs1", "blobs", 1),
        "blobs3": make_run(root / "blobs3", "blobs3", 0),
        "d3": make_run(root / "d3", "blobs", 0, bottleneck=3),
        "d1": make_run(root / "d1", "blobs", 0, bottleneck=1),
        "dead": make_run(root / "dead", "blobs", 0, dead=True),
    }


def assert_png(path: Path, height: int, width: int) -> None:
    assert path.exists(), f"{path} was not written"
    assert path.stat().st_size > 10_000, f"{path} is only {path.stat().st_size} bytes"
    image = mpimg.imread(path)
    assert image.shape[:2] == (height, width)
    assert image.std() > 0.01  # not a blank canvas
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "temporary file left behind"


def run_cli(run: dict[str, Path], output: Path, settings: dict) -> None:
    assert figures.main([
        "run", "--features", str(run["features"]), "--svm", str(run["svm"]),
        "--checkpoints", str(run["checkpoints"]), "--data", str(run["data"]),
        "--output", str(output), "--settings", json.dumps(settings),
    ]) == 0


@pytest.mark.parametrize("name", ["blobs", "blobs3", "d3", "d1", "dead"])
def test_run_figure(runs, tmp_path, name):
    output = tmp_path / f"{name}.png"
    run_cli(runs[name], output, FAST)
    # Every case here has 2-D inputs: two panels, 12.4 × 6.0 inches.
    assert_png(output, round(6.0 * FAST["dpi"]), round(12.4 * FAST["dpi"]))


def test_run_figure_default_settings(runs, tmp_path):
    output = tmp_path / "blobs.png"
    run_cli(runs["blobs"], output, {})
    assert_png(output, round(6.0 * 110), round(12.4 * 110))


def test_run_figure_without_a_separator_through_the_origin(runs, tmp_path):
    """A soft origin fit is no target: it is not drawn, and the title says so."""
    run = dict(runs["blobs"])
    run["svm"] = tmp_path / "svm.json"
    keys = table_io.read_json(runs["blobs"]["svm"])["keys"]
    table_io.write_json(run["svm"], hand_svm(run["features"], keys, origin_hard=False))
    from nnboundary.figures.run import draw_run
    from nnboundary.figures.common import pyplot

    features = feature_files.read_features(feature_files.list_feature_files(run["features"])[-1])
    fits = [f for f in table_io.read_json(run["svm"])["fits"] if f["epoch"] == features.epoch]
    fig, ax = pyplot().subplots()
    notes = draw_run(features, fits, ax, 60)
    assert "origin SVM: no separator through the origin (not drawn)" in notes
    pyplot().close(fig)
    output = tmp_path / "soft_origin.png"
    run_cli(run, output, FAST)
    assert_png(output, round(6.0 * FAST["dpi"]), round(12.4 * FAST["dpi"]))


def test_run_figure_with_an_unfitted_origin(runs, tmp_path):
    """svm.soft_margin false: a not separable origin problem has no weights; the figure says so
    and draws the other targets."""
    run = dict(runs["blobs"])
    run["svm"] = tmp_path / "svm.json"
    content = hand_svm(run["features"], table_io.read_json(runs["blobs"]["svm"])["keys"],
                       origin_hard=False)
    for fit in content["fits"]:
        if fit["target"] == "origin":
            fit.update(W=[], b=[], support=[], min_margin=None,
                       solver={"path": "unfitted"}, status="not separable; soft margin not fitted")
    table_io.write_json(run["svm"], content)
    from nnboundary.figures.run import draw_run
    from nnboundary.figures.common import pyplot

    features = feature_files.read_features(feature_files.list_feature_files(run["features"])[-1])
    fits = [f for f in content["fits"] if f["epoch"] == features.epoch]
    fig, ax = pyplot().subplots()
    notes = draw_run(features, fits, ax, 60)
    pyplot().close(fig)
    assert "origin SVM: train features not separable, soft margin not fitted" in notes
    assert not any(note.startswith("no usable") for note in notes)
    output = tmp_path / "unfitted_origin.png"
    run_cli(run, output, FAST)
    assert_png(output, round(6.0 * FAST["dpi"]), round(12.4 * FAST["dpi"]))


def test_dead_bottleneck_features_are_zero(runs):
    fs = feature_files.read_features(feature_files.list_feature_files(runs["dead"]["features"])[-1])
    assert not np.any(fs.h)


def test_run_figure_image_input_has_one_panel(tmp_path):
    """An image dataset (digits01, 8×8 inputs) gives only the bottleneck panel."""
    root = tmp_path / "digits"
    root.mkdir()
    data = make_dataset("digits01", 0, {"test_fraction": 0.2, "seed": 1})
    save_dataset(root / "data.npz", data)
    keys = {"dataset": "digits01", "arch": "mlp", "seed": 0}
    rng = np.random.default_rng(0)
    h = np.abs(rng.normal(size=(len(data.y_train), 2))) + data.y_train[:, None] * 2.0
    W, b = np.array([[-1.0, -1.0], [1.0, 1.0]]), np.array([2.0, -2.0])
    n_test = len(data.y_test)
    parts = {"train": (data.y_train, h, h @ W.T + b),
             "test": (data.y_test, np.zeros((n_test, 2)), np.zeros((n_test, 2)))}
    feature_files.write_features(root / "features" / feature_files.feature_file_name(5), dict(keys, epoch=5), W, b, parts)
    table_io.write_json(root / "svm.json", hand_svm(root / "features", keys))
    output = tmp_path / "digits.png"
    run_cli({"features": root / "features", "svm": root / "svm.json",
             "checkpoints": root / "absent.pt", "data": root / "data.npz"}, output, FAST)
    assert_png(output, round(6.0 * FAST["dpi"]), round(6.6 * FAST["dpi"]))


#: Size of the convergence figure at FAST's dpi: 20.0 × 12.6 inches (3 × 4 panels).
CONVERGENCE_SIZE = (round(12.6 * FAST["dpi"]), round(20.0 * FAST["dpi"]))


def test_convergence_figure(runs, tmp_path):
    """Real runs without regime/variant columns (whole network, base), two seeds."""
    output = tmp_path / "conv.png"
    assert figures.main([
        "convergence", "--metrics", str(runs["blobs"]["metrics"]),
        str(runs["blobs_seed1"]["metrics"]), "--output", str(output),
        "--settings", json.dumps(FAST),
    ]) == 0
    assert_png(output, *CONVERGENCE_SIZE)


def test_convergence_layout_keeps_the_panels_apart_and_inside_the_figure():
    """The fixed layout: 3 × 4 panels inside the figure, below the title's lines and above the
    legend's rows, with the gaps of MARGIN (inches) between them."""
    from nnboundary.figures.common import pyplot
    from nnboundary.figures.convergence import MARGIN, SIZE, fixed_layout

    plt = pyplot()
    fig, axes = plt.subplots(3, 4, figsize=SIZE)
    try:
        fixed_layout(fig, title_lines=3, legend_rows=2)
        boxes = np.array([[ax.get_position().bounds for ax in row] for row in axes]) * np.array(
            [SIZE[0], SIZE[1], SIZE[0], SIZE[1]])  # inches: x0, y0, width, height
    finally:
        plt.close(fig)
    x0, y0, width, height = np.moveaxis(boxes, -1, 0)
    assert np.allclose(x0[:, 0], MARGIN["left"]) and (width > 3.5).all() and (height > 2.5).all()
    assert np.allclose(x0[:, 0] + (width[:, 0] + MARGIN["wspace"]) * 3, x0[:, 3])
    assert np.allclose(SIZE[0] - (x0 + width)[:, 3], MARGIN["right"])
    assert np.allclose(y0[:-1] - (y0 + height)[1:], MARGIN["hspace"])  # rows, top to bottom
    assert SIZE[1] - (y0 + height)[0, 0] > 3 * MARGIN["title_line"]
    assert y0[-1, 0] > 2 * MARGIN["legend_row"] + 0.5  # tick labels, x label, legend


def test_convergence_figure_with_the_neural_collapse_panels(runs, tmp_path):
    """With the runs' neural_collapse.parquet the NC1 and NC3 panels are drawn."""
    from nnboundary.measures.collapse import run_collapse

    tables = []
    for name in ("blobs", "blobs3", "dead"):
        path = tmp_path / f"{name}_nc.parquet"
        table_io.write_table(path, run_collapse(feature_files.list_feature_files(runs[name]["features"])))
        tables.append(path)
    for name, table in zip(("blobs", "blobs3", "dead"), tables):
        output = tmp_path / f"conv_nc_{name}.png"
        assert figures.main(["convergence", "--metrics", str(runs[name]["metrics"]),
                             "--collapse", str(table), "--output", str(output),
                             "--settings", json.dumps(FAST)]) == 0
        assert_png(output, *CONVERGENCE_SIZE)


def test_convergence_figure_multiclass_and_dead(runs, tmp_path):
    for name in ("blobs3", "dead"):
        output = tmp_path / f"conv_{name}.png"
        assert figures.main(["convergence", "--metrics", str(runs[name]["metrics"]),
                             "--output", str(output), "--settings", json.dumps(FAST)]) == 0
        assert_png(output, *CONVERGENCE_SIZE)


def test_convergence_figure_two_regimes_three_seeds(tmp_path):
    """One file per run (2 regimes × 3 seeds); one seed has a zero angle and a margin ratio
    above 1 (drawn at the floor), one row is degenerate. The title says where each regime's
    seeds end: nearest to svc, whose angle is the smaller in the synthetic table."""
    from nnboundary.figures.convergence import checkpoint_rows, heading

    paths = []
    for regime in ("full", "retrain_last"):
        for seed in (0, 1, 2):
            frame = synthetic_metrics(regimes=(regime,), seeds=(seed,), intercept=0.01)
            if regime == "full" and seed == 0:
                last = frame["epoch"] == frame["epoch"].max()
                frame.loc[last, "angle_deg"] = 0.0
                frame.loc[last, "margin_ratio"] = 1.2
                frame.loc[frame["epoch"] == 3, "degenerate"] = True
            paths.append(tmp_path / f"{regime}{seed}.parquet")
            table_io.write_table(paths[-1], frame)
    output = tmp_path / "conv.png"
    assert figures.main(["convergence", "--metrics", *map(str, paths), "--output", str(output),
                         "--settings", json.dumps(FAST)]) == 0
    assert_png(output, *CONVERGENCE_SIZE)
    rows = checkpoint_rows(pd.concat([table_io.read_table(p) for p in paths], ignore_index=True))
    np.testing.assert_allclose(rows["depth"], np.log10(rows["step"]))  # loss 1/t
    assert heading(rows, "retrain_last").startswith(
        "retrain_last: deepest valid checkpoint nearest to svc 3, homog 0, origin 0, tied 0 "
        "(3 seeds)")
    assert "at depth 3" in heading(rows, "full")


def test_seed_lines_hold_valid_checkpoints_only():
    """Each seed is its own line through its valid checkpoints, in depth order; invalid ones
    (a dead unit's 90°, a misclassified point) are crosses, never on a line."""
    from nnboundary.figures.common import pyplot
    from nnboundary.figures.convergence import seed_lines

    rows = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "depth": [2.0, 1.0, 3.0, 1.0, 2.0]})
    values = np.array([1.0, 3.0, 90.0, 0.5, 80.0])
    valid = np.array([True, True, False, True, False])
    fig, ax = pyplot().subplots()
    drawn = seed_lines(ax, rows, values, valid, "black")
    np.testing.assert_array_equal(np.sort(drawn), [0.5, 1.0, 3.0])
    lines = {(tuple(line.get_xdata()), tuple(line.get_ydata()), line.get_marker())
             for line in ax.get_lines()}
    assert ((1.0, 2.0), (3.0, 1.0), "None") in lines  # seed 0's line, sorted by depth
    assert ((3.0,), (90.0,), "x") in lines and ((2.0,), (80.0,), "x") in lines
    pyplot().close(fig)


def test_overview_figure(runs, tmp_path):
    frames = []
    for name, run in runs.items():
        frame = table_io.read_table(run["metrics"])
        # Distinct arch names per bottleneck, so that the overview has several categories.
        frame["arch"] = {"d3": "mlp_d3", "d1": "mlp_d1", "dead": "mlp_dead"}.get(name, "mlp")
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)  # no regime/variant: full, base
    table_io.write_table(tmp_path / "metrics.parquet", frame)
    output = tmp_path / "overview.png"
    assert figures.main(["overview", "--metrics", str(tmp_path / "metrics.parquet"),
                         "--output", str(output), "--settings", json.dumps(FAST)]) == 0
    # Five dataset/arch categories: width max(6.5, 1.2 × 5 + 3) inches.
    assert_png(output, round(7.2 * FAST["dpi"]), round(9.0 * FAST["dpi"]))


def test_overall_rows_pick_binary_and_crammer_singer_mean(runs):
    frame = table_io.read_table(runs["blobs3"]["metrics"])
    rows = metric_tables.overall_rows(frame)
    assert set(rows["scheme"]) == {"crammer_singer"}
    assert set(rows["pair"]) == {"mean"}
    rows = metric_tables.overall_rows(table_io.read_table(runs["blobs"]["metrics"]))
    assert set(rows["scheme"]) == {"binary"} and set(rows["pair"]) == {"0-1"}


def test_projection_basis_is_orthonormal_and_starts_at_the_normal():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(50, 4))
    u = np.array([1.0, 2.0, 0.0, -1.0])
    P, _ = run_figure.projection_basis(H, [u])
    np.testing.assert_allclose(P.T @ P, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(P[:, 0], u / np.linalg.norm(u))
    P, what = run_figure.projection_basis(np.zeros((10, 3)), [np.zeros(3), np.zeros(3)])
    np.testing.assert_allclose(P.T @ P, np.eye(2), atol=1e-12)
    assert what == "axis h_0"


def test_box_of_identical_points_has_an_area():
    low, high = run_figure.box(np.zeros((5, 2)))
    assert np.all(high - low > 0)
    low, high = run_figure.box(np.column_stack([np.linspace(0, 4, 5), np.zeros(5)]))
    assert np.all(high - low > 0)


def test_bad_settings_are_refused(runs, tmp_path):
    with pytest.raises(ConfigError, match="dpii"):
        figures.main(["overview", "--metrics", str(runs["blobs"]["metrics"]),
                      "--output", str(tmp_path / "x.png"), "--settings", '{"dpii": 3}'])


def test_overview_figure_groups_by_variant_and_regime(tmp_path):
    frame = pd.concat([synthetic_metrics(regimes=("full", "retrain_last")),
                       synthetic_metrics(variant="loss-hinge", regimes=("full",))],
                      ignore_index=True)
    table_io.write_table(tmp_path / "metrics.parquet", frame)
    rows = metric_tables.final_overall_rows(frame)
    assert len(rows.groupby(["variant", "regime", "seed"])) == 9
    assert (rows["epoch"] == 1000).all()
    output = tmp_path / "overview.png"
    assert figures.main(["overview", "--metrics", str(tmp_path / "metrics.parquet"),
                         "--output", str(output), "--settings", json.dumps(FAST)]) == 0
    # Three categories: width max(6.5, 1.2 × 3 + 3) inches.
    assert_png(output, round(7.2 * FAST["dpi"]), round(6.6 * FAST["dpi"]))
