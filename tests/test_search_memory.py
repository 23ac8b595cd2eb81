"""Peak memory of a search step stays within 3x a plain training step of the same model and batch.

On CPU torch has no peak-allocation counter (and tracemalloc does not see tensor memory), so
the CPU test counts what a step holds at its peak: every parameter, gradient and optimiser
state tensor, plus every distinct storage autograd saves for the backward pass (found with
``saved_tensors_hooks``). On a GPU the second test reads ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import gc

import torch
import torch.nn.functional as F
import pytest

from haloc_hw.decompose import rank_candidates
from haloc_hw.models import build_model
from haloc_hw.search import HalocSearch, SearchConfig, Supernet
from haloc_hw.search.alphas import AlphaMatrix
from haloc_hw.search.graphs import graph_pool_bytes
from haloc_hw.search.search import _State
from haloc_hw.workload import extract_shapes

BATCH = 32
INPUT = (3, 16, 16)


def _resnet20_supernet():
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, in_channels=3)
    cands = {info.name: rank_candidates(info.shape) for info in extract_shapes(model, INPUT) if info.decomposable}
    cands = {k: v for k, v in cands.items() if v}
    return model, Supernet(model, cands)


def _tensor_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is not None:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _persistent(module, opt) -> int:
    params = list(module.parameters())
    grads = [p.grad for p in params]
    states = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    return _tensor_bytes(params) + _tensor_bytes(grads) + _tensor_bytes(states)


def _saved_bytes(fn, exclude: set[int]) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in exclude:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def _step_sizes(device: str):
    model, supernet = _resnet20_supernet()
    model.to(device).train()
    supernet.to(device).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, *INPUT, generator=gen).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=gen).to(device)

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def plain():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    cfg = SearchConfig(epochs=1, warmup_epochs=0, device=device, progress=False)
    search = HalocSearch(cfg)
    opt_w = torch.optim.SGD(supernet.weight_parameters(), lr=0.01, momentum=0.9)
    opt_a = torch.optim.Adam(supernet.arch_parameters(), lr=0.01)
    costs = {n: torch.linspace(1.0, 2.0, len(c), dtype=torch.float64)[:, None] for n, c in supernet.candidates().items()}
    total = float(sum(c.max() for c in costs.values()))
    alphas = AlphaMatrix(supernet.choice_layers(), costs, torch.zeros(1, dtype=torch.float64), "cycles")
    state = _State(supernet, opt_w, opt_a, torch.Generator().manual_seed(0), {}, alphas, supernet.weight_parameters())

    def weight_step():
        search._weight_step(state, supernet, x, y)

    def arch_step():
        search._arch_step(state, x, y, total, False)

    return model, supernet, opt, opt_w, opt_a, plain, weight_step, arch_step


@pytest.mark.slow
def test_search_steps_hold_at_most_3x_a_plain_step_cpu():
    model, supernet, opt, opt_w, opt_a, plain, weight_step, arch_step = _step_sizes("cpu")
    plain()  # create momentum buffers, then measure a steady-state step
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    plain_peak = _persistent(model, opt) + _saved_bytes(plain, params)
    weight_step()
    arch_step()
    sparams = {p.untyped_storage().data_ptr() for p in supernet.parameters()}
    acts = max(_saved_bytes(weight_step, sparams), _saved_bytes(arch_step, sparams))
    persistent = _persistent(supernet, opt_w) + _tensor_bytes(v for s in opt_a.state.values() for v in s.values()
                                                                 if torch.is_tensor(v))
    search_peak = persistent + acts
    ratio = search_peak / plain_peak
    print(f"plain step {plain_peak / 2**20:.1f} MiB, search step {search_peak / 2**20:.1f} MiB, ratio {ratio:.2f}")
    assert ratio <= 3.0
    assert acts > 0 and plain_peak > 0


def _capture_every_candidate(supernet) -> None:
    """One replayed step: each layer captures all its candidates, so every graph and pool exists."""
    with supernet.replay_window():
        supernet(torch.randn(BATCH, *INPUT, device="cuda")).sum().backward()
    supernet.zero_grad(set_to_none=True)
    assert all(len(layer.replay.graphs) == len(layer.candidates) for layer in supernet.choice_layers().values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda-graphs"])
def test_search_steps_hold_at_most_3x_a_plain_step_cuda(graphs):
    gc.collect()  # graphs of earlier tests hold pools until collected
    torch.cuda.empty_cache()
    pools_before = graph_pool_bytes()
    model, supernet, opt, opt_w, opt_a, plain, weight_step, arch_step = _step_sizes("cuda")
    supernet.cpu()  # measure the plain step alone first
    plain()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    plain()
    torch.cuda.synchronize()
    plain_peak = torch.cuda.max_memory_allocated()
    model.cpu()
    opt.state.clear()
    supernet.cuda()
    if graphs:  # the graphs' pools are reserved memory that max_memory_allocated stops counting
        supernet.use_cuda_graphs(True)
        _capture_every_candidate(supernet)
    weight_step()
    arch_step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    weight_step()
    arch_step()
    torch.cuda.synchronize()
    pools = graph_pool_bytes() - pools_before
    search_peak = torch.cuda.max_memory_allocated() + pools
    print(f"cuda plain {plain_peak / 2**20:.1f} MiB, search {search_peak / 2**20:.1f} MiB "
          f"(graph pools {pools / 2**20:.1f} MiB)")
    assert (pools > 0) == graphs
    assert search_peak <= 3.0 * plain_peak
