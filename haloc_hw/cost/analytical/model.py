"""Timeloop-compatible analytical model: access counts, energy and cycles of dense mappings.

The rules are the closed forms of ``shared/TIMELOOP-MODEL.md`` (nest analysis with
Timeloop's sampled schedule, multicast / spatial reduction, link transfers, collapse with
bypass, first-read elision, per-instance rounding, energy with per-op ceil of block
vectors, bandwidth throttling). They reproduce ``timeloop-model`` 3.0.3 exactly.

Problems are general (:class:`~haloc_hw.problem.Problem`; a ConvShape converts exactly):
every data-space axis is a sum of ``c·dim`` terms and a tile spans ``1 + Σ c·(ext − 1)``
points per axis, so the sliding window of a convolution is one case of the rule. Two
rules beyond the 3.0.3 digest, checked against the v0.4-era exercise references:

* leakage: a level's ERT ``leak`` (pJ per instance and cycle) costs ``leak × cycles ×``
  :func:`leak_instances` (utilized instances, at least one; ``power_gated_at`` groups);
  it is part of the level's and the total energy, not of any data space's;
* a spatial run on the innermost storage level (fan-out straight to the MACs, e.g.
  timeloopfe's ``inter_*_spatial`` level) counts the MACs' operand deliveries with the
  delivery rule on a one-point tile instead of one per compute.

There is one implementation, vectorised over a batch of mappings that share a
:class:`~haloc_hw.cost.analytical.nest.MappingStructure` and differ in loop factors:
:meth:`AnalyticalModel.evaluate_batch`. :meth:`AnalyticalModel.evaluate` runs the same code
on a batch of one and returns every per-level statistic. Python loops run over levels,
loops and data spaces, never over the batch, except for two rare cases that fall back to
one row at a time: spatial runs where two spatially unrolled dimensions feed the same
data-space axis (irregular multicast groups, counted per distinct parameter set) and rows
where a link transfer between neighbouring PEs is possible (screened by a cheap necessary
condition, then enumerated exactly).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from haloc_hw.cost.analytical.nest import (
    CompiledNest,
    MappingStructure,
    structure_from_mapping,
)
from haloc_hw.cost.base import Cost, make_breakdown
from haloc_hw.cost.stats import DataSpaceStats, LevelStats
from haloc_hw.errors import HalocError
from haloc_hw.spec.mapping import Mapping
from haloc_hw.spec.model import Architecture, EnergyTable, StorageLevel
from haloc_hw.problem import Workload

log = logging.getLogger(__name__)

MODEL_VERSION = "timeloop-3.0.3-closed-form-1"


# --------------------------------------------------------------------------------------
# Results (per-level types shared with the stats.txt parser: haloc_hw.cost.stats)

__all__ = ["AnalyticalModel", "BatchResult", "Evaluation", "leak_instances"]


@dataclass(frozen=True)
class Evaluation:
    """Everything ``timeloop-model`` reports for one mapping (levels outermost first)."""

    cycles: int
    energy_pJ: float
    computes: int
    utilization: float
    mac_energy_pJ: float
    levels: list[LevelStats]
    mac_cycles: int = 0
    mac_instances: int = 0
    mapping: Mapping | None = field(default=None, repr=False, compare=False)

    def level(self, name: str) -> LevelStats:
        for lvl in self.levels:
            if lvl.name == name:
                return lvl
        raise KeyError(name)

    @property
    def leak_pJ(self) -> float:
        """Leakage energy of all storage levels (included in :attr:`energy_pJ`)."""
        return float(sum(lvl.leak_pJ for lvl in self.levels))

    def to_json(self) -> dict[str, Any]:
        """Plain summary: totals and per level / data space reads, fills, updates, energy."""
        return {
            "cycles": self.cycles,
            "energy_pJ": self.energy_pJ,
            "leak_pJ": self.leak_pJ,
            "computes": self.computes,
            "utilization": self.utilization,
            "mac_energy_pJ": self.mac_energy_pJ,
            "levels": {
                lvl.name: {
                    ds: {"reads": st.reads, "fills": st.fills, "updates": st.updates, "energy_pJ": st.energy_pJ}
                    for ds, st in lvl.dataspaces.items()
                }
                for lvl in self.levels
            },
        }

    def energy_by_level(self) -> dict[str, float]:
        """Energy in pJ of every storage level, and of the MAC array under ``"mac"`` (they add up to :attr:`energy_pJ`)."""
        out = {lvl.name: lvl.energy_pJ for lvl in self.levels}
        out["mac"] = float(self.mac_energy_pJ)
        return out

    def to_cost(self, **extra: Any) -> Cost:
        """This evaluation as a :class:`Cost`, its breakdown in the layout of :func:`make_breakdown`."""
        return Cost(
            cycles=float(self.cycles),
            energy_pJ=float(self.energy_pJ),
            utilization=float(self.utilization),
            breakdown=make_breakdown(computes=self.computes, levels=self.energy_by_level(), **extra),
        )


@dataclass
class BatchResult:
    """Batch evaluation: one entry per factor row.

    ``valid`` is False where tiles overflow a buffer or the spatial factors do not fit the
    mesh. Cycles/energy are still computed for those rows, but without the (rare, per-row)
    link-transfer correction, so they are only indicative. ``tile_sizes`` is
    ``(B, n_levels, n_spaces)`` (levels outermost first, data spaces in problem order,
    0 where a level bypasses) when requested.
    """

    cycles: np.ndarray
    energy_pJ: np.ndarray
    valid: np.ndarray
    computes: np.ndarray
    tile_sizes: np.ndarray | None = None
    capacity_ok: np.ndarray | None = None
    mesh_ok: np.ndarray | None = None


# --------------------------------------------------------------------------------------
# Helpers


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """``std::round``: halves go away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _clusters(lvl: StorageLevel) -> int:
    """Clusters of a level in the whole array (instances grouped by cluster size, at least one)."""
    return max(lvl.instances // max(lvl.cluster_size, 1), 1)


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)


