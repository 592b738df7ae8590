"""Config validation: bad values stop with a message naming them and what is allowed."""

import copy
import re

import pytest
import yaml

from nnboundary.errors import ConfigError
from nnboundary.settings import config as nbconfig
from nnboundary.settings import grid
from nnboundary.settings import layers
from conftest import REPO, TINY_CONFIG


@pytest.fixture
def base():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_is_valid(base):
    config = nbconfig.validate_config(base)
    runs = grid.runs(config)
    # 3 simulated sets and 3 image sets, each with the MLP, 10 seeds (a two-sided sign test
    # then tolerates one dissenter: 9 of 10, p = 0.021; 10 fit the 5-minute budget), both regimes
    assert len(runs) == 6 * 10 * 2
    assert len({r.seed for r in runs}) == 10
    assert {r.arch for r in runs} == {"mlp"}
    # The default grid is trained into the terminal phase, both regimes to the same depth, and
    # measured at the same loss milestones.
    settings = layers.train_settings(config, "blobs", "mlp")
    retrain = layers.retrain_settings(config, "blobs", "mlp")
    assert settings["schedule"] == "loss_scaled" and settings["dtype"] == "float64"
    assert settings["until_loss"] == retrain["until_loss"] == 1e-100
    assert settings["loss_milestones"] == retrain["loss_milestones"]
    assert grid.loss_milestones(config) == [1e-2, 1e-4, 1e-8, 1e-16, 1e-32, 1e-64, 1e-100]


def test_tiny_config_is_valid():
    config = nbconfig.load_config(TINY_CONFIG)
    assert [r.path for r in grid.runs(config)] == [
        "blobs/mlp/base/full/seed0", "blobs/mlp/base/retrain_last/seed0",
        "digits012/cnn/base/full/seed0", "digits012/cnn/base/retrain_last/seed0"]


BAD = [
    ("grid/datasets", ["blobz"], "'blobz' is not a dataset; built-in datasets: blobs, "),
    ("grid/archs", ["resnet50"], "'resnet50' is not an arch; built-in archs: mlp, "),
    ("train/optimiser", "sgd", "'optimiser' was unexpected); allowed keys here:"),
    ("train/lr", "fast", "'fast' is not of type 'number'"),
    ("train/epochs", 0, "0 is less than the minimum of 1"),
    ("train/optimizer", "lbfgs", "'lbfgs' is not one of ['sgd', 'momentum', 'adam', 'rmsprop']"),
    ("svm/C", -1, "less than or equal to the minimum of 0"),
    ("archs/mlp/bottleneck", 0, "0 is less than the minimum of 1"),
    ("grid/seeds", [1, 1], "non-unique elements"),
    ("datasets/blobs/archs", ["cnn"], "'cnn' needs image inputs"),
    ("datasets/blobs/noise", 0.1, "'noise' does not apply to blobs"),
    ("train/checkpoints", [50000], "lie beyond the last epoch"),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[b[0] + "=" + str(b[1]) for b in BAD])
def test_bad_config_is_refused_with_a_clear_message(base, key, value, message):
    config = copy.deepcopy(base)
    node = config
    *parents, leaf = key.split("/")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    with pytest.raises(ConfigError) as err:
        nbconfig.validate_config(config)
    assert message in str(err.value)
    assert key.split("/")[-1] in str(err.value) or str(value) in str(err.value)


def test_dataset_that_fits_no_grid_arch_is_refused(base):
    config = copy.deepcopy(base)
    config["grid"]["archs"] = ["cnn"]
    with pytest.raises(ConfigError, match="dataset 'blobs' fits none of grid/archs"):
        nbconfig.validate_config(config)


def test_settings_are_layered(base):
    config = copy.deepcopy(base)
    config["archs"]["cnn"]["train"] = {"lr": 0.5, "epochs": 7}
    config["datasets"]["digits01"]["train"] = {"epochs": 9}
    config["overrides"] = []
    config = nbconfig.validate_config(config)
    settings = layers.train_settings(config, "digits01", "cnn")
    assert settings["lr"] == 0.5 and settings["epochs"] == 9  # dataset beats arch beats train
    assert layers.train_settings(config, "digits01", "mlp")["lr"] == base["train"]["lr"]
    assert settings["checkpoints"][-1] == 9


def test_checkpoints_are_log_spaced_and_end_at_last_epoch():
    epochs = layers.checkpoint_epochs(1000, [], 4)
    assert epochs == [1, 10, 100, 1000]
    assert layers.checkpoint_epochs(300, [5, 50], 10) == [5, 50, 300]


def test_defaults_are_filled(base):
    config = copy.deepcopy(base)
    del config["svm"]
    config = nbconfig.validate_config(config)
    assert config["svm"] == {
        "C": 1.0,
        "tol": 0.001,
        "multiclass": ["crammer_singer", "ovr"],
        "max_memory_gb": None,
        "soft_margin": True,
    }


