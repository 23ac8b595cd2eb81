"""Reading the final ranks from p: the argmax, and the most probable plan just under the budget."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from haloc_hw.errors import HalocError
from haloc_hw.search import RankPlan, make_plan
from conftest import run_tiny_search


def _instance(seed: int, layers: int = 4, width: int = 4):
    gen = torch.Generator().manual_seed(seed)
    names = [f"l{i}" for i in range(layers)]
    probs = {n: torch.softmax(torch.randn(width, generator=gen) * 1.5, 0).tolist() for n in names}
    cands = {n: [(4 * (j + 1), 4 * (j + 1)) for j in range(width)] for n in names}
    costs = {n: sorted((torch.rand(width, generator=gen) * 90 + 10).tolist()) for n in names}
    originals = {n: 120.0 for n in names}
    return names, probs, cands, costs, originals


def _brute_force(names, probs, costs, room, band):
    """Best sum of log p among plans in [(1 - band) room, room], else the most expensive plan that fits."""
    plans = []
    for combo in itertools.product(*(range(len(costs[n])) for n in names)):
        cost = sum(costs[n][j] for n, j in zip(names, combo))
        if cost <= room:
            plans.append((cost, sum(math.log(probs[n][j]) for n, j in zip(names, combo)), combo))
    in_band = [p for p in plans if p[0] >= (1 - band) * room]
    return max(in_band, key=lambda p: p[1]) if in_band else max(plans, key=lambda p: p[0])


@pytest.mark.parametrize("seed", range(6))
def test_budget_decode_is_the_most_probable_plan_near_the_budget(seed):
    names, probs, cands, costs, originals = _instance(seed)
    fixed = 30.0
    cheapest = sum(min(c) for c in costs.values())
    budget = fixed + cheapest + 0.5 * (sum(max(c) for c in costs.values()) - cheapest)
    band = 0.05
    plan = make_plan(probs, cands, costs, originals, metric="energy_pJ", budget=budget, budget_text="b",
                     fixed_cost=fixed, decode="budget", band=band)
    cost, logp, combo = _brute_force(names, probs, costs, budget - fixed, band)
    assert plan.met and plan.decode == "budget"
    assert plan.total_cost <= budget
    got = sum(math.log(probs[n][cands[n].index(plan.ranks[n])]) for n in names)
    # exact up to the cost grid: the DP may miss a plan within a few grid steps of the band's edges
    assert got >= logp - 1e-9 or abs(cost - (1 - band) * (budget - fixed)) < 0.01 * budget
    assert plan.total_cost >= fixed + (1 - band) * (budget - fixed) - 0.01 * budget
    argmax = make_plan(probs, cands, costs, originals, metric="energy_pJ", budget=budget, budget_text="b",
                       fixed_cost=fixed)
    assert plan.searched_total == argmax.searched_total  # the argmax is still recorded
    assert [layer.name for layer in plan.layers] == names  # in model order


def test_budget_decode_spends_what_the_argmax_leaves():
    probs = {"a": [0.6, 0.4], "b": [0.7, 0.3]}
    cands = {"a": [(2, 2), (4, 4)], "b": [(2, 2), (4, 4)]}
    costs = {"a": [10.0, 30.0], "b": [10.0, 50.0]}
    kw = dict(metric="cycles", budget=45.0, budget_text="45", fixed_cost=5.0)
    argmax = make_plan(probs, cands, costs, {"a": 40.0, "b": 60.0}, **kw)
    spent = make_plan(probs, cands, costs, {"a": 40.0, "b": 60.0}, decode="budget", band=0.1, **kw)
    assert argmax.ranks == {"a": (2, 2), "b": (2, 2)} and argmax.total_cost == 25.0
    assert spent.ranks == {"a": (4, 4), "b": (2, 2)} and spent.total_cost == 45.0  # b's upgrade (65) does not fit
    assert spent.to_dict()["layers"]["a"]["searched_r1"] == 2 and "most probable" in spent.note
    # nothing reaches the band: the most expensive plan that fits
    far = make_plan(probs, cands, costs, {"a": 40.0, "b": 60.0}, decode="budget", band=0.01,
                    **{**kw, "budget": 60.0})
    assert far.total_cost == 45.0


def _nearest(costs, target):
    return min(range(len(costs)), key=lambda j: (abs(costs[j] - target), costs[j]))


@pytest.mark.parametrize("seed", range(6))
def test_expected_decode_follows_each_layers_expected_cost_scaled_to_fit(seed):
    names, probs, cands, costs, originals = _instance(seed, layers=5, width=6)
    fixed = 30.0
    expected = {n: sum(p * c for p, c in zip(probs[n], costs[n])) for n in names}
    for share in (0.3, 0.6, 1.2):  # budgets below, around and above the sum of expected costs
        cheapest = sum(min(c) for c in costs.values())
        budget = fixed + cheapest + share * (sum(expected.values()) - cheapest)
        plan = make_plan(probs, cands, costs, originals, metric="energy_pJ", budget=budget, budget_text="b",
                         fixed_cost=fixed, decode="expected")
        assert plan.met and plan.decode == "expected" and not plan.repaired and "expected cost" in plan.note
        picks = {n: cands[n].index(plan.ranks[n]) for n in names}
        # some scale s in [0, 1] explains every layer's pick: nearest candidate to s * E_p[cost]
        scales = [s / 1000 for s in range(1001)]
        consistent = [s for s in scales if all(picks[n] == _nearest(costs[n], s * expected[n]) for n in names)]
        assert consistent
        s_used = max(consistent)
        if s_used < 1.0:  # it scaled down: a slightly larger scale would not have fit
            bigger = [s for s in scales if s > s_used]
            over = [s for s in bigger
                    if fixed + sum(costs[n][_nearest(costs[n], s * expected[n])] for n in names) > budget]
            assert over and min(over) <= s_used + 0.01


def test_expected_decode_spreads_the_budget_where_budget_decode_concentrates_it():
    """p falling with the rank in every layer (an unconverged search): the budget decode fills its band with
    one improbable expensive candidate, the expected decode raises every layer a little."""
    probs = {n: [0.5, 0.25, 0.2, 0.05] for n in ("a", "b", "c")}
    cands = {n: [(4, 4), (8, 8), (12, 12), (16, 16)] for n in probs}
    costs = {n: [10.0, 20.0, 30.0, 100.0] for n in probs}  # E_p[cost] = 21 in every layer
    originals = {n: 120.0 for n in probs}
    kw = dict(metric="energy_pJ", budget=121.0, budget_text="121", fixed_cost=0.0)
    budget = make_plan(probs, cands, costs, originals, decode="budget", band=0.02, **kw)
    expected = make_plan(probs, cands, costs, originals, decode="expected", **kw)
    assert sorted(r[0] for r in budget.ranks.values()) == [4, 4, 16] and budget.total_cost == 120.0
    assert expected.ranks == {"a": (8, 8), "b": (8, 8), "c": (8, 8)} and expected.total_cost == 60.0


def test_expected_decode_falls_back_when_nothing_fits():
    plan = make_plan({"a": [0.5, 0.5]}, {"a": [(2, 2), (4, 4)]}, {"a": [10.0, 20.0]}, {"a": 30.0},
                     metric="cycles", budget=5.0, budget_text="5", fixed_cost=0.0, decode="expected")
    assert not plan.met and "fell back to the argmax" in plan.note


def test_edp_falls_back_to_the_argmax_and_says_so():
    probs = {"a": [0.6, 0.4]}
    plan = make_plan(probs, {"a": [(2, 2), (4, 4)]}, {"a": [[10.0, 5.0], [30.0, 9.0]]}, {"a": [40.0, 10.0]},
                     metric="edp", budget=1e4, budget_text="x", fixed_cost=[1.0, 1.0], decode="budget")
    assert plan.ranks == {"a": (2, 2)} and "not additive" in plan.note


def test_unknown_decode_is_refused():
    with pytest.raises(HalocError, match="decode"):
        make_plan({"a": [1.0]}, {"a": [(2, 2)]}, {"a": [1.0]}, {"a": 2.0}, metric="cycles", budget=5.0,
                  budget_text="5", fixed_cost=0.0, decode="mode")


def test_decode_round_trips_and_resuming_with_another_decode_is_refused(tmp_path):
    first, _ = run_tiny_search(tmp_path / "a", budget=0.6, epochs=2)
    spent, _ = run_tiny_search(tmp_path / "b", budget=0.6, epochs=2, decode="budget")
    assert first.decode == "argmax" and spent.decode == "budget"
    assert spent.total_cost >= first.total_cost and spent.met
    assert RankPlan.load(tmp_path / "b" / "ranks.json").decode == "budget"
    followed, _ = run_tiny_search(tmp_path / "c", budget=0.6, epochs=2, decode="expected")
    assert followed.met and RankPlan.load(tmp_path / "c" / "ranks.json").decode == "expected"
    # the run folder's fine-tuned model follows its ranks: a resumed run may not change them
    before = (tmp_path / "a" / "ranks.json").read_bytes()
    with pytest.raises(HalocError, match="decode"):
        run_tiny_search(tmp_path / "a", budget=0.6, epochs=2, decode="budget", resume=True)
    assert (tmp_path / "a" / "ranks.json").read_bytes() == before
