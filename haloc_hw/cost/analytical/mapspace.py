"""The constrained map space of one problem (a convolution or any Timeloop problem) on one architecture.

A mapping is, per storage level, a temporal loop order with one factor per problem
dimension, a spatial order + X/Y split with one factor per dimension (levels with fan-out
only), and a keep set. Constraints fix some of this; the rest is the map space the mapper
searches. This module turns ``(arch, constraints, shape)`` into:

* **factor columns** — one per free-able ``(level, kind, dim)`` slot, kind ``T``
  (temporal), ``X`` or ``Y`` (spatial, by mesh axis). A dimension whose spatial side is not
  fixed by the constraints gets both an ``X`` and a ``Y`` column, of which at most one may
  exceed 1 (a dimension appears once in a level's spatial permutation). Fixed factors
  (``0`` = the whole dimension) are pre-set;
* **candidate rows** (``numpy`` int arrays, one row per factor assignment) built by joining
  the exact factorizations of every dimension one dimension at a time, pruning partial
  rows on the checks that are monotone in the factors: per-level X/Y fan-out limits and
  per-level capacity (tile sizes only depend on factors at and below a level, and grow with
  them; dimensions not joined yet count as 1, a lower bound);
* **structures** — a row's loop orders and keep sets (:class:`StructureSpec`), which the
  model evaluates in batches.

Pruning of very large spaces (documented on :class:`SpaceLimits`): when a partial join
exceeds ``max_rows`` rows, half of the kept rows are those with the largest spatial
product so far and half are sampled with a fixed seed (the same inputs always give the same
rows). The spatial product of a partial row is a myopic guide, so such a cut can miss the
optimum, in delay as well as energy; it never happens on the row-stationary constraints
shipped with the project, whose spaces are small enough to enumerate exhaustively.

Only dense, perfectly factorized mappings are generated (Timeloop's default map space).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import numpy as np

from haloc_hw.errors import HalocError
from haloc_hw.spec.constraints import merge_directives
from haloc_hw.spec.mapping import Constraints, Directive, DirectiveType
from haloc_hw.problem import Workload, as_problem
from haloc_hw.spec.model import DATA_SPACES, Architecture

Kind = Literal["T", "X", "Y"]

# Which data spaces a CNN-layer dimension indexes (Timeloop's projections); a general
# problem's own relevance is ``Problem.relevant``. Kept for callers of the CNN names.
RELEVANT: dict[str, frozenset[str]] = {
    "G": frozenset(DATA_SPACES),
    "C": frozenset({"Weights", "Inputs"}),
    "M": frozenset({"Weights", "Outputs"}),
    "R": frozenset({"Weights", "Inputs"}),
    "S": frozenset({"Weights", "Inputs"}),
    "N": frozenset({"Inputs", "Outputs"}),
    "P": frozenset({"Inputs", "Outputs"}),
    "Q": frozenset({"Inputs", "Outputs"}),
}


@dataclass(frozen=True)
class SpaceLimits:
    """Knobs bounding the enumeration.

    ``max_rows``: largest number of partial rows kept during the join; beyond it rows are
    kept half by spatial product (largest first), half by a ``seed``-ed sample.
    ``max_spatial``: when the full product of per-dimension options exceeds ``4 * max_rows``,
    spatial factors are chosen first: only the ``max_spatial`` most parallel spatial
    assignments are kept, each joined with its temporal factors. Less parallel mappings
    (which may save energy) are then never seen.
    ``max_keep_combos``: free keep/bypass choices are enumerated jointly when there are at
    most this many combinations; otherwise every free data space starts kept and the mapper
    explores bypass level by level (it can then miss optima needing several bypass changes
    at once).
    """

    max_rows: int = 100_000
    max_keep_combos: int = 16
    seed: int = 0
    max_spatial: int = 24


@dataclass(frozen=True)
class Column:
    """One factor slot: ``level`` is the position in ``arch.levels`` (outermost = 0)."""

    level: int
    kind: Kind
    dim: str


@dataclass(frozen=True)
class LevelRule:
    """What the constraints leave open at one storage level."""

    index: int
    name: str
    fanout: tuple[int, int]
    capacity: int | None
    fanout_only: bool
    t_prefix: tuple[str, ...]
    t_middle: tuple[str, ...]
    t_suffix: tuple[str, ...]
    s_prefix: tuple[str, ...]
    s_middle: tuple[str, ...]
    s_suffix: tuple[str, ...]
    split: int | None
    side: dict[str, str] = field(default_factory=dict)  # dim -> "X" | "Y" | "free" (spatial levels only)
    keep_fixed: frozenset[str] = frozenset()
    keep_free: tuple[str, ...] = ()
    x_middle_max: int | None = None  # for a split inside the free middle: how many middle dims may go to X
    y_middle_max: int | None = None

    @property
    def has_spatial(self) -> bool:
        return self.fanout[0] * self.fanout[1] > 1


@dataclass(frozen=True)
class StructureSpec:
    """Loop orders and keep sets of a group of rows (what a batch evaluation shares).

    ``temporal[i]`` / ``spatial[i]``: full permutation strings of level ``i``, innermost first;
    ``split[i]``: number of leading spatial positions on X; ``keep[i]``: kept data spaces.
    """

    temporal: tuple[str, ...]
    spatial: tuple[str, ...]
    split: tuple[int, ...]
    keep: tuple[frozenset[str], ...]


def ordered_factorizations(n: int, k: int, caps: Iterable[int | None] | None = None) -> np.ndarray:
    """All ``k``-tuples of positive integers whose product is ``n`` (each ≤ its cap), as rows."""
    caps_l = list(caps) if caps is not None else [None] * k
    out: list[tuple[int, ...]] = []
    divisors = [d for d in range(1, n + 1) if n % d == 0]

    def rec(i: int, rest: int, acc: tuple[int, ...]) -> None:
        if i == k - 1:
            cap = caps_l[i]
            if cap is None or rest <= cap:
                out.append(acc + (rest,))
            return
        cap = caps_l[i]
        for d in divisors:
            if d > rest:
                break
            if rest % d or (cap is not None and d > cap):
                continue
            rec(i + 1, rest // d, acc + (d,))

    if k == 0:
        return np.ones((1 if n == 1 else 0, 0), dtype=np.int64)
    rec(0, n, ())
    return np.array(out, dtype=np.int64).reshape(len(out), k)


def _merged(constraints: Constraints, target: str, type_: DirectiveType) -> Directive | None:
    """All directives of one target and type as one (constraints built by hand may repeat them)."""
    found = constraints.for_target(target, type_)
    return merge_directives(found, constraints.source)[0] if found else None


def _perm_parts(d: Directive | None, dims: tuple[str, ...], where: str, source: str,
                known: frozenset[str] | None = None) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(fixed innermost prefix, free middle, fixed outermost suffix), dims of this shape only.

    ``known``: letters a permutation may name (default: the CNN-layer dims, so constraints
    written for grouped layers also serve ungrouped ones); letters outside the shape are dropped.
    """
    known = frozenset(RELEVANT) if known is None else known
    prefix_s = (d.permutation or "") if d else ""
    suffix_s = (d.permutation_suffix or "") if d else ""
    for sep in ("_", " "):
        if sep in prefix_s and not suffix_s:
            prefix_s, suffix_s = prefix_s.split(sep, 1)
    prefix_s = prefix_s.replace("_", "").replace(" ", "")
    suffix_s = suffix_s.replace("_", "").replace(" ", "")
    letters = prefix_s + suffix_s
    for ch in letters:
        if ch not in known:
            raise HalocError(f"unknown dimension '{ch}' in permutation", file=source or None, key=f"{where}.permutation", fix=f"use letters from {''.join(dims)}")
    if len(set(letters)) != len(letters):
        raise HalocError("a dimension appears twice in the permutation", file=source or None, key=f"{where}.permutation", fix="list each dimension once")
    prefix = tuple(c for c in prefix_s if c in dims)
    suffix = tuple(c for c in suffix_s if c in dims)
    middle = tuple(c for c in dims if c not in prefix and c not in suffix)
    return prefix, middle, suffix


