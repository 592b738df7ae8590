"""Training losses, the rmsprop optimizer, the simulated margin datasets and every activation."""

import io
import math

import numpy as np
import pytest
import torch

from nnboundary.settings.layers import dataset_settings, DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.settings.entries import SEEDED_DATASETS
from nnboundary.errors import ConfigError
from nnboundary.settings.schema import load_schema
from nnboundary.settings.config import validate_config
from nnboundary.models.networks import ACTIVATIONS
from nnboundary.settings import catalog
from nnboundary.data.make import make_dataset
from nnboundary.training.losses import LOSSES, make_loss
from nnboundary.errors import TrainingDiverged
from nnboundary.training.optim import make_optimizer
from nnboundary.models.restore import model_at
from nnboundary.training.train import train_run

NEW_DATASETS = ("sectors_nonsep", "linear_margin", "circle")
BLOBS = {"n_samples": 200, "test_fraction": 0.2, "seed": 1}


def _loss(name, logits, labels, **settings):
    fn = make_loss(dict(DEFAULT_TRAIN, loss=name, **settings))
    return fn(torch.tensor(logits, dtype=torch.float64), torch.tensor(labels))


# --------------------------------------------------------------------------------------------
# Losses by hand
# --------------------------------------------------------------------------------------------

# (logits, labels, {loss: expected value}); each value worked out from the formula.
HAND = [
    ([[2.0, 0.0]], [0], {"cross_entropy": math.log1p(math.exp(-2)), "exponential": math.exp(-2),
                         "hinge": 0.0, "mse": 1.0}),
    ([[0.5, 0.0]], [0], {"cross_entropy": math.log1p(math.exp(-0.5)),
                         "exponential": math.exp(-0.5), "hinge": 0.5, "mse": 0.25}),
    # 3 classes, true class 0 with z = (1, 2, −1): margins z_0 − z_k are −1 and 2.
    ([[1.0, 2.0, -1.0]], [0], {"cross_entropy": math.log(math.e + math.e**2 + math.e**-1) - 1,
                               "exponential": math.e + math.e**-2, "hinge": 2.0,
                               "mse": 0.0 + 4.0 + 1.0}),
    # A batch is averaged over samples: binary rows with margins 2 (label 0) and −1 (label 1).
    ([[2.0, 0.0], [0.0, -1.0]], [0, 1], {
        "cross_entropy": (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2,
        "exponential": (math.exp(-2) + math.exp(1)) / 2,
        "hinge": (0.0 + 2.0) / 2,
        "mse": ((1.0 + 0.0) + (0.0 + 4.0)) / 2}),
]


@pytest.mark.parametrize("logits,labels,expected", HAND)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_match_their_formula(name, logits, labels, expected):
    value = _loss(name, logits, labels)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(expected[name], rel=1e-12, abs=1e-15)


def test_default_loss_is_cross_entropy_with_label_smoothing():
    assert DEFAULT_TRAIN["loss"] == "cross_entropy"
    eps, z = 0.1, [[2.0, 0.0]]
    log_p = torch.log_softmax(torch.tensor(z, dtype=torch.float64), 1)[0]
    expected = -((1 - eps + eps / 2) * log_p[0] + eps / 2 * log_p[1]).item()
    assert _loss("cross_entropy", z, [0], label_smoothing=eps).item() == pytest.approx(expected)


def test_exponential_loss_keeps_terms_below_float64_resolution():
    # exp(−40) ≈ 4e-18 is below 1 ulp of 1.0; masking (not subtracting) the k = y term keeps it.
    assert _loss("exponential", [[40.0, 0.0]], [0]).item() == pytest.approx(math.exp(-40), rel=1e-12)


def _logit_gradient(name, logits, labels):
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    make_loss(dict(DEFAULT_TRAIN, loss=name))(z, torch.tensor(labels)).backward()
    return z.grad


def test_hinge_and_mse_stop_pushing_once_fitted_while_exponential_tails_do_not():
    fitted = [[3.0, 0.0, -1.0]]  # margin 3 ≥ 1 against both other classes
    assert torch.count_nonzero(_logit_gradient("hinge", fitted, [0])) == 0
    assert torch.count_nonzero(_logit_gradient("mse", [[1.0, 0.0, 0.0]], [0])) == 0
    for name in ("cross_entropy", "exponential"):
        grad = _logit_gradient(name, fitted, [0])[0]
        assert grad[0] < 0 and (grad[1:] > 0).all()  # still widens every margin
    # mse past its target pulls the true logit back: it does not want a larger margin.
    assert _logit_gradient("mse", fitted, [0])[0, 0] > 0


@pytest.mark.parametrize("name", ["exponential", "hinge", "mse"])
def test_label_smoothing_applies_to_cross_entropy_only(name):
    with pytest.raises(ValueError, match=f"label_smoothing is 0.1 but train.loss is '{name}'"):
        make_loss(dict(DEFAULT_TRAIN, loss=name, label_smoothing=0.1))


def test_unknown_loss_and_optimizer_list_the_allowed_ones():
    with pytest.raises(ValueError, match="'logistic'; allowed: cross_entropy, exponential, hinge, mse"):
        make_loss(dict(DEFAULT_TRAIN, loss="logistic"))
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="allowed: sgd, momentum, adam, rmsprop"):
        make_optimizer(params, dict(DEFAULT_TRAIN, optimizer="lbfgs"))
    rmsprop = make_optimizer(params, dict(DEFAULT_TRAIN, optimizer="rmsprop", lr=0.003))
    assert isinstance(rmsprop, torch.optim.RMSprop)
    assert rmsprop.defaults["lr"] == 0.003 and rmsprop.defaults["alpha"] == 0.99


