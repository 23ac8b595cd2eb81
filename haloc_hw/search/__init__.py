"""HALOC rank search: the supernet of rank candidates, the optimisation loop, budgets and plans."""

from haloc_hw.rankspace import (Budget, CostLookup, CostRange, LayerPlan, RankPlan, check_table, cost_range, make_plan,
                                parse_budget, resolve_budget)
from haloc_hw.search.search import HalocSearch, SearchConfig
from haloc_hw.search.supernet import RankChoiceConv, Supernet

__all__ = [
    "Budget", "CostLookup", "CostRange", "HalocSearch", "LayerPlan", "RankChoiceConv", "RankPlan", "SearchConfig",
    "Supernet", "check_table", "cost_range", "make_plan", "parse_budget", "resolve_budget",
]
