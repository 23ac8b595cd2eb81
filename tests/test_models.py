"""The model registry: every model builds, runs, and has the published size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from haloc_hw.errors import HalocError
from haloc_hw.models import MODEL_NAMES, build_model, default_dataset, default_input_size
from haloc_hw.workload import extract_shapes


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(("size", "classes"), [((1, 28, 28), 10), ((3, 32, 32), 7)])
def test_builds_and_runs(name, size, classes):
    torch.manual_seed(0)
    model = build_model(name, num_classes=classes, in_channels=size[0]).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *size))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet20_structure_and_size():
    model = build_model("resnet20")
    layers = extract_shapes(model, (3, 32, 32))
    convs = [layer for layer in layers if layer.kind == "conv"]
    assert len(convs) == 19 + 2  # 19 weighted 3x3 layers + two 1x1 projection shortcuts
    assert [layer.shape.M for layer in convs if layer.shape.R == 3] == [16] * 7 + [32] * 6 + [64] * 6
    assert {(layer.shape.P, layer.shape.M) for layer in convs if layer.shape.R == 3} == {(32, 16), (16, 32), (8, 64)}
    # He et al. report 0.27M parameters and ~41M multiply-adds for ResNet-20 (option A);
    # option B adds the two projections' 2.6k weights
    assert 0.26e6 < _params(model) < 0.28e6
    assert 40e6 < sum(layer.shape.macs for layer in layers) < 42e6
    decomposable = [layer.name for layer in layers if layer.decomposable]
    assert "conv1" not in decomposable and len(decomposable) == 18
    assert "layer1.0.conv1" in decomposable and "layer2.0.downsample.0" not in decomposable


def test_vgg16_structure_and_size():
    model = build_model("vgg16")
    layers = extract_shapes(model, (3, 32, 32))
    convs = [layer for layer in layers if layer.kind == "conv"]
    assert [layer.shape.M for layer in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [layer.shape.M for layer in layers if layer.kind == "linear"] == [512, 10]
    # Li et al. (2017) report 1.5e7 parameters and 3.13e8 FLOPs (multiply-adds) for this network
    assert 14.9e6 < _params(model) < 15.1e6
    assert 312e6 < sum(layer.shape.macs for layer in layers) < 315e6
    assert sum(layer.decomposable for layer in layers) == 12  # all but the 3-channel stem


def test_resnet18_and_mobilenet_v2_match_torchvision_sizes():
    # torchvision documents 11.69M (ResNet-18) and 3.50M (MobileNetV2) parameters at 1000 classes
    assert _params(build_model("resnet18", num_classes=1000)) == 11_689_512
    assert _params(build_model("mobilenet_v2", num_classes=1000)) == 3_504_872
    layers = extract_shapes(build_model("mobilenet_v2"), (3, 224, 224))
    depthwise = [layer for layer in layers if layer.shape.G > 1]
    assert len(depthwise) == 17 and not any(layer.decomposable for layer in depthwise)


def test_in_channels_adapts_the_stem():
    assert build_model("resnet18", in_channels=1).conv1.in_channels == 1
    assert build_model("mobilenet_v2", in_channels=1).features[0][0].in_channels == 1
    assert build_model("vgg16", in_channels=1).features[0].in_channels == 1
    assert build_model("resnet20", in_channels=1).conv1.in_channels == 1


def test_unknown_model_lists_the_names():
    with pytest.raises(HalocError) as info:
        build_model("alexnet")
    assert "alexnet" in str(info.value) and all(name in str(info.value) for name in MODEL_NAMES)


@pytest.mark.parametrize(("kwargs", "key"), [({"num_classes": 0}, "num_classes"), ({"in_channels": 2.0}, "in_channels")])
def test_bad_sizes(kwargs, key):
    with pytest.raises(HalocError, match=key):
        build_model("resnet20", **kwargs)


def test_default_input_size():
    assert default_input_size("resnet20", "cifar10") == (3, 32, 32)
    assert default_input_size("vgg16", "fashion-mnist") == (1, 28, 28)
    assert default_input_size("resnet18", "fashion_mnist") == (1, 28, 28)
    assert default_input_size("resnet18", "imagenet") == (3, 224, 224)
    with pytest.raises(HalocError, match="dataset"):
        default_input_size("resnet18", "coco")
    with pytest.raises(HalocError, match="model"):
        default_input_size("lenet", "cifar10")


def test_default_dataset_reads_names_like_build_model():
    assert default_dataset("resnet20") == "cifar10"
    assert default_dataset("mobilenet_v2") == default_dataset("MobileNet-V2") == "imagenet"
    assert default_dataset("ResNet18") == "imagenet"
    with pytest.raises(HalocError, match="model"):
        default_dataset("lenet")


def test_model_names_are_read_without_torch_and_match_the_registered_builders():
    import subprocess
    import sys

    code = ("import sys; from haloc_hw.models import MODEL_NAMES, IMAGENET_MODELS, default_dataset; "
            "print(','.join(MODEL_NAMES), ','.join(IMAGENET_MODELS), default_dataset('resnet18'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["resnet20,vgg16,resnet18,mobilenet_v2", "resnet18,mobilenet_v2", "imagenet", "False"]
    from haloc_hw.models import registry

    for name in MODEL_NAMES:
        build_model(name)
    assert registry.registered() == {e.name: e.dataset for e in registry.model_entries()}


def test_a_registered_builder_is_listed_and_built(tmp_path, monkeypatch):
    import sys

    from haloc_hw.models import registry

    (tmp_path / "extra_models_for_test.py").write_text(
        "from torch import nn\nfrom haloc_hw.models.registry import register_model\n\n\n"
        "@register_model(dataset='imagenet')\ndef tiny_linear(num_classes=10, in_channels=3):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "BUILDER_MODULES", (*registry.BUILDER_MODULES, "extra_models_for_test"))
    registry.model_entries.cache_clear()
    try:
        assert registry.model_names()[-1] == "tiny_linear"
        assert default_dataset("tiny-linear") == "imagenet"
        assert isinstance(build_model("tiny_linear", num_classes=4), nn.Sequential)
    finally:
        registry.model_entries.cache_clear()
        sys.modules.pop("extra_models_for_test", None)
        registry._BUILDERS.pop("tiny_linear", None)
        registry._DATASETS.pop("tiny_linear", None)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_extracted_macs_equal_torch_flop_counter(name):
    """extract_shapes' per-layer MACs add up to what torch's FlopCounterMode counts (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert sum(layer.shape.macs for layer in extract_shapes(model, (3, 32, 32))) * 2 == counter.get_total_flops()
