"""Moved to :mod:`haloc_hw.rankspace` (budgets, cost lookups, cost ranges); kept so old imports work."""

from haloc_hw.rankspace import (BUDGET_FLAGS, Budget, CostLookup, CostRange, MacsCosts, Rank, budget_key,
                                candidate_vectors, check_table, combine, components, cost_range, format_cost,
                                metric_for_flag, parse_budget, resolve_budget)

__all__ = ["BUDGET_FLAGS", "Budget", "CostLookup", "CostRange", "MacsCosts", "Rank", "budget_key", "candidate_vectors",
           "check_table", "combine", "components", "cost_range", "format_cost", "metric_for_flag", "parse_budget",
           "resolve_budget"]
