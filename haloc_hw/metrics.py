"""Counting the arithmetic and the parameters of a model, the way compression papers report them.

Convention: **FLOPs = MACs.** Like the tables of HALOC and most CNN-compression papers
(ResNet-20 on CIFAR-10 is "41M FLOPs", ResNet-18 on ImageNet "1.82G FLOPs"), one
multiply-accumulate counts as one FLOP. Only convolutions and fully connected layers are
counted: batch norm, activations, pooling, additions and biases are ignored, as in those
tables. Multiply by two for the "2 x MACs" convention.

MACs come from forward hooks on every ``nn.Conv1d/2d/3d`` and ``nn.Linear`` (so a
Tucker-2 block counts its three convolutions), measured on one sample of ``input_size``.
Parameters are every trainable-or-not parameter of the model (weights, biases, BN affine),
which is how parameter counts are usually reported; buffers (BN running stats) are not.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _conv_macs(module: nn.Conv1d | nn.Conv2d | nn.Conv3d, out: torch.Tensor) -> int:
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return int(out[0].numel()) * per_output  # one sample


def _linear_macs(module: nn.Linear, out: torch.Tensor) -> int:
    # All leading dims except the batch repeat the matrix-vector product.
    return int(out[0].numel()) * module.in_features


def count_flops_params(model: nn.Module, input_size: Sequence[int]) -> tuple[int, int]:
    """Return ``(macs, params)`` for one sample; FLOPs are reported as MACs (see module doc).

    ``input_size`` is the per-sample shape ``(C, H, W)``; a leading batch dimension
    ``(N, C, H, W)`` is accepted and ignored (the count is always per sample).
    """
    shape = tuple(int(v) for v in input_size)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) < 1:
        raise ValueError(f"input_size must be (C, H, W), got {tuple(input_size)}")
    total = 0

    def hook(module: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, _CONVS):
            total += _conv_macs(module, out)
        elif isinstance(module, nn.Linear):
            total += _linear_macs(module, out)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (*_CONVS, nn.Linear))]
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return total, params
