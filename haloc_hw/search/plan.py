"""Moved to :mod:`haloc_hw.rankspace` (the chosen ranks, decodes and repair); kept so old imports work."""

from haloc_hw.rankspace import COST_BINS, DECODES, DEFAULT_BAND, REPAIR_RULE, LayerPlan, RankPlan, make_plan

__all__ = ["COST_BINS", "DECODES", "DEFAULT_BAND", "REPAIR_RULE", "LayerPlan", "RankPlan", "make_plan"]