# --------------------------------------------------------------------------------------------
# Training with each loss and optimizer
# --------------------------------------------------------------------------------------------


def _train(seed=0, arch=None, **train):
    data = make_dataset("blobs", seed, BLOBS)
    arch = dict(DEFAULT_ARCH["mlp"], hidden=32, **(arch or {}))
    settings = dict(DEFAULT_TRAIN, **{"epochs": 80, "optimizer": "adam", "lr": 0.01,
                                      "n_checkpoints": 2, "log_every": 1000, **train})
    return data, train_run(data, "mlp", seed, arch, settings, log=io.StringIO())


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_each_loss_fits_blobs(loss):
    _, result = _train(loss=loss)
    _, final_loss, train_acc, *_ = result["history"][-1]
    assert train_acc == 1.0 and np.isfinite(final_loss)
    assert result["train_settings"]["loss"] == loss
    if loss == "hinge":
        assert final_loss == 0.0  # every margin reached 1


def test_rmsprop_fits_blobs():
    _, result = _train(optimizer="rmsprop", lr=0.01)
    assert result["history"][-1][2] == 1.0


def test_exponential_loss_overflow_is_reported_as_divergence():
    # Before any checkpoint (the only one is the last epoch): the job fails and says why.
    with pytest.raises(TrainingDiverged, match="dataset blobs, arch mlp.*seed 0.*lower train.lr"):
        _train(loss="exponential", optimizer="sgd", lr=1e10, epochs=50, checkpoints=[50])
    # After one: the run stops there, keeps it, and its history says it diverged.
    _, result = _train(loss="exponential", optimizer="sgd", lr=1e10, epochs=50)
    assert result["history"][-1][-1] == "diverged"
    assert result["training"]["stop"] == "diverged" and result["epochs"] == [1]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_trains_and_gives_finite_features(activation):
    data, result = _train(arch={"activation": activation}, epochs=20)
    assert all(np.isfinite(row[1]) for row in result["history"])
    model = model_at(result, result["epochs"][-1])
    with torch.no_grad():
        h = model.features(torch.from_numpy(data.X_train))
    assert h.shape == (len(data.X_train), 2) and torch.isfinite(h).all()


# --------------------------------------------------------------------------------------------
# The simulated margin datasets
# --------------------------------------------------------------------------------------------


def _raw(name, n_samples, seed=0):
    """The built-in's source as the catalog declares it, called as every source is."""
    entry = catalog.DATASETS[name]
    X, y = catalog.resolve(entry.source, name)(seed=seed, n_samples=n_samples, **entry.fixed)
    return np.asarray(X), np.asarray(y)


