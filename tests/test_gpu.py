"""The CUDA path (skipped without a GPU; run by scripts/gpu_check.sh on a GPU machine)."""

from __future__ import annotations

import pytest
import torch

from nnboundary.settings.layers import DEFAULT_ARCH, DEFAULT_TRAIN
from nnboundary.models.restore import forward_features
from nnboundary.data.make import make_dataset
from nnboundary.models.restore import model_at
from nnboundary.training.train import train_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY_CNN = dict(DEFAULT_ARCH["cnn"], channels=[4, 8], hidden=16)


def _run(device, **train):
    data = make_dataset("digits01", None, {"test_fraction": 0.2, "seed": 1})
    settings = dict(DEFAULT_TRAIN, optimizer="adam", lr=0.01, epochs=5, batch_size=64,
                    n_checkpoints=2, log_every=1000, device=device, **train)
    return data, train_run(data, "cnn", 0, TINY_CNN, settings)


def test_cuda_training_is_close_to_cpu_training():
    _, cpu = _run("cpu")
    _, gpu = _run("cuda")
    assert gpu["device"].startswith("cuda")
    last = cpu["epochs"][-1]
    worst = max(float((cpu["states"][last][k] - gpu["states"][last][k]).abs().max())
                for k in cpu["states"][last] if cpu["states"][last][k].is_floating_point())
    print(f"max |CPU - CUDA| over the final weights after 5 epochs: {worst:.3e}")
    assert worst < 1e-2


def test_features_on_cuda_match_features_on_cpu():
    data, result = _run("cuda")
    model = model_at(result, result["epochs"][-1])
    h_cpu, logits_cpu = forward_features(model, data.X_test, torch.device("cpu"))
    h_gpu, logits_gpu = forward_features(model.to("cuda"), data.X_test, torch.device("cuda"))
    assert abs(h_cpu - h_gpu).max() < 1e-3 and abs(logits_cpu - logits_gpu).max() < 1e-3


@pytest.mark.parametrize("compile_model", [False, True])
def test_bf16_backbone_on_cuda(compile_model):
    _, result = _run("cuda", amp="bf16", compile=compile_model)
    state = result["states"][result["epochs"][-1]]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    losses = [row[1] for row in result["history"]]
    assert losses[-1] < losses[0]
