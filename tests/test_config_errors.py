"""Bad configs, tried systematically: each stops in validation, before any job runs, with a
message naming the bad value and what is allowed. The number tried is printed (run pytest with
-s, or read the summary test's output)."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import TINY_CONFIG, snakemake

from nnboundary.errors import ConfigError
from nnboundary.settings.config import validate_config


def _set(path: str, value):
    def change(config):
        node = config
        keys = path.split("/")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return change


def _delete(path: str):
    def change(config):
        node = config
        keys = path.split("/")
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return change


# (name, change, fragments the message must hold: the bad value and what is allowed)
BAD = [
    ("unknown dataset", _set("grid/datasets", ["blobs", "mnist99"]), ["'mnist99'", "blobs3"]),
    ("unknown arch", _set("grid/archs", ["mlp", "vgg"]), ["'vgg'", "densenet40"]),
    ("unknown optimizer", _set("train/optimizer", "adamw"), ["'adamw'", "rmsprop"]),
    ("unknown loss", _set("train/loss", "logistic"), ["'logistic'", "exponential"]),
    ("unknown activation", _set("archs/mlp/activation", "gelu"), ["'gelu'", "softsign"]),
    ("unknown init", _set("archs/mlp/init", "xavier"), ["'xavier'", "original"]),
    ("unknown regime", _set("grid/regimes", ["full", "finetune"]), ["'finetune'", "retrain_last"]),
    ("unknown ablation axis", _set("grid/ablations", {"dropout": [0.1]}), ["'dropout'", "optimizer"]),
    ("unknown ablation value", _set("grid/ablations", {"loss": ["hinge", "l2"]}), ["'l2'", "mse"]),
    ("misspelled top-level key", _set("trian", {"lr": 0.1}), ["'trian'", "allowed keys"]),
    ("misspelled train key", _set("train/learning_rate", 0.1), ["'learning_rate'", "lr"]),
    ("misspelled arch key", _set("archs/mlp/hiden", 10), ["'hiden'", "hidden"]),
    ("key of another dataset", _set("datasets/blobs/noise", 0.1), ["noise", "does not apply to blobs"]),
    ("key of another arch", _set("archs/mlp/depth", 40), ["depth", "does not apply to mlp"]),
    ("wrong type: lr", _set("train/lr", "fast"), ["'fast'", "number"]),
    ("wrong type: epochs", _set("train/epochs", 10.5), ["10.5", "integer"]),
    ("wrong type: seeds", _set("grid/seeds", "0,1"), ["'0,1'", "array"]),
    ("wrong type: download", _set("datasets/mnist01/download", "no"), ["'no'", "boolean"]),
    ("zero epochs", _set("train/epochs", 0), ["0", "minimum of 1"]),
    ("negative epochs", _set("train/epochs", -5), ["-5", "minimum of 1"]),
    ("zero learning rate", _set("train/lr", 0), ["0", "less than or equal to the minimum of 0"]),
    ("negative learning rate", _set("train/lr", -0.1), ["-0.1", "minimum of 0"]),
    ("zero retrain epochs", _set("retrain/epochs", 0), ["0", "minimum of 1"]),
    ("empty dataset list", _set("grid/datasets", []), ["[]", "should be non-empty"]),
    ("empty seed list", _set("grid/seeds", []), ["[]", "should be non-empty"]),
    ("no grid", _delete("grid"), ["'grid' is a required property"]),
    ("checkpoint beyond the last epoch", _set("train/checkpoints", [5, 61]),
     ["[61]", "allowed: 1..60"]),
    ("retrain start beyond the last epoch", _set("retrain/from_epoch", 99),
     ["from_epoch 99", "allowed: 1..60"]),
    ("bottleneck width 0", _set("archs/mlp/bottleneck", 0), ["0", "minimum of 1"]),
    ("duplicate seeds", _set("grid/seeds", [0, 1, 0]), ["[0, 1, 0]", "non-unique"]),
    ("duplicate datasets", _set("grid/datasets", ["blobs", "blobs"]), ["non-unique"]),
    ("negative seed", _set("grid/seeds", [-1]), ["-1", "minimum of 0"]),
    ("label smoothing of 1", _set("train/label_smoothing", 1.0), ["1.0", "maximum of 1"]),
    ("label smoothing with hinge", lambda c: c["train"].update(loss="hinge", label_smoothing=0.1),
     ["label_smoothing 0.1", "cross_entropy"]),
    ("bad densenet depth", _set("archs/densenet40", {"depth": 41}), ["41", "3 L + 4"]),
    ("bad device", _set("train/device", "gpu"), ["'gpu'", "auto|cpu|cuda"]),
    ("conv net on 2-D data", _set("datasets/blobs/archs", ["cnn"]), ["'cnn' needs image inputs"]),
    ("missing data_root with download off",
     lambda c: c["datasets"].update(mnist01={"data_root": "/nonexistent/mnist", "download": False})
     or c["grid"].update(datasets=["mnist01"], archs=["cnn"]),
     ["/nonexistent/mnist", "download is off"]),
    ("zero memory", _set("resources/mem_mb", 0), ["0", "minimum of 100"]),
]


def _tiny() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


@pytest.mark.parametrize("name,change,fragments", BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_is_refused_with_its_value_and_what_is_allowed(name, change, fragments):
    config = _tiny()
    change(config)
    with pytest.raises(ConfigError) as caught:
        validate_config(copy.deepcopy(config))
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{name}: {fragment!r} not in {message!r}"


def test_every_bad_config_is_counted(capsys):
    refused = 0
    for _, change, _ in BAD:
        config = _tiny()
        change(config)
        try:
            validate_config(config)
        except ConfigError:
            refused += 1
    with capsys.disabled():
        print(f"\nconfig errors: {refused} of {len(BAD)} bad configs refused before any job")
    assert refused == len(BAD) >= 35


def test_snakemake_stops_before_any_job_on_a_bad_config(tiny_workdir):
    config = _tiny()
    config["train"]["epochs"] = 0
    (tiny_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tiny_workdir, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "config key 'train/epochs': 0 is less than the minimum of 1" in result.stdout + result.stderr
    assert not (tiny_workdir / "results").exists()
