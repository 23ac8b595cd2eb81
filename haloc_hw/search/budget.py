"""Re-export kept for ``haloc_hw.pipeline`` only: budgets live in :mod:`haloc_hw.rankspace`
and metric names in :mod:`haloc_hw.cost.metric`. Import from there."""

from haloc_hw.cost.metric import metric_for_flag
from haloc_hw.rankspace import parse_budget

__all__ = ["metric_for_flag", "parse_budget"]
