"""CUDA-graph replay of the sampled candidates gives the eager arithmetic (haloc_hw.search.graphs).

The CUDA tests compare a supernet that replays graphs with an eager deep copy of it, step
by step, on paths that switch candidates so that candidates of one layer share their
memory pool. The CPU tests check that replay stays out of the way where it cannot run.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F

from haloc_hw.data import build_data
from haloc_hw.decompose import rank_candidates
from haloc_hw.models import build_model
from haloc_hw.search import HalocSearch, SearchConfig, Supernet
from haloc_hw.rankspace import MacsCosts
from haloc_hw.search.graphs import LayerReplay
from haloc_hw.workload import extract_shapes

INPUT = (3, 16, 16)
BATCH = 16
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _deterministic_cudnn():
    """cuDNN's default backward algorithms sum in a varying order: eager differs from eager by ~1e-3."""
    before = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.deterministic = before


def _supernet(device: str) -> Supernet:
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, in_channels=INPUT[0])
    cands = {i.name: rank_candidates(i.shape) for i in extract_shapes(model, INPUT) if i.decomposable}
    return Supernet(model, {k: v for k, v in cands.items() if v}).to(device).train()


def _batch(device: str, n: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *INPUT, generator=gen).to(device), torch.randint(0, 10, (n,), generator=gen).to(device)


def _paths(net: Supernet, seed: int) -> dict[str, int]:
    gen = torch.Generator().manual_seed(seed)
    return {n: int(torch.randint(len(c), (1,), generator=gen)) for n, c in net.candidates().items()}


def _weight_grads(net: Supernet, paths: dict[str, int], x, y, window: bool):
    """CE + 0.5 * sum MSE backward on ``paths``: (logits, feature loss, gradients by parameter name)."""
    net.zero_grad(set_to_none=True)
    net.set_paths(paths)
    net.track_targets(True, 0.5)
    ctx = net.replay_window() if window else nullcontext()
    with ctx:
        out = net(x)
        F.cross_entropy(out, y).backward()
    mse = net.feature_loss()
    net.track_targets(False)
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return out.detach(), mse, grads


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, rel: float = 1e-5) -> None:
    """Equal up to ``rel`` times the largest magnitude of ``expected`` (summation order may differ)."""
    scale = float(expected.abs().max()) or 1.0
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=rel * scale, msg=lambda m: f"{name}: {m}")


def _assert_grads_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        _assert_close(a[name], b[name], name)


def _graphed_and_eager(device: str) -> tuple[Supernet, Supernet]:
    """A supernet that replays CUDA graphs, and an eager copy of it with the same weights."""
    net = _supernet(device)
    ref = copy.deepcopy(net)
    net.use_cuda_graphs(True)
    return net, ref


def _n_candidates(net: Supernet) -> int:
    return sum(len(c) for c in net.candidates().values())


def _captured(net: Supernet) -> int:
    return sum(len(layer.replay.graphs) for layer in net.choice_layers().values() if layer.replay is not None)


# -- CUDA: replay equals eager ------------------------------------------------------------------
@pytest.mark.gpu
@cuda
def test_weight_steps_replayed_equal_eager_while_candidates_switch():
    net, ref = _graphed_and_eager("cuda")
    x, y = _batch("cuda")
    first, second = _paths(net, 1), _paths(net, 2)
    assert first != second
    for paths in (first, second, first, second):
        out_e, mse_e, grads_e = _weight_grads(ref, paths, x, y, window=False)
        out_g, mse_g, grads_g = _weight_grads(net, paths, x, y, window=True)
        _assert_close(out_g, out_e, "logits")
        _assert_close(mse_g, mse_e, "feature mse")
        _assert_grads_equal(grads_g, grads_e)
        assert not any(n.endswith("alpha") for n in grads_g)
        assert _captured(net) == _n_candidates(net)  # all of a layer's candidates at its first replay


@pytest.mark.gpu
@cuda
def test_arch_step_replayed_gives_eager_alpha_gradients():
    net, ref = _graphed_and_eager("cuda")
    x, y = _batch("cuda", seed=3)
    for model in (ref, net):
        with torch.no_grad():
            for i, alpha in enumerate(model.arch_parameters()):
                alpha.copy_(torch.linspace(-1.0, 1.0, alpha.numel()) * (i + 1) / 10)
    picks, others = _paths(net, 4), _paths(net, 5)

    def alpha_grads(model: Supernet, window: bool):
        for name, layer in model.choice_layers().items():
            p = layer.probabilities()
            i, j = picks[name], others[name]
            other = (j, p[j] - p[j].detach()) if j != i else (None, None)
            layer.set_gumbel(i, p[i] / p[i].detach(), *other)
        with model.replay_window() if window else nullcontext():
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, model.arch_parameters())
        model.set_paths(None)
        return grads

    for _ in range(2):  # capture, then replay
        for g_e, g_g in zip(alpha_grads(ref, False), alpha_grads(net, True)):
            _assert_close(g_g, g_e, "alpha gradient")
    assert _captured(net) == _n_candidates(net)
    assert all(p.grad is None for p in net.weight_parameters())  # only alpha was asked for


