"""The GPU path's settings run on the CPU with the same meaning: channels-last, bf16 autocast of
the backbone, torch.compile; the paper config; the training benchmark command."""

from __future__ import annotations

import io as stdio
import shutil

import pytest
import torch
from conftest import REPO, snakemake

from nnboundary.bench.training import benchmark_train
from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.models.networks import build_model
from nnboundary.data.make import make_dataset
from nnboundary.training.optim import make_optimizer
from nnboundary.training.step import make_step
from nnboundary.training.train import train_run

TINY_CNN = dict(DEFAULT_ARCH["cnn"], channels=[4, 8], hidden=16)


def _digits_run(**train):
    data = make_dataset("digits01", None, {"test_fraction": 0.2, "seed": 1})
    settings = dict(DEFAULT_TRAIN, optimizer="adam", lr=0.01, epochs=4, batch_size=64,
                    n_checkpoints=2, log_every=1000, **train)
    return train_run(data, "cnn", 0, TINY_CNN, settings)


def _final_state(result):
    return result["states"][result["epochs"][-1]]


def test_channels_last_changes_the_layout_not_the_result():
    a = _final_state(_digits_run(channels_last=True))
    b = _final_state(_digits_run(channels_last=False))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)


def test_bf16_backbone_trains_with_a_float32_head_and_float32_checkpoints():
    result = _digits_run(amp="bf16")
    state = _final_state(result)
    assert all(v.dtype == torch.float32 for k, v in state.items() if v.is_floating_point())
    losses = [row[1] for row in result["history"]]
    assert losses[-1] < losses[0]
    reference = _final_state(_digits_run())
    # bf16 rounds the backbone's activations: close to the float32 run, not equal to it.
    assert any(not torch.equal(state[k], reference[k]) for k in state)
    torch.testing.assert_close(state["last.weight"], reference["last.weight"], atol=0.1, rtol=0.5)


def test_the_step_takes_the_loss_in_float64_and_the_head_in_float32():
    model = build_model("cnn", (1, 8, 8), 2, TINY_CNN)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = output.dtype

        return hook

    model.bottleneck.register_forward_hook(record("bottleneck"))
    model.backbone.register_forward_hook(record("backbone"))
    settings = dict(DEFAULT_TRAIN, amp="bf16")
    step = make_step(model, make_optimizer(model.parameters(), settings), settings)
    loss, correct = step(torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1]))
    assert loss.dtype == torch.float64 and 0 <= int(correct) <= 6
    assert seen == {"backbone": torch.bfloat16, "bottleneck": torch.float32}


def test_compiled_training_matches_eager_training():
    data = make_dataset("blobs", 0, {"n_samples": 200, "test_fraction": 0.2, "seed": 1})
    arch = dict(DEFAULT_ARCH["mlp"], hidden=16)
    settings = dict(DEFAULT_TRAIN, optimizer="sgd", lr=0.5, epochs=3, n_checkpoints=1,
                    log_every=1000)
    eager = _final_state(train_run(data, "mlp", 0, arch, settings))
    compiled = _final_state(train_run(data, "mlp", 0, arch, dict(settings, compile=True)))
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], atol=1e-5, rtol=1e-5)


def test_the_benchmark_prints_and_returns_both_paths(capsys):
    out = stdio.StringIO()
    record = benchmark_train("cpu", steps=1, warmup=1, cases=(("mnist01", "resnet", (1, 8, 8), 2, 4),),
                             file=out)
    assert record["device_type"] == "cpu" and record["device"]
    (case,) = record["cases"]
    for key in ("fast_images_per_s", "baseline_images_per_s", "fast_peak_mb", "baseline_peak_mb"):
        assert case[key] > 0
    assert case["x_original"] == pytest.approx(case["fast_images_per_s"] / (12665 / 1.1))
    text = out.getvalue()
    assert "fast img/s" in text and "base img/s" in text and "mnist01" in text


def test_paper_config_expands_to_the_paper_grid_on_top_of_the_shipped_config(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "--configfile", str(REPO / "configs" / "paper.yaml"), "-n",
                       "--cores", "8")
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # 4 experiments x 5 seeds x 2 regimes; each dataset prepared once.
    assert counts["train"] == 20 and counts["retrain"] == 20 and counts["prepare"] == 4
    assert counts["features"] == 40
    assert "40 runs = 4 dataset x arch pairs x 1 variants x 2 regimes" in result.stderr
    assert "blobs" not in result.stdout
