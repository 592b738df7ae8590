"""The Python API: nnboundary.measure, nnboundary.features and nnboundary.last_layer, on known
answers, against the pipeline's own metrics rows, and the example notebook that uses them."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from sklearn.datasets import make_blobs
from sklearn.svm import SVC
from torch import nn

import nnboundary
from nnboundary.errors import InputError
from nnboundary.formats.features import write_features
from nnboundary.formats.svmfile import write_svm
from nnboundary.measures import metrics
from nnboundary.settings import schema
from nnboundary.settings.keys import RUN_KEYS
from nnboundary.stages.svm import fit_run

NOTEBOOK = REPO / "docs" / "examples" / "measure_a_network.ipynb"


def _clusters(n=200, centres=((0.0, 0.0), (4.0, 4.0)), seed=0):
    X, y = make_blobs(n, centers=np.array(centres), cluster_std=0.7, random_state=seed)
    return X, y


def _rotate(w, degrees):
    t = math.radians(degrees)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) @ w


# --------------------------------------------------------------------------------------------
# measure: known answers
# --------------------------------------------------------------------------------------------


def test_the_free_bias_svm_itself_is_at_angle_zero_and_margin_ratio_one():
    X, y = _clusters()
    svc = SVC(kernel="linear", C=1e10).fit(X, y)
    rows = nnboundary.measure(svc.coef_[0], svc.intercept_[0], X, y).set_index("target")
    assert set(rows.index) == {"svc", "homog", "origin"}
    assert rows.loc["svc", "angle_deg"] < 1e-3
    assert abs(rows.loc["svc", "margin_ratio"] - 1.0) < 1e-3
    assert abs(rows.loc["svc", "bias_gap"]) < 1e-3  # midway between the classes
    assert rows.loc["svc", "valid"] and rows.loc["homog", "valid"]
    assert rows["scheme"].eq("binary").all() and rows["pair"].eq("0-1").all()
    # The same layer written as K = 2 rows (W₁ − W₀ = w) gives the same rows.
    W2 = np.vstack([np.zeros(2), svc.coef_[0]])
    same = nnboundary.measure(W2, [0.0, svc.intercept_[0]], X, y).set_index("target")
    assert same["angle_deg"].equals(rows["angle_deg"])


@pytest.mark.parametrize("degrees", [3.0, 10.0, 25.0])
def test_a_rotated_layer_is_at_its_rotation_angle(degrees):
    X, y = _clusters()
    svc = SVC(kernel="linear", C=1e10).fit(X, y)
    w = _rotate(svc.coef_[0], degrees)
    rows = nnboundary.measure(w, svc.intercept_[0], X, y, targets=["svc"])
    assert rows["angle_deg"].iloc[0] == pytest.approx(degrees, abs=1e-3)
    assert rows["margin_ratio"].iloc[0] < 1.0  # a rotated normal has a smaller margin


def test_a_multiclass_layer_has_a_row_per_pair_and_a_mean_row_per_fit():
    X, y = _clusters(300, centres=((0, 0), (6, 0), (3, 6)))
    layer = nn.Linear(2, 3).double()
    with torch.no_grad():  # a layer that separates the three clusters: their means as normals
        means = np.stack([X[y == k].mean(axis=0) for k in range(3)])
        layer.weight.copy_(torch.from_numpy(means))
        layer.bias.copy_(torch.from_numpy(-0.5 * (means ** 2).sum(axis=1)))
    W, b = nnboundary.last_layer(layer)
    rows = nnboundary.measure(W, b, X, y, test=(X, y))
    assert set(rows["scheme"]) == {"crammer_singer", "ovr"}
    assert len(rows) == 3 * 2 * (3 + 1)
    assert set(rows["pair"]) == {"0-1", "0-2", "1-2", "mean"}
    assert (rows["test_acc"] == 1.0).all()
    only_cs = nnboundary.measure(W, b, X, y, schemes="crammer_singer", targets=("svc",))
    assert len(only_cs) == 4


def test_without_a_test_set_the_test_columns_are_nan_and_the_rows_stay_valid():
    X, y = _clusters()
    svc = SVC(kernel="linear", C=1e10).fit(X, y)
    rows = nnboundary.measure(svc.coef_[0], svc.intercept_[0], X, y, targets=["svc"])
    for column in ("test_acc", "test_loss", "agreement_test", "test_bias_gap"):
        assert rows[column].isna().all(), column
    assert rows["valid"].all() and not rows["degenerate"].any()
    assert set(metrics.COLUMNS) <= set(rows.columns)
    assert rows["dataset"].iloc[0] == "" and rows["seed"].iloc[0] == -1


# --------------------------------------------------------------------------------------------
# measure: the pipeline's rows, bit for bit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("centres", [((0, 0), (4, 4)), ((0, 0), (6, 0), (3, 6))])
def test_measure_gives_the_metrics_stage_rows_bit_for_bit(tmp_path, centres):
    """One checkpoint written as the features stage writes it, fitted by the svm stage's
    function and measured by the metrics stage's, against measure() on the same arrays."""
    X, y = _clusters(240, centres=centres, seed=3)
    rng = np.random.default_rng(0)
    K = len(centres)
    H = np.maximum(X @ rng.normal(size=(2, 3)) + 1.0, 0.0)  # ReLU features, d = 3
    W, b = rng.normal(size=(K, 3)), rng.normal(size=K)
    train, test = np.arange(200), np.arange(200, 240)
    keys = {"dataset": "blobs", "arch": "mlp", "variant": "base", "regime": "full",
            "seed": 7, "epoch": 5}
    folder = tmp_path / "features"
    folder.mkdir()
    write_features(folder / "epoch000005.parquet", keys, W, b,
                   {split: (y[rows], H[rows], H[rows] @ W.T + b)
                    for split, rows in (("train", train), ("test", test))})
    settings = schema.defaults("svm")
    write_svm(tmp_path / "svm.json", *fit_run(folder, settings))
    pipeline = metrics.run_metrics([folder / "epoch000005.parquet"], tmp_path / "svm.json")
    mine = nnboundary.measure(W, b, H[train], y[train], test=(H[test], y[test]))
    assert len(mine) == len(pipeline) > 0
    own = [c for c in metrics.COLUMNS if c not in (*RUN_KEYS, "epoch", "step")
           and c not in metrics.TRAINING_COLUMNS]
    for column in own + ["valid", "invalid_reason"]:
        a, p = mine[column].to_numpy(), pipeline[column].to_numpy()
        if a.dtype.kind == "f":
            assert np.array_equal(a, p, equal_nan=True), column
        else:
            assert (a == p).all(), column


