"""The image architectures ``resnet`` and ``densenet40``: shapes, structure, parameter counts,
initialisation, mixed precision and memory format. CPU only, small batches."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nnboundary.models.backbones import PreActBottleneck
from nnboundary.models.networks import build_model
from nnboundary.settings.layers import DEFAULT_ARCH

DEFAULTS = {"resnet": DEFAULT_ARCH["resnet"], "densenet40": DEFAULT_ARCH["densenet40"]}
TINY = {
    "resnet": dict(DEFAULT_ARCH["resnet"], width=4, hidden=8, blocks=[[4, 8, 1, 1], [8, 16, 1, 2]]),
    "densenet40": dict(DEFAULT_ARCH["densenet40"], depth=7, growth=4, init_channels=4),
}


def n_convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def densenet_param_count(c_in: int, depth: int, growth: int, init: int, d: int, K: int) -> int:
    """Parameters of the DenseNet by hand: bias-free convs, BN (weight + bias) before each conv."""
    layers_per_block = (depth - 4) // 3
    count = 3 * 3 * c_in * init  # stem
    channels = init
    for block in range(3):
        for _ in range(layers_per_block):
            count += 2 * channels + 3 * 3 * channels * growth
            channels += growth
        if block < 2:  # transition: BN + 1×1 conv keeping the channels
            count += 2 * channels + channels * channels
    count += 2 * channels  # final BN
    return count + (channels * d + d) + (d * K + K)


def resnet_param_count(c_in: int, width: int, stages: list, hidden: int, d: int, K: int) -> int:
    count = 3 * 3 * c_in * width
    channels = width
    for inner, out, n_blocks, stride in stages:
        for i in range(n_blocks):
            count += 2 * channels + channels * inner  # BN, 1×1
            count += 2 * inner + 9 * inner * inner  # BN, 3×3
            count += 2 * inner + inner * out  # BN, 1×1
            if channels != out or (i == 0 and stride != 1):
                count += channels * out  # projection shortcut
            channels = out
    count += 2 * channels
    return count + (channels * hidden + hidden) + (hidden * d + d) + (d * K + K)


def test_defaults_are_json_and_documented():
    assert json.loads(json.dumps(DEFAULT_ARCH["resnet"])) == DEFAULT_ARCH["resnet"]
    assert json.loads(json.dumps(DEFAULT_ARCH["densenet40"])) == DEFAULT_ARCH["densenet40"]
    assert DEFAULT_ARCH["resnet"]["blocks"] == [[16, 64, 3, 1], [32, 128, 3, 2], [64, 256, 3, 2]]
    assert DEFAULT_ARCH["densenet40"]["hidden"] == 0 and DEFAULT_ARCH["densenet40"]["depth"] == 40


@pytest.mark.parametrize("arch", ["resnet", "densenet40"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("K", [2, 3])
def test_default_models_output_shapes(arch, shape, K):
    torch.manual_seed(0)
    model = build_model(arch, shape, K, dict(DEFAULTS[arch])).eval()
    x = torch.randn(2, *shape)
    h = model.features(x)
    assert h.shape == (2, 2) and (h >= 0).all()
    assert isinstance(model.last, nn.Linear) and model.last.bias is not None
    logits = model(x)
    assert logits.shape == (2, K)
    assert torch.allclose(logits, model.last(h))


def test_densenet40_structure_and_parameter_count():
    model = build_model("densenet40", (3, 32, 32), 2, dict(DEFAULT_ARCH["densenet40"]))
    assert n_convs(model) == 1 + 36 + 2
    assert isinstance(model.hidden, nn.Identity)  # hidden 0: straight to the bottleneck
    assert model.bottleneck.in_features == 16 + 3 * 12 * 12
    expected = densenet_param_count(3, 40, 12, 16, d=2, K=2)
    assert n_params(model) == expected
    assert 0.95e6 < expected < 1.05e6  # DenseNet (k=12, depth 40): 1.0M parameters
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_resnet_structure_and_parameter_count():
    model = build_model("resnet", (1, 28, 28), 2, dict(DEFAULT_ARCH["resnet"]))
    blocks = [m for m in model.modules() if isinstance(m, PreActBottleneck)]
    assert len(blocks) == 9
    # the stem already has 64 channels: only the first block of stages 2 and 3 projects
    assert [b.projects for b in blocks] == [False] * 3 + [True, False, False] * 2
    assert n_convs(model) == 1 + 9 * 3 + 2
    assert model.hidden[0].out_features == 200
    assert n_params(model) == resnet_param_count(1, 64, DEFAULT_ARCH["resnet"]["blocks"], 200, 2, 2)
    # 28 → 14 → 7 spatially, 256 channels before the global pool
    stem_to_stages = nn.Sequential(model.backbone.stem, model.backbone.stage1,
                                   model.backbone.stage2, model.backbone.stage3)
    assert stem_to_stages(torch.randn(1, 1, 28, 28)).shape == (1, 256, 7, 7)


def test_residual_shortcut_is_identity_when_shapes_match():
    torch.manual_seed(0)
    same = PreActBottleneck(8, 4, 8, stride=1)
    assert isinstance(same.shortcut, nn.Identity)
    # the block is x + r(x): zeroing the last conv leaves exactly the input
    nn.init.zeros_(same.conv3.weight)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(same(x), x)
    assert isinstance(PreActBottleneck(8, 4, 16, stride=1).shortcut, nn.Conv2d)
    strided = PreActBottleneck(8, 4, 8, stride=2)
    assert isinstance(strided.shortcut, nn.Conv2d) and strided(x).shape == (2, 8, 3, 3)


@pytest.mark.parametrize("depth", [4, 6, 8, 41, 0])
def test_bad_densenet_depth_raises(depth):
    settings = dict(DEFAULT_ARCH["densenet40"], depth=depth)
    with pytest.raises(ValueError, match=rf"depth.*3·L \+ 4.*got {depth}"):
        build_model("densenet40", (1, 28, 28), 2, settings)


@pytest.mark.parametrize("blocks", [[], [[16, 64, 3]], [[16, 64, 0, 1]], "16,64,3,1"])
def test_bad_resnet_blocks_raise(blocks):
    with pytest.raises(ValueError, match=r"\[inner, out, n_blocks, stride\]"):
        build_model("resnet", (1, 28, 28), 2, dict(DEFAULT_ARCH["resnet"], blocks=blocks))


@pytest.mark.parametrize("arch", ["resnet", "densenet40"])
def test_vector_inputs_are_refused(arch):
    with pytest.raises(ValueError, match=rf"{arch}.*image.*\(2,\)"):
        build_model(arch, (2,), 2, dict(DEFAULTS[arch]))


@pytest.mark.parametrize("arch", ["resnet", "densenet40"])
def test_tiny_models_train_step(arch):
    torch.manual_seed(0)
    model = build_model(arch, (1, 28, 28), 3, dict(TINY[arch]))
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_tiny_densenet_on_small_images():
    model = build_model("densenet40", (3, 8, 8), 2, dict(TINY["densenet40"])).eval()
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)


@pytest.mark.parametrize("arch", ["resnet", "densenet40"])
def test_original_initialisation(arch):
    torch.manual_seed(0)
    model = build_model(arch, (1, 28, 28), 2, dict(TINY[arch]))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert linears and norms
    for linear in linears:
        assert torch.all(linear.bias == 0.1)
        assert linear.weight.abs().max() <= 0.02 + 1e-7
    for norm in norms:
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    big = build_model(arch, (1, 28, 28), 2, dict(DEFAULTS[arch]))
    conv = next(m for m in big.modules() if isinstance(m, nn.Conv2d) and m.weight[0].numel() > 100)
    fan_in = conv.weight[0].numel()
    assert abs(conv.weight.std().item() / (2 / fan_in) ** 0.5 - 1) < 0.1  # He-scaled
    pytorch = build_model(arch, (1, 28, 28), 2, dict(TINY[arch], init="pytorch"))
    assert not torch.all(pytorch.last.bias == 0.1)


@pytest.mark.parametrize("arch", ["resnet", "densenet40"])
def test_bf16_autocast_backbone_keeps_float32_features(arch):
    torch.manual_seed(0)
    settings = dict(TINY[arch], init="pytorch")
    model = build_model(arch, (1, 28, 28), 2, settings).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        reference = model.features(x)
        mixed = model.features(x, autocast_dtype=torch.bfloat16)
        logits = model(x, autocast_dtype=torch.bfloat16)
    assert mixed.dtype == torch.float32 and logits.dtype == torch.float32
    scale = reference.abs().max().clamp_min(1e-3)
    assert (mixed - reference).abs().max() <= 5e-2 * scale
    assert torch.allclose(logits, model.last(mixed))
    # gradients flow through the autocast backbone
    model.train()
    model(x, autocast_dtype=torch.bfloat16).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", ["resnet", "densenet40"])
def test_channels_last_gives_the_same_output(arch):
    torch.manual_seed(0)
    model = build_model(arch, (3, 32, 32), 2, dict(TINY[arch], init="pytorch")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        contiguous_h = model.backbone(x)
        contiguous = model(x)
        model = model.to(memory_format=torch.channels_last)
        x_cl = x.to(memory_format=torch.channels_last)
        assert x_cl.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(model.backbone(x_cl), contiguous_h, atol=1e-5)
        assert torch.allclose(model(x_cl), contiguous, atol=1e-5)
