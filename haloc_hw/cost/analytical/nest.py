"""Mapping structure and the loop nest it induces, as Timeloop 3.0.3 builds it.

A mapper evaluates many mappings that share one *structure* (which level keeps which
data space, the loop order of every level, the X/Y split of every spatial level) and
differ only in loop factors. :class:`MappingStructure` is that shared part plus the
ordered list of factor *slots*; one mapping is then a row of integers, one per slot, and
a batch is a ``(B, n_slots)`` array. :class:`CompiledNest` turns a structure and a layer
into the index tables the vectorised model needs (loops innermost first, levels innermost
first as Timeloop numbers them, data-space projections).

The nest follows Timeloop's construction: for every storage level, innermost first, its
spatial loops (permutation order; the first ``split`` positions of the *full* permutation
are X, the rest Y) and then its temporal loops (permutation order). Permutations are
innermost first; dimensions missing from a permutation are appended in problem order.
Loops of bound 1 change nothing in the closed-form rules, so they are kept as ordinary
loops whose factor happens to be 1 (the model masks them where it matters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from haloc_hw.errors import HalocError
from haloc_hw.spec.mapping import Directive, Mapping
from haloc_hw.problem import Workload, as_problem
from haloc_hw.spec.model import DATA_SPACES, Architecture

SlotKind = Literal["temporal", "spatial"]


@dataclass(frozen=True)
class Slot:
    """One free loop factor: the factor of ``dim`` in ``level``'s temporal or spatial loops."""

    level: str
    kind: SlotKind
    dim: str


@dataclass(frozen=True)
class MappingStructure:
    """Everything about a mapping except its loop factors.

    Per level (outermost first, in the architecture's order): ``temporal_perm`` is the full
    temporal permutation (innermost first), ``spatial_perm``/``split`` the full spatial
    permutation and X/Y split (``None``/0 for levels without fan-out), ``keep`` the data
    spaces the level keeps. ``slots`` orders the factor columns of a batch; a (level, kind,
    dim) that has no slot has factor 1.
    """

    levels: tuple[str, ...]
    dims: tuple[str, ...]
    temporal_perm: tuple[str, ...]
    spatial_perm: tuple[str | None, ...]
    split: tuple[int, ...]
    keep: tuple[frozenset[str], ...]
    slots: tuple[Slot, ...]
    spaces: tuple[str, ...] = DATA_SPACES  # the problem's data spaces (for keep/bypass lists)

    def slot_index(self, level: str, kind: SlotKind, dim: str) -> int | None:
        """Column of a slot in a factor row, or ``None`` when the factor is fixed to 1."""
        for i, slot in enumerate(self.slots):
            if slot.level == level and slot.kind == kind and slot.dim == dim:
                return i
        return None

    def with_slots(self, slots: tuple[Slot, ...]) -> "MappingStructure":
        """The same structure with another slot list (e.g. only the factors a mapper varies)."""
        return MappingStructure(self.levels, self.dims, self.temporal_perm, self.spatial_perm,
                                self.split, self.keep, tuple(slots), self.spaces)


def full_permutation(perm: str | None, dims: tuple[str, ...], *, where: str) -> str:
    """Complete a permutation (innermost first) by appending missing dims in problem order."""
    perm = (perm or "").replace(" ", "").replace("_", "")
    for ch in perm:
        if ch not in dims:
            raise HalocError(f"permutation '{perm}' names dimension '{ch}', which the problem does not have",
                             key=where, fix=f"use only {''.join(dims)}")
    if len(set(perm)) != len(perm):
        raise HalocError(f"permutation '{perm}' repeats a dimension", key=where, fix="name each dimension once")
    return perm + "".join(d for d in dims if d not in perm)


def _default_keep(arch: Architecture, i: int, spaces: tuple[str, ...] = DATA_SPACES) -> frozenset[str]:
    """Timeloop keeps everything where no datatype directive says otherwise; fan-out-only nodes keep nothing."""
    return frozenset() if arch.levels[i].fanout_only else frozenset(spaces)


def has_fanout(arch: Architecture, i: int) -> bool:
    fx, fy = arch.fanout(i)
    return fx * fy > 1


