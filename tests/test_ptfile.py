"""Checkpoint files read without torch, and the built-in MLP's forward pass in numpy
(nnboundary.formats.ptfile), against torch.load and the torch model they stand in for."""

import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from nnboundary.errors import InputFileError
from nnboundary.formats import atomic, ptfile
from nnboundary.formats import features as feature_files
from nnboundary.models import numpy_mlp, restore
from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.models.networks import ACTIVATIONS, build_model
from nnboundary.data.make import make_dataset
from nnboundary.formats.dataset import save_dataset
from nnboundary.formats.checkpoint import load_checkpoints, save_checkpoints
from nnboundary.training.train import train_run

SMALL = {"n_samples": 300, "test_fraction": 0.2, "seed": 1}


def same(a, b):
    """a (ptfile's) equals b (torch.load's): containers alike, tensors as arrays, bit for bit."""
    if isinstance(b, dict):
        assert type(a) is type(b) and list(a) == list(b)
        for key in b:
            same(a[key], b[key])
    elif isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(b, torch.Tensor):
        expected = b.numpy()
        assert isinstance(a, np.ndarray) and a.dtype == expected.dtype
        assert a.shape == expected.shape and np.array_equal(a, expected, equal_nan=True)
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b))


def test_load_reads_what_torch_save_wrote_bit_for_bit(tmp_path):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6) / 7
    payload = {
        "doubles": base,
        "view": base[1:, 2:5],            # an offset into a shared storage
        "transposed": base.t(),           # strides, not a copy
        "floats": torch.linspace(-1, 1, 5, dtype=torch.float32),
        "halves": torch.tensor([0.5, -2.0], dtype=torch.float16),
        "ints": torch.tensor([[1, -2], [3, 2**40]]),
        "small_ints": torch.tensor([1, 2], dtype=torch.int32),
        "bools": torch.tensor([True, False]),
        "bytes": torch.tensor([0, 255], dtype=torch.uint8),
        "scalar": torch.tensor(3.25, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "nan": torch.tensor([float("nan"), float("inf")]),
        "ordered": OrderedDict(b=torch.ones(2), a=1),
        "plain": [1, 2.5, "three", None, True, (4, "five"), {7: -1e-300}],
    }
    save_checkpoints(tmp_path / "c.pt", payload)
    loaded = ptfile.load(tmp_path / "c.pt")
    same(loaded, load_checkpoints(tmp_path / "c.pt"))
    assert loaded["transposed"].flags.writeable and loaded["view"].base is None  # own copies


def test_load_reads_a_training_run_as_torch_load_does(tmp_path):
    data = make_dataset("blobs3", 0, SMALL)
    settings = dict(DEFAULT_TRAIN, epochs=20, lr=0.5, n_checkpoints=3, log_every=1000)
    result = train_run(data, "mlp", 0, dict(DEFAULT_ARCH["mlp"], hidden=16), settings)
    save_checkpoints(tmp_path / "c.pt", result)
    same(ptfile.load(tmp_path / "c.pt"), load_checkpoints(tmp_path / "c.pt"))


def test_anything_but_plain_data_and_tensors_is_refused_not_run(tmp_path):
    torch.save({"p": torch.nn.Parameter(torch.ones(2))}, tmp_path / "p.pt")
    with pytest.raises(ptfile.Unsupported, match="torch._utils._rebuild_parameter"):
        ptfile.load(tmp_path / "p.pt")
    torch.save({"f": np.float64(1.0)}, tmp_path / "n.pt")
    with pytest.raises(ptfile.Unsupported, match="numpy"):
        ptfile.load(tmp_path / "n.pt")


@pytest.mark.parametrize("content", [b"", b"not a zip file", None])
def test_a_missing_or_damaged_file_names_the_file_and_the_fix(tmp_path, content):
    path = tmp_path / "checkpoints.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=r"checkpoints\.pt is missing or corrupt.*forcerun"):
        ptfile.load(path)


def test_a_truncated_file_is_an_input_error(tmp_path):
    save_checkpoints(tmp_path / "c.pt", {"w": torch.ones(1000, dtype=torch.float64)})
    raw = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputFileError, match="missing or corrupt"):
        ptfile.load(tmp_path / "c.pt")


def checkpoints_of(model, arch="mlp", settings=None, input_shape=(2,)):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"keys": {"dataset": "blobs", "arch": arch, "seed": 0}, "arch_settings": settings,
            "input_shape": list(input_shape), "n_classes": model.last.out_features,
            "epochs": [5], "states": {5: state}}


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("hidden, dtype", [(30, torch.float64), (0, torch.float64),
                                           (30, torch.float32)])