# --------------------------------------------------------------------------------------------
# measure: errors that name the argument
# --------------------------------------------------------------------------------------------


def _bad(match, *args, **kwargs):
    with pytest.raises(InputError, match=match):
        nnboundary.measure(*args, **kwargs)


def test_bad_input_is_refused_naming_the_argument():
    X, y = _clusters(40)
    w = np.array([1.0, 1.0])
    _bad(r"^H: has 3 features per row but W has 2 columns", w, 0.0, np.ones((40, 3)), y)
    _bad(r"^H: holds 1 NaN", w, 0.0, np.where(np.arange(80).reshape(40, 2) == 5, np.nan, X), y)
    _bad(r"^W: holds 1 NaN or infinite", [1.0, np.inf], 0.0, X, y)
    _bad(r"^y: labels \[2\] are outside 0..1", w, 0.0, X, np.where(y == 1, 2, 0))
    _bad(r"^y: holds only class \[0\]", w, 0.0, X, np.zeros(40))
    _bad(r"^y: has no sample of class\(es\) \[2\], but W has K = 3", np.ones((3, 2)),
         np.zeros(3), X, y)
    _bad(r"^y: has 39 labels for 40 rows", w, 0.0, X, y[:-1])
    _bad(r"^y: labels must be whole numbers", w, 0.0, X, y + 0.5)
    _bad(r"^b: has shape \(2,\) but W has 3 rows", np.ones((3, 2)), np.zeros(2), X, y)
    _bad(r"^b: has 2 values but W is one row", w, [0.0, 1.0], X, y)
    _bad(r"^targets: \['svm'\]; allowed: svc, homog, origin", w, 0.0, X, y, targets=["svm"])
    _bad(r"^schemes: \['ovr'\]; allowed: binary", w, 0.0, X, y, schemes=["ovr"])
    _bad(r"^test: expected a pair", w, 0.0, X, y, test=X)
    _bad(r"^test\[1\] \(y_test\): labels \[5, 6\] are outside", w, 0.0, X, y, test=(X, y + 5))
    _bad(r"^grid_points: 1", w, 0.0, X, y, grid_points=1)
    assert issubclass(InputError, ValueError)


def test_tensors_are_accepted_on_any_device():
    X, y = _clusters()
    svc = SVC(kernel="linear", C=1e10).fit(X, y)
    rows = nnboundary.measure(torch.tensor(svc.coef_[0], requires_grad=True),
                              torch.tensor(svc.intercept_[0]), torch.from_numpy(X),
                              torch.from_numpy(y), targets=["svc"])
    assert rows["angle_deg"].iloc[0] < 1e-3


# --------------------------------------------------------------------------------------------
# features and last_layer
# --------------------------------------------------------------------------------------------


