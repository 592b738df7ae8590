"""Datasets, models, training and the feature dump, through the real code on tiny inputs."""

import json
import re

import io as io_text

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from nnboundary.errors import InputFileError
from nnboundary.formats import atomic
from nnboundary.formats import features as feature_files
from nnboundary.formats import tables as table_io
from nnboundary.settings.layers import dataset_settings, DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.stages.features import dump_run
from nnboundary.models.networks import build_model
from nnboundary.formats.dataset import load_dataset, save_dataset
from nnboundary.data.make import make_dataset
from nnboundary.errors import TrainingDiverged
from nnboundary.formats.checkpoint import load_checkpoints, save_checkpoints
from nnboundary.training.train import train_run

SMALL = {"n_samples": 300, "test_fraction": 0.2, "seed": 1}
SHAPES = {
    "blobs": ((2,), 2),
    "blobs3": ((2,), 3),
    "moons": ((2,), 2),
    "sectors": ((2,), 2),
    "digits01": ((1, 8, 8), 2),
    "digits012": ((1, 8, 8), 3),
    "mnist5k01": ((1, 28, 28), 2),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_datasets_have_their_shape_and_are_standardised_on_train(name):
    settings = dict(dataset_settings({}, name), **SMALL) if "n_samples" in dataset_settings({}, name) \
        else dict(dataset_settings({}, name), test_fraction=0.2, seed=1)
    data = make_dataset(name, 0, settings)
    shape, k = SHAPES[name]
    assert data.input_shape == shape and data.n_classes == k
    assert set(np.unique(data.y_train)) == set(range(k))
    axes = (0,) if len(shape) == 1 else (0, 2, 3)
    assert np.allclose(data.X_train.mean(axis=axes), 0, atol=1e-5)
    assert np.allclose(data.X_train.std(axis=axes), 1, atol=1e-4)
    assert len(data.X_test) == data.meta["n_test"] > 0


def test_simulated_geometry():
    data = make_dataset("sectors", 3, dict(SMALL, n_samples=2000))
    mean, std = np.array(data.meta["mean"]), np.array(data.meta["std"])
    raw = data.X_train * std + mean
    r = np.hypot(raw[:, 0], raw[:, 1])
    assert (raw >= 0).all()
    assert r[data.y_train == 0].max() <= 200 and r[data.y_train == 0].min() >= 0.1
    assert r[data.y_train == 1].min() >= 300 and r[data.y_train == 1].max() <= 400
    blobs = make_dataset("blobs", 3, dict(SMALL, n_samples=4000))
    raw = blobs.X_train * np.array(blobs.meta["std"]) + np.array(blobs.meta["mean"])
    assert np.allclose(raw[blobs.y_train == 0].mean(0), [0.2, 0.2], atol=0.02)
    assert np.allclose(raw[blobs.y_train == 1].std(0), [0.1, 0.1], atol=0.01)


def test_seed_moves_the_data_but_not_the_split(tmp_path):
    a = make_dataset("blobs", 0, SMALL)
    b = make_dataset("blobs", 1, SMALL)
    assert not np.allclose(a.X_train, b.X_train)
    assert a.meta["n_train"] == b.meta["n_train"]
    save_dataset(tmp_path / "a.npz", a)
    again = load_dataset(tmp_path / "a.npz")
    assert np.array_equal(again.X_train, a.X_train) and again.meta == a.meta


def test_corrupt_dataset_names_the_file(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match="bad.npz.*rerun the prepare step"):
        load_dataset(path)


@pytest.mark.parametrize("arch,shape", [("mlp", (2,)), ("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)),
                                        ("cnn", (1, 28, 28))])
@pytest.mark.parametrize("d", [1, 2, 5])
def test_models_expose_bottleneck_and_last_layer(arch, shape, d):
    settings = dict(DEFAULT_ARCH[arch], bottleneck=d, hidden=32)
    model = build_model(arch, shape, 3, settings)
    x = torch.randn(4, *shape)
    h = model.features(x)
    assert h.shape == (4, d)
    assert isinstance(model.last, torch.nn.Linear) and model.last.bias is not None
    assert torch.allclose(model(x), model.last(h))
    assert (h >= 0).all()  # ReLU bottleneck


def test_original_initialisation():
    torch.manual_seed(0)
    model = build_model("mlp", (2,), 2, DEFAULT_ARCH["mlp"])
    w = model.hidden[0].weight
    assert w.abs().max() <= 0.02 + 1e-7  # truncated at two standard deviations
    assert 0.007 < w.std() < 0.0095  # a normal(0, 0.01) truncated at 2 sd has sd ~0.0088
    assert torch.all(model.last.bias == 0.1)
    cnn = build_model("cnn", (1, 8, 8), 2, DEFAULT_ARCH["cnn"])
    conv = cnn.backbone[0].weight
    assert abs(conv.std().item() - np.sqrt(2 / 9)) < 0.1  # He: sqrt(2 / fan_in), fan_in = 9


def _tiny_run(tmp_path, seed=0, **train):
    data = make_dataset("blobs", seed, SMALL)
    arch = dict(DEFAULT_ARCH["mlp"], hidden=64)
    settings = dict(DEFAULT_TRAIN, epochs=40, optimizer="adam", lr=0.01, n_checkpoints=3,
                    log_every=1000, **train)
    result = train_run(data, "mlp", seed, arch, settings)
    return data, result


def test_training_lowers_the_loss_and_saves_requested_checkpoints(tmp_path):
    data, result = _tiny_run(tmp_path)
    losses = [row[1] for row in result["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert result["epochs"] == [1, 6, 40]
    save_checkpoints(tmp_path / "c.pt", result)
    loaded = load_checkpoints(tmp_path / "c.pt")
    assert loaded["epochs"] == [1, 6, 40] and set(loaded["states"]) == {1, 6, 40}


def test_divergence_stops_with_the_run_keys():
    data = make_dataset("blobs", 0, SMALL)
    settings = dict(DEFAULT_TRAIN, epochs=50, lr=1e30, optimizer="sgd", log_every=1000,
                    checkpoints=[50])
    with pytest.raises(TrainingDiverged, match="dataset blobs, arch mlp, variant base, seed 0.*lower train.lr"):
        train_run(data, "mlp", 0, dict(DEFAULT_ARCH["mlp"], hidden=16), settings)


def test_divergence_after_a_checkpoint_keeps_it_and_says_so():
    data = make_dataset("blobs", 0, SMALL)
    settings = dict(DEFAULT_TRAIN, epochs=50, lr=1e30, optimizer="sgd", log_every=1000)
    log = io_text.StringIO()
    result = train_run(data, "mlp", 0, dict(DEFAULT_ARCH["mlp"], hidden=16), settings, log=log)
    assert result["training"]["stop"] == "diverged" and result["training"]["stop_epoch"] == 1
    assert result["epochs"] == [1] and result["history"][-1][-1] == "diverged"
    assert "the loss was not finite (diverged)" in log.getvalue()


def test_feature_file_round_trip(tmp_path):
    data, result = _tiny_run(tmp_path)
    files = dump_run(result, data, tmp_path / "features", torch.device("cpu"))
    assert [f.name for f in files] == ["epoch000001.parquet", "epoch000006.parquet",
                                        "epoch000040.parquet"]
    table = pq.read_table(files[-1])
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert (meta["dataset"], meta["arch"], meta["seed"], meta["epoch"]) == ("blobs", "mlp", "0", "40")
    layer = json.loads(meta["last_layer"])
    frame = table.to_pandas()
    assert list(frame.columns) == ["split", "index", "label", "h_0", "h_1", "logit_0", "logit_1",
                                   "pred"]
    assert len(frame) == len(data.y_train) + len(data.y_test)
    h = frame[["h_0", "h_1"]].to_numpy(np.float64)
    recomputed = h @ np.array(layer["W"]).T + np.array(layer["b"])
    stored = frame[["logit_0", "logit_1"]].to_numpy(np.float64)
    assert np.max(np.abs(recomputed - stored) / np.maximum(1, np.abs(stored))) < 1e-5
    assert (frame["pred"].to_numpy() == stored.argmax(1)).all()
    features = feature_files.read_features(files[-1])
    h_train, y_train = features.part("train")
    assert np.array_equal(y_train, data.y_train)


def test_same_seed_gives_identical_feature_files(tmp_path):
    outputs = []
    for attempt in ("a", "b"):
        data, result = _tiny_run(tmp_path)
        files = dump_run(result, data, tmp_path / attempt, torch.device("cpu"))
        outputs.append([f.read_bytes() for f in files])
    assert outputs[0] == outputs[1]
    data, other = _tiny_run(tmp_path, seed=1)
    files = dump_run(other, data, tmp_path / "c", torch.device("cpu"))
    assert files[-1].read_bytes() != outputs[0][-1]


def test_corrupt_feature_file_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "epoch000001.parquet"
    path.write_bytes(b"PAR1 truncated")
    with pytest.raises(InputFileError, match=rf"epoch000001.parquet.*--forcerun {re.escape(str(tmp_path))}\)"):
        feature_files.read_features(path)


def test_stratified_split_keeps_class_shares_and_is_fixed():
    from nnboundary.data.make import stratified_split

    y = np.repeat([0, 1, 2], [100, 50, 10])
    train, test = stratified_split(y, 0.2, 7)
    assert np.bincount(y[test]).tolist() == [20, 10, 2]
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)
    again = stratified_split(y, 0.2, 7)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(stratified_split(y, 0.2, 8)[1], test)


def test_atomic_writes_leave_no_temporary_file_and_ordinary_permissions(tmp_path):
    import os

    table_io.write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(tmp_path / "b.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