@lru_cache(maxsize=4096)
def _distinct_offsets(weights: tuple[int, ...], ns: tuple[int, ...]) -> int:
    """Number of distinct values of sum_k weights[k]*i_k, 0 <= i_k < ns[k]."""
    vals = {0}
    for w, n in zip(weights, ns):
        vals = {v + w * i for v in vals for i in range(n)}
    return len(vals)


def _tile(ext: np.ndarray, axes: tuple[tuple[tuple[int, int], ...], ...]) -> np.ndarray:
    """Axis extents (B, A) of the box covered by operation-space extents ``ext`` (B, D)."""
    out = np.empty((ext.shape[0], len(axes)), dtype=np.int64)
    for a, terms in enumerate(axes):
        col = np.ones(ext.shape[0], dtype=np.int64)
        for d, c in terms:
            col = col + c * (ext[:, d] - 1)
        out[:, a] = col
    return out


def _partial(E: np.ndarray, Esz: np.ndarray, x: np.ndarray) -> np.ndarray:
    """New data when a box of extents E moves by x: |E| - overlap."""
    return Esz - np.prod(np.maximum(0, E - np.abs(x)), axis=1)


def _utilized(keep: np.ndarray, inst: list[np.ndarray], s: int) -> np.ndarray:
    """Timeloop's max over data spaces of utilized instances, at least 1 (0 for a bypassed one)."""
    return inst[s] if bool(keep[s].any()) else np.ones_like(inst[s])


def leak_instances(levels: list[StorageLevel], keep: np.ndarray, inst: list[np.ndarray], s: int) -> np.ndarray:
    """Instances of level ``s`` (innermost = 0) that leak in every cycle.

    Timeloop (``BufferLevel::ComputeLeaksPerCycle``): the utilized instances (max over data
    spaces, at least 1), unused instances being power-gated individually. With a
    ``power_gated_at`` attribute naming another level, instances are gated in groups of
    ``instances / that level's instances``; when a group holds more than one instance, every
    instance of a group with one used member leaks: ``group size * that level's utilized
    instances``.
    """
    mine = _utilized(keep, inst, s)
    name = levels[s].attributes.get("power_gated_at")
    if not name:
        return mine
    names = [lv.name for lv in levels]
    if name not in names:
        raise HalocError(f"power_gated_at names unknown level '{name}'", key=f"{levels[s].name}.power_gated_at",
                         fix=f"use one of {', '.join(names)}")
    g = names.index(name)
    group = levels[s].instances / max(levels[g].instances, 1)
    if group <= 1:
        return mine
    return group * _utilized(keep, inst, g)


