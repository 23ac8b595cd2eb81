"""Entry points run in other processes by the search tests: the DDP worker, and (as a script) the
search that the kill -9 / resume test interrupts. The tiny model, costs and data are in
``conftest.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # conftest, when run as a script or imported by a spawned worker

from conftest import run_tiny_search, tiny_data  # noqa: E402


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One rank of the 2-process gloo test: run the search, save alpha and ranks."""
    import json

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        plan, supernet = run_tiny_search(Path(out_dir) / "run", data=tiny_data(n_train=64, n_val=32, batch=8))
        result = {"ranks": {k: list(v) for k, v in plan.ranks.items()},
                  "alpha": {k: v.tolist() for k, v in zip(supernet.layer_names, supernet.arch_parameters())},
                  "conv1_choice0": supernet.net.conv1.choices[0].in_conv.weight.detach().flatten().tolist()}
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":  # used by the kill -9 / resume test
    out = sys.argv[1]
    torch.set_num_threads(1)
    run_tiny_search(out, resume="--resume" in sys.argv, epochs=4,
                    data=tiny_data(**({"sleep_from_epoch": 2, "sleep_s": 0.5} if "--slow" in sys.argv else {})))
