"""The Tucker-2 convolution module and whole-model decomposition.

:class:`Tucker2Conv` replaces one ``nn.Conv2d`` by three: a 1×1 projection of the input
channels onto ``r2`` components, the original spatial kernel between the ``r2`` and ``r1``
components (keeping stride, padding, dilation and padding mode), and a 1×1 expansion to the
output channels carrying the original bias. Because the first convolution is a bias-free
pointwise channel mix, padding commutes with it and the composition equals a convolution
with the recomposed weight.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

import torch
from torch import nn

from haloc_hw.decompose.tucker import DEFAULT_HOOI_ITERATIONS, check_ranks, tucker2, tucker2_reconstruct
from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)


class Tucker2Conv(nn.Module):
    """Three convolutions standing for one Tucker-2 decomposed ``Conv2d``.

    Children: ``in_conv`` (1×1, C→r2, no bias), ``core_conv`` (kh×kw, r2→r1, the original
    stride/padding/dilation, no bias), ``out_conv`` (1×1, r1→M, the original bias).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        r1: int,
        r2: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        check_ranks((out_channels, in_channels, *ks), r1, r2)
        self.in_conv = nn.Conv2d(in_channels, r2, 1, bias=False)
        self.core_conv = nn.Conv2d(
            r2, r1, ks, stride=stride, padding=padding, dilation=dilation, bias=False, padding_mode=padding_mode
        )
        self.out_conv = nn.Conv2d(r1, out_channels, 1, bias=bias)

    @property
    def ranks(self) -> tuple[int, int]:
        """``(r1, r2)``: output-side rank, input-side rank."""
        return self.core_conv.out_channels, self.core_conv.in_channels

    @property
    def in_channels(self) -> int:
        return self.in_conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.out_conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_conv(self.core_conv(self.in_conv(x)))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, r1: int, r2: int, n_iter: int = DEFAULT_HOOI_ITERATIONS) -> Tucker2Conv:
        """Decompose ``conv`` (groups == 1) with ranks ``(r1, r2)``; same device and dtype."""
        if not isinstance(conv, nn.Conv2d):
            raise HalocError(f"can only decompose nn.Conv2d, got {type(conv).__name__}", key="conv")
        if conv.groups != 1:
            raise HalocError(
                f"cannot Tucker-2 decompose a grouped convolution (groups={conv.groups})",
                key="groups",
                fix="leave grouped and depthwise convolutions undecomposed",
            )
        core, u_out, u_in = tucker2(conv.weight.detach(), r1, r2, n_iter=n_iter)
        module = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            r1,
            r2,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            module.in_conv.weight.copy_(u_in.T[:, :, None, None])
            module.core_conv.weight.copy_(core)
            module.out_conv.weight.copy_(u_out[:, :, None, None])
            if conv.bias is not None:
                module.out_conv.bias.copy_(conv.bias.detach())
        module.train(conv.training)
        return module

    def to_conv(self) -> nn.Conv2d:
        """The single ``Conv2d`` with the recomposed weight (for tests and export checks)."""
        core = self.core_conv
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            core.kernel_size,
            stride=core.stride,
            padding=core.padding,
            dilation=core.dilation,
            bias=self.out_conv.bias is not None,
            padding_mode=core.padding_mode,
        ).to(device=core.weight.device, dtype=core.weight.dtype)
        with torch.no_grad():
            weight = tucker2_reconstruct(core.weight, self.out_conv.weight[:, :, 0, 0], self.in_conv.weight[:, :, 0, 0].T)
            conv.weight.copy_(weight)
            if conv.bias is not None:
                conv.bias.copy_(self.out_conv.bias)
        return conv

    def extra_repr(self) -> str:
        r1, r2 = self.ranks
        return f"ranks=(r1={r1}, r2={r2})"


def replace_submodule(root: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Put ``module`` at the dotted path ``name`` (e.g. ``"layer1.0.conv1"``) of ``root``.

    Returns the module it replaced. Shared by :func:`decompose_model` and the search's
    supernet, which swap convolutions in place by the names :func:`extract_shapes` reports.
    """
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = getattr(parent, child)
    setattr(parent, child, module)
    return old


def decompose_model(
    model: nn.Module,
    ranks: Mapping[str, tuple[int, int]],
    n_iter: int = DEFAULT_HOOI_ITERATIONS,
) -> nn.Module:
    """A deep copy of ``model`` with each named ``Conv2d`` replaced by a :class:`Tucker2Conv`.

    ``ranks`` maps module paths (as in :func:`haloc_hw.workload.extract_shapes`, e.g.
    ``"layer1.0.conv1"``) to ``(r1, r2)``. The input model is not modified. Unknown names,
    non-convolutions and bad ranks raise :class:`HalocError` before anything is built.
    """
    modules = dict(model.named_modules())
    for name, pair in ranks.items():
        module = modules.get(name)
        if module is None or name == "":
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            shown = ", ".join(convs[:8]) + (" ..." if len(convs) > 8 else "")
            raise HalocError(f"the model has no module '{name}'", key="ranks", fix=f"use conv names such as {shown}")
        if not isinstance(module, nn.Conv2d) or module.groups != 1:
            raise HalocError(
                f"module '{name}' is a {type(module).__name__}"
                + (f" with groups={module.groups}" if isinstance(module, nn.Conv2d) else "")
                + ", not a plain Conv2d",
                key="ranks",
                fix="decompose only Conv2d layers with groups == 1",
            )
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise HalocError(f"ranks for '{name}' must be a pair (r1, r2), got {pair!r}", key="ranks")
        try:
            check_ranks(tuple(module.weight.shape), pair[0], pair[1])
        except HalocError as err:
            raise HalocError(f"layer '{name}': {err.message}", key=f"ranks.{name}", fix=err.fix) from None
    new = copy.deepcopy(model)
    for name, (r1, r2) in ranks.items():
        conv = new.get_submodule(name)
        replace_submodule(new, name, Tucker2Conv.from_conv(conv, r1, r2, n_iter=n_iter))
        log.debug("decomposed %s with ranks (%d, %d)", name, r1, r2)
    return new
