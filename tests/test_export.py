"""model.pt / model.onnx export and load_compressed."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

import haloc_hw
from haloc_hw.errors import HalocError
from haloc_hw.export import MODEL_FILE, ONNX_FILE, load_compressed, read_model_file, save_run_model


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


class Net(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def build_net(name: str, num_classes: int, in_channels: int) -> nn.Module:
    widths = {"net16": 16, "net8": 8}
    if name not in widths:
        raise HalocError(f"unknown model '{name}'", key="model", fix="use net16 or net8")
    return Net(num_classes, in_channels, widths[name])


def _trained_like(model: nn.Module) -> nn.Module:
    """Give BN non-default running stats so that a lost buffer would change the outputs."""
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 8, 8) * 2 + 1)
    return model.eval()


def test_save_then_load_gives_identical_outputs(tmp_path):
    decompose = pytest.importorskip("haloc_hw.decompose")
    torch.manual_seed(0)
    ranks = {"conv2": (8, 4)}
    model = _trained_like(decompose.decompose_model(Net(), ranks))
    paths = save_run_model(tmp_path, model, model_name="net16", num_classes=10, in_channels=3,
                           input_size=(3, 8, 8), ranks=ranks, extra={"top1": 91.5})
    assert paths["model"] == tmp_path / MODEL_FILE and paths["onnx"] == tmp_path / ONNX_FILE
    loaded = load_compressed(tmp_path, build_fn=build_net)
    assert isinstance(loaded.conv2, decompose.Tucker2Conv) and not loaded.training
    assert loaded.haloc_info["ranks"] == {"conv2": (8, 4)} and loaded.haloc_info["extra"] == {"top1": 91.5}
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # The file itself can be given too, and it holds plain data only (weights_only load).
    assert read_model_file(tmp_path / MODEL_FILE)["model_name"] == "net16"


def test_onnx_matches_torch_with_dynamic_batch(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(1)
    model = _trained_like(Net())
    save_run_model(tmp_path, model, model_name="net16", num_classes=10, in_channels=3, input_size=(1, 3, 8, 8),
                   ranks={})
    proto = onnx.load(str(tmp_path / ONNX_FILE))
    onnx.checker.check_model(proto)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)  # batch 3, exported with 1
    (got,) = ReferenceEvaluator(proto).run(None, {"input": x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_onnx_failure_is_a_warning_and_model_pt_survives(tmp_path, monkeypatch, caplog):
    def broken(*_a, **_k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    (tmp_path / ONNX_FILE).write_bytes(b"an earlier model's export")  # must not survive next to the new model.pt
    with caplog.at_level(logging.WARNING, logger="haloc_hw.export"):
        paths = save_run_model(tmp_path, Net(), model_name="net16", num_classes=10, in_channels=3,
                               input_size=(3, 8, 8), ranks={})
    assert paths["onnx"] is None and not (tmp_path / ONNX_FILE).exists()
    assert "exporter exploded" in caplog.text and "model.pt is complete" in caplog.text
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    load_compressed(tmp_path, build_fn=build_net)


def test_saving_without_onnx_removes_a_stale_export(tmp_path):
    save_run_model(tmp_path, Net(), model_name="net16", num_classes=10, in_channels=3, input_size=(3, 8, 8), ranks={})
    assert (tmp_path / ONNX_FILE).is_file()
    paths = save_run_model(tmp_path, Net(), model_name="net16", num_classes=10, in_channels=3,
                           input_size=(3, 8, 8), ranks={}, onnx=False)
    assert paths["onnx"] is None and not (tmp_path / ONNX_FILE).exists()


def test_weights_of_another_model_are_rejected(tmp_path):
    save_run_model(tmp_path, Net(width=8), model_name="net16", num_classes=10, in_channels=3,
                   input_size=(3, 8, 8), ranks={}, onnx=False)
    with pytest.raises(HalocError, match="do not fit model 'net16'") as err:
        load_compressed(tmp_path, build_fn=build_net)
    assert str(tmp_path / MODEL_FILE) in str(err.value)


def test_unknown_model_name_and_missing_or_foreign_files(tmp_path):
    save_run_model(tmp_path, Net(), model_name="mystery", num_classes=10, in_channels=3, input_size=(3, 8, 8),
                   ranks={}, onnx=False)
    with pytest.raises(HalocError, match="cannot rebuild model 'mystery'"):
        load_compressed(tmp_path, build_fn=build_net)
    with pytest.raises(HalocError, match="no exported model"):
        load_compressed(tmp_path / "empty")
    torch.save({"format": "haloc-hw-checkpoint", "model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(HalocError, match="training checkpoint"):
        load_compressed(tmp_path / "checkpoint.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(HalocError, match="cannot read model file"):
        load_compressed(tmp_path / "junk.pt")


def test_package_level_alias():
    assert haloc_hw.load_compressed is load_compressed


def test_real_resnet20_round_trip(tmp_path):
    models = pytest.importorskip("haloc_hw.models")
    decompose = pytest.importorskip("haloc_hw.decompose")
    torch.manual_seed(0)
    base = models.build_model("resnet20", num_classes=10, in_channels=1)
    ranks = {"layer3.0.conv2": (32, 32), "layer2.1.conv1": (16, 16)}
    model = decompose.decompose_model(base, ranks).eval()
    save_run_model(tmp_path, model, model_name="resnet20", num_classes=10, in_channels=1,
                   input_size=(1, 28, 28), ranks=ranks, onnx=False)
    loaded = haloc_hw.load_compressed(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    other = models.build_model("vgg16", num_classes=10, in_channels=1)
    save_run_model(tmp_path / "vgg", other, model_name="resnet20", num_classes=10, in_channels=1,
                   input_size=(1, 28, 28), ranks={}, onnx=False)
    with pytest.raises(HalocError, match="do not fit"):
        haloc_hw.load_compressed(tmp_path / "vgg")
