"""A user's own datasets and networks, named in the config (nnboundary.settings.catalog): a function
source, an .npz file, a torchvision dataset class and a torchvision backbone, end to end
through the real Snakefile, and every error a user can make, before any job where possible."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, snakemake
from fake_data import write_mnist
from nnboundary.settings import catalog
from nnboundary.errors import ConfigError, SourceError
from nnboundary.settings import config as nbconfig
from nnboundary.settings import entries
from nnboundary.settings import grid
from nnboundary.settings import layers
from nnboundary.settings import schema
from nnboundary.models.networks import build_model
from nnboundary.data.make import make_dataset

PLUGIN = REPO / "tests" / "example_plugin.py"

USER_CONFIG = {
    "grid": {"datasets": ["rings", "blocks", "mnist53"], "archs": ["mlp", "mynet", "resnet18"],
             "seeds": [0], "regimes": ["full", "retrain_last"]},
    "datasets": {
        "rings": {"source": "example_plugin:rings", "seeded": True, "n_samples": 200,
                  "gap": 1.0, "archs": ["mynet"]},
        "blocks": {"source": "file:blocks.npz", "archs": ["mlp"]},
        "mnist53": {"source": "torchvision:MNIST", "classes": [5, 3], "data_root": "data",
                    "download": False, "archs": ["resnet18"]},
    },
    "archs": {
        "mlp": {"hidden": 16},
        "mynet": {"source": "example_plugin:small_net", "hidden": 16, "width": 3},
        "resnet18": {"backbone": "torchvision:resnet18", "bottleneck": 2},
    },
    "train": {"optimizer": "adam", "lr": 0.02, "epochs": 40, "n_checkpoints": 3,
              "log_every": 20},
    "retrain": {"optimizer": "sgd", "lr": 1.0, "epochs": 30, "n_checkpoints": 3,
                "log_every": 15},
    "metrics": {"grid_points": 40},
    "figures": {"resolution": 60, "dpi": 50},
}


def _blocks(path: Path, test_part: bool = False) -> None:
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(-1, 0.3, (60, 4)), rng.normal(1, 0.3, (60, 4))])
    arrays = {"X": X, "y": np.repeat([0, 1], 60)}
    if test_part:
        arrays.update(X_test=X[::10] + 0.01, y_test=np.repeat([0, 1], 6))
    np.savez(path, **arrays)


def _workdir(path: Path, config: dict) -> Path:
    shutil.copy(PLUGIN, path / "example_plugin.py")
    write_mnist(path / "data", "MNIST", 0)
    _blocks(path / "blocks.npz")
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def user_run(tmp_path_factory) -> Path:
    workdir = _workdir(tmp_path_factory.mktemp("user"), USER_CONFIG)
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.mark.e2e
def test_own_data_and_networks_run_end_to_end(user_run):
    results = user_run / "results"
    metrics = pd.read_parquet(results / "metrics.parquet")
    cells = set(zip(metrics["dataset"], metrics["arch"], metrics["regime"]))
    assert cells == {(d, a, r) for d, a in (("rings", "mynet"), ("blocks", "mlp"),
                                            ("mnist53", "resnet18"))
                     for r in ("full", "retrain_last")}
    # 3 log-spaced checkpoints per run, plus one per loss milestone a run reaches.
    assert (metrics.groupby(["dataset", "regime"])["epoch"].nunique() >= 3).all()
    for run in ("rings/mynet", "blocks/mlp", "mnist53/resnet18"):
        for regime in ("full", "retrain_last"):
            assert (results / "figures" / "runs" / run / "base" / regime / "seed0.png").stat() \
                .st_size > 5000
    # Seeded: one prepared file per seed; the others once. The classes keep the listed order.
    assert (results / "data" / "rings" / "seed0.npz").exists()
    assert (results / "data" / "blocks" / "fixed.npz").exists()
    with np.load(results / "data" / "mnist53" / "fixed.npz") as f:
        meta = json.loads(str(f["meta"]))
    assert meta["classes"] == [5, 3] and meta["n_train"] == 8 and meta["n_test"] == 4
    # The user's network has a 3-wide last hidden layer; the backbone head a 2-wide one.
    features = pd.read_parquet(next((results / "runs" / "rings" / "mynet" / "base" / "full"
                                     / "seed0" / "features").glob("*.parquet")))
    assert {"h_0", "h_1", "h_2"} <= set(features.columns) and "h_3" not in features.columns
    # The user's settings reached the function: gap 1.0 puts class 1 at radius 2.
    with np.load(results / "data" / "rings" / "seed0.npz") as f:
        assert f["X_train"].shape[1] == 2
    log = (results / "logs" / "prepare" / "rings" / "seed0.log").read_text()
    assert "prepared rings seed 0: 160 train, 40 test, 2 classes" in log


@pytest.mark.e2e
def test_changing_a_file_source_reruns_prepare_only_for_it(user_run):
    """The .npz of a file: source is an input of prepare (runs after the other test)."""
    _blocks(user_run / "changed.npz", test_part=True)  # other content, then under its name
    shutil.copy(user_run / "changed.npz", user_run / "blocks.npz")
    out = snakemake(user_run, "-n").stdout
    assert "results/data/blocks/fixed.npz" in out
    assert "results/data/rings/seed0.npz" not in out


# --------------------------------------------------------------------------------------------
# Errors before any job: snakemake -n and the config
# --------------------------------------------------------------------------------------------


def _dry_run(tmp_path: Path, **changes) -> subprocess.CompletedProcess:
    config = json.loads(json.dumps(USER_CONFIG))
    for key, value in changes.items():
        section, name, field = key.split("__")
        config[section][name][field] = value
    _workdir(tmp_path, config)
    return snakemake(tmp_path, "-n", check=False)


@pytest.mark.parametrize("source,words", [
    ("example_plugin:no_such_function",
     ["datasets/rings/source", "module 'example_plugin'", "no function 'no_such_function'"]),
    ("no_such_module:rings",
     ["datasets/rings/source", "cannot import module 'no_such_module'", "ModuleNotFoundError"]),
])
def test_a_missing_function_or_module_stops_the_dry_run(tmp_path, source, words):
    result = _dry_run(tmp_path, datasets__rings__source=source)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    for word in words:
        assert word in out, out[-3000:]
    assert not (tmp_path / "results").exists()


def test_a_missing_network_function_stops_the_dry_run(tmp_path):
    result = _dry_run(tmp_path, archs__mynet__source="example_plugin:big_net")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "archs/mynet/source" in out and "no function 'big_net'" in out


def _validate(**entries):
    config = {"grid": {"datasets": ["blobs"], "archs": ["mlp"], "seeds": [0]}}
    for key, value in entries.items():
        section, name = key.split("__")
        config.setdefault(section, {})[name] = value
    return nbconfig.validate_config(config)


@pytest.mark.parametrize("entries,words", [
    ({"datasets__blobs": {"source": "example_plugin:rings"}},
     ["'blobs' is a built-in dataset", "a name of its own"]),
    ({"archs__cnn": {"backbone": "torchvision:resnet18"}}, ["'cnn' is a built-in arch"]),
    ({"datasets__mine": {"n_samples": 10}},
     ["datasets/mine", "not a built-in dataset", "needs a source"]),
    ({"archs__mynet": {"width": 3}}, ["archs/mynet", "needs a source or a backbone"]),
    ({"archs__mynet": {"source": "example_plugin:small_net", "backbone": "torchvision:resnet18"}},
     ["archs/mynet"]),
    ({"datasets__mine": {"source": "torchvision:MNIST"}}, ["a torchvision source needs the classes"]),
    ({"datasets__mine": {"source": "file:absent.npz"}}, ["file 'absent.npz'", "does not exist"]),
    ({"datasets__mine": {"source": "torchvision:NoSuchSet", "classes": [0, 1]}},
     ["torchvision.datasets has no class 'NoSuchSet'"]),
    ({"archs__mine": {"backbone": "torchvision:resnet1000"}},
     ["'resnet1000' is not a classification model of torchvision.models"]),
    ({"datasets__mine": {"source": "not a source"}}, ["datasets/mine/source", "does not match"]),
])
def test_config_errors_of_own_entries(entries, words):
    with pytest.raises(ConfigError) as err:
        _validate(**entries)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_an_undefined_name_in_the_grid_says_how_to_define_it():
    with pytest.raises(ConfigError, match="your own dataset is an entry under "
                                                    "datasets: with a source"):
        nbconfig.validate_config({"grid": {"datasets": ["mine"], "archs": ["mlp"], "seeds": [0]}})


def test_own_entries_are_derived_like_built_ins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(PLUGIN, tmp_path / "example_plugin.py")
    config = nbconfig.validate_config({
        "grid": {"datasets": ["rings", "blobs"], "archs": ["mlp", "mynet", "tv"], "seeds": [0, 1]},
        "datasets": {"rings": {"source": "example_plugin:rings", "seeded": True, "gap": 2.0}},
        "archs": {"mynet": {"source": "example_plugin:small_net", "width": 4},
                  "tv": {"backbone": "torchvision:resnet18", "bottleneck": None}}})
    assert entries.dataset_names(config)[-1] == "rings"
    assert entries.is_seeded(config, "rings") and not entries.is_seeded(config, "digits01")
    assert grid.data_path("rings", 1, config) == "results/data/rings/seed1.npz"
    assert layers.dataset_settings(config, "rings") == {
        "source": "example_plugin:rings", "seeded": True, "gap": 2.0, "test_fraction": 0.2,
        "seed": 12345}
    assert layers.arch_settings(config, "mynet") == {"source": "example_plugin:small_net",
                                                       "width": 4}
    assert layers.arch_settings(config, "tv")["bottleneck"] is None
    # A backbone needs images: not on blobs (2-D) and not on rings (unknown: tried, by default).
    assert entries.fitting_archs(config, "blobs") == ["mlp", "mynet"]
    assert entries.fitting_archs(config, "rings") == ["mlp", "cnn", "resnet", "densenet40",
                                                       "mynet", "tv"]


# --------------------------------------------------------------------------------------------
# Errors in a job: what a source returns
# --------------------------------------------------------------------------------------------


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(PLUGIN, tmp_path / "example_plugin.py")
    sys.modules.pop("example_plugin", None)
    yield tmp_path
    sys.modules.pop("example_plugin", None)


SPLIT = {"test_fraction": 0.2, "seed": 12345}


@pytest.mark.parametrize("function,words", [
    ("labels_one_two", ["expected X a float array", "integer labels 0..K-1",
                        "the labels are [1, 2], not 0..K-1"]),
    ("only_x", ["expected the function to return a tuple (X, y), got ndarray"]),
])
def test_a_dataset_function_returning_the_wrong_thing_stops_its_job(plugin_dir, function, words):
    with pytest.raises(SourceError) as err:
        make_dataset("mine", None, {"source": f"example_plugin:{function}", **SPLIT})
    assert "dataset mine (source 'example_plugin:" in str(err.value)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_the_prepare_command_reports_a_bad_source_without_a_traceback(plugin_dir):
    settings = json.dumps({"source": "example_plugin:labels_one_two", **SPLIT})
    result = subprocess.run([sys.executable, "-m", "nnboundary", "prepare", "--dataset", "mine",
                             "--settings", settings, "--output", "x.npz"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("nnboundary prepare: error: dataset mine")


@pytest.mark.parametrize("function,words", [
    ("net_without_last", ["expected an nn.Module with features(x) -> (n, d)",
                          "it has features"]),
    ("net_forward_differs", ["forward(x) differs from last(features(x))"]),
])
def test_a_network_function_returning_the_wrong_thing_stops_its_job(plugin_dir, function, words):
    with pytest.raises(SourceError) as err:
        build_model("mine", (2,), 2, {"source": f"example_plugin:{function}"})
    assert "arch mine (source 'example_plugin:" in str(err.value)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_sources_follow_the_contract(plugin_dir):
    # Not seeded: called once with seed = split.seed.
    from example_plugin import rings

    data = make_dataset("mine", None, {"source": "example_plugin:rings", "n_samples": 50, **SPLIT})
    assert data.meta["n_train"] + data.meta["n_test"] == 50 and data.n_classes == 2
    both = (np.concatenate([data.X_train, data.X_test]) * np.array(data.meta["std"])
            + np.array(data.meta["mean"]))
    assert np.allclose(np.sort(both[:, 0]), np.sort(rings(12345, 50)[0][:, 0]), atol=1e-5)
    assert not np.allclose(np.sort(both[:, 0]), np.sort(rings(0, 50)[0][:, 0]), atol=1e-5)
    # An .npz with its own test part keeps it.
    _blocks(plugin_dir / "b.npz", test_part=True)
    data = make_dataset("b", None, {"source": "file:b.npz", **SPLIT})
    assert data.meta["n_train"] == 120 and data.meta["n_test"] == 12
    # The user's network and a torchvision backbone without a bottleneck.
    model = build_model("mynet", (2,), 2, {"source": "example_plugin:small_net", "width": 5})
    assert model.last.in_features == 5
    model = build_model("tv", (1, 28, 28), 3, {"backbone": "torchvision:resnet18",
                                              "bottleneck": None})
    assert model.last.in_features == 512 and model.last.out_features == 3
    with torch.no_grad():
        x = torch.randn(2, 1, 28, 28)
        model.eval()
        assert torch.allclose(model(x), model.last(model.features(x)))


def test_the_usage_example_is_valid_and_its_pieces_work(tmp_path, monkeypatch):
    """The usage page's "Your own data and network" example, copied as a reader would: its module
    and config dry-run on top of config.yaml, and its dataset and network meet the contract."""
    text = (REPO / "docs" / "usage.md").read_text()
    section = text[text.index("## Your own data and network"):]
    module = section.split("```python\n", 1)[1].split("```", 1)[0]
    config = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "mymodels.py").write_text(module)
    (tmp_path / "mine.yaml").write_text(config)
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "-n", "--configfile", "mine.yaml")
    out = result.stdout + result.stderr
    assert "12 runs = 2 dataset x arch pairs" in out, out[-3000:]
    for path in ("results/runs/rings/mynet/base/full/seed2/checkpoints.pt",
                 "results/runs/cats_dogs/resnet18/base/full/seed0/checkpoints.pt"):
        assert path in out
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("mymodels", None)
    data = make_dataset("rings", 0, {**layers.dataset_settings(
        nbconfig.load_config("config.yaml", "mine.yaml"), "rings"), "n_samples": 60})
    assert data.n_classes == 2 and data.input_shape == (2,)
    model = build_model("mynet", (2,), 2, {"source": "mymodels:small_net", "width": 3})
    assert model.last.in_features == 3
    sys.modules.pop("mymodels", None)


def test_a_new_built_in_is_one_function_and_one_catalog_entry(monkeypatch):
    """Everything else derives from the entry: the schema, the settings check, the defaults,
    seeding, the prepared file and the prepare stage (the function: an existing one here)."""
    entry = catalog.DatasetEntry(
        "blobs4", "nnboundary.data.sources:blobs", "seeded", image=False,
        settings={"n_samples": (80, catalog.N_SAMPLES)},
        fixed={"centres": [[0, 0], [0, 5], [5, 0], [5, 5]], "std": 0.5})
    monkeypatch.setitem(catalog.DATASETS, "blobs4", entry)
    config = nbconfig.validate_config({
        "grid": {"datasets": ["blobs4"], "archs": ["mlp"], "seeds": [3]},
        "datasets": {"blobs4": {"n_samples": 120}}})
    assert "blobs4" in schema.load_schema()["properties"]["datasets"]["properties"]
    assert entries.fitting_archs(config, "blobs4") == ["mlp"]
    assert grid.data_path("blobs4", 3, config) == "results/data/blobs4/seed3.npz"
    settings = layers.dataset_settings(config, "blobs4")
    assert settings["n_samples"] == 120
    data = make_dataset("blobs4", 3, settings)
    assert data.n_classes == 4 and data.meta["n_train"] + data.meta["n_test"] == 120
    with pytest.raises(ConfigError, match="'noise' does not apply to blobs4"):
        nbconfig.validate_config({"grid": {"datasets": ["blobs4"], "archs": ["mlp"], "seeds": [0]},
                                  "datasets": {"blobs4": {"noise": 0.1}}})
