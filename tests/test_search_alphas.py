"""The batched alpha bookkeeping of the search and the epoch's architecture-step schedule."""

from __future__ import annotations

import json

import pytest
import torch

from haloc_hw.errors import HalocError
from haloc_hw.search import Supernet
from haloc_hw.search.alphas import AlphaMatrix
from haloc_hw.search.search import _arch_steps_after
from conftest import CANDIDATES, DictCosts, run_tiny_search, tiny_config, tiny_data, tiny_model

# layers with 1, 2 and 4 candidates, so the padding is exercised
UNEVEN = {"conv1": [(2, 2)], "conv2": [(4, 4), (8, 8)], "conv3": [(4, 4), (8, 8), (12, 12), (16, 16)]}


def _matrix(metric: str = "energy_pJ", seed: int = 0) -> tuple[Supernet, AlphaMatrix, DictCosts]:
    net = Supernet(tiny_model(), UNEVEN)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.copy_(torch.randn(alpha.shape, generator=gen))
    costs = DictCosts(candidates=UNEVEN)
    parts = ("energy_pJ", "cycles") if metric == "edp" else (metric,)
    vectors = {n: torch.tensor([[costs.cost(n, *c, m) for m in parts] for c in cands]) for n, cands in UNEVEN.items()}
    fixed = torch.tensor([costs.original_cost("dw", m) for m in parts])
    return net, AlphaMatrix(net.choice_layers(), vectors, fixed, metric), costs


@pytest.mark.parametrize("metric", ["energy_pJ", "edp"])
def test_expected_cost_equals_the_per_layer_sum(metric):
    net, alphas, costs = _matrix(metric)
    probs = torch.softmax(alphas.padded(), dim=1)
    parts = ("energy_pJ", "cycles") if metric == "edp" else (metric,)
    totals = []
    for m in parts:
        total = costs.original_cost("dw", m)
        for name, layer in net.choice_layers().items():
            p = torch.softmax(layer.alpha.detach(), 0)
            total += sum(float(p[j]) * costs.cost(name, *c, m) for j, c in enumerate(layer.candidates))
        totals.append(total)
    want = totals[0] * totals[1] if metric == "edp" else totals[0]
    assert float(alphas.expected_cost(probs).detach()) == pytest.approx(want, rel=1e-6)
    # padding has probability 0 and each row sums to 1
    assert torch.equal(probs[~alphas.valid], torch.zeros(int((~alphas.valid).sum())))
    torch.testing.assert_close(probs.sum(1), torch.ones(3))


def test_expected_cost_gradient_reaches_every_alpha():
    net, alphas, _ = _matrix()
    cost = alphas.expected_cost(torch.softmax(alphas.padded(), dim=1))
    grads = torch.autograd.grad(cost, net.arch_parameters())
    assert grads[0].abs().sum() == 0  # one candidate: the softmax is constant
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads[1:])


def test_samples_follow_p_and_never_pick_padding():
    net, alphas, _ = _matrix()
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([alphas.sample(gen) for _ in range(4000)])
    for row, size in enumerate(alphas.sizes):
        assert int(draws[:, row].max()) < size
    freq = torch.bincount(draws[:, 2], minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.softmax(net.arch_parameters()[2].detach(), 0), atol=0.03, rtol=0)


def test_gumbel_gates_are_one_and_zero_forward_with_soft_gradients():
    net, alphas, _ = _matrix()
    gen = torch.Generator().manual_seed(3)
    padded = alphas.padded()
    choices = alphas.gumbel_gates(padded, gen, tau=1.0, compare=True)
    assert choices[0][2] is None and choices[0][3] is None  # one candidate: nothing to compare
    weight = 0
    for row, (index, gate, other, other_gate) in enumerate(choices):
        assert 0 <= index < alphas.sizes[row] and float(gate.detach()) == pytest.approx(1.0)
        if other is not None:
            assert other != index and 0 <= other < alphas.sizes[row] and float(other_gate.detach()) == pytest.approx(0.0)
            weight = weight + 3.0 * gate + 5.0 * other_gate
    grads = torch.autograd.grad(weight, net.arch_parameters())
    assert all(g.abs().sum() > 0 for g in grads[1:])
    off = alphas.gumbel_gates(alphas.padded(), gen, tau=1.0, compare=False)
    assert all(o is None and og is None for _, _, o, og in off)


def test_host_copy_follows_refresh_and_flags_non_finite_alpha():
    net, alphas, _ = _matrix()
    alpha = net.arch_parameters()[1]
    with torch.no_grad():
        alpha[0] = 7.0
    assert float(alphas.host[1, 0]) != 7.0
    alphas.refresh()
    assert float(alphas.host[1, 0]) == 7.0 and alphas.finite()
    with torch.no_grad():
        alpha[1] = float("nan")
    alphas.refresh()
    assert not alphas.finite()


@pytest.mark.parametrize("n_train,n_val", [(10, 3), (7, 7), (4, 9), (375, 94), (5, 1)])
def test_arch_steps_spread_evenly_over_the_epoch(n_train, n_val):
    counts = [_arch_steps_after(i, n_train, n_val) for i in range(n_train)]
    assert sum(counts) == n_val
    assert max(counts) - min(counts) <= 1  # never bunched up
    assert counts[-1] >= 1  # the epoch ends on an architecture step


def test_an_epoch_reads_the_validation_part_once_or_every_batch(tmp_path):
    data = tiny_data(n_train=64, n_val=32, batch=16)  # 4 train, 2 val batches
    run_tiny_search(tmp_path / "val", epochs=2, warmup_epochs=0, data=data)
    steps = [e["arch_steps"] for e in json.loads((tmp_path / "val" / "search_history.json").read_text())["epochs"]]
    assert steps == [2, 2]
    run_tiny_search(tmp_path / "train", epochs=2, warmup_epochs=0, data=data, arch_steps="per-train-batch")
    steps = [e["arch_steps"] for e in json.loads((tmp_path / "train" / "search_history.json").read_text())["epochs"]]
    assert steps == [4, 4]
    run_tiny_search(tmp_path / "cut", epochs=1, warmup_epochs=0, data=data, max_batches=2)
    steps = [e["arch_steps"] for e in json.loads((tmp_path / "cut" / "search_history.json").read_text())["epochs"]]
    assert steps == [1]  # max_batches cuts the val part in proportion


def test_unknown_schedule_or_check_interval_is_refused():
    with pytest.raises(HalocError, match="arch_steps"):
        tiny_config(arch_steps="sometimes")
    with pytest.raises(HalocError, match="check_every"):
        tiny_config(check_every=0)


def test_nan_in_the_weight_step_is_found_at_the_next_check(tmp_path):
    with pytest.raises(HalocError, match=r"non-finite loss in the weight step by batch 2"):
        run_tiny_search(tmp_path, epochs=2, warmup_epochs=2, check_every=2, data=tiny_data(nan_from_epoch=1))


def test_rows_follow_the_supernet_layer_order():
    net = Supernet(tiny_model(), CANDIDATES)
    costs = {n: torch.ones(len(c), 1) for n, c in CANDIDATES.items()}
    alphas = AlphaMatrix(net.choice_layers(), costs, torch.zeros(1), "cycles")
    assert alphas.names == net.layer_names and alphas.sizes == [len(CANDIDATES[n]) for n in net.layer_names]
