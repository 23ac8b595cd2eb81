"""Search the constrained map space for the best mapping of one layer.

The mapper enumerates factor assignments with :class:`~haloc_hw.cost.analytical.mapspace.MapSpace`
(exhaustively where the space is small) and evaluates them in vectorised batches with the
embedded analytical model; the winner is re-evaluated with the scalar model so its
statistics are exactly those ``timeloop-model`` would print for it.

Search, in phases, all deterministic:

1. **Factors.** Every capacity- and fan-out-feasible factor row is a candidate. For
   delay-first metrics rows are visited in order of their MAC cycles (fewest first); rows
   whose MAC cycles already exceed the best cycles found cannot win and are skipped. This is
   exact: a mapping's cycles are never below its MAC cycles. At most ``max_evaluations``
   rows are evaluated; past that a seeded sample is taken (phase 4 then climbs).
2. **Loop orders.** Where constraints leave a level's temporal order open, phase 1 uses a
   few default orders (one per stationary data space); the best ``refine_top`` rows are then
   improved one level at a time over every distinct order of that level's non-trivial loops
   (only loops with a factor > 1 matter, so duplicates are never evaluated).
3. **Bypass.** Free keep/bypass choices are enumerated jointly when there are few
   combinations; otherwise they are chosen level by level, innermost first, each option
   re-running phase 1 with a small budget, and phase 2 also tries each level's options.
4. **Climbing.** When phase 1 could not evaluate everything, the best rows are improved by
   moving one prime factor between two slots of a dimension until nothing improves.

Phases 2-4 are local searches: they can miss optima that need a different factor row and a
different order or bypass choice at once. With fully constrained loop orders and keep sets
(the shipped row-stationary constraints) the search is exhaustive within the map space.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from haloc_hw.cost.analytical.mapspace import MapSpace, SpaceLimits, StructureSpec
from haloc_hw.cost.analytical.model import AnalyticalModel, Evaluation
from haloc_hw.cost.analytical.nest import MappingStructure, Slot, mapping_from_structure
from haloc_hw.errors import HalocError
from haloc_hw.fileio import read_yaml
from haloc_hw.spec.mapping import Constraints, Mapping
from haloc_hw.spec.model import Architecture, EnergyTable
from haloc_hw.problem import Workload, describe

log = logging.getLogger(__name__)

# Bump when the search changes what it returns for the same inputs.
MAPPER_VERSION = "1"

OBJECTIVES: tuple[str, ...] = ("delay", "energy", "edp")
# Timeloop mapper keys that mean nothing to this mapper (read and ignored).
_TIMELOOP_KEYS = {
    "algorithm", "live-status", "num-threads", "timeout", "victory-condition", "search-size",
    "max-permutations-per-if-visit", "log-interval", "log-suboptimal", "log-stats", "diagnostics",
    "penalize-consecutive-bypass-fails", "emit-whoop-nest", "sync-interval", "filter-revisits",
}


def parse_metric(metric: str | Sequence[str]) -> tuple[str, ...]:
    """``"delay,energy"`` or ``["delay", "energy"]`` -> ``("delay", "energy")`` (lexicographic)."""
    raw = metric.split(",") if isinstance(metric, str) else metric if isinstance(metric, (list, tuple)) else [metric]
    items = [str(m).strip().lower() for m in raw]
    items = [("delay" if m in ("cycles", "latency") else m) for m in items if m]
    if not items or any(m not in OBJECTIVES for m in items) or len(set(items)) != len(items):
        raise HalocError(
            f"unknown optimization metric '{metric if isinstance(metric, str) else ','.join(map(str, raw))}'",
            key="optimization-metrics",
            fix="use delay,energy (lexicographic), energy, edp or delay",
        )
    return tuple(items)


@dataclass(frozen=True)
class MapperSettings:
    """Mapper knobs; read from ``mappings/mapper.yaml`` (``mapper:`` section).

    ``metric``: lexicographic objectives (Timeloop's ``optimization-metrics``).
    ``refine_top``: rows improved by the loop-order / bypass local search.
    ``refine_rounds``: passes of that search over all levels.
    ``max_evaluations``: phase-1 budget (0: no limit); beyond it a seeded sample is evaluated
    and the best rows are then hill-climbed by moving one prime factor at a time
    (``climb_rounds`` passes).
    ``max_rows``, ``max_keep_combos``, ``seed``: see :class:`SpaceLimits`.
    """

    metric: tuple[str, ...] = ("delay", "energy")
    refine_top: int = 4
    refine_rounds: int = 2
    max_evaluations: int = 30_000
    climb_rounds: int = 6
    max_rows: int = 100_000
    max_keep_combos: int = 16
    seed: int = 0

    @property
    def limits(self) -> SpaceLimits:
        return SpaceLimits(max_rows=self.max_rows, max_keep_combos=self.max_keep_combos, seed=self.seed)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, file: str | Path | None = None) -> "MapperSettings":
        body = doc.get("mapper", doc) if isinstance(doc, dict) else None
        if not isinstance(body, dict):
            raise HalocError("mapper settings must be a mapping", file=file, key="mapper", fix="write 'mapper:' with key: value lines")
        kw: dict[str, Any] = {}
        for raw_key, value in body.items():
            key = str(raw_key).replace("_", "-")
            if key in ("optimization-metrics", "metric", "metrics"):
                try:
                    kw["metric"] = parse_metric(value)
                except HalocError as err:
                    raise HalocError(err.message, file=file, key=f"mapper.{raw_key}", fix=err.fix) from None
            elif key in ("refine-top", "refine-rounds", "max-rows", "max-keep-combos", "seed", "max-evaluations", "climb-rounds"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise HalocError(f"'{raw_key}' must be a non-negative integer", file=file, key=f"mapper.{raw_key}", fix="use a whole number")
                kw[key.replace("-", "_")] = value
            elif key in _TIMELOOP_KEYS:
                continue
            else:
                log.warning("%s: ignoring unknown mapper key '%s'", file or "mapper settings", raw_key)
        return cls(**kw)

    @classmethod
    def from_file(cls, path: str | Path) -> "MapperSettings":
        doc = read_yaml(path)
        if not isinstance(doc, dict) or "mapper" not in doc:
            raise HalocError("no 'mapper' section", file=path, key="mapper", fix="write the settings under 'mapper:'")
        return cls.from_dict(doc, file=path)


@dataclass
class MapperResult:
    """The best mapping found, its exact evaluation, and how much was searched."""

    mapping: Mapping
    evaluation: Evaluation
    evaluated: int
    valid: int
    seconds: float
    metric: tuple[str, ...] = field(default=("delay", "energy"))


@dataclass
class _Best:
    """Best candidates so far: parallel arrays over the top rows (sorted best first)."""

    rows: list[np.ndarray] = field(default_factory=list)
    specs: list[StructureSpec] = field(default_factory=list)
    cycles: list[float] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)


def _score_keys(metric: tuple[str, ...], cycles: np.ndarray, energy: np.ndarray) -> list[np.ndarray]:
    """Sort keys, most significant first; delay and energy break remaining ties."""
    keys = []
    for m in metric + tuple(m for m in ("delay", "energy") if m not in metric):
        keys.append(cycles if m == "delay" else energy if m == "energy" else cycles * energy)
    return keys


class Mapper:
    """Finds the best mapping of a layer on ``arch`` within ``constraints`` (see module docstring)."""

    def __init__(
        self,
        arch: Architecture,
        constraints: Constraints,
        energy: EnergyTable,
        settings: MapperSettings | None = None,
    ) -> None:
        self.arch = arch
        self.constraints = constraints
        self.energy = energy
        self.settings = settings or MapperSettings()
        self.model = AnalyticalModel(arch, energy)
        self._structures: dict[tuple[StructureSpec, tuple], MappingStructure] = {}

    # ------------------------------------------------------------------ batches
    def _model_structure(self, space: MapSpace, spec: StructureSpec, slots: tuple) -> MappingStructure:
        key = (spec, slots)
        st = self._structures.get(key)
        if st is None:
            names = self.arch.level_names
            st = MappingStructure(
                levels=names,
                dims=space.dims,
                temporal_perm=spec.temporal,
                spatial_perm=tuple(spec.spatial[i] if space.levels[i].has_spatial else None for i in range(len(names))),
                split=tuple(spec.split[i] if space.levels[i].has_spatial else 0 for i in range(len(names))),
                keep=spec.keep,
                slots=tuple(Slot(names[lv], kind, dim) for (lv, kind, dim) in slots),
                spaces=space.spaces,
            )
            self._structures[key] = st
        return st

    def _evaluate(self, space: MapSpace, spec: StructureSpec, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cycles, energy_pJ, valid) of ``rows`` under one structure."""
        merged = space.slot_factors(rows)
        # slots that are 1 in every row make no loop; leaving them out keeps the nest small
        slots = tuple(k for k in _slot_order(space, merged) if (merged[k] != 1).any())
        factors = np.stack([merged[k] for k in slots], axis=1) if slots else np.ones((rows.shape[0], 0), dtype=np.int64)
        st = self._model_structure(space, spec, slots)
        res = self.model.evaluate_batch(space.shape, st, factors)
        return (np.asarray(res.cycles, dtype=float), np.asarray(res.energy_pJ, dtype=float), np.asarray(res.valid, dtype=bool))

    def _mapping(self, space: MapSpace, spec: StructureSpec, row: np.ndarray) -> Mapping:
        merged = space.slot_factors(row[None, :])
        slots = _slot_order(space, merged)
        st = self._model_structure(space, spec, slots)
        return mapping_from_structure(st, np.array([merged[k][0] for k in slots], dtype=np.int64))

    # ------------------------------------------------------------------ search
    def search(self, shape: Workload, metric: str | Sequence[str] | None = None) -> MapperResult:
        """Best mapping of ``shape`` by ``metric`` (default: the settings' metric)."""
        t0 = time.perf_counter()
        objectives = parse_metric(metric) if metric is not None else self.settings.metric
        space = MapSpace(self.arch, self.constraints, shape, self.settings.limits)
        temporal_defaults = self._temporal_defaults(space)
        evaluated = valid_count = 0

        best = _Best()
        top = max(1, self.settings.refine_top)
        budget = self.settings.max_evaluations or np.inf
        if space.keep_enumerated:
            evaluated, valid_count, sampled = self._factor_search(space, space.keep_combos, objectives, temporal_defaults, budget, best)
        else:
            evaluated, valid_count, sampled = self._keep_greedy(space, objectives, temporal_defaults, budget, best)
        if not best.rows:
            raise HalocError(
                f"no valid mapping for layer {_shape_text(shape)}: {space.explain_infeasible()}",
                file=self.constraints.source or None,
                key="constraints",
                fix="relax the constraint named, or use a larger level",
            )

        # phase 2/3: local search over loop orders and bypass choices of the best rows
        if space.free_temporal_levels() or not space.keep_enumerated:
            e2, v2 = self._refine(space, objectives, best, top)
            evaluated += e2
            valid_count += v2
        if sampled:
            e3, v3 = self._climb(space, objectives, best, top)
            evaluated += e3
            valid_count += v3

        spec, row = best.specs[0], best.rows[0]
        mapping = self._mapping(space, spec, row)
        evaluation = self.model.evaluate(shape, mapping)
        seconds = time.perf_counter() - t0
        log.debug("mapper: %s evaluated %d (%d valid) in %.3f s", _shape_text(shape), evaluated, valid_count, seconds)
        return MapperResult(mapping, evaluation, evaluated, valid_count, seconds, objectives)

    def _keep_greedy(self, space: MapSpace, objectives: tuple[str, ...], temporal_defaults: list[tuple[str, ...]],
                     budget: float, best: _Best) -> tuple[int, int, bool]:
        """Choose free keep sets level by level (innermost first), re-searching factors for each option."""
        small = max(100, int(budget // 30)) if np.isfinite(budget) else budget
        current = list(space.keep_combos[0])
        evaluated, valid, sampled = self._factor_search(space, [tuple(current)], objectives, temporal_defaults, small, best,
                                                        max_rows=self.settings.max_rows // 2)
        for lv in reversed([r.index for r in space.levels if r.keep_free]):
            choice_best = _Best()
            choice = current[lv]
            if best.rows:
                choice_best.rows, choice_best.specs = best.rows[:1], best.specs[:1]
                choice_best.cycles, choice_best.energy = best.cycles[:1], best.energy[:1]
            for opt in space.keep_options(lv):
                if opt == current[lv]:
                    continue
                combo = list(current)
                combo[lv] = opt
                local = _Best()
                e, v, smp = self._factor_search(space, [tuple(combo)], objectives, temporal_defaults, small, local,
                                                max_rows=self.settings.max_rows // 2)
                evaluated, valid, sampled = evaluated + e, valid + v, sampled or smp
                if not local.rows:
                    continue
                self._merge(best, objectives, max(1, self.settings.refine_top), local.specs, np.stack(local.rows),
                            np.asarray(local.cycles), np.asarray(local.energy))
                before = (choice_best.cycles[:1], choice_best.energy[:1])
                self._merge(choice_best, objectives, 1, local.specs[:1], np.stack(local.rows[:1]),
                            np.asarray(local.cycles[:1]), np.asarray(local.energy[:1]))
                if (choice_best.cycles[:1], choice_best.energy[:1]) != before:
                    choice = opt
            current[lv] = choice
        return evaluated, valid, sampled

    def _factor_search(self, space: MapSpace, keeps: list[tuple[frozenset[str], ...]], objectives: tuple[str, ...],
                       temporal_defaults: list[tuple[str, ...]], budget: float, best: _Best,
                       max_rows: int | None = None) -> tuple[int, int, bool]:
        """Phase 1 over the given keep combinations; returns (evaluated, valid, sampled)."""
        shape = space.shape
        evaluated = valid_count = 0
        # candidate groups: (spec, rows)
        groups: list[tuple[StructureSpec, np.ndarray, np.ndarray]] = []  # spec, rows, mac cycles
        for keep in keeps:
            rows = space.rows(keep, max_rows)
            if rows.shape[0] == 0:
                continue
            side = space.side_key(rows)
            for s in np.unique(side):
                sub = rows[side == s]
                for temporal in temporal_defaults:
                    spec = space.structure(keep, sub[0], temporal)
                    groups.append((spec, sub, space.compute_cycles(sub)))
        if not groups:
            return 0, 0, False

        top = max(1, self.settings.refine_top)
        delay_first = objectives[0] == "delay"
        mac_energy = space.problem.macs * self.energy.compute
        rng = np.random.default_rng(self.settings.seed)
        sampled = False
        pending = [(spec, rows, cc, np.ones(rows.shape[0], dtype=bool)) for spec, rows, cc in groups]
        while evaluated < budget:
            # next threshold: the smallest MAC-cycle count among rows not evaluated yet
            remaining = [cc[m] for _, _, cc, m in pending if m.any()]
            if not remaining:
                break
            lowest = float(min(r.min() for r in remaining))
            if best.cycles:
                bc, be = best.cycles[0], best.energy[0]
                if delay_first and lowest > bc:
                    break
                if objectives[0] == "edp" and lowest * mac_energy >= bc * be:
                    break
            if delay_first and best.cycles:
                limit = best.cycles[0]
            elif delay_first or objectives[0] == "edp":
                limit = lowest
            else:
                limit = np.inf
            picks = [mask & (cc <= limit) for _, _, cc, mask in pending]
            total = sum(int(p.sum()) for p in picks)
            room = budget - evaluated
            if total > room:
                # too many: a seeded uniform sample of this round (phase 3 climbs from the best)
                sampled = True
                frac = room / total
                for k, pk in enumerate(picks):
                    idx = np.flatnonzero(pk)
                    take = int(np.ceil(idx.size * frac))
                    keep_idx = np.sort(rng.choice(idx, size=min(take, idx.size), replace=False)) if idx.size else idx
                    pending[k][3][idx] = False  # the rest of the round is dropped
                    picks[k] = np.zeros_like(pk)
                    picks[k][keep_idx] = True
            for (spec, rows, cc, mask), sel in zip(pending, picks):
                if not sel.any():
                    continue
                mask &= ~sel
                r = rows[sel]
                cyc, en, ok = self._evaluate(space, spec, r)
                evaluated += r.shape[0]
                valid_count += int(ok.sum())
                self._merge(best, objectives, top, [spec] * int(ok.sum()), r[ok], cyc[ok], en[ok])
            if not delay_first and objectives[0] != "edp":
                break
        if any(m.any() for _, _, _, m in pending) and not (delay_first and best.cycles and
                                                          min(float(cc[m].min()) for _, _, cc, m in pending if m.any()) > best.cycles[0]):
            sampled = True
        return evaluated, valid_count, sampled

    def _temporal_defaults(self, space: MapSpace) -> list[tuple[str, ...]]:
        n = space.n_levels
        if not space.free_temporal_levels():
            return [tuple(space.default_temporal(i) for i in range(n))]
        out: list[tuple[str, ...]] = []
        # read-write data spaces (the outputs) first, then the others in problem order
        spaces = sorted(space.problem.data_spaces, key=lambda t: not t.read_write)
        for st in (t.name for t in spaces):
            t = tuple(space.default_temporal(i, st) for i in range(n))
            if t not in out:
                out.append(t)
        return out

    def _merge(self, best: _Best, objectives: tuple[str, ...], top: int, specs: list[StructureSpec],
               rows: np.ndarray, cycles: np.ndarray, energy: np.ndarray) -> None:
        """Keep the ``top`` best of the current best plus new candidates (stable on ties)."""
        if rows.shape[0] == 0:
            return
        all_c = np.concatenate([np.asarray(best.cycles, dtype=float), cycles])
        all_e = np.concatenate([np.asarray(best.energy, dtype=float), energy])
        keys = _score_keys(objectives, all_c, all_e)
        order = np.lexsort(tuple(reversed(keys)) if len(keys) > 1 else (keys[0],))[:top]
        old_n = len(best.rows)
        new_rows, new_specs = [], []
        for k in order:
            if k < old_n:
                new_rows.append(best.rows[k])
                new_specs.append(best.specs[k])
            else:
                new_rows.append(rows[k - old_n])
                new_specs.append(specs[k - old_n])
        best.rows, best.specs = new_rows, new_specs
        best.cycles = [float(all_c[k]) for k in order]
        best.energy = [float(all_e[k]) for k in order]

    def _climb(self, space: MapSpace, objectives: tuple[str, ...], best: _Best, top: int) -> tuple[int, int]:
        """Hill-climb the best rows by one-prime-factor moves (after a sampled phase 1)."""
        evaluated = valid = 0
        for _ in range(max(0, self.settings.climb_rounds)):
            before = (best.cycles[0], best.energy[0])
            trials: dict[StructureSpec, list[np.ndarray]] = {}
            for spec, row in zip(list(best.specs), list(best.rows)):
                nb = space.neighbours(row, spec.keep)
                if nb.shape[0] == 0:
                    continue
                side = space.side_key(nb)
                for sk in np.unique(side):
                    sub = nb[side == sk]
                    st = space.structure(spec.keep, sub[0], spec.temporal)
                    trials.setdefault(st, []).extend(list(sub))
            for spec, rows in trials.items():
                r = np.unique(np.stack(rows), axis=0)
                cyc, en, ok = self._evaluate(space, spec, r)
                evaluated += r.shape[0]
                valid += int(ok.sum())
                self._merge(best, objectives, top, [spec] * int(ok.sum()), r[ok], cyc[ok], en[ok])
                best.rows, best.specs, best.cycles, best.energy = _dedupe(best)
            if (best.cycles[0], best.energy[0]) == before:
                break
        return evaluated, valid

    def _refine(self, space: MapSpace, objectives: tuple[str, ...], best: _Best, top: int) -> tuple[int, int]:
        """Coordinate descent over free loop orders and keep sets of the ``top`` best rows."""
        evaluated = valid = 0
        free_levels = space.free_temporal_levels()
        keep_levels = [] if space.keep_enumerated else [r.index for r in space.levels if r.keep_free]
        for _ in range(max(1, self.settings.refine_rounds)):
            improved = False
            for level in free_levels + [-1 - k for k in keep_levels]:
                trials: dict[StructureSpec, list[np.ndarray]] = {}
                for spec, row in zip(best.specs, best.rows):
                    if level >= 0:
                        for order in space.temporal_orders(level, row):
                            if order != spec.temporal[level]:
                                t = list(spec.temporal)
                                t[level] = order
                                trials.setdefault(replace(spec, temporal=tuple(t)), []).append(row)
                    else:
                        lv = -1 - level
                        for k in space.keep_options(lv):
                            if k != spec.keep[lv]:
                                kk = list(spec.keep)
                                kk[lv] = k
                                trials.setdefault(replace(spec, keep=tuple(kk)), []).append(row)
                before = (best.cycles[0], best.energy[0])
                for spec, rows in trials.items():
                    r = np.stack(rows)
                    cyc, en, ok = self._evaluate(space, spec, r)
                    evaluated += r.shape[0]
                    valid += int(ok.sum())
                    self._merge(best, objectives, top, [spec] * int(ok.sum()), r[ok], cyc[ok], en[ok])
                    best.rows, best.specs, best.cycles, best.energy = _dedupe(best)
                if (best.cycles[0], best.energy[0]) != before:
                    improved = True
            if not improved:
                break
        return evaluated, valid


def _slot_order(space: MapSpace, slots: Iterable[tuple[int, str, str]]) -> tuple[tuple[int, str, str], ...]:
    """Model slots in structure order: level outermost first, temporal before spatial, dims in problem order."""
    return tuple(sorted(slots, key=lambda k: (k[0], k[1] != "temporal", space.dims.index(k[2]))))


def _dedupe(best: _Best) -> tuple[list, list, list, list]:
    """Drop repeated (spec, row) pairs so the kept top rows stay distinct."""
    seen: set[tuple[StructureSpec, bytes]] = set()
    out: tuple[list, list, list, list] = ([], [], [], [])
    for r, s, c, e in zip(best.rows, best.specs, best.cycles, best.energy):
        k = (s, r.tobytes())
        if k in seen:
            continue
        seen.add(k)
        out[0].append(r)
        out[1].append(s)
        out[2].append(c)
        out[3].append(e)
    return out


def _shape_text(shape: Workload) -> str:
    return describe(shape)
