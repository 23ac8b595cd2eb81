"""Tucker-2 decomposition of convolutions: the math, the module, and the rank candidates.

Names are imported on first use: the rank candidates (:mod:`haloc_hw.decompose.ranks`)
need no torch, and a cached ``haloc-hw tables`` rerun reads only them.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Tucker2Conv": "layers",
    "decompose_model": "layers",
    "WorkloadRow": "ranks",
    "candidate_workloads": "ranks",
    "default_step": "ranks",
    "rank_candidates": "ranks",
    "relative_error": "tucker",
    "tucker2": "tucker",
    "tucker2_reconstruct": "tucker",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'haloc_hw.decompose' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"haloc_hw.decompose.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