class MapSpace:
    """The constrained map space of ``shape`` on ``arch`` (see the module docstring).

    ``shape`` is a ConvShape or a :class:`~haloc_hw.problem.Problem`; everything here works
    on its Problem (dimensions, data spaces and their projections).
    """

    def __init__(self, arch: Architecture, constraints: Constraints, shape: Workload, limits: SpaceLimits | None = None) -> None:
        self.arch = arch
        self.constraints = constraints
        self.shape = shape
        self.problem = problem = as_problem(shape)
        self.limits = limits or SpaceLimits()
        self.bounds: dict[str, int] = dict(problem.dims)
        self.dims: tuple[str, ...] = tuple(self.bounds)
        self.spaces: tuple[str, ...] = problem.space_names
        self.relevant: dict[str, frozenset[str]] = {d: problem.relevant(d) for d in self.dims}
        cnn_like = set(self.dims) <= set(RELEVANT)
        self._known_letters = frozenset(RELEVANT) | frozenset(self.dims) if cnn_like else frozenset(self.dims)
        # per data space: single-term axes [(dim, c)] and multi-term axes [[(dim, c), ...]]
        self._single: list[list[tuple[str, int]]] = []
        self._multi: list[list[tuple[tuple[str, int], ...]]] = []
        for t in problem.data_spaces:
            self._single.append([axis[0] for axis in t.projection if len(axis) == 1])
            self._multi.append([axis for axis in t.projection if len(axis) > 1])
        # sliding-window rank of each dim (default loop orders): dims of multi-term axes that
        # also index a read-write space first (P, Q), then other multi-term dims (R, S)
        multi_dims = {d for axes in self._multi for axis in axes for d, _ in axis}
        rw_dims = {d for t in problem.data_spaces if t.read_write for d in t.dims}
        self._halo = {d: ((0 if d in rw_dims else 1), self.dims.index(d)) if d in multi_dims else (2, 0)
                      for d in self.dims}
        self.n_levels = len(arch.levels)
        self._source = constraints.source or ""
        names = set(arch.level_names)
        for d in constraints.directives:
            if d.target not in names:
                raise HalocError(
                    f"constraint targets unknown level '{d.target}'",
                    file=self._source or None,
                    key="target",
                    fix=f"use one of {', '.join(arch.level_names)}",
                )
        self._directives: dict[tuple[str, str], Directive | None] = {
            (lvl.name, ty): _merged(constraints, lvl.name, ty) for lvl in arch.levels for ty in ("temporal", "spatial", "datatype")
        }
        self.levels: tuple[LevelRule, ...] = tuple(self._level_rule(i) for i in range(self.n_levels))
        self.columns: list[Column] = []
        self._base: list[int] = []  # fixed value per column (free columns start at 1)
        self._free: dict[str, list[int]] = {d: [] for d in self.dims}
        self._caps: dict[int, int | None] = {}
        self._mins: dict[int, int] = {}
        self._build_columns()
        self.col_index = {c: j for j, c in enumerate(self.columns)}
        self.keep_combos, self.keep_enumerated = self._keep_combos()

    # ------------------------------------------------------------------ constraints
    def _fixed_value(self, dim: str, v: int) -> int:
        return self.bounds[dim] if v == 0 else v

    def _level_rule(self, i: int) -> LevelRule:
        lvl = self.arch.levels[i]
        fan = self.arch.fanout(i)
        t, s, dt = (self._directives[lvl.name, ty] for ty in ("temporal", "spatial", "datatype"))
        tp, tm, ts = _perm_parts(t, self.dims, f"{lvl.name}.temporal", self._source, self._known_letters)
        sp, sm, ss = _perm_parts(s, self.dims, f"{lvl.name}.spatial", self._source, self._known_letters)
        split = s.split if s else None
        side: dict[str, str] = {}
        x_mid_max = y_mid_max = None
        fx, fy = fan
        if fx * fy > 1:
            n = len(self.dims)
            full_known = len(sp) + len(ss) == n
            if split is None:
                for dim in self.dims:
                    side[dim] = "free"
            else:
                for pos, dim in enumerate(sp):
                    side[dim] = "X" if pos < split else "Y"
                for j, dim in enumerate(ss):
                    side[dim] = "X" if n - len(ss) + j < split else "Y"
                lo, hi = len(sp), n - len(ss)  # middle occupies positions lo..hi-1
                for dim in sm:
                    side[dim] = "X" if hi <= split else ("Y" if lo >= split else "free")
                if not full_known and lo < split < hi:
                    x_mid_max, y_mid_max = split - lo, hi - split
            for dim in self.dims:  # an axis without fan-out cannot hold a factor > 1
                if side[dim] == "free" and fx == 1:
                    side[dim] = "Y"
                elif side[dim] == "free" and fy == 1:
                    side[dim] = "X"
        # keep / bypass
        if lvl.fanout_only:
            keep_fixed: frozenset[str] = frozenset()
            keep_free: tuple[str, ...] = ()
        elif i == 0:
            keep_fixed, keep_free = frozenset(self.spaces), ()
        else:
            kept = set(dt.keep or ()) if dt else set()
            byp = set(dt.bypass or ()) if dt else set()
            for name in kept | byp:
                if name not in self.spaces:
                    raise HalocError(f"unknown data space '{name}'", file=self._source or None, key=f"{lvl.name}.keep", fix=f"use {', '.join(self.spaces)}")
            if kept & byp:
                raise HalocError(f"data space kept and bypassed at once: {sorted(kept & byp)}", file=self._source or None, key=f"{lvl.name}.bypass", fix="name it in only one list")
            keep_fixed = frozenset(kept)
            keep_free = tuple(t_ for t_ in self.spaces if t_ not in kept and t_ not in byp)
        cap = None if lvl.size_words is None or lvl.is_dram else lvl.effective_size
        return LevelRule(
            index=i, name=lvl.name, fanout=fan, capacity=cap, fanout_only=lvl.fanout_only,
            t_prefix=tp, t_middle=tm, t_suffix=ts, s_prefix=sp, s_middle=sm, s_suffix=ss,
            split=split, side=side, keep_fixed=keep_fixed, keep_free=keep_free,
            x_middle_max=x_mid_max, y_middle_max=y_mid_max,
        )

    def _build_columns(self) -> None:
        for i, rule in enumerate(self.levels):
            name = rule.name
            t, s = self._directives[name, "temporal"], self._directives[name, "spatial"]
            ones = Directive(target=name, type="temporal", factors={d: 1 for d in self.dims})
            for dim in self.dims:
                if rule.fanout_only and not _names_dim(t, dim):
                    # Timeloop's map space (timeloopfe pins them): a fan-out-only container
                    # has no temporal loops unless a constraint on it gives that factor
                    self._add_column(Column(i, "T", dim), ones, f"{name}.temporal")
                    continue
                self._add_column(Column(i, "T", dim), t, f"{name}.temporal")
            if not rule.has_spatial:
                if s is not None:
                    for dim, v in s.factors.items():
                        if dim in self.bounds and self._fixed_value(dim, v) != 1:
                            raise HalocError(
                                f"spatial factor {dim}={v} at a level without fan-out",
                                file=self._source or None, key=f"{name}.spatial.factors", fix="remove it or use 1",
                            )
                continue
            fx, fy = rule.fanout
            for dim in self.dims:
                sd = rule.side[dim]
                kinds: list[Kind] = ["X", "Y"] if sd == "free" else [sd]  # type: ignore[list-item]
                kinds = [k for k in kinds if (fx if k == "X" else fy) > 1]
                fixed = s.factors.get(dim) if s else None
                if fixed is not None and self._fixed_value(dim, fixed) != 1 and not kinds:
                    raise HalocError(
                        f"spatial factor {dim}={self._fixed_value(dim, fixed)} at '{name}' lies on a mesh axis without fan-out "
                        f"(fan-out {fx}x{fy})",
                        file=self._source or None, key=f"{name}.spatial", fix="change the split or the factor",
                    )
                if fixed is not None and len(kinds) == 2 and self._fixed_value(dim, fixed) != 1:
                    # fixed factor with a free side: give it to the axis that can hold it (X first)
                    v = self._fixed_value(dim, fixed)
                    kinds = ["X"] if v <= fx else ["Y"]
                for k in kinds:
                    self._add_column(Column(i, k, dim), s, f"{name}.spatial", cap=fx if k == "X" else fy)

    def _add_column(self, col: Column, d: Directive | None, where: str, cap: int | None = None) -> None:
        j = len(self.columns)
        self.columns.append(col)
        fixed = d.factors.get(col.dim) if d else None
        if fixed is not None:
            self._base.append(self._fixed_value(col.dim, fixed))
            return
        self._base.append(1)
        self._free[col.dim].append(j)
        mx = d.max_factors.get(col.dim) if d else None
        caps = [c for c in (cap, mx) if c is not None]
        self._caps[j] = min(caps) if caps else None
        self._mins[j] = int(d.min_factors.get(col.dim, 1)) if d else 1

    def _keep_combos(self) -> tuple[list[tuple[frozenset[str], ...]], bool]:
        per_level = [sorted(self.keep_options(i), key=lambda s: (-len(s), sorted(s)))  # "keep all" first
                     for i in range(self.n_levels)]
        total = math.prod(len(o) for o in per_level)
        if total <= self.limits.max_keep_combos:
            return [tuple(c) for c in itertools.product(*per_level)], True
        return [tuple(o[0] for o in per_level)], False

    def keep_options(self, level: int) -> list[frozenset[str]]:
        """Every keep set the constraints allow at ``level`` (fixed keeps plus any subset of the free ones).

        Sets whose smallest tiles (the factors the constraints fix, all others 1) already
        overflow the level are left out: no mapping could use them. So a 1-word register
        that must keep Outputs offers only {Outputs}, as in Timeloop, instead of starting
        the search from "keep everything", which can never fit. If no set fits, all are
        returned (the search then explains the overflow).
        """
        rule = self.levels[level]
        out = []
        for r in range(len(rule.keep_free) + 1):
            for sub in itertools.combinations(rule.keep_free, r):
                out.append(rule.keep_fixed | frozenset(sub))
        if rule.capacity is None or not rule.keep_free:
            return out
        smallest = self._smallest_tiles()
        fits = [o for o in out if sum(int(smallest[t][0, level]) for t in o) <= rule.capacity]
        return fits or out

    def _smallest_tiles(self) -> dict[str, np.ndarray]:
        if not hasattr(self, "_min_tiles"):
            self._min_tiles = self.tile_sizes(self.extents(self.base_row()[None, :]))
        return self._min_tiles

    # ------------------------------------------------------------------ factor rows
    def dim_options(self, dim: str) -> np.ndarray:
        """All assignments of ``dim`` to its free columns (rows), fixed columns excluded."""
        fixed_prod = math.prod(self._base[j] for j, c in enumerate(self.columns) if c.dim == dim and j not in self._free[dim])
        bound = self.bounds[dim]
        free = self._free[dim]
        if fixed_prod == 0 or bound % fixed_prod:
            raise HalocError(
                f"fixed factors of {dim} multiply to {fixed_prod}, which does not divide {dim}={bound}",
                file=self._source or None, key=f"factors.{dim}", fix=f"use factors of {dim} that divide {bound} (or 0 for the whole dimension)",
            )
        rest = bound // fixed_prod
        opts = ordered_factorizations(rest, len(free), [self._caps[j] for j in free])
        if len(free) and len(opts):
            mins = np.array([self._mins[j] for j in free])
            opts = opts[(opts >= mins).all(axis=1)]
            # a dimension appears once per spatial permutation: not on X and Y of one level at once
            by_level: dict[int, list[int]] = {}
            for k, j in enumerate(free):
                c = self.columns[j]
                if c.kind != "T":
                    by_level.setdefault(c.level, []).append(k)
            for ks in by_level.values():
                if len(ks) == 2:
                    opts = opts[(opts[:, ks[0]] == 1) | (opts[:, ks[1]] == 1)]
        return opts

    def base_row(self) -> np.ndarray:
        return np.array(self._base, dtype=np.int64)

    def extents(self, rows: np.ndarray) -> np.ndarray:
        """Cumulative extents ``ext[row, level, dim]``: product of factors at and below a level."""
        n = rows.shape[0]
        per = np.ones((n, self.n_levels, len(self.dims)), dtype=np.int64)
        dim_pos = {d: k for k, d in enumerate(self.dims)}
        for j, c in enumerate(self.columns):
            per[:, c.level, dim_pos[c.dim]] *= rows[:, j]
        return np.flip(np.cumprod(np.flip(per, axis=1), axis=1), axis=1)

    def tile_sizes(self, ext: np.ndarray) -> dict[str, np.ndarray]:
        """Tile size of every data space at every level (rows × levels).

        Timeloop's box rule for any projection: an axis ``Σ c·d`` spans
        ``1 + Σ c·(ext[d] − 1)`` points (the sliding window of a convolution is the case
        ``P·Wstride + R·Wdilation``); the tile is the product over axes.
        """
        e = {d: ext[:, :, k] for k, d in enumerate(self.dims)}
        out: dict[str, np.ndarray] = {}
        for t in self.problem.data_spaces:
            size = np.ones_like(ext[:, :, 0])
            for axis in t.projection:
                span = np.ones_like(size)
                for d, c in axis:
                    span = span + c * (e[d] - 1)
                size = size * span
            out[t.name] = size
        return out

    def _feasible(self, rows: np.ndarray, keep: tuple[frozenset[str], ...]) -> np.ndarray:
        """Rows passing the fan-out and capacity checks (exact on complete rows, a bound on partial ones)."""
        ok = np.ones(rows.shape[0], dtype=bool)
        for rule in self.levels:
            if not rule.has_spatial:
                continue
            for k, lim in (("X", rule.fanout[0]), ("Y", rule.fanout[1])):
                cols = [j for j, c in enumerate(self.columns) if c.level == rule.index and c.kind == k]
                if cols:
                    ok &= rows[:, cols].prod(axis=1) <= lim
        if not ok.any():
            return ok
        ext = self.extents(rows)
        tiles = self.tile_sizes(ext)
        for rule in self.levels:
            if rule.capacity is None or not keep[rule.index]:
                continue
            used = sum(tiles[t][:, rule.index] for t in keep[rule.index])
            ok &= used <= rule.capacity
        return ok

    def neighbours(self, row: np.ndarray, keep: tuple[frozenset[str], ...]) -> np.ndarray:
        """Feasible rows one prime-factor move away from ``row``.

        A move takes one prime factor of a dimension from one free column and multiplies it
        into another free column of the same dimension (so the bounds still hold). Used to
        improve rows when the space was too large to evaluate in full.
        """
        out: list[np.ndarray] = []
        for d in self.dims:
            free = self._free[d]
            for a in free:
                va = int(row[a])
                if va == 1:
                    continue
                for p in _primes(va):
                    for b in free:
                        if b == a:
                            continue
                        cap = self._caps.get(b)
                        if cap is not None and row[b] * p > cap:
                            continue
                        new = row.copy()
                        new[a] //= p
                        new[b] *= p
                        if new[a] < self._mins.get(a, 1):
                            continue
                        cb = self.columns[b]
                        if cb.kind != "T":
                            other = self.col_index.get(Column(cb.level, "Y" if cb.kind == "X" else "X", d))
                            if other is not None and new[other] > 1:
                                continue
                        out.append(new)
        if not out:
            return np.zeros((0, row.shape[0]), dtype=np.int64)
        rows = np.unique(np.stack(out), axis=0)
        return rows[self._feasible(rows, keep) & self._split_ok(rows)]

    def spatial_product(self, rows: np.ndarray) -> np.ndarray:
        cols = [j for j, c in enumerate(self.columns) if c.kind != "T"]
        if not cols:
            return np.ones(rows.shape[0], dtype=np.int64)
        return rows[:, cols].prod(axis=1)

    def compute_cycles(self, rows: np.ndarray) -> np.ndarray:
        """MAC cycles of each row (= temporal iterations): a lower bound on its cycles."""
        return self.problem.macs // self.spatial_product(rows)

    def _dim_tables(self, dim: str, opts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per option of ``dim``: cumulative extent per level, X and Y factor per level (each m × L)."""
        m, nl = opts.shape[0], self.n_levels
        per = np.ones((m, nl), dtype=np.int64)
        xf = np.ones((m, nl), dtype=np.int64)
        yf = np.ones((m, nl), dtype=np.int64)
        free = self._free[dim]
        for j, c in enumerate(self.columns):
            if c.dim != dim:
                continue
            val = opts[:, free.index(j)] if j in free else np.full(m, self._base[j], dtype=np.int64)
            per[:, c.level] *= val
            if c.kind == "X":
                xf[:, c.level] *= val
            elif c.kind == "Y":
                yf[:, c.level] *= val
        ext = np.flip(np.cumprod(np.flip(per, axis=1), axis=1), axis=1)
        return ext, xf, yf

    def rows(self, keep: tuple[frozenset[str], ...], max_rows: int | None = None) -> np.ndarray:
        """All feasible factor rows for one keep combination (see the module docstring).

        ``max_rows`` overrides the limit of :class:`SpaceLimits` (for quick exploratory joins).

        The join keeps, per partial row, running per-level products (tile-size factors,
        sliding-window extents, X/Y fan-out use), so each step only multiplies small arrays.
        """
        limit = max_rows or self.limits.max_rows
        options = {d: self.dim_options(d) for d in self.dims}
        if any(options[d].shape[0] == 0 for d in self.dims):
            return np.zeros((0, len(self.columns)), dtype=np.int64)
        if math.prod(options[d].shape[0] for d in self.dims) <= 4 * limit:
            return self._join(keep, options, limit)
        # Large space: choose the spatial part first (most parallel first), then the temporal
        # factors under each spatial choice, with a share of the row budget each.
        combos = self._spatial_combos(options)
        if not combos:
            return self._join(keep, options, limit)
        share = max(1000, limit // len(combos))
        parts = [self._join(keep, restricted, share) for restricted in combos]
        parts = [p for p in parts if p.shape[0]]
        if not parts:
            return np.zeros((0, len(self.columns)), dtype=np.int64)
        return np.concatenate(parts, axis=0)

    def _spatial_combos(self, options: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Option tables restricted to one spatial assignment each, for the ``max_spatial`` most parallel ones."""
        nl = self.n_levels
        fx, fy = self._fanout_limits()
        projs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for d in self.dims:
            free = self._free[d]
            spos = [k for k, j in enumerate(free) if self.columns[j].kind != "T"]
            if not spos:
                continue
            uniq, inv = np.unique(options[d][:, spos], axis=0, return_inverse=True)
            projs[d] = (uniq, inv.reshape(-1))
        if not projs:
            return []
        idx = np.zeros((1, 0), dtype=np.int64)
        xs = np.ones((1, nl), dtype=np.int64)
        ys = np.ones((1, nl), dtype=np.int64)
        for j, c in enumerate(self.columns):  # fixed spatial factors use fan-out too
            if c.kind != "T" and j not in self._free[c.dim]:
                (xs if c.kind == "X" else ys)[0, c.level] *= self._base[j]
        dims = list(projs)
        for d in dims:
            uniq = projs[d][0]
            free = self._free[d]
            spos = [j for j in free if self.columns[j].kind != "T"]
            xf = np.ones((uniq.shape[0], nl), dtype=np.int64)
            yf = np.ones((uniq.shape[0], nl), dtype=np.int64)
            for k, j in enumerate(spos):
                c = self.columns[j]
                (xf if c.kind == "X" else yf)[:, c.level] *= uniq[:, k]
            n, m = idx.shape[0], uniq.shape[0]
            nx = np.repeat(xs, m, axis=0) * np.tile(xf, (n, 1))
            ny = np.repeat(ys, m, axis=0) * np.tile(yf, (n, 1))
            ok = ((nx <= fx) & (ny <= fy)).all(axis=1)
            idx = np.concatenate([np.repeat(idx, m, axis=0), np.tile(np.arange(m)[:, None], (n, 1))], axis=1)[ok]
            xs, ys = nx[ok], ny[ok]
            if idx.shape[0] > 200_000:  # keep the most parallel partial assignments
                keep_i = np.argsort(-(xs * ys).prod(axis=1), kind="stable")[:200_000]
                idx, xs, ys = idx[keep_i], xs[keep_i], ys[keep_i]
        prod = (xs * ys).prod(axis=1)
        order = np.argsort(-prod, kind="stable")[: self.limits.max_spatial]
        out = []
        for i in order:
            restricted = dict(options)
            for k, d in enumerate(dims):
                restricted[d] = options[d][projs[d][1] == idx[i, k]]
            out.append(restricted)
        return out

    def _fanout_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-level X and Y fan-out (1 at levels without spatial fan-out), for vectorised checks."""
        fan = np.array([r.fanout if r.has_spatial else (1, 1) for r in self.levels], dtype=np.int64).reshape(-1, 2)
        return fan[:, 0], fan[:, 1]

    def _join(self, keep: tuple[frozenset[str], ...], options: dict[str, np.ndarray], limit: int) -> np.ndarray:
        """Join the dimensions' option tables with fan-out and capacity pruning (see :meth:`rows`)."""
        nl = self.n_levels
        order = sorted(self.dims, key=lambda d: (len(options[d]), self.dims.index(d)))
        for d in order:
            if options[d].shape[0] == 0:
                return np.zeros((0, len(self.columns)), dtype=np.int64)
        caps = [(r.index, r.capacity, keep[r.index]) for r in self.levels if r.capacity is not None and keep[r.index]]
        fx, fy = self._fanout_limits()
        one = np.ones((1, nl), dtype=np.int64)
        needed = sorted({self.spaces.index(t) for _, _, kept in caps for t in kept})
        # running state per partial row (each (rows, levels)): X/Y fan-out use, per data space
        # the product of its single-term axis spans, and per multi-term axis Σ c·(ext − 1)
        st: dict[Any, np.ndarray] = {"X": one.copy(), "Y": one.copy()}
        for t in needed:
            st[("p", t)] = one.copy()
            for a in range(len(self._multi[t])):
                st[("m", t, a)] = np.zeros((1, nl), dtype=np.int64)
        idx = np.zeros((1, 0), dtype=np.int64)
        for d in order:
            opts = options[d]
            e, xf, yf = self._dim_tables(d, opts)
            n, m = idx.shape[0], opts.shape[0]
            if n * m > 2 * limit:
                sel = self._reduce_idx(st["X"] * st["Y"], max(1, (2 * limit) // m))
                idx = idx[sel]
                st = {k: v[sel] for k, v in st.items()}
                n = idx.shape[0]
            # Every (partial row i, option j) pair as a broadcast (n, m, levels) array; only the
            # pairs that pass the fan-out and capacity checks are gathered (row-major, i.e. the
            # order of repeating the partial rows m times), so nothing of size n·m is copied per key.
            new_st: dict[Any, np.ndarray] = {
                "X": st["X"][:, None, :] * xf[None, :, :],
                "Y": st["Y"][:, None, :] * yf[None, :, :],
            }
            for t in needed:
                f = None
                for dd, c in self._single[t]:
                    if dd == d:
                        span = e if c == 1 else 1 + c * (e - 1)
                        f = span if f is None else f * span
                old = st[("p", t)][:, None, :]
                new_st[("p", t)] = old if f is None else old * f[None, :, :]
                for a, axis in enumerate(self._multi[t]):
                    cs = sum(c for dd, c in axis if dd == d)
                    old = st[("m", t, a)][:, None, :]
                    new_st[("m", t, a)] = old + (cs * (e - 1))[None, :, :] if cs else old
            ok = ((new_st["X"] <= fx) & (new_st["Y"] <= fy)).all(axis=2)
            if caps:
                tiles: dict[str, np.ndarray] = {}
                for t in needed:
                    size = new_st[("p", t)]
                    for a in range(len(self._multi[t])):
                        size = size * (1 + new_st[("m", t, a)])
                    tiles[self.spaces[t]] = size
                for li, cap, kept in caps:
                    ok &= sum(tiles[t][..., li] for t in kept) <= cap
            rows_i, opts_j = np.nonzero(ok)
            idx = np.concatenate([idx[rows_i], opts_j[:, None].astype(np.int64)], axis=1)
            st = {k: np.broadcast_to(v, (n, m, nl))[rows_i, opts_j] for k, v in new_st.items()}
            if idx.shape[0] == 0:
                return np.zeros((0, len(self.columns)), dtype=np.int64)
            if idx.shape[0] > limit:
                sel = self._reduce_idx(st["X"] * st["Y"], limit)
                idx = idx[sel]
                st = {k: v[sel] for k, v in st.items()}
        rows = np.tile(self.base_row(), (idx.shape[0], 1))
        for k, d in enumerate(order):
            free = self._free[d]
            if free:
                rows[:, free] = options[d][idx[:, k]]
        rows = rows[self._split_ok(rows)]
        return rows

    def _reduce_idx(self, spatial_use: np.ndarray, limit: int) -> np.ndarray:
        """Indices of ``limit`` partial rows: half by largest spatial use, half sampled with the seed."""
        n = spatial_use.shape[0]
        if n <= limit:
            return np.arange(n)
        sp = spatial_use.prod(axis=1)
        order = np.argsort(-sp, kind="stable")
        head = limit // 2
        rng = np.random.default_rng(self.limits.seed)
        tail = rng.choice(order[head:], size=limit - head, replace=False)
        return np.sort(np.concatenate([order[:head], tail]))

    def _split_ok(self, rows: np.ndarray) -> np.ndarray:
        """A split inside a free middle bounds how many non-trivial middle dims fit on each axis."""
        ok = np.ones(rows.shape[0], dtype=bool)
        for rule in self.levels:
            if rule.x_middle_max is None:
                continue
            for k, lim in (("X", rule.x_middle_max), ("Y", rule.y_middle_max)):
                cols = [j for j, c in enumerate(self.columns) if c.level == rule.index and c.kind == k and c.dim in rule.s_middle]
                if cols:
                    ok &= (rows[:, cols] > 1).sum(axis=1) <= lim
        return ok

    # ------------------------------------------------------------------ structures
    def x_dims(self, row: np.ndarray, level: int) -> frozenset[str]:
        """Dims placed on X at ``level`` by this row (factor > 1 on an X column, or a fixed X side)."""
        rule = self.levels[level]
        out = set()
        for dim in self.dims:
            if rule.side.get(dim) == "X":
                out.add(dim)
            elif rule.side.get(dim) == "free":
                j = self.col_index.get(Column(level, "X", dim))
                if j is not None and row[j] > 1:
                    out.add(dim)
        return frozenset(out)

    def side_key(self, rows: np.ndarray) -> np.ndarray:
        """An integer per row encoding its free X/Y choices (rows with equal keys share a structure).

        Where a split falls inside a free middle, which middle dims are trivial also matters
        (they pad the X positions), so those bits are part of the key too.
        """
        key = np.zeros(rows.shape[0], dtype=np.int64)
        bit = 0
        for j, c in enumerate(self.columns):
            rule = self.levels[c.level]
            straddle = rule.x_middle_max is not None and c.dim in rule.s_middle and c.kind != "T"
            if (c.kind == "X" and rule.side.get(c.dim) == "free") or straddle:
                key |= (rows[:, j] > 1).astype(np.int64) << bit
                bit += 1
        return key

    def active_spatial(self, row: np.ndarray, level: int) -> frozenset[str]:
        """Dims with a spatial factor > 1 at ``level`` in this row."""
        return frozenset(c.dim for j, c in enumerate(self.columns) if c.level == level and c.kind != "T" and row[j] > 1)

    def spatial_perm(self, level: int, xs: frozenset[str], active: frozenset[str] | None = None) -> tuple[str, int]:
        """Spatial permutation (innermost first) and split that put exactly ``xs``'s free dims on X.

        ``active``: dims with a spatial factor > 1 (only those may not pad X positions).
        Without a constraint split, X dims come first in the order prefix, middle, suffix,
        then the Y dims: a fixed prefix/suffix order is then kept within each axis only.
        """
        rule = self.levels[level]
        if not rule.has_spatial:
            return "".join(self.dims), len(self.dims)
        if rule.split is not None and len(rule.s_prefix) + len(rule.s_suffix) == len(self.dims):
            return "".join(rule.s_prefix + rule.s_suffix), rule.split
        if rule.split is not None:
            lo = len(rule.s_prefix)
            n_x_mid = rule.split - lo
            mid_x = [d for d in rule.s_middle if d in xs and rule.side[d] != "Y"]
            act = set(xs) if active is None else set(active)
            trivial = [d for d in rule.s_middle if d not in mid_x and d not in act]
            mid_y = [d for d in rule.s_middle if d not in mid_x and d in act]
            # X positions of the middle: X dims, then trivial (factor-1) dims as padding
            pad = max(0, n_x_mid - len(mid_x))
            middle = mid_x + trivial[:pad] + trivial[pad:] + mid_y
            return "".join(rule.s_prefix + tuple(middle) + rule.s_suffix), rule.split
        order = list(rule.s_prefix + rule.s_middle + rule.s_suffix)
        xs_l = [d for d in order if d in xs]
        ys_l = [d for d in order if d not in xs]
        return "".join(xs_l + ys_l), len(xs_l)

    def default_temporal(self, level: int, stationary: str | None = None) -> str:
        """Full temporal permutation of ``level`` with the free middle in a default order.

        ``stationary`` orders the middle so that dimensions not indexing that data space come
        innermost (the data space then stays put across them); ``None`` keeps problem order.
        """
        rule = self.levels[level]
        middle = list(rule.t_middle)
        if stationary is not None:
            middle.sort(key=lambda d: (stationary in self.relevant[d], self._halo[d]))
        return "".join(rule.t_prefix + tuple(middle) + rule.t_suffix)

    def free_temporal_levels(self) -> list[int]:
        return [r.index for r in self.levels if len(r.t_middle) >= 2]

    def temporal_orders(self, level: int, row: np.ndarray, max_orders: int = 24) -> list[str]:
        """Distinct effective orders of ``level``'s free middle for one row.

        Only loops with a factor > 1 matter, so only those are permuted (factor-1 dims keep
        problem order at the end of the middle). When there are more than ``max_orders``
        orders, orders that group dimensions by the data spaces they index are tried instead
        (every order of the groups, and each dimension moved innermost of its group).
        """
        rule = self.levels[level]
        cols = {d: self.col_index[Column(level, "T", d)] for d in rule.t_middle}
        active = [d for d in rule.t_middle if row[cols[d]] > 1]
        idle = [d for d in rule.t_middle if d not in active]
        if len(active) <= 1:
            return ["".join(rule.t_prefix + tuple(active + idle) + rule.t_suffix)]
        if math.factorial(len(active)) <= max_orders:
            perms = list(itertools.permutations(active))
        else:
            groups: dict[frozenset[str], list[str]] = {}
            for d in active:
                groups.setdefault(self.relevant[d], []).append(d)
            glist = sorted(groups.values(), key=lambda g: self.dims.index(g[0]))
            seen: set[tuple[str, ...]] = set()
            perms = []
            for gorder in itertools.permutations(glist):
                for gi, g in enumerate(gorder):
                    for lead in g:
                        seq: list[str] = []
                        for gj, g2 in enumerate(gorder):
                            seq.extend([lead] + [x for x in g2 if x != lead] if gj == gi else g2)
                        t = tuple(seq)
                        if t not in seen:
                            seen.add(t)
                            perms.append(t)
        return ["".join(rule.t_prefix + tuple(p) + tuple(idle) + rule.t_suffix) for p in perms]

    def structure(self, keep: tuple[frozenset[str], ...], row: np.ndarray, temporal: tuple[str, ...] | None = None) -> StructureSpec:
        temporal = temporal or tuple(self.default_temporal(i) for i in range(self.n_levels))
        sp, split = [], []
        for i in range(self.n_levels):
            perm, s = self.spatial_perm(i, self.x_dims(row, i), self.active_spatial(row, i))
            sp.append(perm)
            split.append(s)
        return StructureSpec(temporal=tuple(temporal), spatial=tuple(sp), split=tuple(split), keep=tuple(keep))

    def slot_factors(self, rows: np.ndarray) -> dict[tuple[int, str, str], np.ndarray]:
        """Factors per ``(level, "temporal"|"spatial", dim)`` (X and Y columns merged), one array each."""
        out: dict[tuple[int, str, str], np.ndarray] = {}
        for j, c in enumerate(self.columns):
            key = (c.level, "temporal" if c.kind == "T" else "spatial", c.dim)
            out[key] = out[key] * rows[:, j] if key in out else rows[:, j].copy()
        return out

    # ------------------------------------------------------------------ diagnostics
    def explain_infeasible(self) -> str:
        """Name the innermost level that cannot hold the smallest tile the constraints allow."""
        row = self.base_row()[None, :]
        for keep in self.keep_combos[:1]:
            ext = self.extents(row)
            tiles = self.tile_sizes(ext)
            for rule in reversed(self.levels):
                if rule.capacity is None or not keep[rule.index]:
                    continue
                used = int(sum(tiles[t][0, rule.index] for t in keep[rule.index]))
                if used > rule.capacity:
                    fixed = [
                        f"{self.levels[c.level].name} {'temporal' if c.kind == 'T' else 'spatial'} {c.dim}={self._base[j]}"
                        for j, c in enumerate(self.columns)
                        if c.level >= rule.index and j not in self._free[c.dim] and self._base[j] > 1
                    ]
                    return (
                        f"level '{rule.name}' holds {rule.capacity} words but the smallest tile the constraints allow "
                        f"({', '.join(sorted(keep[rule.index]))}) needs {used}"
                        + (f"; forced by {', '.join(fixed)}" if fixed else "")
                    )
        for rule in self.levels:
            if not rule.has_spatial:
                continue
            for k, lim in (("X", rule.fanout[0]), ("Y", rule.fanout[1])):
                cols = [j for j, c in enumerate(self.columns) if c.level == rule.index and c.kind == k and j not in self._free[c.dim]]
                prod = math.prod(self._base[j] for j in cols)
                if prod > lim:
                    return f"fixed spatial factors at '{rule.name}' need {prod} on {k} but the fan-out is {lim}"
        for d in self.dims:
            if self.dim_options(d).shape[0] == 0:
                return f"no factorization of {d}={self.bounds[d]} fits the free slots (factor caps, fan-out limits)"
        return "no combination of factors satisfies every capacity and fan-out limit at once"


def _names_dim(d: Directive | None, dim: str) -> bool:
    """Whether a directive constrains ``dim``'s factor (fixed, max or min)."""
    return d is not None and (dim in d.factors or dim in d.max_factors or dim in d.min_factors)


def _primes(n: int) -> list[int]:
    """Distinct prime factors of ``n``."""
    out, p = [], 2
    while p * p <= n:
        if n % p == 0:
            out.append(p)
            while n % p == 0:
                n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _halo_rank(dim: str) -> int:
    """Tie-break inside a stationarity group: sliding-window dims (P, Q) innermost, then R, S."""
    return {"P": 0, "Q": 1, "R": 2, "S": 3}.get(dim, 4)
