"""Baseline rank allocators: budget, candidate grid, VBMF guards and recovery, greedy order and monotonicity."""

from __future__ import annotations

import json

import pytest
import torch

from haloc_hw.baselines import METHODS, allocate, estimate_layer_ranks, evbmf, greedy_ranks, uniform_ranks
from haloc_hw.baselines.uniform import choice_at_fraction, rank_fraction
from haloc_hw.errors import HalocError
from haloc_hw.search import RankPlan, parse_budget
from conftest import CANDIDATES, DictCosts, tiny_model

CHANNELS = {"conv1": (8, 3), "conv2": (16, 8), "conv3": (16, 16)}


def _total(costs: DictCosts, ranks: dict, metric: str) -> float:
    if metric == "edp":
        return _total(costs, ranks, "energy_pJ") * _total(costs, ranks, "cycles")
    return sum(costs.cost(n, *ranks[n], metric) if n in ranks else costs.original_cost(n, metric) for n in costs.layers())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("metric,budget", [("energy_pJ", 0.45), ("cycles", 0.6), ("edp", 0.3)])
def test_each_baseline_meets_the_budget_on_the_grid(tmp_path, method, metric, budget):
    costs = DictCosts()
    result = allocate(method, costs, CANDIDATES, parse_budget(budget, metric), tiny_model())
    ranks = result.ranks
    assert set(ranks) | set(result.plan.skipped) >= set(CANDIDATES)  # each layer decomposed, or kept
    for name, rank in ranks.items():
        assert rank in CANDIDATES[name]
        assert not all(costs.cost(name, *rank, m) >= costs.original_cost(name, m) for m in ("energy_pJ", "cycles"))
    total = _total(costs, ranks, metric)
    original = _total(costs, {}, metric)
    assert total <= budget * original * (1 + 1e-9)
    assert result.plan.total_cost == pytest.approx(total)
    # written in the search's ranks.json format
    result.plan.save(tmp_path / "ranks.json")
    loaded = RankPlan.load(tmp_path / "ranks.json")
    assert loaded.ranks == ranks and loaded.met and not loaded.repaired
    assert all(layer.probability == 1.0 for layer in loaded.layers)
    skipped = json.loads((tmp_path / "ranks.json").read_text())["skipped"]
    assert "dw" in skipped and set(skipped) - {"dw"} == set(CANDIDATES) - set(ranks)  # kept undecomposed


@pytest.mark.parametrize("method", METHODS)
def test_unreachable_budget_names_the_minimum(method):
    costs = DictCosts()
    smallest = {n: c[0] for n, c in CANDIDATES.items()}
    minimum = _total(costs, smallest, "energy_pJ") / _total(costs, {}, "energy_pJ")
    with pytest.raises(HalocError) as err:
        allocate(method, costs, CANDIDATES, parse_budget(minimum * 0.9, "energy_pJ"), tiny_model())
    assert f"{minimum:.4g}" in str(err.value)


def test_uniform_takes_the_largest_fraction_that_fits():
    costs = DictCosts()
    budget = parse_budget(0.5, "energy_pJ")
    result = uniform_ranks(costs, CANDIDATES, CHANNELS, budget)
    limit = 0.5 * _total(costs, {}, "energy_pJ")
    chosen = result.details["fraction"]
    fractions = sorted({rank_fraction(c, CHANNELS[n]) for n, cs in CANDIDATES.items() for c in cs})
    assert chosen in fractions
    for f in fractions:
        choice = choice_at_fraction(CANDIDATES, CHANNELS, f)
        ranks = {n: CANDIDATES[n][j] for n, j in choice.items()}
        fits = _total(costs, ranks, "energy_pJ") <= limit
        if f > chosen:
            assert not fits  # every larger fraction breaks the budget
    # every layer keeps at most the chosen fraction of its channels, or its smallest candidate
    for name, rank in result.ranks.items():
        assert rank_fraction(rank, CHANNELS[name]) <= chosen + 1e-12 or rank == CANDIDATES[name][0]


def _low_rank(rows: int, cols: int, rank: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, rank, generator=g) @ torch.randn(rank, cols, generator=g) + noise * torch.randn(rows, cols, generator=g)


@pytest.mark.parametrize("rows,cols,rank", [(40, 120, 5), (120, 40, 3), (32, 32, 6), (64, 576, 9)])
def test_evbmf_recovers_the_planted_rank_of_a_noisy_low_rank_matrix(rows, cols, rank):
    assert evbmf(_low_rank(rows, cols, rank, noise=0.3, seed=rank)).rank == rank