def test_the_numpy_mlp_computes_what_the_torch_model_does(activation, hidden, dtype):
    settings = dict(DEFAULT_ARCH["mlp"], hidden=hidden, activation=activation, init="pytorch")
    torch.manual_seed(3)
    model = build_model("mlp", (1, 4, 4), 3, settings).to(dtype).eval()
    X = np.random.default_rng(0).normal(size=(50, 1, 4, 4)).astype(np.float32) * 3
    with torch.no_grad():
        x = torch.from_numpy(X).to(dtype)
        h_torch = model.features(x).numpy()
        logits_torch = model(x).numpy()
    network = numpy_mlp.numpy_network(checkpoints_of(model, settings=settings,
                                                  input_shape=(1, 4, 4)), 5)
    h, logits = network.forward(X)
    assert h.dtype == h_torch.dtype and logits.dtype == logits_torch.dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert np.allclose(h, h_torch, rtol=tol, atol=tol)
    assert np.allclose(logits, logits_torch, rtol=tol, atol=tol)
    assert np.array_equal(h == 0, h_torch == 0)  # a dead unit stays exactly dead
    assert np.array_equal(network.W, model.last.weight.detach().numpy())


def test_a_float64_last_layer_on_a_float32_network_takes_h_in_float64():
    model = build_model("mlp", (2,), 2, dict(DEFAULT_ARCH["mlp"], hidden=8)).float().eval()
    model.last.double()
    X = np.random.default_rng(1).normal(size=(20, 2))
    with torch.no_grad():
        expected = model(torch.from_numpy(X).float()).numpy()
    network = numpy_mlp.numpy_network(checkpoints_of(model, settings=dict(DEFAULT_ARCH["mlp"],
                                                                       hidden=8)), 5)
    assert network.input_dtype == np.float32
    h, logits = network.forward(X)
    assert h.dtype == np.float64 and np.allclose(logits, expected, rtol=1e-6)


def test_other_networks_are_left_to_torch():
    model = build_model("mlp", (2,), 2, dict(DEFAULT_ARCH["mlp"], hidden=8))
    settings = dict(DEFAULT_ARCH["mlp"], hidden=8)
    assert numpy_mlp.numpy_network(checkpoints_of(model, settings=settings), 5) is not None
    assert numpy_mlp.numpy_network(checkpoints_of(model, "cnn", settings), 5) is None
    user = dict(settings, source="mypackage.nets:build")
    assert numpy_mlp.numpy_network(checkpoints_of(model, "mlp", user), 5) is None
    odd = checkpoints_of(model, settings=settings)
    odd["states"][5]["extra.weight"] = torch.ones(1)
    assert numpy_mlp.numpy_network(odd, 5) is None
    unknown = dict(settings, activation="gelu")
    assert numpy_mlp.numpy_network(checkpoints_of(model, settings=unknown), 5) is None


def test_auto_takes_numpy_for_small_passes_and_torch_above_the_threshold(monkeypatch):
    settings = dict(DEFAULT_ARCH["mlp"], hidden=8)
    model = build_model("mlp", (2,), 2, settings).double().eval()
    checkpoints = checkpoints_of(model, settings=settings)
    assert isinstance(restore.network_at(checkpoints, 5, "auto", 100), numpy_mlp.NumpyMLP)
    monkeypatch.setattr(restore, "NUMPY_MULTIPLY_ADDS", 10)
    torch_network = restore.network_at(checkpoints, 5, "auto", 100)
    assert isinstance(torch_network, restore.TorchNetwork)
    assert isinstance(restore.network_at(checkpoints, 5, "cpu", 100), numpy_mlp.NumpyMLP)
    X = np.random.default_rng(2).normal(size=(100, 2))
    for a, b in zip(torch_network.forward(X), restore.network_at(checkpoints, 5).forward(X)):
        assert np.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_the_feature_dump_of_an_mlp_runs_without_torch_and_matches_torchs(tmp_path):
    data = make_dataset("blobs3", 0, SMALL)
    save_dataset(tmp_path / "d.npz", data)
    settings = dict(DEFAULT_TRAIN, epochs=30, lr=0.5, n_checkpoints=3, log_every=1000,
                    dtype="float64", optimizer="sgd")
    result = train_run(data, "mlp", 0, dict(DEFAULT_ARCH["mlp"], hidden=16), settings)
    save_checkpoints(tmp_path / "c.pt", result)
    # a fresh interpreter: the whole stage, and torch never imported
    script = (
        "import sys\nfrom nnboundary.stages import features\n"
        f"features.main(['--checkpoints', {str(tmp_path / 'c.pt')!r}, '--data', "
        f"{str(tmp_path / 'd.npz')!r}, '--output-dir', {str(tmp_path / 'numpy')!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    # the same checkpoints through torch's forward pass
    torch_network = restore.TorchNetwork
    by_torch = tmp_path / "torch"
    with atomic.atomic_dir(by_torch) as tmp:
        for epoch in result["epochs"]:
            network = torch_network(result, epoch, "cpu")
            parts = {split: (y, *network.forward(X)) for split, X, y in
                     (("train", data.X_train, data.y_train), ("test", data.X_test, data.y_test))}
            feature_files.write_features(tmp / feature_files.feature_file_name(epoch), {}, network.W, network.b, parts)
    for epoch in result["epochs"]:
        name = feature_files.feature_file_name(epoch)
        a, b = pq.read_table(tmp_path / "numpy" / name), pq.read_table(by_torch / name)
        for column in a.column_names:
            x, y = a[column].to_numpy(), b[column].to_numpy()
            if x.dtype.kind == "f":
                assert np.allclose(x, y, rtol=1e-12, atol=1e-13), column
            else:
                assert np.array_equal(x, y), column
