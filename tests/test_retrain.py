"""The retrain_last regime and the grid's axes: the last layer really is re-initialised, the rest
really is frozen, and a config states how many runs it expands to."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, snakemake

from nnboundary.settings import config as nbconfig
from nnboundary.settings import grid
from nnboundary.settings import keys
from nnboundary.settings import layers
from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_RETRAIN, DEFAULT_TRAIN
from nnboundary.errors import ConfigError
from nnboundary.models.restore import forward_features
from nnboundary.errors import InputFileError
from nnboundary.data.make import make_dataset
from nnboundary.training.retrain import retrain_run
from nnboundary.models.restore import model_at
from nnboundary.training.train import train_run

SMALL = {"n_samples": 300, "test_fraction": 0.2, "seed": 1}


@pytest.fixture(scope="module")
def full_and_retrained():
    data = make_dataset("blobs", 0, SMALL)
    train = dict(DEFAULT_TRAIN, optimizer="adam", lr=0.01, epochs=30, checkpoints=[10, 30],
                 log_every=1000)
    full = train_run(data, "mlp", 0, dict(DEFAULT_ARCH["mlp"], hidden=32), train)
    retrain = dict(DEFAULT_RETRAIN, from_epoch=10, optimizer="sgd", lr=1.0, epochs=200,
                   n_checkpoints=4, log_every=1000, loss="cross_entropy", label_smoothing=0.0,
                   device="cpu")
    return data, full, retrain_run(full, data, retrain)


def test_the_last_layer_is_reinitialised(full_and_retrained):
    _, full, retrained = full_and_retrained
    initial = retrained["initial_last"]
    assert torch.all(initial["bias"] == 0.1)  # the original init: every bias 0.1
    assert initial["weight"].abs().max() <= 0.02 + 1e-7  # truncated normal, std 0.01
    assert not torch.allclose(initial["weight"], full["states"][10]["last.weight"].double())
    assert retrained["keys"]["regime"] == "retrain_last" and retrained["from_epoch"] == 10


def test_everything_but_the_last_layer_is_frozen(full_and_retrained):
    _, full, retrained = full_and_retrained
    start = full["states"][10]
    for epoch, state in retrained["states"].items():
        assert set(state) == set(start)
        for name, value in state.items():
            if not name.startswith("last."):
                assert torch.equal(value, start[name]), (epoch, name)
    first, last = retrained["epochs"][0], retrained["epochs"][-1]
    assert not torch.equal(retrained["states"][first]["last.weight"],
                           retrained["states"][last]["last.weight"])
    losses = [row[1] for row in retrained["history"]]
    assert losses[-1] < losses[0]


def test_retrained_features_are_the_full_runs_features(full_and_retrained):
    data, full, retrained = full_and_retrained
    h_full, _ = forward_features(model_at(full, 10), data.X_train, torch.device("cpu"))
    h_retrained, logits = forward_features(model_at(retrained, retrained["epochs"][-1]),
                                           data.X_train, torch.device("cpu"))
    np.testing.assert_array_equal(h_full, h_retrained)
    assert (logits.argmax(1) == data.y_train).mean() > 0.95


def test_an_unsaved_start_epoch_names_the_saved_ones(full_and_retrained):
    data, full, _ = full_and_retrained
    settings = dict(DEFAULT_RETRAIN, from_epoch=7, loss="cross_entropy", label_smoothing=0.0)
    with pytest.raises(InputFileError, match=r"from_epoch 7 .*saved: \[10, 30\]"):
        retrain_run(full, data, settings)


def _tiny():
    import yaml

    return yaml.safe_load(TINY_CONFIG.read_text())


def test_the_start_epoch_is_saved_by_the_full_run_and_must_exist():
    config = _tiny()
    config["retrain"]["from_epoch"] = 17
    valid = nbconfig.validate_config(config)
    assert 17 in layers.train_settings(valid, "blobs", "mlp")["checkpoints"]
    config["retrain"]["from_epoch"] = 61
    with pytest.raises(ConfigError, match=r"retrain from_epoch 61 for blobs/mlp .*allowed: 1\.\.60"):
        nbconfig.validate_config(config)


def test_ablation_axes_expand_the_grid_and_set_their_values():
    config = _tiny()
    config["grid"]["ablations"] = {"activation": ["relu", "tanh"], "loss": ["cross_entropy", "hinge"]}
    config["overrides"] = [{"ablation": {"loss": "hinge"}, "train": {"lr": 0.002}}]
    valid = nbconfig.validate_config(config)
    runs = grid.runs(valid)
    assert len(runs) == 2 * 4 * 2 * 1  # pairs x variants x regimes x seeds
    assert grid.grid_size(valid).startswith("16 runs = 2 dataset x arch pairs x 4 variants")
    variant = "activation-tanh__loss-hinge"
    assert variant in {r.variant for r in runs}
    assert layers.arch_settings(valid, "mlp", variant)["activation"] == "tanh"
    train = layers.train_settings(valid, "blobs", "mlp", variant)
    assert train["loss"] == "hinge" and train["lr"] == 0.002
    assert layers.train_settings(valid, "blobs", "mlp", "activation-tanh__loss-cross_entropy")["lr"] == 0.01
    assert layers.retrain_settings(valid, "blobs", "mlp", variant)["loss"] == "hinge"
    assert keys.variant_values(variant) == {"activation": "tanh", "loss": "hinge"}
    bad = copy.deepcopy(config)
    bad["grid"]["ablations"] = {"loss": ["logistic"]}
    with pytest.raises(ConfigError, match="logistic"):
        nbconfig.validate_config(bad)


def test_a_dry_run_states_the_number_of_runs(tiny_workdir):
    import yaml

    config = _tiny()
    config["grid"]["ablations"] = {"optimizer": ["sgd", "adam"]}
    config["grid"]["seeds"] = [0, 1, 2]
    (tiny_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tiny_workdir, "-n", "--cores", "1")
    assert ("nnboundary grid: 24 runs = 2 dataset x arch pairs x 2 variants x 2 regimes "
            "(full, retrain_last) x 3 seeds") in result.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["train"] == 12 and counts["retrain"] == 12 and counts["metrics"] == 24


def test_curvature_bound_of_the_relative_learning_rate():
    from nnboundary.training.retrain import curvature_bound

    assert curvature_bound(torch.tensor([[3.0, 4.0], [1.0, 0.0]])) == 13.0  # (25 + 1) / 2
    assert curvature_bound(torch.zeros((0, 2))) == 1.0


def test_a_list_of_ablation_blocks_is_the_union_of_their_products():
    config = _tiny()
    config["grid"]["ablations"] = [{}, {"optimizer": ["sgd", "adam"]},
                                   {"activation": ["tanh"], "loss": ["hinge", "mse"]}]
    valid = nbconfig.validate_config(config)
    assert grid.variants(valid) == ["base", "optimizer-sgd", "optimizer-adam",
                                        "activation-tanh__loss-hinge", "activation-tanh__loss-mse"]
    config["grid"]["ablations"] = [{"loss": ["logistic"]}]
    with pytest.raises(ConfigError, match=r"'grid/ablations/0/loss/0': 'logistic' is not one of"):
        nbconfig.validate_config(config)