def test_overrides_apply_to_matching_dataset_and_arch_only(base):
    config = copy.deepcopy(base)
    config["overrides"] = [{"datasets": ["digits01"], "archs": ["mlp"], "train": {"lr": 0.123}},
                           {"archs": ["cnn"], "train": {"epochs": 11}}]
    config = nbconfig.validate_config(config)
    assert layers.train_settings(config, "digits01", "mlp")["lr"] == 0.123
    assert layers.train_settings(config, "digits01", "cnn")["lr"] != 0.123
    assert layers.train_settings(config, "digits012", "mlp")["lr"] != 0.123
    assert layers.train_settings(config, "digits01", "cnn")["epochs"] == 11
    assert layers.train_settings(config, "mnist5k01", "cnn")["epochs"] == 11


# --------------------------------------------------------------------------------------------
# Overrides: the more specific entry wins, whatever the file order
# --------------------------------------------------------------------------------------------

SPECIFICITY = {
    "grid": {"datasets": ["blobs", "digits01"], "archs": ["mlp"], "seeds": [0],
             "regimes": ["full"], "ablations": [{}, {"optimizer": ["adam", "momentum"]}]},
    "train": {"optimizer": "sgd", "lr": 0.5, "epochs": 200},
    "overrides": [
        {"ablation": {"optimizer": "adam"}, "train": {"lr": 0.001}},
        {"datasets": ["digits01"], "archs": ["mlp"], "ablation": {"optimizer": "momentum"},
         "train": {"lr": 0.02}},
        {"ablation": {"optimizer": "momentum"}, "train": {"lr": 0.05}},
        # A dataset-level entry after the ablation-level ones: it must not override their lr.
        {"datasets": ["digits01"], "train": {"lr": 0.1, "epochs": 400}},
    ],
}
#: (dataset, variant) -> the lr and epochs the rule gives it.
INTENDED = {
    ("blobs", "base"): (0.5, 200), ("blobs", "optimizer-adam"): (0.001, 200),
    ("blobs", "optimizer-momentum"): (0.05, 200),
    ("digits01", "base"): (0.1, 400), ("digits01", "optimizer-adam"): (0.001, 400),
    ("digits01", "optimizer-momentum"): (0.02, 400),
}


def test_more_specific_overrides_win_whatever_the_file_order():
    config = nbconfig.validate_config(copy.deepcopy(SPECIFICITY))
    for (dataset, variant), (lr, epochs) in INTENDED.items():
        settings = layers.train_settings(config, dataset, "mlp", variant)
        assert (settings["lr"], settings["epochs"]) == (lr, epochs), (dataset, variant)
    reordered = copy.deepcopy(SPECIFICITY)
    reordered["overrides"].reverse()
    config = nbconfig.validate_config(reordered)
    for (dataset, variant), (lr, epochs) in INTENDED.items():
        settings = layers.train_settings(config, dataset, "mlp", variant)
        assert (settings["lr"], settings["epochs"]) == (lr, epochs), (dataset, variant)


def test_override_specificity_ranks_and_file_order_breaks_ties():
    rank = layers.override_specificity
    assert rank({"ablation": {"optimizer": "adam"}}) > rank({"datasets": ["a"], "archs": ["b"]})
    assert rank({"datasets": ["a"], "ablation": {"loss": "mse"}}) > rank(
        {"ablation": {"loss": "mse"}})
    assert rank({"ablation": {"loss": "mse", "optimizer": "adam"}}) > rank(
        {"ablation": {"loss": "mse"}})
    assert rank({"datasets": ["blobs"]}) == rank({"archs": ["mlp"]})
    config = copy.deepcopy(SPECIFICITY)
    config["overrides"] = [{"datasets": ["blobs"], "train": {"lr": 0.3}},
                           {"archs": ["mlp"], "train": {"lr": 0.4}}]
    config = nbconfig.validate_config(config)
    assert layers.train_settings(config, "blobs", "mlp")["lr"] == 0.4  # equals: the later


def test_a_variant_equal_to_another_runs_once():
    config = copy.deepcopy(SPECIFICITY)
    config["grid"]["ablations"] = [{}, {"optimizer": ["sgd", "adam"]}]
    config["datasets"] = {"digits01": {"train": {"optimizer": "adam", "lr": 0.001}}}
    config["overrides"] = [{"ablation": {"optimizer": "adam"}, "train": {"lr": 0.001}}]
    config = nbconfig.validate_config(config)
    assert grid.duplicate_variants(config) == [
        ("blobs", "mlp", "optimizer-sgd", "base"), ("digits01", "mlp", "optimizer-adam", "base")]
    paths = [r.path for r in grid.runs(config)]
    assert paths == ["blobs/mlp/base/full/seed0", "blobs/mlp/optimizer-adam/full/seed0",
                     "digits01/mlp/base/full/seed0", "digits01/mlp/optimizer-sgd/full/seed0"]
    line = grid.grid_size(config)
    assert line.startswith("4 runs = 2 dataset x arch pairs x 3 variants")
    assert "blobs/mlp optimizer-sgd = base; digits01/mlp optimizer-adam = base" in line