def test_evbmf_finds_no_signal_in_noise_and_guards_keep_ranks_in_range():
    g = torch.Generator().manual_seed(3)
    assert evbmf(torch.randn(48, 200, generator=g)).rank == 0
    weight = torch.randn(24, 16, 3, 3, generator=g)  # pure noise: EVBMF says 0, the guard says 1
    r1, r2 = estimate_layer_ranks(weight)
    assert (r1, r2) == (1, 1)
    assert estimate_layer_ranks(torch.zeros(8, 4, 3, 3)) == (1, 1)
    exact = torch.zeros(10, 30)
    exact[0, 0], exact[1, 1] = 2.0, 1.0  # noise-free rank 2 with exact zero singular values
    assert evbmf(exact).rank == 2
    # planted mode ranks: core 5 x 3 with orthonormal-ish factors plus small noise
    core = torch.randn(5, 3, 3, 3, generator=g) * 5
    u_out, u_in = torch.randn(24, 5, generator=g), torch.randn(16, 3, generator=g)
    w = torch.einsum("abij,ma,cb->mcij", core, u_out, u_in) + 0.02 * torch.randn(24, 16, 3, 3, generator=g)
    assert estimate_layer_ranks(w) == (5, 3)
    # full-rank weights: never above the channel count
    full = torch.randn(6, 4, 1, 1, generator=g) * 10 + torch.eye(6, 4)[:, :, None, None] * 100
    r1, r2 = estimate_layer_ranks(full)
    assert 1 <= r1 <= 6 and 1 <= r2 <= 4


def _planted(m: int, c: int, r1: int, r2: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    core = torch.randn(r1, r2, 3, 3, generator=g) * 5
    w = torch.einsum("abij,ma,cb->mcij", core, torch.randn(m, r1, generator=g), torch.randn(c, r2, generator=g))
    return w + 0.02 * torch.randn(m, c, 3, 3, generator=g)


def test_vbmf_snaps_estimates_to_the_grid_and_scales_down_for_a_budget():
    costs = DictCosts()
    model = tiny_model()
    with torch.no_grad():
        model.conv1.weight.copy_(_planted(8, 3, 4, 2, 1))
        model.conv2.weight.copy_(_planted(16, 8, 6, 4, 2))
        model.conv3.weight.copy_(_planted(16, 16, 10, 10, 3))
    loose = allocate("vbmf", costs, CANDIDATES, parse_budget(1.0, "energy_pJ"), model)
    tight = allocate("vbmf", costs, CANDIDATES, parse_budget(0.26, "energy_pJ"), model)
    assert loose.details["scale"] == 1.0
    assert loose.details["estimates"] == {"conv1": [4, 2], "conv2": [6, 4], "conv3": [10, 10]}
    assert loose.ranks == {"conv1": (4, 2), "conv2": (4, 4), "conv3": (8, 8)}  # nearest grid points
    assert tight.details["scale"] < 1.0
    for name in CANDIDATES:
        assert loose.ranks[name] in CANDIDATES[name] and tight.ranks[name] in CANDIDATES[name]
        assert tight.ranks[name] <= loose.ranks[name]


def test_greedy_is_monotone_in_the_budget():
    costs = DictCosts()
    model = tiny_model()
    previous = None
    for budget in (0.26, 0.3, 0.4, 0.5, 0.7, 0.9):
        ranks = allocate("greedy", costs, CANDIDATES, parse_budget(budget, "energy_pJ"), model).ranks
        if previous is not None:
            for name in CANDIDATES:  # a kept layer counts as the largest option
                def position(chosen, name=name):
                    return CANDIDATES[name].index(chosen[name]) if name in chosen else len(CANDIDATES[name])
                assert position(ranks) >= position(previous)
        previous = ranks


def test_greedy_takes_the_step_with_most_cost_saved_per_error():
    costs = DictCosts()
    grid = {"conv2": CANDIDATES["conv2"], "conv3": CANDIDATES["conv3"]}
    # from the original layers (error 0; the full-rank candidates cost more, so they are no
    # options): conv3's step down costs little error, conv2's a lot: conv3 must go first
    errors = {"conv2": [0.9, 0.5, 0.3], "conv3": [0.02, 0.011, 0.01]}
    start = _total(costs, {}, "energy_pJ")
    two_steps = _total(costs, {"conv3": grid["conv3"][1]}, "energy_pJ")
    budget = parse_budget(f"{two_steps * 1.0001}pJ", "energy_pJ")
    assert two_steps < start
    result = greedy_ranks(costs, grid, {}, budget, errors=errors)
    assert result.ranks == {"conv3": (8, 8)} and "conv2" in result.plan.skipped
    assert [s["layer"] for s in result.details["steps"]] == ["conv3"]
    assert result.details["steps"][0]["from"] == "original"


class _DearCosts(DictCosts):
    """conv3's largest candidate costs 1.07x its original layer (as a Tucker-2 candidate of
    ResNet-20's layer3.0.conv1 did on Eyeriss); conv2's candidates all cost more than conv2."""

    def cost(self, layer, r1, r2, metric):
        if layer == "conv3" and (r1, r2) == (16, 16):
            return 1.07 * self.original_cost(layer, metric)
        if layer == "conv2":
            return 1.5 * self.original_cost(layer, metric)
        return super().cost(layer, r1, r2, metric)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [0.99, 0.8, 0.6])