def test_features_of_a_sequential_are_the_relu_of_its_first_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    X = torch.randn(32, 5)
    H = nnboundary.features(model, X)
    expected = torch.relu(model[0](X)).detach().double().numpy()
    assert H.dtype == np.float64 and np.array_equal(H, expected)
    W, b = nnboundary.last_layer(model)
    assert np.array_equal(W, model[2].weight.detach().double().numpy())
    assert np.array_equal(b, model[2].bias.detach().double().numpy())
    # A numpy input, a DataLoader of (x, y) batches and batches of 5 give the same rows.
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, torch.zeros(32)),
                                         batch_size=7)
    for other in (nnboundary.features(model, X.numpy()), nnboundary.features(model, loader),
                  nnboundary.features(model, X, batch_size=5)):
        np.testing.assert_allclose(other, H, rtol=0, atol=1e-6)
    assert model.training  # its mode is restored


def test_features_of_the_pipelines_networks_are_their_bottleneck():
    from nnboundary.models.networks import build_model
    from nnboundary.settings.layers import DEFAULT_ARCH

    torch.manual_seed(0)
    for arch, shape in (("mlp", (1, 8, 8)), ("cnn", (1, 8, 8))):
        model = build_model(arch, shape, 3, DEFAULT_ARCH[arch]).double()
        X = torch.randn(10, *shape, dtype=torch.float64)
        model.eval()
        with torch.no_grad():
            expected = model.features(X).numpy()
        model.train()
        assert np.array_equal(nnboundary.features(model, X), expected), arch
        W, b = nnboundary.last_layer(model)
        assert W.shape == (3, expected.shape[1]) and b.shape == (3,)


def test_features_of_a_torchvision_model_with_its_head_replaced():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None)
    model.fc = nn.Linear(512, 2)
    X = torch.randn(3, 3, 32, 32)
    model.eval()
    with torch.no_grad():  # torchvision's ResNet forward, up to the head
        z = model.maxpool(model.relu(model.bn1(model.conv1(X))))
        z = model.layer4(model.layer3(model.layer2(model.layer1(z))))
        expected = torch.flatten(model.avgpool(z), 1).double().numpy()
    H = nnboundary.features(model, X)
    assert H.shape == (3, 512) and np.array_equal(H, expected)
    assert nnboundary.last_layer(model)[0].shape == (2, 512)
    # A named layer: the input of layer4's first block's first convolution is not (n, d).
    with pytest.raises(InputError, match=r"^layer: the input of 'layer4.0.conv1' has shape"):
        nnboundary.features(model, X, layer="layer4.0.conv1")


def test_features_errors_name_the_argument():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(InputError, match=r"^model: expected a torch.nn.Module, got int"):
        nnboundary.features(3, torch.zeros(1, 3))
    with pytest.raises(InputError, match=r"^model: Sequential has no torch.nn.Linear"):
        nnboundary.features(nn.Sequential(nn.ReLU()), torch.zeros(1, 3))
    with pytest.raises(InputError, match=r"^layer: the model has no module 'head'; its modules "
                                         r"are '0'"):
        nnboundary.last_layer(model, "head")
    with pytest.raises(InputError, match=r"^X: expected a torch.Tensor, a numpy array or a "
                                         r"DataLoader, got list"):
        nnboundary.features(model, [[1.0, 2.0, 3.0]])
    with pytest.raises(InputError, match=r"^batch_size: 0"):
        nnboundary.features(model, torch.zeros(4, 3), batch_size=0)
    shared = nn.Linear(3, 3)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(InputError, match=r"ran 2 times in one forward pass"):
        nnboundary.features(twice, torch.zeros(2, 3))
    no_bias = nn.Linear(3, 2, bias=False)
    assert np.array_equal(nnboundary.last_layer(no_bias)[1], np.zeros(2))


# --------------------------------------------------------------------------------------------
# The package's top level, and the example notebook
# --------------------------------------------------------------------------------------------


def test_top_level_names_and_a_light_import():
    from nnboundary import (SCHEMES, TARGETS, InputError, NNBoundaryError, features, fit_svm,
                            last_layer, measure)

    assert TARGETS == ("svc", "homog", "origin") and "crammer_singer" in SCHEMES
    assert callable(fit_svm) and callable(measure) and callable(features)
    assert callable(last_layer) and issubclass(InputError, NNBoundaryError)
    assert {"measure", "features", "last_layer", "fit_svm"} <= set(dir(nnboundary))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        nnboundary.nothing  # noqa: B018
    # Importing the package loads none of them: every stage imports it.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, nnboundary; print(sorted(m for m in sys.modules "
                               "if m.startswith(('torch', 'nnboundary.', 'scipy', 'pandas'))))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_the_example_notebook_runs(tmp_path):
    """docs/examples/measure_a_network.ipynb, executed cell by cell in a fresh kernel."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the angle against the loss
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "angle to svc at the last epoch" in text