def structure_from_mapping(mapping: Mapping, arch: Architecture,
                           shape: Workload) -> tuple[MappingStructure, np.ndarray]:
    """Split a complete mapping into its structure and its factor row (int64, one per slot).

    Slots cover every problem dimension of every level's temporal loops and, for levels
    with fan-out, of their spatial loops, in level order (outermost first), temporal before
    spatial, dims in problem order. Unknown level names raise :class:`HalocError`.
    """
    problem = as_problem(shape)
    dims = tuple(problem.dims)
    spaces = problem.space_names
    names = arch.level_names
    for d in mapping.directives:
        if d.target not in names:
            raise HalocError(f"mapping targets unknown level '{d.target}'", key=f"mapping.{d.target}",
                             fix=f"use one of {', '.join(names)}")
        for dim, f in d.factors.items():
            if dim not in dims and int(f) != 1:
                raise HalocError(f"factor {dim}{f} at '{d.target}' names a dimension the problem does not have",
                                 key=f"mapping.{d.target}.{d.type}.factors", fix=f"use only {''.join(dims)}")
            if int(f) < 1:
                raise HalocError(f"factor {dim}{f} at '{d.target}' must be a positive integer",
                                 key=f"mapping.{d.target}.{d.type}.factors", fix="use factors >= 1")

    temporal_perm: list[str] = []
    spatial_perm: list[str | None] = []
    split: list[int] = []
    keep: list[frozenset[str]] = []
    slots: list[Slot] = []
    values: list[int] = []
    for i, name in enumerate(names):
        t = mapping.get(name, "temporal")
        sp = mapping.get(name, "spatial")
        dt = mapping.get(name, "datatype")
        temporal_perm.append(full_permutation(t.permutation if t else None, dims,
                                              where=key_where(name, "temporal")))
        fan = has_fanout(arch, i)
        if sp is not None and not fan and any(int(v) != 1 for v in sp.factors.values()):
            raise HalocError(f"level '{name}' has no spatial fan-out but the mapping gives it spatial factors",
                             key=f"mapping.{name}.spatial", fix="move those factors to a level with fan-out")
        if fan:
            spatial_perm.append(full_permutation(sp.permutation if sp else None, dims,
                                                 where=key_where(name, "spatial")))
            split.append(len(dims) if sp is None or sp.split is None else int(sp.split))
        else:
            spatial_perm.append(None)
            split.append(0)
        keep.append(_keep_of(dt, arch, i, spaces))
        for d in dims:
            slots.append(Slot(name, "temporal", d))
            values.append(int(t.factors.get(d, 1)) if t else 1)
        if fan:
            for d in dims:
                slots.append(Slot(name, "spatial", d))
                values.append(int(sp.factors.get(d, 1)) if sp else 1)
    structure = MappingStructure(tuple(names), dims, tuple(temporal_perm), tuple(spatial_perm),
                                 tuple(split), tuple(keep), tuple(slots), spaces)
    return structure, np.asarray(values, dtype=np.int64)


def key_where(level: str, kind: str) -> str:
    return f"mapping.{level}.{kind}.permutation"


def _keep_of(dt: Directive | None, arch: Architecture, i: int,
             spaces: tuple[str, ...] = DATA_SPACES) -> frozenset[str]:
    if dt is None:
        return _default_keep(arch, i, spaces)
    for group in (dt.keep or (), dt.bypass or ()):
        for ds in group:
            if ds not in spaces:
                raise HalocError(f"datatype directive at '{arch.levels[i].name}' names unknown data space '{ds}'",
                                 key=f"mapping.{arch.levels[i].name}.datatype",
                                 fix=f"use {', '.join(spaces)}")
    if dt.keep is not None:
        return frozenset(dt.keep)
    if dt.bypass is not None:
        return _default_keep(arch, i, spaces) - frozenset(dt.bypass)
    return _default_keep(arch, i, spaces)


def mapping_from_structure(structure: MappingStructure, factors_row: np.ndarray | list[int]) -> Mapping:
    """Rebuild a complete :class:`Mapping` (all factors, full permutations) from one row."""
    row = [int(v) for v in np.asarray(factors_row).reshape(-1)]
    if len(row) != len(structure.slots):
        raise HalocError(f"factor row has {len(row)} values but the structure has {len(structure.slots)} slots",
                         key="factors", fix="pass one value per slot")
    fac: dict[tuple[str, str, str], int] = {}
    for slot, v in zip(structure.slots, row):
        fac[(slot.level, slot.kind, slot.dim)] = v
    directives: list[Directive] = []
    for i, name in enumerate(structure.levels):
        keep = tuple(ds for ds in structure.spaces if ds in structure.keep[i])
        bypass = tuple(ds for ds in structure.spaces if ds not in structure.keep[i])
        directives.append(Directive(target=name, type="datatype", keep=keep, bypass=bypass))
    for i, name in enumerate(structure.levels):
        if structure.spatial_perm[i] is not None:
            directives.append(Directive(
                target=name, type="spatial",
                factors={d: fac.get((name, "spatial", d), 1) for d in structure.dims},
                permutation=structure.spatial_perm[i], split=structure.split[i]))
        directives.append(Directive(
            target=name, type="temporal",
            factors={d: fac.get((name, "temporal", d), 1) for d in structure.dims},
            permutation=structure.temporal_perm[i]))
    return Mapping(tuple(directives))