def test_shipped_ablation_config_runs_what_it_says():
    """The review's finding: digits01's dataset-level lr overrode the optimizers' own; the moons
    base run and its Adam variant were one run reported twice."""
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in yaml.safe_load((REPO / "configs" / "ablations.yaml").read_text()).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    config = nbconfig.validate_config(merged)
    lr = {(d, v): layers.train_settings(config, d, "mlp", v)["lr"]
          for d in ("blobs", "moons", "digits01") for v in grid.variants(config)}
    assert lr[("digits01", "optimizer-adam")] == lr[("digits01", "optimizer-rmsprop")] == 0.001
    assert lr[("digits01", "optimizer-momentum")] == 0.05 and lr[("digits01", "base")] == 0.1
    assert layers.train_settings(config, "digits01", "mlp", "optimizer-adam")["epochs"] == 5000
    skipped = {(d, v) for d, _, v, _ in grid.duplicate_variants(config)}
    assert ("moons", "optimizer-adam") in skipped
    assert ("moons", "optimizer-sgd") not in skipped  # moons' gradient-descent variant runs
    assert {r.variant for r in grid.runs(config) if r.dataset == "moons"} >= {
        "base", "optimizer-sgd"}


def test_overrides_set_arch_settings_per_dataset_and_ablation_values_still_win():
    config = copy.deepcopy(SPECIFICITY)
    config["grid"]["ablations"] = [{}, {"init": ["original"]}]
    config["overrides"] = [{"datasets": ["digits01"], "arch": {"init": "pytorch", "hidden": 7}}]
    config = nbconfig.validate_config(config)
    assert layers.arch_settings(config, "mlp", "base", "digits01")["init"] == "pytorch"
    assert layers.arch_settings(config, "mlp", "base", "blobs")["init"] == "original"
    # The ablation value beats the dataset's override of the same setting, and runs apart.
    ablated = layers.arch_settings(config, "mlp", "init-original", "digits01")
    assert ablated["init"] == "original" and ablated["hidden"] == 7
    assert ("digits01", "mlp", "init-original", "base") not in grid.duplicate_variants(config)


def test_schedule_is_an_ablation_axis():
    config = copy.deepcopy(SPECIFICITY)
    config["grid"]["ablations"] = [{}, {"schedule": ["loss_scaled"]}]
    config = nbconfig.validate_config(config)
    assert grid.variants(config) == ["base", "schedule-loss_scaled"]
    assert layers.train_settings(config, "blobs", "mlp", "schedule-loss_scaled")[
        "schedule"] == "loss_scaled"


@pytest.mark.parametrize("change,message", [
    ({"train": {"amp": "bf16", "dtype": "float64"}}, "needs dtype float32"),
    ({"train": {"until_loss": 1e-8}, "retrain": {"from_epoch": 5}},
     "may stop the full run before it"),
    ({"train": {"schedule": "cosine"}}, "'cosine' is not one of ['constant', 'loss_scaled']"),
    ({"train": {"until_loss": 0}}, "less than or equal to the minimum of 0"),
])
def test_terminal_phase_settings_are_checked(base, change, message):
    config = copy.deepcopy(base)
    for block, values in change.items():
        config.setdefault(block, {}).update(values)
    with pytest.raises(ConfigError, match=re.escape(message)):
        nbconfig.validate_config(config)


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _no_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    doubled = {k for k in keys if keys.count(k) > 1}
    if doubled:
        raise yaml.constructor.ConstructorError(None, None, f"keys given twice: {doubled}",
                                                node.start_mark)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


@pytest.mark.parametrize("name", ["config.yaml"] + sorted(
    f"configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_config_has_each_key_once_and_validates_on_the_default(name):
    yaml.load((REPO / name).read_text(), Loader=_StrictLoader)
    config = nbconfig.load_config(REPO / "config.yaml", REPO / name)
    assert grid.runs(config)


def test_the_targets_config_is_the_default_grid_without_a_zeroing_bottleneck(base):
    """configs/targets.yaml: the default's datasets plus a pair with test errors, both regimes,
    10 seeds, to 1e-100, with a bottleneck activation that cannot put a whole class at h = 0."""
    config = nbconfig.load_config(REPO / "config.yaml", REPO / "configs" / "targets.yaml")
    runs = grid.runs(config)
    assert set(config["grid"]["datasets"]) == set(base["grid"]["datasets"]) | {"mnist5k49"}
    assert {r.regime for r in runs} == {"full", "retrain_last"}
    assert len({r.seed for r in runs}) == 10
    assert {layers.arch_settings(config, "mlp")["activation"]} == {"identity"}
    for dataset in config["grid"]["datasets"]:
        assert layers.train_settings(config, dataset, "mlp")["until_loss"] == 1e-100