class _Pre:
    """Per-batch arrays shared by all data spaces (factors, extents, steps, instances)."""

    def __init__(self, nest: CompiledNest, factors: np.ndarray) -> None:
        B = factors.shape[0]
        D = len(nest.dims)
        S = nest.S
        self.B = B
        # keep loops whose factor is not 1 in some row (bound-1 loops change nothing)
        self.loops = [lp for lp in nest.loops if bool((factors[:, lp.slot] != 1).any())]
        self.n = [factors[:, lp.slot] for lp in self.loops]
        ext = np.ones((B, D), dtype=np.int64)
        self.step: list[np.ndarray] = []
        self.ext_b: list[np.ndarray] = []   # extents at level s boundary
        self.ext_m: list[np.ndarray] = []   # extents above level s's spatial run (master tile)
        self.spatial: list[list[int]] = [[] for _ in range(S)]
        self.temporal: list[list[int]] = [[] for _ in range(S)]
        for j, lp in enumerate(self.loops):
            if lp.kind == "T":
                self.temporal[lp.level].append(j)
            else:
                self.spatial[lp.level].append(j)
        for s in range(S):
            for j in self.spatial[s]:
                self.step.append(ext[:, self.loops[j].dim].copy())
                ext[:, self.loops[j].dim] *= self.n[j]
            self.ext_m.append(ext.copy())
            for j in self.temporal[s]:
                self.step.append(ext[:, self.loops[j].dim].copy())
                ext[:, self.loops[j].dim] *= self.n[j]
            self.ext_b.append(ext.copy())
        # steps were appended in level order, which is the loop order
        ones = np.ones(B, dtype=np.int64)
        self.F = [ones.copy() for _ in range(S)]     # fan-out used by level s (product of its spatial loops)
        self.FX = [ones.copy() for _ in range(S)]
        self.FY = [ones.copy() for _ in range(S)]
        for s in range(S):
            for j in self.spatial[s]:
                self.F[s] = self.F[s] * self.n[j]
                if self.loops[j].kind == "X":
                    self.FX[s] = self.FX[s] * self.n[j]
                else:
                    self.FY[s] = self.FY[s] * self.n[j]
        # instances above each boundary
        self.inst = [ones.copy() for _ in range(S)]
        self.xe = [ones.copy() for _ in range(S)]
        self.ye = [ones.copy() for _ in range(S)]
        acc, ax, ay = ones.copy(), ones.copy(), ones.copy()
        for s in range(S - 1, -1, -1):
            self.inst[s], self.xe[s], self.ye[s] = acc.copy(), ax.copy(), ay.copy()
            acc = acc * self.F[s]
            ax = ax * self.FX[s]
            ay = ay * self.FY[s]
        self.mac_inst, self.mac_x, self.mac_y = acc, ax, ay
        # temporal loops of all levels, innermost first, and suffix products over them
        self.tloops = [j for s in range(S) for j in self.temporal[s]]
        suffix = ones.copy()
        self.suffix: dict[int, np.ndarray] = {}
        for j in reversed(self.tloops):
            self.suffix[j] = suffix
            suffix = suffix * self.n[j]
        self.C = suffix  # product of all temporal loops = compute cycles per MAC


# --------------------------------------------------------------------------------------
# The model