# --------------------------------------------------------------------------------------
# Compiled form


@dataclass(frozen=True)
class Loop:
    """One loop of the nest. ``level`` is Timeloop's storage-level number (innermost = 0)."""

    level: int
    kind: Literal["T", "X", "Y"]
    dim: int
    slot: int


@dataclass(frozen=True)
class DataSpace:
    """A data space: its axes as lists of (dim index, coefficient) terms."""

    name: str
    axes: tuple[tuple[tuple[int, int], ...], ...]
    read_write: bool


def data_spaces(shape: Workload) -> tuple[DataSpace, ...]:
    """The problem's data spaces with dimensions as indices (a ConvShape: Timeloop's CNN-layer projections)."""
    problem = as_problem(shape)
    ix = {d: i for i, d in enumerate(problem.dims)}
    return tuple(DataSpace(t.name, tuple(tuple((ix[d], c) for d, c in axis) for axis in t.projection), t.read_write)
                 for t in problem.data_spaces)


class CompiledNest:
    """Index tables for one (architecture, structure, layer).

    ``loops`` are innermost first; ``level_loops[s]`` the loops of storage level ``s``
    (Timeloop numbering, innermost = 0). Only slots of the structure make loops; their
    order inside a level follows the permutations.
    """

    def __init__(self, arch: Architecture, structure: MappingStructure, shape: Workload) -> None:
        self.arch = arch
        self.structure = structure
        self.shape = shape
        problem = as_problem(shape)
        self.problem = problem
        self.dims = tuple(problem.dims)
        if tuple(structure.dims) != self.dims:
            raise HalocError(f"structure dims {''.join(structure.dims)} differ from the layer's {''.join(self.dims)}",
                             key="structure.dims", fix="build the structure for this layer")
        if tuple(structure.levels) != arch.level_names:
            raise HalocError("structure levels differ from the architecture's", key="structure.levels",
                             fix=f"use levels {', '.join(arch.level_names)}")
        self.bounds = np.asarray([problem.dims[d] for d in self.dims], dtype=np.int64)
        self.S = len(arch.levels)
        self.spaces = data_spaces(shape)
        dim_ix = {d: i for i, d in enumerate(self.dims)}
        # arch index (outermost first) of Timeloop level s
        self.arch_index = [self.S - 1 - s for s in range(self.S)]
        slot_of: dict[tuple[str, str, str], int] = {}
        for k, slot in enumerate(structure.slots):
            if slot.level not in arch.level_names:
                raise HalocError(f"slot names unknown level '{slot.level}'", key="structure.slots",
                                 fix=f"use one of {', '.join(arch.level_names)}")
            if slot.dim not in dim_ix:
                raise HalocError(f"slot names unknown dimension '{slot.dim}'", key="structure.slots",
                                 fix=f"use one of {''.join(self.dims)}")
            slot_of[(slot.level, slot.kind, slot.dim)] = k
        loops: list[Loop] = []
        level_loops: list[list[int]] = []
        self.fanout: list[tuple[int, int]] = []
        for s in range(self.S):
            i = self.arch_index[s]
            name = arch.levels[i].name
            self.fanout.append(arch.fanout(i))
            mine: list[int] = []
            sperm = structure.spatial_perm[i]
            if sperm is not None:
                for pos, d in enumerate(sperm):
                    k = slot_of.get((name, "spatial", d))
                    if k is not None:
                        kind: Literal["T", "X", "Y"] = "X" if pos < structure.split[i] else "Y"
                        mine.append(len(loops))
                        loops.append(Loop(s, kind, dim_ix[d], k))
            else:
                for d in self.dims:
                    if (name, "spatial", d) in slot_of:
                        raise HalocError(f"level '{name}' has no spatial fan-out but the structure has a spatial slot",
                                         key="structure.slots", fix="drop that slot")
            for d in structure.temporal_perm[i]:
                k = slot_of.get((name, "temporal", d))
                if k is not None:
                    mine.append(len(loops))
                    loops.append(Loop(s, "T", dim_ix[d], k))
            level_loops.append(mine)
        self.loops = loops
        self.level_loops = level_loops
        self.n_slots = len(structure.slots)
        self.keep = np.zeros((self.S, len(self.spaces)), dtype=bool)
        for s in range(self.S):
            kept = structure.keep[self.arch_index[s]]
            for t, ds in enumerate(self.spaces):
                self.keep[s, t] = ds.name in kept
        self.slot_dim = np.asarray([dim_ix[slot.dim] for slot in structure.slots], dtype=np.int64)
