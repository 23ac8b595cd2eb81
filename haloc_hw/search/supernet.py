"""The over-parameterised network of HALOC: every decomposable conv becomes a choice of ranks.

:class:`RankChoiceConv` keeps the trained convolution (frozen; it only produces the
feature-map target) and one Tucker-2 module per rank candidate, each initialised by the
Tucker-2 decomposition of the trained weight. Its architecture parameters ``alpha`` give the
candidate probabilities ``p = softmax(alpha)``.

One candidate per layer runs with gradient in a forward pass, so memory stays close to that
of a single network (see :mod:`haloc_hw.search.search` for the gradient path to ``alpha``):

* ``set_path(index)`` — weight step: the given candidate runs, ``alpha`` gets no gradient.
* ``set_gumbel(index, weight, other, other_weight)`` — architecture step: the sampled
  candidate runs and its output is scaled by its straight-through Gumbel gate ``weight`` (1 in
  the forward pass), which routes the loss gradient to ``alpha``; ``other``, when given, runs
  without gradient behind ``other_weight`` (0 in the forward pass) so the gradient compares
  the two.

The feature-map target is the *original* conv applied to the same input the layer receives
inside the supernet (computed without gradient). Each candidate therefore learns to
reproduce the trained layer locally, and no second forward pass through a separate copy of
the model is needed. The gradient of ``weight * MSE(candidate output, target)`` is added to
the output's gradient by a hook (``2 * weight / N * (out - target)``, what autograd would
compute for the loss term) instead of building a loss node per layer: the same gradients
with fewer kernels and autograd nodes, which matters when launches bound the step.

On a GPU, :meth:`Supernet.use_cuda_graphs` replays the sampled candidate of each layer from
CUDA graphs instead (inside :meth:`Supernet.replay_window`, see :mod:`haloc_hw.search.graphs`);
the target, the MSE and its gradient are then part of the captured backward.
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from haloc_hw.decompose.layers import Tucker2Conv, replace_submodule
from haloc_hw.errors import HalocError
from haloc_hw.rankspace import Rank
from haloc_hw.search.graphs import LayerReplay, SharedReplayMemory

log = logging.getLogger(__name__)

#: Builds the decomposed module of ``conv`` at ranks (r1 = output side, r2 = input side).
CandidateFactory = Callable[[nn.Conv2d, int, int], nn.Module]


def default_factory(conv: nn.Conv2d, r1: int, r2: int) -> nn.Module:
    """Tucker-2 module initialised from the trained weight by HOSVD (``haloc_hw.decompose``).

    No HOOI refinement: a supernet decomposes every candidate of every layer, the search
    trains all of them towards the original feature maps anyway, and HOSVD is ~5x faster.
    """
    return Tucker2Conv.from_conv(conv, r1, r2, n_iter=0)


class RankChoiceConv(nn.Module):
    """One decomposable conv with its rank candidates and their architecture parameters."""

    def __init__(self, conv: nn.Conv2d, candidates: Sequence[Rank], factory: CandidateFactory | None = None) -> None:
        super().__init__()
        if not candidates:
            raise HalocError("a layer needs at least one rank candidate", key="candidates", fix="give (r1, r2) pairs")
        factory = factory or default_factory
        self.candidates: list[Rank] = [(int(r1), int(r2)) for r1, r2 in candidates]
        self.original = conv
        for param in self.original.parameters():
            param.requires_grad_(False)
        self.choices = nn.ModuleList(factory(conv, r1, r2) for r1, r2 in self.candidates)
        self.alpha = nn.Parameter(torch.zeros(len(self.candidates)))
        self._index: int | None = None
        self._gate: torch.Tensor | None = None
        self._other: int | None = None
        self._other_gate: torch.Tensor | None = None
        self.track_target = False
        self.feature_weight = 0.0
        # the last forward's candidate output - target (eager), or the replay's MSE (written by its backward)
        self.feature_diff: torch.Tensor | None = None
        self.feature_mse: torch.Tensor | None = None
        self.replay: LayerReplay | None = None  # CUDA-graph replay of the candidates (Supernet.use_cuda_graphs)

    # -- path selection -------------------------------------------------------------------
    def set_path(self, index: int | None) -> None:
        """Run candidate ``index`` (no alpha gradient); ``None`` runs the argmax candidate."""
        self._index = index
        self._gate = None
        self._other = None
        self._other_gate = None

    def set_gumbel(self, index: int, weight: torch.Tensor, other: int | None = None,
                   other_weight: torch.Tensor | None = None) -> None:
        """Run candidate ``index`` scaled by ``weight``, its straight-through Gumbel gate (1 in the forward pass).

        With ``other``, that candidate's output (computed without gradient) is added times
        ``other_weight``, its gate, which is 0 in the forward pass. Its gradient
        <dL/dout, out_other> compares the two candidates to first order. This matters because
        a conv followed by BatchNorm is scale-invariant: the gradient of the running
        candidate's own gate, <dL/dout, out_index>, is about zero there and carries no
        preference.
        """
        if (other is None) != (other_weight is None):
            raise HalocError("set_gumbel needs other and other_weight together", key="other")
        self._index = index
        self._gate = weight
        self._other = other
        self._other_gate = other_weight

    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.alpha, dim=0)

    def argmax_index(self) -> int:
        return int(torch.argmax(self.alpha.detach()).item())

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = self.argmax_index() if self._index is None else self._index
        weight = self.feature_weight if self.track_target else 0.0
        replayed = self.replay is not None and self.replay.take(x)
        if replayed:  # the target, its MSE and gradient are part of the captured backward
            out = self.replay(index, x, weight)
            if self.track_target:
                self.feature_mse = self.replay.mse
        else:
            out = self.choices[index](x)
        if self._gate is not None:
            out = out * self._gate
            if self._other is not None:
                with torch.no_grad():
                    alt = self.choices[self._other](x)
                out = out + self._other_gate * alt
        if self.track_target and not replayed:
            with torch.no_grad():
                diff = out.detach() - self.original(x)
            self.feature_diff = diff
            if weight and out.requires_grad:
                scale = 2.0 * weight / diff.numel()
                out.register_hook(lambda grad: grad.add(diff, alpha=scale))
        return out

    def extra_repr(self) -> str:
        return f"candidates={self.candidates}"


class Supernet(nn.Module):
    """A copy of ``model`` whose listed convs are :class:`RankChoiceConv` modules.

    ``candidates`` maps module names (``model.named_modules()``) to (r1, r2) lists. Grouped
    and depthwise convs are never replaced: Tucker-2 of a grouped kernel does not give the
    three dense convs the cost table prices; they are listed in :attr:`skipped` with the
    reason and logged.
    """

    def __init__(
        self, model: nn.Module, candidates: Mapping[str, Sequence[Rank]], factory: CandidateFactory | None = None
    ) -> None:
        super().__init__()
        self.net = copy.deepcopy(model)
        self.skipped: dict[str, str] = {}
        self._names: list[str] = []
        modules = dict(self.net.named_modules())
        for name, cands in candidates.items():
            conv = modules.get(name)
            if conv is None:
                raise HalocError(f"model has no module '{name}'", key=name, fix="use names from model.named_modules()")
            if not isinstance(conv, nn.Conv2d):
                raise HalocError(f"'{name}' is a {type(conv).__name__}, not a Conv2d", key=name,
                                 fix="list only convolution layers as decomposable")
            if conv.groups != 1:
                self.skipped[name] = f"grouped/depthwise conv (groups={conv.groups}) is not Tucker-2 decomposed"
                continue
            for r1, r2 in cands:
                if not (1 <= r1 <= conv.out_channels and 1 <= r2 <= conv.in_channels):
                    raise HalocError(
                        f"rank ({r1}, {r2}) does not fit {name} ({conv.in_channels}->{conv.out_channels} channels)",
                        key=name, fix="use 1 <= r1 <= out_channels and 1 <= r2 <= in_channels")
            replace_submodule(self.net, name, RankChoiceConv(conv, cands, factory))
            self._names.append(name)
        for name, module in modules.items():
            if isinstance(module, nn.Conv2d) and name not in candidates:
                self.skipped.setdefault(name, "no rank candidates (not decomposable or not in the cost table)")
        for name, why in self.skipped.items():
            log.info("supernet keeps %s as is: %s", name, why)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- structure ------------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        return list(self._names)

    def choice_layers(self) -> dict[str, RankChoiceConv]:
        """Searched layers by name, in model order (looked up once; the search calls this every step)."""
        cached = self.__dict__.get("_choice_cache")
        if cached is None:
            cached = {name: self.net.get_submodule(name) for name in self._names}
            self.__dict__["_choice_cache"] = cached
        return dict(cached)  # type: ignore[arg-type]

    def candidates(self) -> dict[str, list[Rank]]:
        return {name: list(layer.candidates) for name, layer in self.choice_layers().items()}

    def arch_parameters(self) -> list[nn.Parameter]:
        return [layer.alpha for layer in self.choice_layers().values()]

    def arch_parameter_names(self) -> list[str]:
        """State-dict names of the alphas (for DDP's ignore list)."""
        return [f"net.{name}.alpha" for name in self._names]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Trainable weights: candidate factors, BN, classifier; not alpha, not the frozen originals."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in arch]

    # -- modes ----------------------------------------------------------------------------
    def set_paths(self, indices: Mapping[str, int] | None) -> None:
        layers = self.choice_layers()
        for name, layer in layers.items():
            layer.set_path(None if indices is None else indices[name])

    def use_cuda_graphs(self, on: bool) -> None:
        """Replay each sampled candidate from CUDA graphs inside :meth:`replay_window` (see :mod:`.graphs`).

        A layer captures all its candidates the first time it replays, and keeps them while
        this stays on (turning it on again keeps them). Off, or moving the module (``.to``,
        ``.cuda``, ...), drops every graph and frees its memory.
        """
        layers = self.choice_layers().values()
        if not on:
            captured = any(layer.replay is not None and layer.replay.graphs for layer in layers)
            for layer in layers:
                layer.replay = None
            if captured:  # the pool of destroyed graphs is reserved until the cache is emptied
                torch.cuda.empty_cache()
            return
        if all(layer.replay is not None for layer in layers):
            return
        largest = max(sum(p.numel() for p in c.parameters()) for layer in layers for c in layer.choices)
        shared = SharedReplayMemory(largest)
        for layer in layers:
            layer.replay = LayerReplay(layer.original, layer.choices, shared)

    def _apply(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Moving or casting the tensors (``.to`` and friends) drops the graphs, which hold the old ones."""
        self.use_cuda_graphs(False)
        return super()._apply(fn, *args, **kwargs)

    @contextmanager
    def replay_window(self) -> Iterator[None]:
        """One step's forward and backward: each layer's first forward in it may replay its candidate's graphs."""
        replays = [layer.replay for layer in self.choice_layers().values() if layer.replay is not None]
        for replay in replays:
            replay.arm(True)
        try:
            yield
        finally:
            for replay in replays:
                replay.arm(False)

    def track_targets(self, on: bool, weight: float = 0.0) -> None:
        """Compare every layer's output with its original conv's; ``weight`` > 0 also trains towards it.

        With ``weight``, the backward pass of every later loss gets the gradient of
        ``weight * sum_i MSE_i`` added, as if that term were part of the loss.
        """
        for layer in self.choice_layers().values():
            layer.track_target = on
            layer.feature_weight = weight if on else 0.0
            layer.feature_diff = None
            layer.feature_mse = None

    def feature_loss(self) -> torch.Tensor:
        """Sum over layers of the MSE between the candidate's and the original conv's output (no gradient).

        After the backward pass: a replayed layer's MSE is written by its backward graph.
        """
        layers = self.choice_layers().values()
        diffs = [layer.feature_diff for layer in layers if layer.feature_diff is not None]
        terms = [layer.feature_mse for layer in layers if layer.feature_mse is not None]
        if diffs:
            # one multi-tensor kernel for all layers' norms (the optimisers' own helper), then
            # MSE_i = ||d_i||^2 / numel_i
            norms = torch._foreach_mul(torch._foreach_norm(diffs), [d.numel() ** -0.5 for d in diffs])
            terms.append(torch.stack(norms).square().sum())
        if not terms:
            return torch.zeros(())
        return torch.stack(terms).sum() if len(terms) > 1 else terms[0]

    # -- results --------------------------------------------------------------------------
    def probabilities(self) -> dict[str, torch.Tensor]:
        return {name: layer.probabilities().detach() for name, layer in self.choice_layers().items()}

    def argmax_ranks(self) -> dict[str, Rank]:
        return {name: layer.candidates[layer.argmax_index()] for name, layer in self.choice_layers().items()}

    def export_compressed(self, ranks: Mapping[str, Rank] | None = None) -> nn.Module:
        """The plain network with each searched conv replaced by its chosen candidate's *trained* factors.

        ``ranks`` defaults to :meth:`argmax_ranks`; any rank given must be one of the layer's
        candidates. A searched layer missing from ``ranks`` (one the plan kept, see
        :func:`haloc_hw.rankspace.make_plan`) gets its original conv back. Nothing is re-decomposed.
        """
        ranks = dict(ranks) if ranks is not None else self.argmax_ranks()
        net = copy.deepcopy(self.net)
        for name in self._names:
            layer: RankChoiceConv = net.get_submodule(name)  # type: ignore[assignment]
            if name not in ranks:
                for param in layer.original.parameters():  # frozen as the search's target; trainable again
                    param.requires_grad_(True)
                replace_submodule(net, name, layer.original)
                continue
            rank = tuple(int(v) for v in ranks[name])
            if rank not in layer.candidates:
                raise HalocError(f"rank {rank} is not a candidate of {name}", key=name, fix=f"use one of {layer.candidates}")
            chosen = layer.choices[layer.candidates.index(rank)]
            for param in chosen.parameters():
                param.requires_grad_(True)
            replace_submodule(net, name, chosen)
        return net
