"""The search under torch.distributed (gloo, 2 processes on CPU): every rank ends identical."""

from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp

from test_search_support import _ddp_worker


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_gloo_ranks_end_with_identical_alpha_and_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["ranks"] == r1["ranks"]
    assert r0["alpha"] == r1["alpha"]  # bitwise identical after all-reduce
    assert r0["conv1_choice0"] == r1["conv1_choice0"]  # DDP kept the weights in step too
    # alpha moved away from its zero start, so the all-reduce was exercised
    assert any(abs(v) > 1e-4 for values in r0["alpha"].values() for v in values)
    assert (tmp_path / "run" / "ranks.json").exists()