@pytest.mark.parametrize("name", NEW_DATASETS)
@pytest.mark.parametrize("n_samples", [10, 11, 999, 5000])
def test_new_sets_have_exactly_n_samples_and_both_classes(name, n_samples):
    X, y = _raw(name, n_samples)
    assert X.shape == (n_samples, 2) and y.shape == (n_samples,)
    assert set(np.unique(y)) == {0, 1}


@pytest.mark.parametrize("seed", range(20))
def test_tiny_sets_always_hold_both_classes(seed):
    for name in NEW_DATASETS:
        assert set(np.unique(_raw(name, 10, seed)[1])) == {0, 1}


def test_margin_geometry():
    X, y = _raw("linear_margin", 5000)
    offset = X.sum(1) - 1.0
    assert ((X >= 0) & (X <= 1)).all()
    assert (np.abs(offset) / np.sqrt(2) >= 0.1).all()  # perpendicular distance to the line
    assert (offset[y == 1] > 0).all() and (offset[y == 0] < 0).all()
    assert np.abs(offset).min() / np.sqrt(2) < 0.102  # the band is empty, not wider

    X, y = _raw("circle", 5000)
    r = np.hypot(X[:, 0], X[:, 1])
    assert (np.abs(X) <= 1).all()
    assert (r[y == 1] < 0.5).all() and (r[y == 0] > 0.6).all()
    assert r[y == 1].max() > 0.49 and r[y == 0].min() < 0.61
    # Uniform in the square: class 1's share is the disc's area over the kept area.
    kept = 4 - np.pi * (0.6**2 - 0.5**2)
    assert abs(y.mean() - np.pi * 0.25 / kept) < 0.03

    X, y = _raw("sectors_nonsep", 5000)
    r = np.hypot(X[:, 0], X[:, 1])
    assert (X >= 0).all()
    assert r[y == 0].min() >= 0.1 and r[y == 0].max() <= 0.2
    assert r[y == 1].min() >= 0.25 and r[y == 1].max() <= 0.4
    # Uniform in area: the median radius of class 0 is sqrt((0.1² + 0.2²) / 2).
    assert abs(np.median(r[y == 0]) - np.sqrt((0.01 + 0.04) / 2)) < 0.005


@pytest.mark.parametrize("name", NEW_DATASETS)
def test_new_sets_are_prepared_per_seed(name):
    assert name in SEEDED_DATASETS
    settings = dict(dataset_settings({}, name), n_samples=400, test_fraction=0.2, seed=1)
    assert dataset_settings({}, name)["n_samples"] == 5000
    a, again, other = (make_dataset(name, s, settings) for s in (3, 3, 4))
    assert a.input_shape == (2,) and a.n_classes == 2
    assert a.meta["n_train"] + a.meta["n_test"] == 400
    assert np.array_equal(a.X_train, again.X_train) and np.array_equal(a.y_train, again.y_train)
    assert not np.array_equal(a.X_train, other.X_train)
    assert np.allclose(a.X_train.mean(0), 0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def test_schema_accepts_the_new_names():
    full = load_schema()
    schema = full["definitions"]
    assert set(NEW_DATASETS) <= set(full["properties"]["datasets"]["properties"])
    train = schema["train_settings"]["properties"]
    assert train["loss"]["enum"] == list(LOSSES)
    assert "rmsprop" in train["optimizer"]["enum"]
    config = validate_config({
        "grid": {"datasets": list(NEW_DATASETS), "archs": ["mlp"], "seeds": [0]},
        "train": {"loss": "exponential", "optimizer": "rmsprop"},
        "datasets": {name: {"n_samples": 100} for name in NEW_DATASETS},
    })
    assert config["train"]["loss"] == "exponential"


def test_config_rejects_unknown_loss_and_smoothing_without_cross_entropy():
    grid = {"datasets": ["circle"], "archs": ["mlp"], "seeds": [0]}
    with pytest.raises(ConfigError, match=r"'logistic' is not one of \['cross_entropy', "
                                          r"'exponential', 'hinge', 'mse'\]"):
        validate_config({"grid": grid, "train": {"loss": "logistic"}})
    with pytest.raises(ConfigError, match="label_smoothing 0.1 .*loss is 'hinge'"):
        validate_config({"grid": grid, "train": {"loss": "hinge", "label_smoothing": 0.1}})
