"""The torchvision sets (mnist01, mnist012, fashion01, cifar10_0v2) through the real prepare code.

No network: tiny files in the real on-disk formats are written into a temporary ``data_root``
(MNIST's big-endian IDX files, CIFAR-10's pickled batches) and read by torchvision itself.
"""

import json
import os
from urllib.error import URLError

import numpy as np
import pytest
import torchvision.datasets
import yaml
from fake_data import write_cifar, write_mnist

from nnboundary.errors import InputFileError
from nnboundary.settings.entries import DATASETS, SEEDED_DATASETS
from nnboundary.errors import ConfigError
from nnboundary.settings.grid import data_path
from nnboundary.settings.layers import dataset_settings
from nnboundary.settings.config import validate_config
from nnboundary.errors import DatasetNotAvailable
from nnboundary.formats.dataset import load_dataset
from nnboundary.stages.prepare import main
from nnboundary.data.make import make_dataset

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"]
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


@pytest.fixture
def cifar_without_md5(monkeypatch):
    """torchvision checks each CIFAR file's md5 against the real files; ours are tiny fakes, so
    the check becomes an existence check (the loader itself stays torchvision's)."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda fpath, md5=None: os.path.isfile(fpath))


def offline(root) -> dict:
    return {"data_root": str(root), "download": False}


def unstandardise(X, meta):
    shape = (1, -1, 1, 1)
    return X * np.array(meta["std"]).reshape(shape) + np.array(meta["mean"]).reshape(shape)


def check_against_source(data, source, keep):
    """Labels re-indexed 0..K-1, train/test from their own files, pixels = the stored bytes,
    standardised per channel with the train statistics."""
    for split, X, y in (("train", data.X_train, data.y_train), ("test", data.X_test, data.y_test)):
        images, labels = source[split]
        rows = np.isin(labels, keep)
        expected_y = np.searchsorted(keep, labels[rows])
        assert np.array_equal(y, expected_y) and y.dtype == np.int64
        expected_X = images[rows].reshape(len(expected_y), *data.input_shape).astype(np.float64)
        assert X.dtype == np.float32
        assert np.allclose(unstandardise(X, data.meta), expected_X, atol=1e-3)
    raw_train = source["train"][0][np.isin(source["train"][1], keep)]
    raw_train = raw_train.reshape(len(data.X_train), *data.input_shape).astype(np.float64)
    assert np.allclose(data.meta["mean"], raw_train.mean(axis=(0, 2, 3)))
    assert np.allclose(data.meta["std"], raw_train.std(axis=(0, 2, 3)))
    assert np.allclose(data.X_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.allclose(data.X_train.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert data.meta["classes"] == list(keep) and data.n_classes == len(keep)
    assert "seed" not in data.meta


@pytest.mark.parametrize("name,folder,keep", [("mnist01", "MNIST", [0, 1]),
                                              ("mnist012", "MNIST", [0, 1, 2]),
                                              ("fashion01", "FashionMNIST", [0, 1])])
def test_mnist_family_reads_the_official_files(tmp_path, name, folder, keep):
    source = write_mnist(tmp_path, folder, seed=len(name))
    data = make_dataset(name, None, offline(tmp_path))
    assert data.input_shape == (1, 28, 28)
    assert len(data.X_train) == 4 * len(keep) and len(data.X_test) == 2 * len(keep)
    check_against_source(data, source, keep)
    assert (unstandardise(data.X_test, data.meta) > 127.5).all()  # from the t10k files


def test_cifar_reads_airplane_and_bird_from_the_official_batches(tmp_path, cifar_without_md5):
    source = write_cifar(tmp_path, seed=3)
    data = make_dataset("cifar10_0v2", None, offline(tmp_path))
    assert data.input_shape == (3, 32, 32)
    assert data.meta["classes"] == [0, 2] and data.n_classes == 2
    # Classes 0..3 cycle in each batch: 2 airplanes and 1 bird per train batch of 6.
    assert len(data.X_train) == 5 * 3 and len(data.X_test) == 4
    check_against_source(data, source, [0, 2])


def test_the_seed_does_not_change_a_fixed_set(tmp_path):
    write_mnist(tmp_path, "MNIST", seed=0)
    a = make_dataset("mnist01", 0, offline(tmp_path))
    b = make_dataset("mnist01", 7, offline(tmp_path))
    assert np.array_equal(a.X_train, b.X_train) and a.meta == b.meta


def test_cli_prepares_without_a_seed(tmp_path, cifar_without_md5):
    write_mnist(tmp_path, "FashionMNIST", seed=1)
    write_cifar(tmp_path, seed=2)
    for name in ("fashion01", "cifar10_0v2"):
        output = tmp_path / "out" / f"{name}.npz"
        assert main(["--dataset", name, "--settings", json.dumps(offline(tmp_path)),
                     "--output", str(output)]) == 0
        saved = load_dataset(output)
        direct = make_dataset(name, None, offline(tmp_path))
        assert np.array_equal(saved.X_train, direct.X_train)
        assert np.array_equal(saved.y_test, direct.y_test)
        assert saved.meta == json.loads(json.dumps(direct.meta)) and "seed" not in saved.meta


def test_cli_needs_a_seed_for_generated_sets(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "blobs", "--output", str(tmp_path / "b.npz")])
    assert exit_info.value.code == 2
    assert "--seed is required for blobs" in capsys.readouterr().err
    assert make_dataset("blobs", 4, dict(dataset_settings({}, "blobs"), n_samples=50)).meta[
        "seed"] == 4


def test_missing_mnist_files_name_the_folder_and_how_to_fetch_them(tmp_path):
    with pytest.raises(DatasetNotAvailable) as error:
        make_dataset("mnist012", None, offline(tmp_path / "data"))
    message = str(error.value)
    assert isinstance(error.value, InputFileError)
    assert "dataset mnist012 is not available" in message and "download is off" in message
    assert str(tmp_path / "data" / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_FILES)
    fetch = f"torchvision.datasets.MNIST({str(tmp_path / 'data')!r}, download=True)"
    assert fetch in message and "login node" in message


def test_only_the_missing_files_are_listed_as_missing(tmp_path):
    write_mnist(tmp_path, "FashionMNIST", seed=0)
    for name in MNIST_FILES[2:]:
        (tmp_path / "FashionMNIST" / "raw" / name).unlink()
    with pytest.raises(DatasetNotAvailable, match=r"\(missing: t10k-images-idx3-ubyte, "
                       r"t10k-labels-idx1-ubyte\)"):
        make_dataset("fashion01", None, offline(tmp_path))


def test_missing_cifar_files_name_every_batch(tmp_path):
    with pytest.raises(DatasetNotAvailable) as error:
        make_dataset("cifar10_0v2", None, offline(tmp_path))
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert all(name in message for name in CIFAR_FILES)
    assert f"torchvision.datasets.CIFAR10({str(tmp_path)!r}, download=True)" in message


@pytest.mark.parametrize("name,cls,error", [
    ("mnist01", torchvision.datasets.MNIST, RuntimeError("Error downloading: no route to host")),
    ("cifar10_0v2", torchvision.datasets.CIFAR10, URLError("no route to host")),
])
def test_a_failed_download_gives_the_same_instructions(tmp_path, monkeypatch, name, cls, error):
    def no_network(self):
        raise error

    monkeypatch.setattr(cls, "download", no_network)
    with pytest.raises(DatasetNotAvailable) as caught:
        make_dataset(name, None, {"data_root": str(tmp_path), "download": True})
    message = str(caught.value)
    assert f"dataset {name} is not available: downloading it" in message
    assert "no route to host" in message
    files = MNIST_FILES if name == "mnist01" else CIFAR_FILES
    assert all(f in message for f in files)
    assert f"torchvision.datasets.{cls.__name__}({str(tmp_path)!r}, download=True)" in message


def test_download_is_not_attempted_when_the_files_are_there(tmp_path, monkeypatch):
    write_mnist(tmp_path, "MNIST", seed=0)

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download files that are already there")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    data = make_dataset("mnist01", None, {"data_root": str(tmp_path), "download": True})
    assert data.n_classes == 2


def test_config_refuses_a_missing_data_root_when_download_is_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"grid": {"datasets": ["mnist01", "blobs"], "archs": ["mlp"], "seeds": [0]},
              "datasets": {"mnist01": {"download": False, "data_root": "staged"}}}
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    message = str(error.value)
    assert "config key 'datasets/mnist01/data_root'" in message
    assert str(tmp_path / "staged") in message and "download" in message
    (tmp_path / "staged").mkdir()
    assert validate_config(config)["datasets"]["mnist01"]["data_root"] == "staged"
    # With download on (the default) a missing folder is fine: torchvision creates it.
    assert validate_config({"grid": {"datasets": ["fashion01"], "archs": ["mlp"], "seeds": [0]},
                            "datasets": {"fashion01": {"data_root": "absent"}}})


def test_data_root_and_download_apply_to_torchvision_sets_only():
    config = {"grid": {"datasets": ["blobs"], "archs": ["mlp"], "seeds": [0]},
              "datasets": {"blobs": {"data_root": "data"}}}
    with pytest.raises(ConfigError, match="'data_root' does not apply to blobs"):
        validate_config(config)
    assert dataset_settings({}, "cifar10_0v2") == {"data_root": "data", "download": True}
    with pytest.raises(ConfigError, match="download"):
        validate_config({"grid": config["grid"], "datasets": {"mnist01": {"download": "no"}}})


def test_the_schema_takes_the_built_in_names_and_settings_from_the_catalog():
    """The YAML file lists no dataset or arch: load_schema fills in one entry per built-in name
    and the union of their settings from nnboundary.settings.catalog."""
    from nnboundary.settings import catalog
    from nnboundary.settings.schema import load_schema, SCHEMA_PATH

    shipped = yaml.safe_load(SCHEMA_PATH.read_text())
    assert "enum" not in shipped["definitions"]["dataset_name"]
    assert "n_samples" not in shipped["definitions"]["dataset_settings"]["properties"]
    schema = load_schema()
    assert list(schema["properties"]["datasets"]["properties"]) == list(DATASETS) \
        == list(catalog.DATASETS)
    assert list(schema["properties"]["archs"]["properties"]) == list(catalog.ARCHS)
    settings = schema["definitions"]["dataset_settings"]["properties"]
    assert {"n_samples", "noise", "data_root", "download"} <= set(settings)
    assert {"hidden", "channels", "blocks", "depth"} <= set(
        schema["definitions"]["arch_settings"]["properties"])


def test_data_path_is_per_seed_only_for_generated_sets():
    assert SEEDED_DATASETS == ("blobs", "blobs3", "moons", "sectors", "sectors_nonsep",
                               "linear_margin", "circle")
    assert data_path("moons", 3) == "results/data/moons/seed3.npz"
    for name in set(DATASETS) - set(SEEDED_DATASETS):
        assert data_path(name, 0) == data_path(name, 5) == f"results/data/{name}/fixed.npz"
