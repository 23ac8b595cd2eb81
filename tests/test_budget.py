"""Budget parsing and checking against a cost table."""

from __future__ import annotations

import pytest

from haloc_hw.errors import HalocError
from haloc_hw.cost.metric import metric_for_flag
from haloc_hw.rankspace import check_table, cost_range, parse_budget, resolve_budget
from conftest import CANDIDATES, DictCosts


@pytest.mark.parametrize(
    ("text", "metric", "value", "relative"),
    [
        ("0.3", "energy_pJ", 0.3, True),
        ("30%", "energy_pJ", 0.3, True),
        (0.5, "cycles", 0.5, True),
        ("1", "cycles", 1.0, True),
        ("150uJ", "energy_pJ", 150e6, False),
        ("2mJ", "energy_pJ", 2e9, False),
        ("3e6pJ", "energy_pJ", 3e6, False),
        ("4 nJ", "energy_pJ", 4e3, False),
        ("2e6cycles", "cycles", 2e6, False),
        ("2e6", "cycles", 2e6, False),
        ("1.5ms", "latency_s", 1.5e-3, False),
        ("200us", "latency_s", 200e-6, False),
        ("5e12pJ*cycles", "edp", 5e12, False),
    ],
)
def test_parse_budget(text, metric, value, relative):
    budget = parse_budget(text, metric)
    assert budget.metric == metric
    assert budget.relative is relative
    assert budget.value == pytest.approx(value)


@pytest.mark.parametrize(("text", "metric"), [("3 furlongs", "energy_pJ"), ("1.5ms", "energy_pJ"), ("-0.3", "cycles"),
                                               ("abc", "cycles"), ("2uJ", "cycles"),
                                               ("1e999", "cycles"), ("0", "energy_pJ")])
def test_parse_budget_rejects(text, metric):
    with pytest.raises(HalocError, match="budget"):
        parse_budget(text, metric)


def test_flag_names():
    assert metric_for_flag("energy") == "energy_pJ"
    assert metric_for_flag("latency") == "latency_s"
    with pytest.raises(HalocError, match="--budget-energy"):
        metric_for_flag("power")


def test_cost_range_counts_unsearched_layers_at_original_cost():
    costs = DictCosts()
    rng = cost_range(costs, CANDIDATES, "energy_pJ")
    dw = costs.original_cost("dw", "energy_pJ")
    assert rng.fixed == dw
    assert rng.original == sum(costs.original_cost(n, "energy_pJ") for n in costs.layers())
    cheapest = dw + sum(min(costs.cost(n, *c, "energy_pJ") for c in cs) for n, cs in CANDIDATES.items())
    assert rng.minimum == pytest.approx(cheapest)
    assert rng.minimum < rng.maximum


def test_resolve_relative_and_absolute():
    costs = DictCosts()
    rng = cost_range(costs, CANDIDATES, "energy_pJ")
    absolute, _ = resolve_budget(parse_budget("0.8", "energy_pJ"), costs, CANDIDATES)
    assert absolute == pytest.approx(0.8 * rng.original)
    absolute, _ = resolve_budget(parse_budget(f"{rng.maximum}pJ", "energy_pJ"), costs, CANDIDATES)
    assert absolute == pytest.approx(rng.maximum)


def test_budget_below_minimum_names_the_minimum():
    costs = DictCosts()
    rng = cost_range(costs, CANDIDATES, "energy_pJ")
    frac = rng.minimum / rng.original
    with pytest.raises(HalocError) as err:
        resolve_budget(parse_budget(str(frac * 0.9), "energy_pJ"), costs, CANDIDATES, source="t.json")
    text = str(err.value)
    assert f"{frac:.4g}" in text and f"{rng.minimum:.4g}" in text and "t.json" in text


def test_check_table_names_missing_layers_and_candidates():
    costs = DictCosts()
    wanted = dict(CANDIDATES)
    wanted["conv9"] = [(2, 2)]
    wanted["conv2"] = [*CANDIDATES["conv2"], (3, 3)]
    with pytest.raises(HalocError) as err:
        check_table(costs, wanted, "energy_pJ")
    assert "conv9" in str(err.value) and "conv2@3x3" in str(err.value)
    check_table(costs, CANDIDATES, "energy_pJ")  # complete table: no error


def test_edp_totals_multiply_summed_energy_and_cycles():
    costs = DictCosts()
    rng = cost_range(costs, CANDIDATES, "edp")
    energy = sum(costs.original_cost(n, "energy_pJ") for n in costs.layers())
    cycles = sum(costs.original_cost(n, "cycles") for n in costs.layers())
    assert rng.original == pytest.approx(energy * cycles)
    assert rng.original != pytest.approx(sum(costs.original_cost(n, "edp") for n in costs.layers()))
    e_min = costs.original_cost("dw", "energy_pJ") + sum(
        min(costs.cost(n, *c, "energy_pJ") for c in cs) for n, cs in CANDIDATES.items())
    c_min = costs.original_cost("dw", "cycles") + sum(
        min(costs.cost(n, *c, "cycles") for c in cs) for n, cs in CANDIDATES.items())
    assert rng.minimum == pytest.approx(e_min * c_min)
    assert rng.fixed_components == (costs.original_cost("dw", "energy_pJ"), costs.original_cost("dw", "cycles"))
