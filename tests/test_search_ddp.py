"""The search under torch.distributed (gloo, 2 processes on CPU): every rank ends identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_cli_search_under_torchrun_on_cpu(tmp_path):
    """``torchrun --nproc-per-node 2 ... search``: rank 0 prepares, both search, rank 0 finishes."""
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    script = tmp_path / "entry.py"  # torchrun starts a script (or module), so a two-line entry point
    script.write_text("import sys\nfrom haloc_hw.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    args = ["search", "--arch", "arch/eyeriss.yaml", "--out", str(out), "--model", "resnet20", "--data", "synthetic",
            "--subset", "64", "--batch", "8", "--device", "cpu", "--epochs-base", "1", "--epochs-search", "2",
            "--epochs-finetune", "1", "--jobs", "1", "--no-progress", "--no-onnx"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), *args], cwd=repo, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["budget_met"] is True
    assert (out / "search.rank1.log").exists() and (out / "model.pt").exists()
    history = json.loads((out / "search_history.json").read_text())
    assert history["epochs"][-1]["arch_steps"] > 0