@pytest.mark.gpu
@cuda
def test_second_forward_in_a_window_and_other_shapes_run_eagerly():
    net, ref = _graphed_and_eager("cuda")
    paths = _paths(net, 6)
    x, _ = _batch("cuda")
    for model, window in ((ref, False), (net, True)):
        model.set_paths(paths)
        model.zero_grad(set_to_none=True)
        with model.replay_window() if window else nullcontext():
            (model(x).square().sum() + model(2 * x).square().sum()).backward()
    _assert_grads_equal({n: p.grad for n, p in net.named_parameters() if p.grad is not None},
                        {n: p.grad for n, p in ref.named_parameters() if p.grad is not None})
    captured = _captured(net)
    small, _ = _batch("cuda", n=BATCH // 2)
    out_e, _, grads_e = _weight_grads(ref, paths, small, torch.zeros(BATCH // 2, dtype=torch.long, device="cuda"),
                                      window=False)
    out_g, _, grads_g = _weight_grads(net, paths, small, torch.zeros(BATCH // 2, dtype=torch.long, device="cuda"),
                                      window=True)
    _assert_close(out_g, out_e, "logits")
    _assert_grads_equal(grads_g, grads_e)
    assert _captured(net) == captured  # the other batch size captured nothing


@pytest.mark.gpu
@cuda
def test_search_with_graphs_matches_eager_search(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, in_channels=INPUT[0])
    lookup = MacsCosts(extract_shapes(model, INPUT))
    data = build_data("synthetic", None, batch_size=BATCH, val_fraction=0.25, seed=0, subset=8 * BATCH,
                      input_size=INPUT, num_classes=10, augment=False, device=torch.device("cuda"))
    cands = {n: lookup.candidates(n) for n in lookup.layers() if lookup.candidates(n)}
    results = []
    for graphs in (False, True):
        cfg = SearchConfig(epochs=2, warmup_epochs=1, budget=0.5, metric="cycles", device="cuda", progress=False,
                           cuda_graphs=graphs, seed=1)
        supernet = Supernet(model, cands)
        plan = HalocSearch(cfg).run(supernet, data, lookup, tmp_path / str(graphs))
        results.append((plan.ranks, supernet))
    assert _captured(supernet) == _n_candidates(supernet)  # kept for a further run
    (ranks_e, net_e), (ranks_g, net_g) = results
    for (name, p_e), p_g in zip(net_e.named_parameters(), net_g.parameters()):  # weights and alphas
        _assert_close(p_g, p_e, name, rel=1e-4)
    assert ranks_g == ranks_e


@pytest.mark.gpu
@cuda
def test_an_in_place_change_of_a_replayed_output_is_refused():
    from torch import nn

    from haloc_hw.errors import HalocError

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(8 * 16 * 16, 10))
    net = Supernet(model, {"0": [(4, 2), (8, 3)]}).cuda().train()
    x, y = _batch("cuda")
    net.set_paths({"0": 1})
    F.cross_entropy(net(x), y).backward()  # eagerly: fine
    net.use_cuda_graphs(True)
    with pytest.raises(HalocError, match="in place"):
        with net.replay_window():
            F.cross_entropy(net(x), y).backward()


# -- CPU: replay stays out of the way -----------------------------------------------------------
def test_replay_never_runs_on_cpu_and_copies_run_eagerly():
    net, ref = _graphed_and_eager("cpu")
    assert all(isinstance(layer.replay, LayerReplay) for layer in net.choice_layers().values())
    x, y = _batch("cpu")
    paths = _paths(net, 7)
    out_e, mse_e, grads_e = _weight_grads(ref, paths, x, y, window=False)
    out_g, mse_g, grads_g = _weight_grads(net, paths, x, y, window=True)
    assert torch.equal(out_g, out_e) and torch.equal(mse_g, mse_e)
    _assert_grads_equal(grads_g, grads_e)
    assert _captured(net) == 0
    clone = copy.deepcopy(net)
    assert all(layer.replay is None for layer in clone.choice_layers().values())
    replays = [layer.replay for layer in net.choice_layers().values()]
    net.use_cuda_graphs(True)  # on again keeps what was captured
    assert [layer.replay for layer in net.choice_layers().values()] == replays
    net.to(torch.float64)  # moving or casting drops the graphs, which hold the old tensors
    assert all(layer.replay is None for layer in net.choice_layers().values())
    net.use_cuda_graphs(True)
    net.use_cuda_graphs(False)
    assert all(layer.replay is None for layer in net.choice_layers().values())


def test_window_arms_each_layer_once_and_disarms_on_exit():
    net = _supernet("cpu")
    net.use_cuda_graphs(True)
    replays = [layer.replay for layer in net.choice_layers().values()]
    assert not any(r.armed for r in replays)
    with pytest.raises(RuntimeError, match="boom"):
        with net.replay_window():
            assert all(r.armed for r in replays)
            raise RuntimeError("boom")
    assert not any(r.armed for r in replays)
