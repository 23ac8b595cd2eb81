"""The supernet: rank choices per conv, parameter groups, gradient paths, export."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from haloc_hw.errors import HalocError
from haloc_hw.search import RankChoiceConv, Supernet
from conftest import CANDIDATES, tiny_model


def full_rank_candidates():
    return {"conv1": [(2, 2), (8, 3)], "conv2": [(4, 4), (16, 8)], "conv3": [(8, 8), (16, 16)]}


def test_replaces_dense_convs_and_skips_depthwise():
    model = tiny_model()
    net = Supernet(model, {**CANDIDATES, "dw": [(4, 4)]})
    assert net.layer_names == ["conv1", "conv2", "conv3"]
    assert isinstance(net.net.conv2, RankChoiceConv)
    assert isinstance(net.net.dw, nn.Conv2d) and "depthwise" in net.skipped["dw"]
    assert isinstance(model.conv1, nn.Conv2d)  # the input model is untouched


def test_bad_names_and_ranks_raise():
    with pytest.raises(HalocError, match="no module 'convX'"):
        Supernet(tiny_model(), {"convX": [(2, 2)]})
    with pytest.raises(HalocError, match="not a Conv2d"):
        Supernet(tiny_model(), {"bn1": [(2, 2)]})
    with pytest.raises(HalocError, match="does not fit"):
        Supernet(tiny_model(), {"conv1": [(2, 4)]})  # r2 > 3 input channels


def test_parameter_groups_are_disjoint_and_originals_frozen():
    net = Supernet(tiny_model(), CANDIDATES)
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    originals = {id(p) for layer in net.choice_layers().values() for p in layer.original.parameters()}
    assert len(arch) == 3 and not arch & weights and not originals & weights
    assert all(not p.requires_grad for layer in net.choice_layers().values() for p in layer.original.parameters())
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert trainable == arch | weights
    assert {id(p) for p in net.net.fc.parameters()} <= weights


def test_full_rank_candidates_reproduce_the_original_model():
    model = tiny_model().eval()
    net = Supernet(model, full_rank_candidates()).eval()
    x = torch.randn(2, 3, 8, 8)
    net.set_paths({"conv1": 1, "conv2": 1, "conv3": 1})
    torch.testing.assert_close(net(x), model(x), atol=1e-4, rtol=1e-4)
    net.set_paths({"conv1": 0, "conv2": 0, "conv3": 0})
    assert not torch.allclose(net(x), model(x), atol=1e-3)


def test_probabilities_and_argmax_follow_alpha():
    net = Supernet(tiny_model(), CANDIDATES)
    probs = net.probabilities()
    assert all(torch.allclose(p.sum(), torch.tensor(1.0)) for p in probs.values())
    with torch.no_grad():
        net.net.conv2.alpha[2] = 3.0
        net.net.conv1.alpha[1] = 1.0
    ranks = net.argmax_ranks()
    assert ranks["conv2"] == CANDIDATES["conv2"][2] and ranks["conv1"] == CANDIDATES["conv1"][1]
    assert ranks["conv3"] == CANDIDATES["conv3"][0]  # tie at zero: first candidate


def test_weight_path_gives_no_alpha_gradient_gumbel_path_does():
    net = Supernet(tiny_model(), CANDIDATES)
    x = torch.randn(4, 3, 8, 8)
    net.set_paths({n: 1 for n in net.layer_names})
    net(x).sum().backward()
    assert all(a.grad is None for a in net.arch_parameters())
    layer = net.net.conv2
    soft = torch.softmax(layer.alpha + torch.tensor([0.0, 2.0, 0.0]), 0)
    hard = torch.zeros(3)
    hard[1] = 1.0
    layer.set_gumbel(1, (hard - soft.detach() + soft)[1])
    out = net(x)
    (grad,) = torch.autograd.grad(out.square().mean(), [layer.alpha])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_feature_loss_is_the_mse_to_the_original_conv():
    net = Supernet(tiny_model(), full_rank_candidates())
    x = torch.randn(2, 3, 8, 8)
    net.track_targets(True)
    net.set_paths({n: 1 for n in net.layer_names})
    net(x)
    assert net.feature_loss().item() < 1e-8  # full rank reproduces every layer
    net.set_paths({n: 0 for n in net.layer_names})
    net(x)
    low = net.feature_loss()
    conv1 = net.net.conv1
    expected = torch.nn.functional.mse_loss(conv1.choices[0](x), conv1.original(x))
    assert low.item() > expected.item() * 0.999
    assert conv1.feature_diff.square().mean().item() == pytest.approx(expected.item(), rel=1e-5)
    net.track_targets(False)
    assert net.feature_loss().item() == 0.0


def test_feature_hooks_give_the_gradient_of_ce_plus_weighted_mse():
    """The hooks' gradients equal autograd's for CE + lam * sum_i MSE_i."""
    torch.manual_seed(5)
    net = Supernet(tiny_model(), CANDIDATES).double()
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    net.set_paths({n: len(c) - 1 for n, c in CANDIDATES.items()})
    lam = 0.7
    params = net.weight_parameters()

    seen: list[torch.Tensor] = []  # each layer's MSE term, built as an explicit loss node
    handles = [layer.register_forward_hook(
        lambda m, args, out: seen.append(torch.nn.functional.mse_loss(out, m.original(args[0]).detach())))
        for layer in net.choice_layers().values()]
    out = net(x)
    for handle in handles:
        handle.remove()
    explicit = torch.stack(seen).sum()
    reference = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y) + lam * explicit, params,
                                    allow_unused=True)

    net.track_targets(True, lam)
    hooked = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), y), params, allow_unused=True)
    assert net.feature_loss().item() == pytest.approx(explicit.item(), rel=1e-9)
    compared = 0
    for ref, got in zip(reference, hooked):
        assert (ref is None) == (got is None)
        if ref is not None:
            torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
            compared += 1
    assert compared >= len(CANDIDATES) * 3  # every sampled candidate's factors got a gradient


def test_export_uses_the_trained_factors_not_a_new_decomposition():
    net = Supernet(tiny_model(), CANDIDATES).eval()
    with torch.no_grad():
        for layer in net.choice_layers().values():
            for choice in layer.choices:
                for p in choice.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        net.net.conv3.alpha[1] = 2.0
    ranks = net.argmax_ranks()
    exported = net.export_compressed().eval()
    assert not any(isinstance(m, RankChoiceConv) for m in exported.modules())
    assert torch.equal(exported.conv3.core_conv.weight, net.net.conv3.choices[1].core_conv.weight)
    x = torch.randn(3, 3, 8, 8)
    net.set_paths(None)  # argmax path
    torch.testing.assert_close(exported(x), net(x))
    assert exported.conv3.ranks == ranks["conv3"]
    assert all(p.requires_grad for p in exported.parameters())
    # the export is independent of the supernet
    before = copy.deepcopy(exported.conv3.core_conv.weight)
    with torch.no_grad():
        net.net.conv3.choices[1].core_conv.weight.zero_()
    assert torch.equal(exported.conv3.core_conv.weight, before)


def test_export_with_explicit_ranks_checks_them():
    net = Supernet(tiny_model(), CANDIDATES)
    model = net.export_compressed({"conv1": (2, 2), "conv2": (16, 8), "conv3": (4, 4)})
    assert model.conv2.ranks == (16, 8)
    with pytest.raises(HalocError, match="not a candidate"):
        net.export_compressed({"conv1": (3, 3), "conv2": (16, 8), "conv3": (4, 4)})


def test_batchnorm_hides_the_own_gate_and_the_second_path_restores_the_signal():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    net = Supernet(model, {"0": [(2, 2), (4, 3), (8, 3)]}).train()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    layer = net.net[0]

    def grad_and_out(other):
        soft = torch.softmax(layer.alpha, 0)
        hard = torch.zeros(3)
        hard[0] = 1.0
        gate = hard - soft.detach() + soft
        layer.set_gumbel(0, gate[0], other, None if other is None else gate[other])
        out = net(x)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), [layer.alpha])
        return g, out.detach()

    alone, out_alone = grad_and_out(None)
    paired, out_paired = grad_and_out(2)
    torch.testing.assert_close(out_alone, out_paired)  # the second path adds nothing to the forward pass
    # BN after the conv: scaling its output changes (almost) nothing, comparing with another candidate does
    assert alone.abs().max() < 1e-4
    assert paired.abs().max() > 100 * alone.abs().max()
