"""Tucker-2 math, the Tucker2Conv module, rank candidates and whole-model decomposition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from haloc_hw.decompose import (
    Tucker2Conv,
    decompose_model,
    default_step,
    rank_candidates,
    relative_error,
    tucker2,
    tucker2_reconstruct,
)
from haloc_hw.errors import HalocError
from haloc_hw.workload import ConvShape, extract_shapes, shape_from_conv, tucker2_triple


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.fixture
def weight() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(24, 16, 3, 3, dtype=torch.float64)


def test_tucker2_shapes_and_orthonormal_factors(weight):
    core, u_out, u_in = tucker2(weight, 8, 6)
    assert core.shape == (8, 6, 3, 3) and u_out.shape == (24, 8) and u_in.shape == (16, 6)
    assert torch.allclose(u_out.T @ u_out, torch.eye(8, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(u_in.T @ u_in, torch.eye(6, dtype=torch.float64), atol=1e-10)
    assert core.dtype == weight.dtype


def test_tucker2_exact_for_low_multilinear_rank():
    torch.manual_seed(1)
    core = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    a, b = torch.randn(20, 5, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    w = torch.einsum("abij,ma,cb->mcij", core, a, b)  # multilinear rank (5, 3) by construction
    assert _rel(tucker2_reconstruct(*tucker2(w, 5, 3, n_iter=0)), w) < 1e-10
    assert _rel(tucker2_reconstruct(*tucker2(w, 4, 3, n_iter=0)), w) > 1e-3


def test_tucker2_hosvd_matches_svd_truncation_on_one_mode(weight):
    # with r2 = C the input factor is a rotation, so the error is the SVD tail of the mode-0 unfolding
    s = torch.linalg.svdvals(weight.reshape(24, -1))
    expected = float(torch.sqrt((s[10:] ** 2).sum()) / torch.linalg.vector_norm(weight))
    assert relative_error(weight, 10, 16, n_iter=0) == pytest.approx(expected, rel=1e-9)


def test_hooi_does_not_worsen_hosvd(weight):
    for r1, r2 in [(4, 4), (8, 3), (12, 10)]:
        assert relative_error(weight, r1, r2, n_iter=3) <= relative_error(weight, r1, r2, n_iter=0) + 1e-12


def test_error_falls_monotonically_with_rank(weight):
    errors = [relative_error(weight, r, r) for r in range(1, 17)]
    assert all(b <= a + 1e-12 for a, b in zip(errors, errors[1:]))
    assert errors[0] > 0.5 and errors[-1] < errors[0]
    # also along one mode at a time
    by_r1 = [relative_error(weight, r1, 8) for r1 in range(1, 25)]
    assert all(b <= a + 1e-12 for a, b in zip(by_r1, by_r1[1:]))


def test_basis_cache_follows_weight_content(weight):
    before = relative_error(weight, 6, 6, n_iter=0)
    core, u_out, u_in = tucker2(weight, 6, 6, n_iter=0)
    approx = tucker2_reconstruct(core, u_out, u_in)
    u_out.zero_()  # results are not views of the cache
    assert relative_error(weight, 6, 6, n_iter=0) == pytest.approx(before, rel=1e-12)
    changed = weight.clone()
    changed[:, :8] *= 10.0  # in-place-like change of content: a new decomposition, not the cached one
    core2, u_out2, _ = tucker2(changed, 6, 6, n_iter=0)
    fresh = torch.linalg.svd(changed.reshape(24, -1), full_matrices=False).U[:, :6]
    assert torch.allclose((u_out2 @ u_out2.T), fresh @ fresh.T, atol=1e-8)
    weight.mul_(2.0)  # same tensor, new values
    assert relative_error(weight, 6, 6, n_iter=0) == pytest.approx(before, rel=1e-9)  # scale-invariant error
    assert torch.allclose(tucker2_reconstruct(*tucker2(weight, 6, 6, n_iter=0)), 2 * approx, atol=1e-9)


@pytest.mark.parametrize(("r1", "r2"), [(0, 3), (3, 0), (25, 3), (3, 17), (-2, 2), (1.0, 2)])
def test_tucker2_rejects_bad_ranks(weight, r1, r2):
    with pytest.raises(HalocError, match="rank"):
        tucker2(weight, r1, r2)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=16, out_channels=24, kernel_size=3, padding=1),
        dict(in_channels=16, out_channels=24, kernel_size=(3, 5), stride=2, padding=(1, 2), dilation=(1, 2)),
        dict(in_channels=16, out_channels=24, kernel_size=3, padding=1, bias=False, padding_mode="reflect"),
        dict(in_channels=16, out_channels=24, kernel_size=3, padding="same"),
    ],
)
def test_full_rank_tucker2conv_reproduces_conv(kwargs):
    torch.manual_seed(2)
    conv = nn.Conv2d(**kwargs).double()
    x = torch.randn(2, 16, 11, 9, dtype=torch.float64)
    dec = Tucker2Conv.from_conv(conv, 24, 16)
    assert dec.ranks == (24, 16)
    assert _rel(dec(x), conv(x)) <= 1e-5
    assert _rel(dec.to_conv()(x), conv(x)) <= 1e-10


def test_truncated_tucker2conv_equals_its_recomposed_conv_and_error_falls():
    torch.manual_seed(3)
    conv = nn.Conv2d(32, 32, 3, padding=1, stride=2).double()
    x = torch.randn(1, 32, 10, 10, dtype=torch.float64)
    ref = conv(x)
    errors = []
    for r in (4, 8, 16, 24, 32):
        dec = Tucker2Conv.from_conv(conv, r, r)
        out = dec(x)
        assert _rel(out, dec.to_conv()(x)) < 1e-10  # the three convs are exactly one conv
        assert [m.bias is None for m in (dec.in_conv, dec.core_conv)] == [True, True]
        assert torch.equal(dec.out_conv.bias, conv.bias)
        errors.append(_rel(out, ref))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-10


def test_tucker2conv_keeps_dtype_device_and_mode():
    conv = nn.Conv2d(16, 16, 3).eval()
    dec = Tucker2Conv.from_conv(conv, 8, 8)
    assert dec.core_conv.weight.dtype == torch.float32 and not dec.training
    assert "r1=8" in repr(dec)


def test_tucker2conv_rejects_grouped_and_bad_ranks():
    with pytest.raises(HalocError, match="grouped"):
        Tucker2Conv.from_conv(nn.Conv2d(16, 16, 3, groups=4), 2, 2)
    with pytest.raises(HalocError, match="rank"):
        Tucker2Conv.from_conv(nn.Conv2d(16, 8, 3), 9, 4)


# --------------------------------------------------------------------------- rank candidates


def test_default_step_by_width():
    assert [default_step(c, c) for c in (16, 64, 65, 128, 129, 512)] == [8, 8, 16, 16, 32, 32]
    assert default_step(512, 64) == 8  # the narrow side decides


def test_equal_candidates():
    assert rank_candidates((256, 256)) == [(r, r) for r in range(32, 256, 32)]
    assert rank_candidates((256, 256), include_full=True)[-1] == (256, 256)
    assert rank_candidates((64, 128)) == [(r, r) for r in range(8, 65, 8)]  # r = 64 compresses M
    assert rank_candidates((16, 16)) == [(8, 8)]
    assert rank_candidates((16, 16), step=4) == [(4, 4), (8, 8), (12, 12)]
    assert rank_candidates((5, 5)) == []
    assert rank_candidates((20, 20), include_full=True) == [(8, 8), (16, 16), (20, 20)]


def test_unequal_candidates_bounded_by_channels():
    pairs = rank_candidates((32, 64), step=16, equal=False)  # C = 32, M = 64
    assert pairs == sorted((r1, r2) for r1 in (16, 32, 48, 64) for r2 in (16, 32) if (r1, r2) != (64, 32))
    assert all(r1 <= 64 and r2 <= 32 for r1, r2 in pairs)
    assert (64, 32) in rank_candidates((32, 64), step=16, equal=False, include_full=True)


def test_max_macs_ratio_filters_by_triple_macs():
    shape = ConvShape(C=256, M=256, R=3, S=3, P=14, Q=14)
    all_pairs = rank_candidates(shape)
    kept = rank_candidates(shape, max_macs_ratio=0.5)
    assert kept and len(kept) < len(all_pairs)
    for pair in all_pairs:
        ratio = sum(s.macs for s in tucker2_triple(shape, *pair)) / shape.macs
        assert (pair in kept) == (ratio <= 0.5)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((ConvShape(C=1, M=1, R=3, S=3, P=4, Q=4, G=8),), {}, "grouped"),
        (((16, 16),), {"step": 0}, "step"),
        (((16, 16),), {"max_macs_ratio": 1.0}, "ConvShape"),
        ((ConvShape(C=16, M=16, R=3, S=3, P=4, Q=4),), {"max_macs_ratio": 0}, "positive"),
        (("abc",), {}, "ConvShape"),
        (((0, 16),), {}, "positive"),
    ],
)
def test_rank_candidates_errors(args, kwargs, match):
    with pytest.raises(HalocError, match=match):
        rank_candidates(*args, **kwargs)


# --------------------------------------------------------------------------- whole models


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dw(self.blocks(self.stem(x))).mean((2, 3)))


def test_decompose_model_replaces_named_convs_on_a_copy():
    torch.manual_seed(4)
    model = _Tiny().double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    full = decompose_model(model, {"blocks.0": (32, 16), "blocks.2": (32, 32)})
    assert isinstance(full.blocks[0], Tucker2Conv) and isinstance(model.blocks[0], nn.Conv2d)
    assert _rel(full(x), model(x)) < 1e-10
    small = decompose_model(model, {"blocks.2": (8, 8)})
    assert small.blocks[2].ranks == (8, 8) and isinstance(small.blocks[0], nn.Conv2d)
    assert _rel(small(x), model(x)) > 1e-6
    # the decomposed model's sub-convs are the Tucker-2 triple of the original layer
    orig = {layer.name: layer.shape for layer in extract_shapes(model, (3, 8, 8))}
    subs = {layer.name: layer.shape for layer in extract_shapes(small, (3, 8, 8))}
    triple = tucker2_triple(orig["blocks.2"], 8, 8)
    assert (subs["blocks.2.in_conv"], subs["blocks.2.core_conv"], subs["blocks.2.out_conv"]) == triple


@pytest.mark.parametrize(
    ("ranks", "match"),
    [
        ({"nope": (4, 4)}, "no module 'nope'"),
        ({"fc": (4, 4)}, "Linear"),
        ({"dw": (4, 4)}, "groups=32"),
        ({"blocks.0": (33, 4)}, "blocks.0"),
        ({"blocks.0": (4, 0)}, "rank"),
        ({"blocks.0": 4}, "pair"),
    ],
)
def test_decompose_model_errors(ranks, match):
    with pytest.raises(HalocError, match=match):
        decompose_model(_Tiny(), ranks)


def test_shape_of_decomposed_layer_matches_triple_at_full_size():
    conv = nn.Conv2d(64, 128, 3, stride=2, padding=1)
    shape = shape_from_conv(conv, (28, 28))
    dec = Tucker2Conv.from_conv(conv, 32, 16)
    shapes = [shape_from_conv(dec.in_conv, (28, 28))]
    shapes.append(shape_from_conv(dec.core_conv, (shapes[0].Q, shapes[0].P)))
    shapes.append(shape_from_conv(dec.out_conv, (shapes[1].Q, shapes[1].P)))
    assert tuple(shapes) == tucker2_triple(shape, 32, 16)