def test_no_allocator_picks_a_candidate_dearer_than_its_original_layer(method, budget):
    costs = _DearCosts()
    try:
        result = allocate(method, costs, CANDIDATES, parse_budget(budget, "energy_pJ"), tiny_model())
    except HalocError as err:  # a budget the method cannot reach says so
        assert "reach" in str(err)
        return
    for name, rank in result.ranks.items():
        assert costs.cost(name, *rank, "energy_pJ") < costs.original_cost(name, "energy_pJ"), (name, rank)
    assert "conv2" not in result.ranks and "every rank candidate costs" in result.plan.skipped["conv2"]
    assert result.plan.met


def test_the_search_plan_keeps_a_layer_whose_argmax_costs_more_than_it():
    from haloc_hw.rankspace import make_plan

    probs = {"a": [0.1, 0.9], "b": [0.8, 0.2]}
    cands = {"a": [(2, 2), (4, 4)], "b": [(2, 2), (4, 4)]}
    costs = {"a": [10.0, 43.0], "b": [10.0, 50.0]}  # a's argmax (4, 4) costs more than a (40)
    plan = make_plan(probs, cands, costs, {"a": 40.0, "b": 60.0}, metric="cycles", budget=100.0,
                     budget_text="100", fixed_cost=5.0)
    assert plan.ranks == {"b": (2, 2)} and "a" in plan.skipped
    assert plan.total_cost == 5.0 + 40.0 + 10.0 and plan.searched_total == 5.0 + 43.0 + 10.0
    # too tight for keeping a: the repair moves it to its cheaper candidate
    tight = make_plan(probs, cands, costs, {"a": 40.0, "b": 60.0}, metric="cycles", budget=30.0,
                      budget_text="30", fixed_cost=5.0)
    assert tight.ranks == {"a": (2, 2), "b": (2, 2)} and tight.met and tight.repair_steps[0]["from"] == "original"


@pytest.mark.parametrize("seed", range(6))
def test_alds_minimises_the_largest_error_like_brute_force(seed):
    import itertools
    import random

    from haloc_hw.baselines import alds_ranks

    rng = random.Random(seed)
    costs = DictCosts()
    grid = {n: sorted(c) for n, c in CANDIDATES.items()}
    # random errors falling with rank (the original layer: error 0)
    errors = {n: sorted((rng.random() for _ in c), reverse=True) for n, c in grid.items()}
    budget = rng.uniform(0.3, 0.9)
    options = {n: [c for c in grid[n] if costs.cost(n, *c, "energy_pJ") < costs.original_cost(n, "energy_pJ")] + [None]
               for n in grid}
    limit = budget * _total(costs, {}, "energy_pJ")
    best = None
    for combo in itertools.product(*options.values()):
        ranks = {n: r for n, r in zip(options, combo) if r is not None}
        if _total(costs, ranks, "energy_pJ") <= limit * (1 + 1e-9):
            worst = max(errors[n][grid[n].index(ranks[n])] if n in ranks else 0.0 for n in grid)
            best = worst if best is None else min(best, worst)
    try:
        result = alds_ranks(costs, grid, {}, parse_budget(budget, "energy_pJ"), errors=errors)
    except HalocError:
        assert best is None
        return
    assert best is not None and result.details["minimax_error"] == pytest.approx(best)
    got = max(errors[n][grid[n].index(r)] for n, r in result.ranks.items()) if result.ranks else 0.0
    assert got <= best + 1e-12 and result.plan.met
    assert _total(costs, result.ranks, "energy_pJ") <= limit * (1 + 1e-9)
