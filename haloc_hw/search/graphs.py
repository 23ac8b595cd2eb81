"""CUDA-graph replay of the sampled candidates, so that a search step is not bound by the host.

On a GPU, a search step of a small network costs the host far more than the GPU: each cuDNN
convolution takes the host 35-60 us forward and about twice that backward (H100, PyTorch
2.11), while the GPU finishes it in a few. A weight step runs, per searched layer, the three
convolutions of the sampled candidate forward and backward plus the original conv for the
feature-map target; that is 3.5x the convolutions of a plain training step.

A whole step cannot be captured once: the sampled path changes every step, and one graph
per path is out of the question. Each Tucker-2 *candidate* is captured instead, as two
graphs: forward (the candidate's output) and backward (the gradients of its input and
factors, with the feature-map loss's gradient ``scale * (output - original conv output)``
added to the incoming gradient, and that MSE for the report). All of a layer's candidates
are captured the first time the layer replays. A step then costs the host two copies and
two graph launches per layer.

Memory: the backward graph recomputes the candidate's forward from the layer's static input
(a candidate's three convolutions, GPU time the host-bound step has to spare), so between
the two graphs a layer keeps only its input and output, in static tensors shared by all its
candidates: a step runs one candidate per layer, and another candidate of that layer runs
only after this one's backward. Everything else a graph allocates is dead when its replay
ends, so all graphs share one memory pool. The incoming and input gradients are used only
during a backward replay, so layers of one shape share them, and the factors' gradients go
through one scratch tensor. A layer therefore holds less than its eager candidate, which
keeps two inner activations and the feature-map difference as well; the price is the pool,
sized by the largest candidate's backward (518 MiB for VGG-16's 64-channel layers at batch
256, which puts its search at 3.4x a plain step's memory, against 2.4x eagerly).

The replay path is used only inside the windows the search loop opens around each step
(:meth:`~haloc_hw.search.supernet.Supernet.replay_window`): at most one forward per layer
per window, and its backward must run before the next window opens. It also needs grad mode,
a CUDA input of the shape the layer first replayed, and Tucker-2 candidates. Everything else
(evaluation, the last partial batch, a second forward in one window, the compared path of an
architecture step) runs the modules eagerly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from haloc_hw.decompose.layers import Tucker2Conv
from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)

#: Eager forward+backward passes before a capture: cuDNN chooses its algorithms and
#: allocates its workspaces outside the graph.
WARMUP_PASSES = 1


class SharedReplayMemory:
    """What all layers' replays share: gradient tensors, the graphs' pool, the capture stream.

    ``max_params`` is the largest number of factor elements of any candidate: the backward
    graphs write the factors' gradients into one scratch tensor of that size, which is
    copied out after every replay (one per candidate would double the supernet's memory).
    All captures run on one stream because the caching allocator reuses a freed block only
    for the stream it was allocated on.
    """

    def __init__(self, max_params: int) -> None:
        self.max_params = max_params
        self._tensors: dict[tuple[Any, ...], torch.Tensor] = {}
        self._pools: dict[torch.device, Any] = {}
        self._streams: dict[torch.device, torch.cuda.Stream] = {}

    def param_grads(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Views of the gradient scratch shaped like ``params``."""
        key = ("param_grads", params[0].dtype, params[0].device)
        if key not in self._tensors:
            self._tensors[key] = params[0].new_zeros(self.max_params)
        scratch = self._tensors[key]
        out, offset = [], 0
        for p in params:
            out.append(scratch[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return out

    def tensor(self, like: torch.Tensor) -> torch.Tensor:
        key = (tuple(like.shape), like.dtype, like.device)
        if key not in self._tensors:
            self._tensors[key] = torch.zeros_like(like)
        return self._tensors[key]

    def pool(self, device: torch.device) -> Any:
        if device not in self._pools:
            self._pools[device] = torch.cuda.graph_pool_handle()
        return self._pools[device]

    def stream(self, device: torch.device) -> torch.cuda.Stream:
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device)
        return self._streams[device]


@dataclass
class _CandidateGraphs:
    forward: torch.cuda.CUDAGraph
    backward: torch.cuda.CUDAGraph
    param_grads: list[torch.Tensor]  # written by the backward graph, in module.parameters() order (shared)


class LayerReplay:
    """Captured graphs of one searched layer's candidates, for inputs of the first shape it replays.

    The search opens a window per step (:meth:`arm`); :meth:`take` says whether a forward
    may replay. ``mse`` is the feature-map MSE of the last replayed step, written by the
    backward graph.
    """

    def __init__(self, original: nn.Conv2d, choices: Sequence[nn.Module], shared: SharedReplayMemory) -> None:
        self.original = original
        self.choices = choices
        self.shared = shared
        self.armed = False
        self.graphs: dict[int, _CandidateGraphs] = {}
        self.shape: tuple[int, ...] | None = None
        # the backward graph recomputes the forward, which must give the same result and change
        # no state: true of Tucker2Conv's three convolutions, not of any module a factory may build
        self.supported = all(isinstance(c, Tucker2Conv) for c in choices)
        if not self.supported:
            log.info("%s: candidates are not all Tucker2Conv modules, so they run eagerly", original)

    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        """A copy of the module runs eagerly: graphs belong to the tensors they were captured with."""
        return None

    def arm(self, on: bool) -> None:
        self.armed = on

    def take(self, x: torch.Tensor) -> bool:
        """Whether this forward of ``x`` replays (then the window is used up)."""
        if not (self.armed and self.supported and x.is_cuda and torch.is_grad_enabled()):
            return False
        self.armed = False
        if self.shape is None:
            self._allocate(x)
        return tuple(x.shape) == self.shape and x.dtype == self.x.dtype and x.device == self.x.device

    def _allocate(self, x: torch.Tensor) -> None:
        self.shape = tuple(x.shape)
        self.x = torch.zeros_like(x).requires_grad_()
        with torch.no_grad():
            out = self.original(self.x)
        self.out = torch.zeros_like(out)
        self.mse = out.new_zeros(())
        # one tensor when the input and output shapes agree: the backward graph reads the
        # incoming gradient before it writes the input gradient
        self.grad_out = self.shared.tensor(out)
        self.grad_in = self.shared.tensor(x)
        self.scale = out.new_zeros(())
        self._scale_value = 0.0

    def __call__(self, index: int, x: torch.Tensor, weight: float) -> torch.Tensor:
        """Candidate ``index``'s output for ``x``; its backward adds the gradient of ``weight * MSE(out, target)``."""
        if not self.graphs:
            self._capture_all()
        scale = 2.0 * weight / self.out.numel()
        if scale != self._scale_value:
            self.scale.fill_(scale)
            self._scale_value = scale
        return _Replay.apply(self, self.graphs[index], x, *self.choices[index].parameters())

    def _capture_all(self) -> None:
        device = self.x.device
        side = self.shared.stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for i, module in enumerate(self.choices):
                self.graphs[i] = self._capture(module)
        torch.cuda.current_stream(device).wait_stream(side)
        log.debug("captured %d candidates of %s for input %s", len(self.choices), self.original, self.shape)

    def _forward(self, module: nn.Module) -> None:
        """The candidate's output, without autograd: nothing of it is kept for the backward."""
        with torch.no_grad():
            self.out.copy_(module(self.x))

    def _backward(self, module: nn.Module) -> list[torch.Tensor]:
        """Input gradient (into ``grad_in``) and the factors' gradients, in ``module.parameters()`` order.

        The forward pass is recomputed here, from the static input, so that only the input
        and the output stay in memory between the two graphs; the recomputation costs the
        GPU a candidate's forward and the host nothing.
        """
        with torch.no_grad():
            miss = self.original(self.x).sub_(self.out)  # target - output, computed in place
            torch.div(torch.linalg.vector_norm(miss).square(), miss.numel(), out=self.mse)
            grad = torch.addcmul(self.grad_out, miss, self.scale, value=-1.0)
            del miss
        grads = torch.autograd.grad(module(self.x), [self.x, *module.parameters()], grad)
        with torch.no_grad():
            self.grad_in.copy_(grads[0])
        return list(grads[1:])

    def _capture(self, module: nn.Module) -> _CandidateGraphs:
        for _ in range(WARMUP_PASSES):
            self._forward(module)
            self._backward(module)
        torch.cuda.synchronize(self.x.device)
        param_grads = self.shared.param_grads(list(module.parameters()))
        pool = self.shared.pool(self.x.device)

        forward = torch.cuda.CUDAGraph()
        forward.capture_begin(pool=pool)
        self._forward(module)
        forward.capture_end()

        backward = torch.cuda.CUDAGraph()
        backward.capture_begin(pool=pool)
        grads = self._backward(module)
        with torch.no_grad():
            torch._foreach_copy_(param_grads, grads)
        del grads
        backward.capture_end()
        return _CandidateGraphs(forward, backward, param_grads)


class _Replay(torch.autograd.Function):
    """Autograd node around a candidate's captured forward and backward graphs.

    The factors are inputs so that autograd accumulates their gradients as usual (and skips
    them when only ``alpha``'s gradient is asked for). The gradients handed back are fresh
    copies of the backward graph's outputs, made by one multi-tensor kernel: the graphs
    overwrite their outputs on the next replay (the input gradient is shared with other
    layers), and autograd may keep what it is given (as a ``.grad``, or to accumulate into
    in place).
    """

    @staticmethod
    def forward(ctx: Any, replay: LayerReplay, graphs: _CandidateGraphs, x: torch.Tensor,
                *params: torch.Tensor) -> torch.Tensor:
        replay.x.copy_(x)
        graphs.forward.replay()
        ctx.replay, ctx.graphs, ctx.version = replay, graphs, replay.out._version
        return replay.out.detach()  # shares the version counter, so in-place changes show

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        replay, graphs = ctx.replay, ctx.graphs
        if replay.out._version != ctx.version:  # the backward graph reads the output for the target
            raise HalocError("the model changes a searched conv's output in place (e.g. ReLU(inplace=True) "
                             "right after the conv), which the CUDA-graph replay cannot follow",
                             key="cuda_graphs", fix="search with --no-cuda-graphs, or make that operation "
                                                    "out of place")
        replay.grad_out.copy_(grad)
        graphs.backward.replay()
        grads = torch._foreach_mul([replay.grad_in, *graphs.param_grads], 1.0)
        return (None, None, *grads)


def graph_pool_bytes(device: torch.device | str | int | None = None) -> int:
    """Bytes the caching allocator holds in private (CUDA-graph) pools on ``device``.

    ``torch.cuda.max_memory_allocated`` does not see them once capture is over: what a
    graph allocated is free to the allocator but reserved for the graph's replays.
    """
    index = device if isinstance(device, int) else None if device is None else torch.device(device).index
    if index is None:
        index = torch.cuda.current_device()
    return sum(seg["total_size"] for seg in torch.cuda.memory_snapshot()
               if seg["device"] == index and tuple(seg.get("segment_pool_id", (0, 0))) != (0, 0))
