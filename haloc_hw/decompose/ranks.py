"""Which Tucker-2 ranks the search chooses between, per layer.

Candidates are multiples of a step so that ranks factor well on a PE array (ranks with large
prime factors map badly, see TIMELOOP-FORMATS.md). The default step follows the layer's
narrower side ``min(C, M)``: 8 up to 64 channels, 16 up to 128, 32 above (HALOC uses
multiples of 32 for wide layers; narrow layers would otherwise get one or no candidate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from haloc_hw.errors import HalocError
from haloc_hw.workload import SUB_ROLES, ConvShape, LayerInfo, tucker2_triple


def default_step(in_channels: int, out_channels: int) -> int:
    """8 when ``min(C, M) <= 64``, 16 when ``<= 128``, else 32."""
    narrow = min(in_channels, out_channels)
    if narrow <= 64:
        return 8
    if narrow <= 128:
        return 16
    return 32


def rank_candidates(
    shape_or_channels: ConvShape | tuple[int, int],
    step: int | None = None,
    equal: bool = True,
    max_macs_ratio: float | None = None,
    include_full: bool = False,
) -> list[tuple[int, int]]:
    """Rank pairs ``(r1, r2)`` for one layer, sorted ascending.

    ``shape_or_channels`` is the layer's :class:`ConvShape` or ``(C, M)``. Ranks are the
    multiples of ``step`` (default :func:`default_step`) with ``r1 <= M`` and ``r2 <= C``;
    ``equal=True`` keeps ``r1 == r2`` (so both are bounded by ``min(C, M)``), ``equal=False``
    gives every pair. The full-rank pair ``(M, C)``, which compresses nothing, is left out
    unless ``include_full``. ``max_macs_ratio`` (needs a shape) drops pairs whose three
    sub-convolutions together have more MACs than ``ratio × `` the original layer.
    The list is empty when no multiple of the step fits.
    """
    if isinstance(shape_or_channels, ConvShape):
        shape: ConvShape | None = shape_or_channels
        in_ch, out_ch = shape.C, shape.M
        if shape.G != 1:
            raise HalocError(f"a grouped convolution (G={shape.G}) has no rank candidates", key="G")
    else:
        shape = None
        try:
            in_ch, out_ch = (int(v) for v in shape_or_channels)
        except (TypeError, ValueError):
            raise HalocError(
                f"expected a ConvShape or (C, M), got {shape_or_channels!r}", key="shape", fix="pass layer.shape"
            ) from None
        if in_ch < 1 or out_ch < 1:
            raise HalocError(f"channels must be positive, got C={in_ch}, M={out_ch}", key="shape")
    if step is None:
        step = default_step(in_ch, out_ch)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise HalocError(f"rank step must be a positive integer, got {step!r}", key="step", fix="use e.g. 8, 16 or 32")
    if max_macs_ratio is not None:
        if shape is None:
            raise HalocError("max_macs_ratio needs the layer's ConvShape, not only (C, M)", key="max_macs_ratio")
        if max_macs_ratio <= 0:
            raise HalocError(f"max_macs_ratio must be positive, got {max_macs_ratio}", key="max_macs_ratio")
    out_ranks = range(step, out_ch + 1, step)
    in_ranks = range(step, in_ch + 1, step)
    if equal:
        pairs = [(r, r) for r in range(step, min(in_ch, out_ch) + 1, step)]
    else:
        pairs = [(r1, r2) for r1 in out_ranks for r2 in in_ranks]
    if include_full and (out_ch, in_ch) not in pairs and (not equal or in_ch == out_ch):
        pairs.append((out_ch, in_ch))
    if not include_full:
        pairs = [p for p in pairs if p != (out_ch, in_ch)]
    if max_macs_ratio is not None and shape is not None:
        limit = max_macs_ratio * shape.macs
        pairs = [p for p in pairs if sum(s.macs for s in tucker2_triple(shape, *p)) <= limit]
    return sorted(pairs)


@dataclass(frozen=True)
class WorkloadRow:
    """One convolution to cost: an original layer (``role="original"``, no ranks) or one
    sub-convolution (``in``/``core``/``out``) of a Tucker-2 candidate ``(r1, r2)`` of it."""

    layer: str
    role: str
    shape: ConvShape
    r1: int | None = None
    r2: int | None = None


def candidate_workloads(
    layers: Sequence[LayerInfo],
    step: int | None = None,
    equal: bool = True,
    max_macs_ratio: float | None = None,
    include_full: bool = False,
) -> list[WorkloadRow]:
    """Every layer as it is, then for each decomposable one the triple of every candidate.

    This is the full set of workloads a cost table for the search needs; identical shapes
    repeat across rows (callers dedupe by ``shape`` or ``shape.key``).
    """
    rows: list[WorkloadRow] = []
    for layer in layers:
        rows.append(WorkloadRow(layer.name, "original", layer.shape))
        if not layer.decomposable:
            continue
        for r1, r2 in rank_candidates(layer.shape, step=step, equal=equal, max_macs_ratio=max_macs_ratio, include_full=include_full):
            for role, sub in zip(SUB_ROLES, tucker2_triple(layer.shape, r1, r2)):
                rows.append(WorkloadRow(layer.name, role, sub, r1, r2))
    return rows