class AnalyticalModel:
    """Evaluates mappings of dense problems (a ConvShape or any :class:`~haloc_hw.problem.Problem`)
    on one architecture with one energy table."""

    def __init__(self, arch: Architecture, energy: EnergyTable, *, first_read_elision: bool = True) -> None:
        self.arch = arch
        self.energy = energy
        self.first_read_elision = first_read_elision
        self._compiled: dict[tuple[MappingStructure, Workload], CompiledNest] = {}
        self.fallback_rows = 0  # rows that needed the per-row link-transfer enumeration

    # ---- public API ------------------------------------------------------------------

    def compile(self, shape: Workload, structure: MappingStructure) -> CompiledNest:
        key = (structure, shape)
        nest = self._compiled.get(key)
        if nest is None:
            nest = CompiledNest(self.arch, structure, shape)
            if len(self._compiled) > 256:
                self._compiled.clear()
            self._compiled[key] = nest
        return nest

    def evaluate(self, shape: Workload, mapping: Mapping) -> Evaluation:
        """Evaluate one complete mapping; invalid mappings raise :class:`HalocError`."""
        structure, row = structure_from_mapping(mapping, self.arch, shape)
        nest = self.compile(shape, structure)
        res = self._run(nest, row[None, :], detail=True, raise_errors=True)
        return self._evaluation(nest, res, mapping)

    def evaluate_batch(self, shape: Workload, structure: MappingStructure, factors: np.ndarray, *,
                       check_capacity: bool = True, tile_sizes: bool = False) -> BatchResult:
        """Evaluate ``factors`` (B, n_slots) int64 rows that share ``structure``.

        Rows whose factors do not multiply to the layer bounds raise :class:`HalocError`
        (a mapper bug, not a bad mapping). Rows that overflow a buffer or the mesh come
        back with ``valid = False``; ``check_capacity=False`` ignores capacity.
        """
        nest = self.compile(shape, structure)
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != nest.n_slots:
            raise HalocError(f"factors must have shape (B, {nest.n_slots}), got {factors.shape}",
                             key="factors", fix="pass one column per structure slot")
        res = self._run(nest, factors, detail=tile_sizes, raise_errors=False, check_capacity=check_capacity)
        valid = res["mesh_ok"] & (res["capacity_ok"] if check_capacity else True)
        sizes = None
        if tile_sizes:
            # (S, T, B) innermost first -> (B, levels outermost first, T)
            sizes = np.transpose(res["kept_size"][::-1], (2, 0, 1)).copy()
        return BatchResult(cycles=res["cycles"], energy_pJ=res["energy"], valid=np.asarray(valid, dtype=bool),
                           computes=res["computes"], tile_sizes=sizes, capacity_ok=res["capacity_ok"],
                           mesh_ok=res["mesh_ok"])

    # ---- core --------------------------------------------------------------------------

    def _check_bounds(self, nest: CompiledNest, f: np.ndarray) -> None:
        B = f.shape[0]
        prod = np.ones((B, len(nest.dims)), dtype=np.int64)
        for k in range(nest.n_slots):
            prod[:, nest.slot_dim[k]] *= f[:, k]
        if (f < 1).any():
            row = int(np.argwhere((f < 1).any(axis=1))[0, 0])
            raise HalocError(f"factor row {row} has a factor < 1", key="factors", fix="use positive factors")
        bad = prod != nest.bounds[None, :]
        if bad.any():
            row, d = (int(v) for v in np.argwhere(bad)[0])
            dim = nest.dims[d]
            where = "" if B == 1 else f" (row {row})"
            raise HalocError(
                f"factors of dimension {dim} multiply to {int(prod[row, d])}, but the layer has {dim}={int(nest.bounds[d])}{where}",
                key=f"mapping.factors.{dim}", fix=f"make the {dim} factors of all levels multiply to {int(nest.bounds[d])}")

    def _run(self, nest: CompiledNest, f: np.ndarray, *, detail: bool, raise_errors: bool,
             check_capacity: bool = True) -> dict[str, Any]:
        self._check_bounds(nest, f)
        arch = self.arch
        pre = _Pre(nest, f)
        S, B = nest.S, pre.B
        T = len(nest.spaces)
        levels = [arch.levels[nest.arch_index[s]] for s in range(S)]

        # ---- validity: mesh ----
        mesh_ok = np.ones(B, dtype=bool)
        mesh_msgs: list[str] = []
        for s in range(S):
            lvl = levels[s]
            for arr, lim, what in ((pre.inst[s], lvl.instances, "instances"),
                                   (pre.xe[s], lvl.mesh_x, "X positions"),
                                   (pre.ye[s], lvl.mesh_y, "Y positions")):
                over = arr > lim
                if over.any():
                    mesh_ok &= ~over
                    mesh_msgs.append(f"level '{lvl.name}' would need {int(arr[over][0])} {what} but has {lim}")
        am = arch.arithmetic
        for arr, lim, what in ((pre.mac_inst, am.instances, "instances"), (pre.mac_x, am.mesh_x, "X positions"),
                               (pre.mac_y, am.mesh_y, "Y positions")):
            over = arr > lim
            if over.any():
                mesh_ok &= ~over
                mesh_msgs.append(f"'{am.name}' would need {int(arr[over][0])} {what} but has {lim}")
        if raise_errors and mesh_msgs:
            raise HalocError(f"the spatial factors do not fit the array: {mesh_msgs[0]}", key="mapping.spatial",
                             fix="reduce the spatial factors or move them to another level")

        C = pre.C
        computes = C * pre.mac_inst

        sizes = np.zeros((S, T, B), dtype=np.int64)
        stats: dict[str, np.ndarray] = {}
        if detail:
            for k in ("P", "reads", "fills", "updates", "tr", "energy"):
                stats[k] = np.zeros((S, T, B), dtype=np.float64)
        energy_total = computes.astype(np.float64) * self.energy.compute
        reads_lvl = np.zeros((S, T, B), dtype=np.float64)
        writes_lvl = np.zeros((S, T, B), dtype=np.float64)

        # ---- tile sizes and capacity (before any traffic, so invalid rows can skip fallbacks) ----
        E_all = [[_tile(pre.ext_b[s], ds.axes) for s in range(S)] for ds in nest.spaces]
        for t in range(T):
            for s in range(S):
                sizes[s, t] = np.prod(E_all[t][s], axis=1)
        kept_size = sizes * nest.keep[:, :, None]  # 0 where a level bypasses the data space
        # ---- capacity ----
        capacity_ok = np.ones(B, dtype=bool)
        cap_msgs: list[str] = []
        for s in range(S):
            lvl = levels[s]
            cap = lvl.effective_size
            if cap is None or lvl.is_dram:
                continue
            used = kept_size[s].sum(axis=0)
            over = used > cap
            if over.any():
                capacity_ok &= ~over
                r = int(np.flatnonzero(over)[0])
                parts = [f"{nest.spaces[t].name} {int(kept_size[s, t, r])}" for t in range(T) if nest.keep[s, t]]
                cap_msgs.append(f"level '{lvl.name}' needs {' + '.join(parts)} = {int(used[r])} words but holds "
                                f"{cap}: overflows by {int(used[r]) - cap} words")
        if raise_errors and cap_msgs:
            raise HalocError(f"mapping does not fit: {cap_msgs[0]}", key="mapping.factors",
                             fix="move factors of that data space's tile to an outer level")

        exact_rows = mesh_ok & (capacity_ok if check_capacity else True)

        for t, ds in enumerate(nest.spaces):
            axes = ds.axes
            # axis/coefficient of every dim in this data space
            dim_terms: dict[int, list[tuple[int, int]]] = {}
            for a, terms in enumerate(axes):
                for d, c in terms:
                    dim_terms.setdefault(d, []).append((a, c))
            E_b = E_all[t]
            size = [sizes[s, t] for s in range(S)]
            den = [np.prod(_tile(pre.ext_m[s + 1], axes), axis=1) if s + 1 < S else size[s] for s in range(S)]

            def tau_of(j: int) -> np.ndarray:
                tau = np.zeros((B, len(axes)), dtype=np.int64)
                for a, c in dim_terms.get(pre.loops[j].dim, ()):
                    tau[:, a] = c * pre.step[j]
                return tau

            taus = {j: tau_of(j) for j in pre.tloops}

            CA = [np.zeros(B) for _ in range(S)]
            GA = [np.zeros(B) for _ in range(S)]
            L = [np.zeros(B) for _ in range(S)]
            # the innermost level serves one operand per compute to each MAC below it; a
            # spatial run there (fan-out straight to the MACs) multicasts / reduces like any other
            if pre.spatial[0]:
                # Then Timeloop counts the MACs' deliveries with the nest rule on a one-point
                # tile (an operand stays in the MAC across loops that do not index it);
                # without such a run every compute reads its operands (D = C).
                D0 = self._unit_deliveries(pre, taus, B, len(axes))
                CA[0] = self._groups(pre, 0, dim_terms).astype(np.float64) * D0
                GA[0] = pre.F[0].astype(np.float64) * D0
            else:
                CA[0] = C.astype(np.float64)
                GA[0] = C.astype(np.float64)
            for s in range(S - 1):
                p = s + 1
                E, Esz = E_b[s], size[s]
                D = Esz.copy()
                tau1 = np.zeros_like(E)
                have1 = np.zeros(B, dtype=bool)
                partial1 = np.zeros(B, dtype=np.int64)
                cum = np.zeros_like(E)
                above = [j for q in range(p, S) for j in pre.temporal[q]]
                link_check = bool(pre.spatial[p]) and bool((pre.F[p] > 1).any())
                if link_check:
                    feasible = self._link_screen(pre, p, dim_terms, len(axes))
                    maybe = np.zeros(B, dtype=bool)
                for j in above:
                    n = pre.n[j]
                    active = n >= 2
                    tau = taus[j]
                    x = tau - cum
                    newfirst = active & ~have1
                    if newfirst.any():
                        tau1 = np.where(newfirst[:, None], tau, tau1)
                        partial1 = np.where(newfirst, _partial(E, Esz, tau), partial1)
                        have1 |= newfirst
                    cum = cum + tau * active[:, None]
                    W = (n - 1) * pre.suffix[j]
                    coinc = (x == tau1).all(axis=1)
                    D = D + W * np.where(coinc, partial1, Esz)
                    if link_check:
                        # type-j visit of size |E| preceded by a type-1 visit of the same size
                        cand = active & ~coinc & (partial1 == Esz) & feasible(x)
                        maybe |= cand
                if link_check:
                    maybe |= have1 & (partial1 > 0) & feasible(tau1)
                groups = self._groups(pre, p, dim_terms)
                CA[p] = groups.astype(np.float64) * D
                GA[p] = pre.F[p].astype(np.float64) * D
                if link_check and maybe.any():
                    rows = np.flatnonzero(maybe & (pre.F[p] > 1) & exact_rows)
                    for r in rows:
                        sa, sga, lt = self._link_row(nest, f[r], s, t)
                        CA[p][r], GA[p][r], L[p][r] = sa, sga, lt
                    self.fallback_rows += len(rows)

            # ---- collapse ----
            PAS = [GA[s + 1] / pre.F[s + 1] if s + 1 < S else np.zeros(B) for s in range(S)]
            P = [np.zeros(B, dtype=np.int64) for _ in range(S)]
            P[S - 1] = size[S - 1].copy()
            for s in range(S - 2, -1, -1):
                P[s] = P[s + 1] * size[s] // den[s]
            sz = [x.copy() for x in size]
            keep = nest.keep[:, t]
            for s in range(S - 1):
                if keep[s]:
                    continue
                fct = CA[s] * pre.F[s + 1] / GA[s + 1]
                CA[s + 1] = CA[s + 1] * fct
                GA[s + 1] = GA[s + 1] * fct
                L[s + 1] = np.zeros(B)
                sz[s] = np.zeros(B, dtype=np.int64)
                CA[s] = np.zeros(B)
                PAS[s] = np.zeros(B)
                P[s] = np.zeros(B, dtype=np.int64)
            outermost_kept = -1
            for s in range(S - 1, -1, -1):
                if not keep[s]:
                    sz[s] = np.zeros(B, dtype=np.int64)
                    CA[s] = np.zeros(B)
                    PAS[s] = np.zeros(B)
                    P[s] = np.zeros(B, dtype=np.int64)
                    L[s] = np.zeros(B)
                else:
                    PAS[s] = np.zeros(B)
                    outermost_kept = s
                    break
            peer = [np.zeros(B) for _ in range(S)]
            for s in range(S - 1, 0, -1):
                if (L[s] != 0).any():
                    peer[s - 1] = peer[s - 1] + L[s] / pre.inst[s - 1]
            for s in range(S):
                if not keep[s] or s > outermost_kept:
                    continue
                bs = levels[s].block_size
                if ds.read_write:
                    updates = _round_half_away(CA[s])
                    if self.first_read_elision:
                        reads = _round_half_away(CA[s] + peer[s] - P[s])
                        fills = (_round_half_away(PAS[s] + peer[s]) if s == outermost_kept
                                 else _round_half_away(PAS[s] + peer[s] - P[s]))
                    else:
                        reads = _round_half_away(CA[s] + peer[s])
                        fills = _round_half_away(PAS[s] + peer[s])
                    tr = reads
                else:
                    reads = _round_half_away(CA[s] + peer[s])
                    fills = np.trunc(PAS[s] + peer[s])
                    updates = np.zeros(B)
                    tr = np.zeros(B)
                ae = self.energy.for_level(levels[s].name)
                xy = pre.xe[s] * pre.ye[s]
                clusters = np.minimum(xy, _clusters(levels[s]))
                cu = xy / clusters
                ri, fi, ui = (v.astype(np.int64) for v in (reads, fills, updates))
                e_inst = (_ceil_div(ri, bs) * ae.read + _ceil_div(fi, bs) * ae.fill + _ceil_div(ui, bs) * ae.update) / cu
                e_tot = e_inst * pre.inst[s]
                energy_total = energy_total + e_tot
                reads_lvl[s, t] = reads
                writes_lvl[s, t] = fills + updates
                if detail:
                    stats["P"][s, t] = P[s]
                    stats["reads"][s, t] = reads
                    stats["fills"][s, t] = fills
                    stats["updates"][s, t] = updates
                    stats["tr"][s, t] = tr
                    stats["energy"][s, t] = e_tot

        # ---- cycles ----
        Cf = C.astype(np.float64)
        level_cycles = np.zeros((S, B), dtype=np.int64)
        slowdown = np.ones((S, B))
        for s in range(S):
            lvl = levels[s]
            rtot = np.zeros(B)
            wtot = np.zeros(B)
            for t in range(T):
                rtot = rtot + reads_lvl[s, t] / Cf
                wtot = wtot + writes_lvl[s, t] / Cf
            sd = np.ones(B)
            with np.errstate(divide="ignore", invalid="ignore"):
                if lvl.read_bandwidth is not None:
                    m = lvl.read_bandwidth < rtot
                    sd = np.where(m, np.minimum(sd, lvl.read_bandwidth / np.where(m, rtot, 1.0)), sd)
                if lvl.write_bandwidth is not None:
                    m = lvl.write_bandwidth < wtot
                    sd = np.where(m, np.minimum(sd, lvl.write_bandwidth / np.where(m, wtot, 1.0)), sd)
                if lvl.shared_bandwidth is not None:
                    both = wtot + rtot
                    m = lvl.shared_bandwidth < both
                    sd = np.where(m, np.minimum(sd, lvl.shared_bandwidth / np.where(m, both, 1.0)), sd)
            slowdown[s] = sd
            level_cycles[s] = np.ceil(Cf / sd).astype(np.int64)
        cycles = np.maximum(C, level_cycles.max(axis=0))
        # ---- leakage (after cycles: it is charged per cycle of the whole run) ----
        leak = np.zeros((S, B))
        for s in range(S):
            ae = self.energy.for_level(levels[s].name)
            if ae.leak:
                leak[s] = ae.leak * cycles * leak_instances(levels, nest.keep, pre.inst, s)
                energy_total = energy_total + leak[s]
        out: dict[str, Any] = {
            "cycles": cycles, "energy": energy_total, "computes": computes, "C": C,
            "mesh_ok": mesh_ok, "capacity_ok": capacity_ok, "kept_size": kept_size, "leak": leak,
        }
        if detail:
            out.update(stats=stats, sizes=sizes, level_cycles=level_cycles, slowdown=slowdown, pre=pre)
        return out

    @staticmethod
    def _unit_deliveries(pre: _Pre, taus: dict[int, np.ndarray], B: int, n_axes: int) -> np.ndarray:
        """§3.2's D for a one-point child tile under every temporal loop (the MACs' operands)."""
        E = np.ones((B, n_axes), dtype=np.int64)
        Esz = np.ones(B, dtype=np.int64)
        D = Esz.astype(np.float64)
        tau1 = np.zeros_like(E)
        have1 = np.zeros(B, dtype=bool)
        partial1 = np.zeros(B, dtype=np.int64)
        cum = np.zeros_like(E)
        for j in pre.tloops:
            n = pre.n[j]
            active = n >= 2
            tau = taus[j]
            x = tau - cum
            newfirst = active & ~have1
            if newfirst.any():
                tau1 = np.where(newfirst[:, None], tau, tau1)
                partial1 = np.where(newfirst, _partial(E, Esz, tau), partial1)
                have1 |= newfirst
            cum = cum + tau * active[:, None]
            W = (n - 1) * pre.suffix[j]
            coinc = (x == tau1).all(axis=1)
            D = D + W * np.where(coinc, partial1, Esz)
        return D

    # ---- multicast groups and link transfers ------------------------------------------

    @staticmethod
    def _groups(pre: _Pre, p: int, dim_terms: dict[int, list[tuple[int, int]]]) -> np.ndarray:
        """Number of distinct data-space offsets among the elements of level p's spatial run."""
        B = pre.B
        groups = np.ones(B, dtype=np.int64)
        per_axis: dict[int, list[tuple[int, int]]] = {}
        for j in pre.spatial[p]:
            for a, c in dim_terms.get(pre.loops[j].dim, ()):
                per_axis.setdefault(a, []).append((j, c))
        for a, terms in per_axis.items():
            if len(terms) == 1:
                groups = groups * pre.n[terms[0][0]]
                continue
            ns = np.stack([pre.n[j] for j, _ in terms], axis=1)
            varying = (ns >= 2).sum(axis=1)
            simple = np.prod(ns, axis=1)
            col = simple.copy()
            irregular = np.flatnonzero(varying >= 2)
            if irregular.size:
                w = np.stack([c * pre.step[j] for j, c in terms], axis=1)
                keys = np.concatenate([w[irregular], ns[irregular]], axis=1)
                uniq, inv = np.unique(keys, axis=0, return_inverse=True)
                k = len(terms)
                vals = np.asarray([_distinct_offsets(tuple(int(v) for v in u[:k]), tuple(int(v) for v in u[k:]))
                                   for u in uniq], dtype=np.int64)
                col[irregular] = vals[np.asarray(inv).reshape(-1)]
            groups = groups * col
        return groups

    @staticmethod
    def _link_screen(pre: _Pre, p: int, dim_terms: dict[int, list[tuple[int, int]]], n_axes: int):
        """A necessary condition for a link transfer at level p's spatial run.

        A translation ``x`` can equal the offset difference of two elements only if, on every
        axis, ``|x|`` is within the span of element offsets and a multiple of their gcd.
        Returns ``feasible(x) -> (B,) bool``.
        """
        B = pre.B
        span = np.zeros((B, n_axes), dtype=np.int64)
        gmod = np.zeros((B, n_axes), dtype=np.int64)
        for j in pre.spatial[p]:
            n = pre.n[j]
            for a, c in dim_terms.get(pre.loops[j].dim, ()):
                w = c * pre.step[j] * (n >= 2)
                span[:, a] += w * (n - 1)
                gmod[:, a] = np.gcd(gmod[:, a], w)
        gsafe = np.where(gmod == 0, 1, gmod)

        def feasible(x: np.ndarray) -> np.ndarray:
            return ((np.abs(x) <= span) & (x % gsafe == 0)).all(axis=1)

        return feasible

    def _link_row(self, nest: CompiledNest, row: np.ndarray, s: int, t: int) -> tuple[float, float, float]:
        """Exact multicast/link-transfer sums (ΣA, Σg·A, L) of one row at level s+1, data space t."""
        p = s + 1
        axes = nest.spaces[t].axes
        nd = len(nest.dims)
        n_of = [int(row[lp.slot]) for lp in nest.loops]
        ext = [1] * nd
        steps: list[int] = []
        for k, lp in enumerate(nest.loops):
            steps.append(ext[lp.dim])
            ext[lp.dim] *= n_of[k]
        ext_b = [1] * nd
        for k, lp in enumerate(nest.loops):
            if lp.level <= s:
                ext_b[lp.dim] *= n_of[k]

        def proj(v: list[int]) -> tuple[int, ...]:
            return tuple(sum(c * v[d] for d, c in terms) for terms in axes)

        E = [1 + sum(c * (ext_b[d] - 1) for d, c in terms) for terms in axes]
        Esz = math.prod(E)

        def partial(x: tuple[int, ...]) -> int:
            return Esz - math.prod(max(0, e - abs(xi)) for e, xi in zip(E, x))

        Tl = [(n_of[k], steps[k], lp.dim) for k, lp in enumerate(nest.loops)
              if lp.kind == "T" and lp.level > s and n_of[k] >= 2]
        U = [(n_of[k], steps[k], lp.dim, lp.kind) for k, lp in enumerate(nest.loops)
             if lp.kind != "T" and lp.level == p and n_of[k] >= 2]
        F = math.prod(u[0] for u in U)
        # element offsets (innermost loop of U fastest)
        offs: list[tuple[int, ...]] = []
        for idx in range(F):
            v = [0] * nd
            rem = idx
            for n, st, d, _ in U:
                v[d] += (rem % n) * st
                rem //= n
            offs.append(proj(v))
        fx, fy = nest.fanout[p]
        h = max(fx, math.prod(u[0] for u in U if u[3] == "X"))
        vsz = max(fy, math.prod(u[0] for u in U if u[3] == "Y"))
        # offset differences towards each element's grid neighbours (no wrap-around)
        diffs: list[set[tuple[int, ...]]] = []
        for idx in range(F):
            x0, y0 = idx % h, idx // h
            ds: set[tuple[int, ...]] = set()
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                xx, yy = x0 + dx, y0 + dy
                if 0 <= xx < h and 0 <= yy < vsz:
                    q = yy * h + xx
                    if q < F:
                        ds.add(tuple(oq - oa for oq, oa in zip(offs[q], offs[idx])))
            diffs.append(ds)
        groups_all = len(set(offs))
        reuse_cache: dict[tuple[int, ...], tuple[int, int, int]] = {}

        def reuse(x: tuple[int, ...]) -> tuple[int, int, int]:
            """(#reused elements, #remaining elements, #remaining groups) for translation x."""
            hit = reuse_cache.get(x)
            if hit is None:
                remaining = [a for a in range(F) if x not in diffs[a]]
                hit = (F - len(remaining), len(remaining), len({offs[a] for a in remaining}))
                reuse_cache[x] = hit
            return hit

        visits: list[tuple[tuple[int, ...] | None, int, int, int | None]] = [(None, Esz, 1, None)]
        if Tl:
            taus = [proj([st if d == dd else 0 for dd in range(nd)]) for _, st, d in Tl]
            tau1 = taus[0]
            p1 = partial(tau1)
            n1 = Tl[0][0]
            k = len(Tl)
            suffix = [1] * k
            for j in range(k - 2, -1, -1):
                suffix[j] = suffix[j + 1] * Tl[j + 1][0]
            cum = [0] * len(axes)
            xs, Ws, deltas = [], [], []
            for j in range(k):
                x = tuple(tj - cj for tj, cj in zip(taus[j], cum))
                cum = [cj + tj for cj, tj in zip(cum, taus[j])]
                xs.append(x)
                Ws.append((Tl[j][0] - 1) * suffix[j])
                deltas.append(p1 if x == tau1 else Esz)
            visits.append((tau1, p1, n1 - 1, Esz))
            for j in range(1, k):
                visits.append((tau1, p1, (n1 - 1) * Ws[j], deltas[j]))
                visits.append((xs[j], deltas[j], Ws[j], p1))
        sumA = sumGA = link = 0
        for x, size, w, pred in visits:
            if size == 0 or w == 0:
                continue
            if x is not None and pred == size:
                n_reused, n_rem, g_rem = reuse(x)
                if n_reused and g_rem < groups_all:
                    sumA += g_rem * size * w
                    sumGA += n_rem * size * w
                    link += n_reused * size * w
                    continue
            sumA += groups_all * size * w
            sumGA += F * size * w
        return float(sumA), float(sumGA), float(link)

    # ---- single evaluation -----------------------------------------------------------

    def _evaluation(self, nest: CompiledNest, res: dict[str, Any], mapping: Mapping | None) -> Evaluation:
        S = nest.S
        pre: _Pre = res["pre"]
        st = res["stats"]
        levels_out: list[LevelStats] = []
        for s in range(S - 1, -1, -1):
            lvl = self.arch.levels[nest.arch_index[s]]
            inst = int(pre.inst[s][0])
            dss: dict[str, DataSpaceStats] = {}
            for t, ds in enumerate(nest.spaces):
                if res["kept_size"][s, t, 0] == 0:
                    continue
                reads = int(st["reads"][s, t, 0])
                fills = int(st["fills"][s, t, 0])
                updates = int(st["updates"][s, t, 0])
                xy = int(pre.xe[s][0] * pre.ye[s][0])
                clusters = min(xy, _clusters(lvl))
                dss[ds.name] = DataSpaceStats(
                    partition_size=int(st["P"][s, t, 0]),
                    utilized_capacity=int(res["kept_size"][s, t, 0]),
                    utilized_instances=inst,
                    reads=reads, updates=updates, fills=fills,
                    temporal_reductions=int(st["tr"][s, t, 0]),
                    energy_pJ=float(st["energy"][s, t, 0]),
                    utilized_clusters=clusters,
                    address_generations=(updates + fills) if ds.read_write else (reads + fills),
                )
            levels_out.append(LevelStats(name=lvl.name, utilized_instances=inst,
                                         cycles=int(res["level_cycles"][s, 0]),
                                         throttling=float(res["slowdown"][s, 0]), dataspaces=dss,
                                         leak_pJ=float(res["leak"][s, 0])))
        computes = int(res["computes"][0])
        cycles = int(res["cycles"][0])
        mac_inst = self.arch.arithmetic.instances
        return Evaluation(
            cycles=cycles,
            energy_pJ=float(res["energy"][0]),
            computes=computes,
            utilization=computes / (mac_inst * cycles) if cycles else 0.0,
            mac_energy_pJ=computes * self.energy.compute,
            levels=levels_out,
            mac_cycles=int(res["C"][0]),
            mac_instances=int(pre.mac_inst[0]),
            mapping=mapping,
        )

