"""Every searched layer's ``alpha`` as one padded matrix, so each step costs a few kernels.

On a GPU a ResNet-20-sized search is bound by kernel launches, not arithmetic: a softmax,
a Gumbel sample and a cost dot product per layer add up to hundreds of tiny launches per
step. :class:`AlphaMatrix` gathers the layers' alphas into one ``[layers, max candidates]``
matrix (missing candidates are ``-inf``, probability 0), so the probabilities, the
straight-through Gumbel gates and the expected cost are a handful of batched operations,
and sampling happens on a host copy that is refreshed once per architecture step.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from haloc_hw.cost.metric import get_metric
from haloc_hw.search.supernet import RankChoiceConv


class AlphaMatrix:
    """Padded view of the alphas of ``layers`` and the cost of every candidate.

    ``cost_vectors[name]`` is a ``[candidates, components]`` tensor (one component, or
    energy and cycles for EDP); ``fixed`` the components of every layer that is not searched.
    """

    def __init__(self, layers: Mapping[str, RankChoiceConv], cost_vectors: Mapping[str, torch.Tensor],
                 fixed: torch.Tensor, metric: str) -> None:
        self.names = list(layers)
        self.layers: list[RankChoiceConv] = [layers[n] for n in self.names]
        self.sizes = [layer.alpha.numel() for layer in self.layers]
        self.metric = metric
        self._metric = get_metric(metric)  # how the components combine (EDP: energy x cycles)
        device = self.layers[0].alpha.device
        rows, width = len(self.sizes), max(self.sizes)
        total = sum(self.sizes)
        index = torch.full((rows, width), total, dtype=torch.long)  # ``total`` points at the -inf pad
        costs = torch.zeros(rows, width, fixed.numel(), dtype=torch.float64)
        offset = 0
        for row, (name, size) in enumerate(zip(self.names, self.sizes)):
            index[row, :size] = torch.arange(offset, offset + size)
            costs[row, :size] = cost_vectors[name].detach().to("cpu", torch.float64)
            offset += size
        self.valid = index < total  # host mask of real candidates
        self._index = index.to(device)
        self._pad = torch.full((1,), float("-inf"), device=device)
        self._costs = costs.to(device)
        self._fixed = fixed.detach().to(device, torch.float64)
        self.host = torch.empty(rows, width)
        self.host_p = torch.empty(rows, width)
        self.refresh()

    # -- differentiable views --------------------------------------------------------------
    def padded(self) -> torch.Tensor:
        """``[layers, max candidates]`` alphas (``-inf`` where a layer has fewer candidates)."""
        flat = torch.cat([layer.alpha for layer in self.layers] + [self._pad.to(self.layers[0].alpha)])
        return flat[self._index]

    def expected_cost(self, probs: torch.Tensor) -> torch.Tensor:
        """Whole-model cost under ``probs`` (``[layers, max candidates]``): fixed + sum of p . cost."""
        comps = self._fixed + torch.einsum("lk,lkc->c", probs.to(torch.float64), self._costs)
        return self._metric.combine(comps)

    # -- host side -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Copy the alphas to the host (one transfer) and keep their softmax; call after every change of alpha."""
        with torch.no_grad():
            self.host = self.padded().detach().float().cpu()
        # kept because a weight step samples from it and alpha changes only in architecture
        # steps: even a tiny softmax costs the host ~0.1-0.5 ms when it wakes the CPU threads
        self.host_p = torch.softmax(self.host, dim=1)

    def host_probabilities(self) -> torch.Tensor:
        return self.host_p

    def finite(self) -> bool:
        return bool(torch.isfinite(self.host[self.valid]).all())

    def sample(self, generator: torch.Generator) -> list[int]:
        """One candidate index per layer, drawn from p (host only, no device work)."""
        return torch.multinomial(self.host_probabilities(), 1, generator=generator).squeeze(1).tolist()

    def gumbel_gates(self, padded: torch.Tensor, generator: torch.Generator, tau: float,
                     compare: bool) -> list[tuple[int, torch.Tensor, int | None, torch.Tensor | None]]:
        """Per layer: the sampled index, its straight-through Gumbel gate, a second index and its gate.

        ``padded`` is :meth:`padded` (differentiable). The gate is 1 in the forward pass and
        carries the soft sample's gradient; the second candidate is drawn from p without the
        sampled one and its gate is 0 in the forward pass (``None`` for a layer with one
        candidate, or when ``compare`` is off). The sampled index is the argmax of
        alpha + Gumbel noise (softmax and 1/tau keep the order), found on the host so no
        device sync is needed; all gates come out of one gather.
        """
        rows = len(self.sizes)
        u = torch.rand(self.host.shape, generator=generator)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))
        index = torch.argmax(self.host + gumbel, dim=1)
        other = index.clone()  # a layer without a second candidate gathers its own gate, unused
        if compare:
            rest = torch.where(self.valid, self.host_probabilities().clamp_min(1e-12), 0.0)
            rest[torch.arange(rows), index] = 0.0
            several = torch.tensor([size > 1 for size in self.sizes])
            if bool(several.any()):
                other[several] = torch.multinomial(rest[several], 1, generator=generator).squeeze(1)
        soft = torch.softmax((padded + gumbel.to(padded)) / tau, dim=1)
        hard = F.one_hot(index, self.host.shape[1]).to(soft)
        gates = hard - soft.detach() + soft
        picked = gates[torch.arange(rows).repeat(2), torch.cat([index, other]).to(gates.device)].unbind(0)
        out = []
        for row in range(rows):
            has_other = compare and self.sizes[row] > 1
            out.append((int(index[row]), picked[row], int(other[row]) if has_other else None,
                        picked[rows + row] if has_other else None))
        return out

    def rows(self, values: Sequence[int]) -> dict[str, int]:
        return dict(zip(self.names, (int(v) for v in values)))
