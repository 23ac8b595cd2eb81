"""Layer shapes, Tucker-2 triples and Timeloop problem files."""

from __future__ import annotations


import pytest
import torch
import yaml
from torch import nn

from haloc_hw.errors import HalocError
from haloc_hw.workload import (
    ConvShape,
    LayerInfo,
    extract_shapes,
    load_problem,
    problem_yaml,
    shape_from_conv,
    to_timeloop_problem,
    tucker2_triple,
)
from conftest import GOLDEN

needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden Timeloop runs not found at {GOLDEN}")


# --------------------------------------------------------------------------- shapes from torch


@pytest.mark.parametrize(
    ("kwargs", "hw"),
    [
        (dict(in_channels=3, out_channels=8, kernel_size=3, padding=1), (9, 9)),
        (dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2)), (11, 7)),
        (dict(in_channels=4, out_channels=4, kernel_size=3, dilation=2, padding=2, stride=2), (13, 10)),
        (dict(in_channels=8, out_channels=8, kernel_size=3, groups=8, padding=1), (6, 6)),
        (dict(in_channels=8, out_channels=12, kernel_size=3, groups=4), (5, 7)),
        (dict(in_channels=2, out_channels=2, kernel_size=3, padding="same"), (5, 4)),
        (dict(in_channels=2, out_channels=2, kernel_size=2, padding="valid", stride=2), (7, 5)),
    ],
)
def test_shape_from_conv_matches_torch_output(kwargs, hw):
    conv = nn.Conv2d(**kwargs)
    shape = shape_from_conv(conv, hw, batch=2)
    out = conv(torch.zeros(2, conv.in_channels, *hw))
    assert (shape.N, shape.G * shape.M, shape.Q, shape.P) == tuple(out.shape)
    assert shape.G * shape.C == conv.in_channels
    kh, kw = conv.kernel_size
    assert (shape.S, shape.R) == (kh, kw)
    assert (shape.Hstride, shape.Wstride) == conv.stride
    assert (shape.Hdilation, shape.Wdilation) == conv.dilation
    assert (shape.H, shape.W) == hw
    # MACs agree with a direct count: every output element needs C_per_group*kh*kw MACs
    assert shape.macs == out.numel() * (conv.in_channels // conv.groups) * kh * kw


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 5)  # defined first, runs last: order must follow forward, not definition
        self.narrow = nn.Conv2d(32, 8, 3, padding=1)
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.pw = nn.Conv2d(32, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.body(x)
        x = self.pw(self.dw(x))
        x = self.narrow(x)
        return self.fc(x.mean((2, 3)))


def test_extract_shapes_order_kinds_and_decomposable():
    model = _Net().train()
    layers = extract_shapes(model, (3, 12, 12), batch=3)
    assert model.training  # mode restored
    assert [layer.name for layer in layers] == ["stem", "body.0", "dw", "pw", "narrow", "fc"]
    by_name = {layer.name: layer for layer in layers}
    assert all(isinstance(layer, LayerInfo) for layer in layers)
    assert by_name["stem"].shape == ConvShape(C=3, M=16, R=3, S=3, P=12, Q=12, N=3)
    assert by_name["body.0"].shape == ConvShape(C=16, M=32, R=3, S=3, P=6, Q=6, N=3, Wstride=2, Hstride=2)
    assert by_name["body.0"].shape.H == 12
    assert by_name["dw"].shape == ConvShape(C=1, M=1, R=3, S=3, P=6, Q=6, N=3, G=32)
    assert by_name["fc"].shape == ConvShape(C=8, M=5, R=1, S=1, P=1, Q=1, N=3)
    assert by_name["fc"].kind == "linear" and by_name["stem"].kind == "conv"
    decomposable = {layer.name for layer in layers if layer.decomposable}
    # stem: 3 input channels; dw: grouped; pw: 1x1; narrow: 8 output channels; fc: linear
    assert decomposable == {"body.0"}


def test_extract_shapes_rejects_model_without_convs():
    with pytest.raises(HalocError, match="no Conv2d"):
        extract_shapes(nn.Sequential(nn.Flatten(), nn.Linear(12, 4)), (3, 2, 2))


def test_extract_shapes_bad_input_size_is_user_error():
    with pytest.raises(HalocError, match="input"):
        extract_shapes(_Net(), (1, 12, 12))  # stem wants 3 channels
    with pytest.raises(HalocError, match="input size"):
        extract_shapes(_Net(), (3, 12))


class _DataDependent(nn.Module):
    """Branches on a tensor value: impossible on the meta device, so the real pass must run."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, bias=False)
        self.b = nn.Conv2d(16, 16, 3, padding=1)
        self.c = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        return self.b(x) if float(x.sum()) >= 0 else self.c(x)


def test_extract_shapes_falls_back_to_a_real_forward():
    layers = extract_shapes(_DataDependent(), (3, 6, 6))
    assert [(layer.name, layer.shape.P) for layer in layers] == [("a", 4), ("b", 4)]  # zeros input: sum == 0


def test_shared_module_called_twice_gets_two_entries():
    conv = nn.Conv2d(16, 16, 3, padding=1)
    layers = extract_shapes(nn.Sequential(conv, conv), (16, 4, 4))
    assert [layer.name for layer in layers] == ["0", "0#2"]


# --------------------------------------------------------------------------- Tucker-2 triples


def test_tucker2_triple_of_strided_conv():
    conv = nn.Conv2d(64, 128, 3, stride=2, padding=1)
    shape = shape_from_conv(conv, (56, 56))
    first, core, last = tucker2_triple(shape, r1=48, r2=32)
    assert first == ConvShape(C=64, M=32, R=1, S=1, P=56, Q=56)
    assert core == ConvShape(C=32, M=48, R=3, S=3, P=28, Q=28, Wstride=2, Hstride=2)
    assert last == ConvShape(C=48, M=128, R=1, S=1, P=28, Q=28)
    # the three convs chain: each one's output is the next one's input
    torch_out = nn.Sequential(
        nn.Conv2d(64, 32, 1), nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.Conv2d(48, 128, 1)
    )(torch.zeros(1, 64, 56, 56))
    assert tuple(torch_out.shape[-2:]) == (last.Q, last.P)


def test_tucker2_triple_uses_true_input_size_for_odd_inputs():
    shape = shape_from_conv(nn.Conv2d(32, 32, 3, stride=2, padding=1), (7, 9))
    first, core, _ = tucker2_triple(shape, 8, 8)
    assert (first.Q, first.P) == (7, 9)  # not 2 * output (8, 10)
    assert (core.Q, core.P) == (4, 5)
    derived = ConvShape(C=32, M=32, R=3, S=3, P=5, Q=4, Wstride=2, Hstride=2)  # no H/W: "same" padding assumed
    assert (tucker2_triple(derived, 8, 8)[0].Q, tucker2_triple(derived, 8, 8)[0].P) == (8, 10)


@pytest.mark.parametrize(("r1", "r2"), [(0, 4), (4, 0), (-1, 4), (65, 4), (4, 33), (2.5, 4), (True, 4)])
def test_tucker2_triple_rejects_bad_ranks(r1, r2):
    shape = ConvShape(C=32, M=64, R=3, S=3, P=8, Q=8)
    with pytest.raises(HalocError, match="rank"):
        tucker2_triple(shape, r1, r2)


def test_tucker2_triple_rejects_grouped():
    with pytest.raises(HalocError, match="grouped"):
        tucker2_triple(ConvShape(C=1, M=1, R=3, S=3, P=8, Q=8, G=16), 1, 1)


def test_convshape_equality_ignores_input_size_metadata():
    a = ConvShape(C=8, M=8, R=3, S=3, P=4, Q=4, W=8, H=8)
    b = ConvShape(C=8, M=8, R=3, S=3, P=4, Q=4)
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert len({a, b}) == 1
    assert ConvShape(C=8, M=8, R=3, S=3, P=4, Q=4, Wstride=2).key != a.key


def test_convshape_rejects_nonpositive_dims():
    with pytest.raises(HalocError, match="P"):
        ConvShape(C=8, M=8, R=3, S=3, P=0, Q=4)


# --------------------------------------------------------------------------- Timeloop problems


def _layers(name: str, size: tuple[int, int, int]) -> dict[str, ConvShape]:
    from haloc_hw.models import build_model

    return {layer.name: layer.shape for layer in extract_shapes(build_model(name), size)}


def _golden_expectations() -> dict[str, ConvShape]:
    """Each golden case's layer, derived from the real networks (not from the golden file)."""
    r18 = _layers("resnet18", (3, 224, 224))
    r20 = _layers("resnet20", (3, 32, 32))
    vgg = _layers("vgg16", (3, 224, 224))
    r18_l3 = r18["layer3.1.conv1"]
    r20_s3 = r20["layer3.1.conv1"]
    cases = {
        "r18_conv1": r18["conv1"],
        "r18_l1": r18["layer1.0.conv1"],
        "r18_l2_0_conv1": r18["layer2.0.conv1"],
        "r18_l2_ds": r18["layer2.0.downsample.0"],
        "r18_l3": r18_l3,
        "r18_l4": r18["layer4.1.conv2"],
        "r20_s1": r20["layer1.0.conv1"],
        "r20_s2": r20["layer2.1.conv1"],
        "r20_s3": r20_s3,
        "vgg_c128_m256_p56": vgg["features.14"],  # conv3_1 on a 224x224 input
    }
    for rank in (64, 128):
        for role, shape in zip(("in", "core", "out"), tucker2_triple(r18_l3, rank, rank)):
            cases[f"r18_l3_r{rank}_{role}"] = shape
    for role, shape in zip(("in", "core", "out"), tucker2_triple(r20_s3, 16, 16)):
        cases[f"r20_s3_r16_{role}"] = shape
    return cases


@needs_golden
def test_every_golden_problem_is_reproduced():
    cases = _golden_expectations()
    folders = sorted(p.name for p in GOLDEN.iterdir() if (p / "problem.yaml").is_file())
    assert set(folders) == set(cases), "a golden case has no expectation here"
    for name in folders:
        path = GOLDEN / name / "problem.yaml"
        golden = yaml.safe_load(path.read_text())
        ours = to_timeloop_problem(cases[name], "v3")
        assert ours["problem"]["instance"] == golden["problem"]["instance"], name
        assert ours == golden, name
        assert yaml.safe_load(problem_yaml(cases[name], "v3")) == golden, name
        assert load_problem(path) == cases[name], name


def test_v3_text_has_only_timeloop_3_keys_and_no_anchors():
    text = problem_yaml(ConvShape(C=1, M=1, R=3, S=3, P=8, Q=8, G=32), "v3")
    assert "&" not in text and "*" not in text
    assert "data-spaces" in text and "read-write: true" in text
    assert "_" not in text.replace("CNN-Layer", "")  # no underscore keys for Timeloop 3.0.x
    doc = yaml.safe_load(text)
    assert doc["problem"]["shape"]["dimensions"][0] == "G"
    assert set(doc["problem"]["instance"]) == {"G", "C", "M", "R", "S", "N", "P", "Q", "Wstride", "Hstride", "Wdilation", "Hdilation"}
    spaces = {d["name"]: d["projection"] for d in doc["problem"]["shape"]["data-spaces"]}
    assert spaces["Weights"][0] == [["G"]] and spaces["Inputs"][1] == [["G"]] and spaces["Outputs"][1] == [["G"]]


@pytest.mark.parametrize("dialect", ["v3", "v4"])
@pytest.mark.parametrize(
    "shape",
    [
        ConvShape(C=3, M=64, R=7, S=5, P=112, Q=100, N=2, Wstride=2, Hstride=3, Wdilation=1, Hdilation=2),
        ConvShape(C=1, M=1, R=3, S=3, P=14, Q=14, G=96),
        ConvShape(C=64, M=10, R=1, S=1, P=1, Q=1),
    ],
)
def test_problem_round_trip(tmp_path, shape, dialect):
    path = tmp_path / "p.yaml"
    path.write_text(problem_yaml(shape, dialect))
    loaded = load_problem(path)
    assert loaded == shape and loaded.G == shape.G and loaded.coefficients == shape.coefficients


def test_v4_uses_underscore_keys():
    doc = to_timeloop_problem(ConvShape(C=8, M=8, R=3, S=3, P=4, Q=4), "v4")
    assert doc["problem"]["version"] == 0.4
    spaces = doc["problem"]["shape"]["data_spaces"]
    assert spaces[2]["read_write"] is True and "data-spaces" not in doc["problem"]["shape"]


def test_unknown_dialect():
    with pytest.raises(HalocError, match="dialect"):
        to_timeloop_problem(ConvShape(C=8, M=8, R=3, S=3, P=4, Q=4), "v5")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("problem:\n  instance: {C: 1, M: 1, R: 1, S: 1, N: 1, P: 1}\n", "Q missing"),
        ("problem:\n  instance: {G: 2, C: 1, M: 1, R: 1, S: 1, N: 1, P: 1, Q: 1}\n", None),
        ("problem:\n  shape: {dimensions: [G, C, M, R, S, N, P, Q]}\n  instance: {C: 1, M: 1, R: 1, S: 1, N: 1, P: 1, Q: 1}\n", "G missing"),
        ("problem:\n  instance: {C: 1.5, M: 1, R: 1, S: 1, N: 1, P: 1, Q: 1}\n", "not an integer"),
        ("problem:\n  instance: {C: 0, M: 1, R: 1, S: 1, N: 1, P: 1, Q: 1}\n", "positive"),
        ("problem:\n  shape: {dimensions: [C, K, R, S, N, P, Q]}\n  instance: {C: 1, M: 1, R: 1, S: 1, N: 1, P: 1, Q: 1}\n", "K"),
        ("problem: 3\n", "problem"),
        ("shape: {}\n", "problem"),
        ("problem:\n  shape: {}\n", "instance"),
    ],
)
def test_load_problem_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    if match is None:
        assert load_problem(path).G == 2
        return
    with pytest.raises(HalocError, match=match) as info:
        load_problem(path)
    assert str(path) in str(info.value)


def test_load_problem_missing_file(tmp_path):
    with pytest.raises(HalocError, match="not found"):
        load_problem(tmp_path / "nope.yaml")
