"""Tucker-2 decomposition of convolutions: the math, the module, and the rank candidates."""

from haloc_hw.decompose.layers import Tucker2Conv, decompose_model
from haloc_hw.decompose.ranks import WorkloadRow, candidate_workloads, default_step, rank_candidates
from haloc_hw.decompose.tucker import relative_error, tucker2, tucker2_reconstruct

__all__ = [
    "Tucker2Conv",
    "WorkloadRow",
    "candidate_workloads",
    "decompose_model",
    "default_step",
    "rank_candidates",
    "relative_error",
    "tucker2",
    "tucker2_reconstruct",
]
