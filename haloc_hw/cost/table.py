"""The cost table: every candidate's cost for one model on one backend, cached on disk.

A table is built for (model layers, backend). It holds the cost of every original layer
(convolutions, and Linear layers as 1×1 convolutions) and, for decomposable layers, of the
three sub-convolutions of every Tucker-2 candidate (plus the whole triple timed together
when the backend has a ``fused`` role). Identical shapes are evaluated once.

Entries are content-addressed: an entry's key is the SHA-256 of the canonical JSON of
(backend name, backend version, backend fingerprint – canonical arch, constraints and energy
table, or device/dtype/batch –, the backend's extra key fields, the workload). A changed arch,
ERT or backend version therefore never reuses a stale number, and an unchanged one never
evaluates twice.

Storage: ONE SQLite file (``NAME.sqlite``), because

* each finished job is committed in its own transaction, so a build killed at any moment
  (even ``kill -9``) leaves a consistent file and a rerun resumes where it stopped; a failed
  evaluation is never written;
* anyone can inspect it with any SQLite client (``sqlite3 NAME.sqlite 'select * from entries'``)
  and no server or extra dependency is needed (``sqlite3`` is in the standard library);
* readers (a search, a report) can open it while a build is still writing: during a build
  the file is in WAL mode; at the end it is switched back to a self-contained single file.

Tables in the file:

``entries``  key, backend, backend_version, kind (conv | fused), the shape fields, workload and
             key-field JSON, cycles, energy_pJ, latency_s, utilization, breakdown JSON, created.
``layers``   the model's layers in order (name, kind, decomposable, shape JSON).
``slots``    (layer, role, r1, r2) -> entry key; role is original | in | core | out | fused;
             r1 = r2 = 0 for the original layer.
``metadata`` name -> JSON value: model, input size, batch, arch path and hash, backend,
             versions, and whether the build completed.

Backends may declare, besides the :class:`~haloc_hw.cost.base.CostModel` protocol:

* ``key_fields() -> dict``: extra fields hashed into every key and stored with each entry
  (e.g. ``{"batch": 128, "dtype": "bf16", "memory_format": "channels_last", "device": "H100"}``);
* ``fused = True`` and ``evaluate_fused(triples) -> list[Cost]``: a candidate's cost is then
  its fused cost, not the sum of its three sub-convolutions;
* ``workload_key(shape) -> dict``: the shape fields that matter to it (default: the Timeloop
  problem, which ignores the input size before padding).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import math
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from haloc_hw import __version__ as haloc_version
from haloc_hw.cost.base import Cost, CostModel
from haloc_hw.cost.metric import METRICS, get_metric
from haloc_hw.cost.executors import Executor, SerialExecutor
from haloc_hw.errors import HalocError
from haloc_hw.fileio import write_text_atomic
from haloc_hw.workload import ROLES, SUB_ROLES, ConvShape, LayerInfo

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x484C4354  # "HLCT": marks a file as a haloc-hw cost table
CSV_COLUMNS: tuple[str, ...] = ("layer", "role", "r1", "r2", "cycles", "energy_pJ", "latency_s", "utilization", "backend")
SHAPE_FIELDS: tuple[str, ...] = (
    "G", "C", "M", "R", "S", "N", "P", "Q", "Wstride", "Hstride", "Wdilation", "Hdilation",
)  # fmt: skip

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    backend_version TEXT NOT NULL,
    kind TEXT NOT NULL,
    {", ".join(f"{f} INTEGER" for f in SHAPE_FIELDS)},
    workload TEXT NOT NULL,
    key_fields TEXT NOT NULL,
    cycles REAL,
    energy_pJ REAL,
    latency_s REAL,
    utilization REAL,
    breakdown TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    position INTEGER PRIMARY KEY,
    layer TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    decomposable INTEGER NOT NULL,
    shape TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS slots (
    layer TEXT NOT NULL,
    role TEXT NOT NULL,
    r1 INTEGER NOT NULL,
    r2 INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (layer, role, r1, r2)
);
CREATE TABLE IF NOT EXISTS metadata (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


# ---------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal text, hence equal hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot put {type(obj).__name__} in a cache key")


def shape_fields(shape: ConvShape) -> dict[str, int]:
    """The Timeloop problem of a shape: every dimension (G included) and coefficient."""
    return {name: int(getattr(shape, name)) for name in SHAPE_FIELDS}


def default_workload_key(shape: ConvShape) -> dict[str, int]:
    """What identifies a workload by default: its Timeloop problem, plus the real input size
    when it is not the "same"-padding one (``W != P * Wstride``), which only measured
    backends can tell apart but which must never be confused with the usual shape."""
    fields = shape_fields(shape)
    if shape.W is not None and shape.W != shape.P * shape.Wstride:
        fields["W"] = int(shape.W)
    if shape.H is not None and shape.H != shape.Q * shape.Hstride:
        fields["H"] = int(shape.H)
    return fields


@dataclass(frozen=True)
class BackendIdentity:
    """Everything about a backend that goes into a cache key, computed once per build."""

    name: str
    version: str
    fingerprint: Mapping[str, Any]
    key_fields: Mapping[str, Any]

    @classmethod
    def of(cls, backend: CostModel) -> "BackendIdentity":
        fields = getattr(backend, "key_fields", None)
        return cls(
            name=backend.name,
            version=str(backend.version()),
            fingerprint=backend.fingerprint(),
            key_fields=fields() if callable(fields) else {},
        )

    @functools.cached_property
    def _prefix(self) -> str:
        return canonical_json(
            {"backend": self.name, "version": self.version, "fingerprint": self.fingerprint, "key_fields": self.key_fields}
        )

    def key(self, workload: Any) -> str:
        """SHA-256 hex of (this identity, ``workload``) where workload is plain JSON data."""
        text = '{"identity":' + self._prefix + ',"workload":' + canonical_json(workload) + "}"
        return hashlib.sha256(text.encode()).hexdigest()


def workload_of(backend: CostModel, job: "Job") -> Any:
    """The plain-data workload of a job as the backend sees it (what gets hashed)."""
    fn = getattr(backend, "workload_key", None) or default_workload_key
    if job.kind == "fused":
        return {"fused": [fn(s) for s in job.shapes]}
    return fn(job.shapes[0])


def entry_key(backend: CostModel, workload: ConvShape | Sequence[ConvShape], identity: BackendIdentity | None = None) -> str:
    """Cache key of one workload (a shape, or a Tucker-2 triple for the fused role) on ``backend``."""
    identity = identity or BackendIdentity.of(backend)
    job = Job("conv", (workload,)) if isinstance(workload, ConvShape) else Job("fused", tuple(workload))
    return identity.key(workload_of(backend, job))


# ---------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One evaluation: a single convolution, or a whole Tucker-2 triple (``fused``)."""

    kind: str  # "conv" | "fused"
    shapes: tuple[ConvShape, ...]


def is_fused(backend: CostModel) -> bool:
    """Whether ``backend`` measures whole Tucker-2 triples (``fused`` attribute, else the method's presence)."""
    declared = getattr(backend, "fused", None)
    if declared is not None:
        return bool(declared)
    return callable(getattr(backend, "evaluate_fused", None))


def evaluate_job(backend: CostModel, job: Job) -> Cost:
    """Evaluate one job on ``backend`` (runs in a worker process; must stay importable and light)."""
    if job.kind == "fused":
        costs = backend.evaluate_fused([job.shapes])
    else:
        costs = backend.evaluate([job.shapes[0]])
    if len(costs) != 1 or not isinstance(costs[0], Cost):
        raise HalocError(f"backend '{backend.name}' returned {len(costs)} results for one workload", fix="report this bug")
    return costs[0]


# ---------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------


def _bad_file(path: Path, why: str) -> HalocError:
    return HalocError(
        f"not a usable haloc-hw cost table ({why})",
        file=path,
        fix="delete the file or rebuild it with 'haloc-hw tables ... --rebuild'",
    )


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open ``path`` as a cost table, creating the schema when ``create``; reject foreign files."""
    if not create and not path.is_file():
        raise HalocError("cost table not found", file=path, fix="build it with 'haloc-hw tables ... --out DIR'")
    modes = ["rwc"] if create else ["rw", "ro"]  # a table on read-only storage can still be queried
    for mode in modes:
        try:
            conn = sqlite3.connect(f"file:{path.resolve()}?mode={mode}", uri=True, timeout=30.0, isolation_level=None)
            break
        except sqlite3.Error as err:
            if mode == modes[-1]:
                raise _bad_file(path, str(err)) from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        n_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and n_tables == 0 and create:
            # one transaction: a killed process leaves either nothing or a marked, complete schema
            conn.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID};"
                f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        elif app_id != APPLICATION_ID:
            raise _bad_file(path, "an SQLite file written by something else" if n_tables else "empty file")
        elif version != SCHEMA_VERSION:
            raise _bad_file(path, f"schema version {version}, this haloc-hw reads {SCHEMA_VERSION}")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _bad_file(path, f"integrity check failed: {check}")
    except sqlite3.DatabaseError as err:
        conn.close()
        raise _bad_file(path, str(err)) from None
    except HalocError:
        conn.close()
        raise
    return conn


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _insert_entry(conn: sqlite3.Connection, key: str, identity: BackendIdentity, job: Job, workload: Any, cost: Cost) -> None:
    shape = shape_fields(job.shapes[0]) if job.kind == "conv" else {f: None for f in SHAPE_FIELDS}
    conn.execute(
        f"INSERT OR REPLACE INTO entries (key, backend, backend_version, kind, {', '.join(SHAPE_FIELDS)}, workload, key_fields,"
        f" cycles, energy_pJ, latency_s, utilization, breakdown, created) VALUES ({', '.join('?' * (len(SHAPE_FIELDS) + 12))})",
        (
            key,
            identity.name,
            identity.version,
            job.kind,
            *(shape[f] for f in SHAPE_FIELDS),
            canonical_json(workload),
            canonical_json(identity.key_fields),
            _num(cost.cycles),
            _num(cost.energy_pJ),
            _num(cost.latency_s),
            _num(cost.utilization),
            canonical_json(cost.breakdown or {}),
            _now(),
        ),
    )


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLayer:
    name: str
    kind: str
    decomposable: bool
    shape: ConvShape


class CostTable:
    """A built cost table, loaded into memory for fast queries by the search.

    Costs are per layer: ``cost(layer, r1, r2)`` is the candidate's fused cost when the
    backend measured one, else the sum of its three sub-convolutions. For ``edp`` sums are
    taken first: EDP of a candidate (or a model) = total energy × total cycles.
    """

    def __init__(self, path: Path, layers: list[TableLayer], slots: dict[tuple[str, str, int, int], str],
                 entries: dict[str, Cost], backends: dict[str, str], metadata: dict[str, Any]) -> None:  # fmt: skip
        self.path = path
        self._layers = {layer.name: layer for layer in layers}
        self._order = [layer.name for layer in layers]
        self._slots = slots
        self._entries = entries
        self._entry_backend = backends
        self.metadata = metadata
        self.build_report: BuildReport | None = None  # set by build_table
        self._by_layer: dict[str, list[tuple[str, int, int, str]]] = {name: [] for name in self._order}
        for (layer, role, r1, r2), key in slots.items():
            self._by_layer.setdefault(layer, []).append((role, r1, r2, key))
        self._candidates: dict[str, list[tuple[int, int]]] = {}
        for layer, layer_slots in self._by_layer.items():
            pairs = sorted({(r1, r2) for role, r1, r2, _ in layer_slots if role != "original"})
            self._candidates[layer] = [p for p in pairs if self._complete(layer, *p)]

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> "CostTable":
        """Load a table file; :class:`HalocError` naming the file if it is missing, foreign or corrupt."""
        path = Path(path)
        conn = _connect(path, create=False)
        try:
            metadata = {name: json.loads(value) for name, value in conn.execute("SELECT name, value FROM metadata")}
            layers = [
                TableLayer(name, kind, bool(dec), ConvShape(**json.loads(shape)))
                for name, kind, dec, shape in conn.execute("SELECT layer, kind, decomposable, shape FROM layers ORDER BY position")
            ]
            slots = {(l, role, r1, r2): key for l, role, r1, r2, key in conn.execute("SELECT layer, role, r1, r2, key FROM slots")}
            entries: dict[str, Cost] = {}
            backends: dict[str, str] = {}
            rows = conn.execute(
                "SELECT e.key, e.cycles, e.energy_pJ, e.latency_s, e.utilization, e.breakdown, e.backend FROM entries e"
                " WHERE e.key IN (SELECT key FROM slots)"
            )
            for key, cycles, energy, latency, util, breakdown, backend in rows:
                entries[key] = Cost(cycles, energy, latency, util, json.loads(breakdown))
                backends[key] = backend
        except (sqlite3.DatabaseError, json.JSONDecodeError, TypeError) as err:
            raise _bad_file(path, f"{err.__class__.__name__}: {err}") from None
        finally:
            conn.close()
        return cls(path, layers, slots, entries, backends, metadata)

    # -- queries -------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """True when the last build evaluated every slot without failures."""
        return bool(self.metadata.get("complete")) and all(key in self._entries for key in self._slots.values())

    def layers(self) -> list[str]:
        """Layer names in model order."""
        return list(self._order)

    def layer(self, name: str) -> TableLayer:
        try:
            return self._layers[name]
        except KeyError:
            known = ", ".join(self._order[:6]) + (", ..." if len(self._order) > 6 else "")
            raise HalocError(
                f"layer '{name}' is not in this cost table (layers: {known})", file=self.path, key=name,
                fix="use a layer name from the table, or rebuild the table for this model",
            ) from None  # fmt: skip

    def decomposable_layers(self) -> list[str]:
        return [n for n in self._order if self._layers[n].decomposable]

    def candidates(self, layer: str) -> list[tuple[int, int]]:
        """The (r1, r2) candidates of a layer with a complete cost, ascending; [] if not decomposable."""
        self.layer(layer)
        return list(self._candidates.get(layer, []))

    def _complete(self, layer: str, r1: int, r2: int) -> bool:
        fused = self._slots.get((layer, "fused", r1, r2))
        if fused is not None:  # a fused backend: the fused measurement is the candidate's cost
            return fused in self._entries
        keys = [self._slots.get((layer, role, r1, r2)) for role in SUB_ROLES]
        return all(k is not None and k in self._entries for k in keys)

    def dropped_candidates(self, layer: str) -> list[tuple[int, int]]:
        """Candidates the table was built for whose cost is incomplete (a failed or missing evaluation)."""
        self.layer(layer)
        planned = sorted({(r1, r2) for role, r1, r2, _ in self._by_layer.get(layer, []) if role != "original"})
        complete = set(self._candidates.get(layer, []))
        return [p for p in planned if p not in complete]

    def entry(self, layer: str, role: str, r1: int = 0, r2: int = 0) -> Cost:
        """The raw cost of one slot (``role`` in original | in | core | out | fused)."""
        self.layer(layer)
        key = self._slots.get((layer, role, r1, r2))
        if key is None:
            what = "the original layer" if role == "original" else f"role '{role}' of candidate (r1={r1}, r2={r2})"
            raise HalocError(
                f"layer '{layer}' has no entry for {what} (candidates: {self._fmt_candidates(layer)})",
                file=self.path, key=layer, fix="pick a listed candidate, or rebuild the table with a matching --step",
            )  # fmt: skip
        cost = self._entries.get(key)
        if cost is None:
            raise HalocError(
                f"layer '{layer}' {role} (r1={r1}, r2={r2}) was never evaluated (the build stopped or this job failed)",
                file=self.path, key=layer, fix="rerun the same 'haloc-hw tables' command to finish the table",
            )  # fmt: skip
        return cost

    def _fmt_candidates(self, layer: str) -> str:
        cands = self._candidates.get(layer, [])
        if not cands:
            return "none"
        text = ", ".join(f"({a},{b})" for a, b in cands[:8])
        return text + (", ..." if len(cands) > 8 else "")

    @staticmethod
    def _check_metric(metric: str) -> None:
        get_metric(metric)

    @staticmethod
    def _combine(costs: Sequence[Cost], metric: str) -> float:
        """Sum each component over ``costs``, then combine them (EDP: summed energy x summed cycles)."""
        m = get_metric(metric)
        return float(m.combine([sum(c.metric(comp) for c in costs) for comp in m.components]))

    def candidate_costs(self, layer: str, r1: int, r2: int) -> list[Cost]:
        """The costs a candidate is made of: ``[fused]`` if measured, else ``[in, core, out]``."""
        if (layer, "fused", r1, r2) in self._slots:
            return [self.entry(layer, "fused", r1, r2)]
        if not self.layer(layer).decomposable:
            raise HalocError(
                f"layer '{layer}' is not decomposable, so it has no rank candidates", file=self.path, key=layer,
                fix="use original_cost() for it, or leave it out of the ranks",
            )  # fmt: skip
        if (layer, "in", r1, r2) not in self._slots:
            raise HalocError(
                f"layer '{layer}' has no candidate (r1={r1}, r2={r2}) (candidates: {self._fmt_candidates(layer)})",
                file=self.path, key=layer, fix="pick a listed candidate, or rebuild the table with a matching --step",
            )  # fmt: skip
        return [self.entry(layer, role, r1, r2) for role in SUB_ROLES]

    def cost(self, layer: str, r1: int, r2: int, metric: str = "cycles") -> float:
        """Cost of candidate (r1, r2) of ``layer``: fused if measured, else the sum of in/core/out."""
        self._check_metric(metric)
        return self._combine(self.candidate_costs(layer, r1, r2), metric)

    def original_cost(self, layer: str, metric: str = "cycles") -> float:
        self._check_metric(metric)
        return self._combine([self.entry(layer, "original")], metric)

    def model_cost(self, ranks: Mapping[str, tuple[int, int] | None], metric: str = "cycles") -> float:
        """Whole-model cost: layers in ``ranks`` with a pair use that candidate, the rest stay original.

        A rank for a layer the table does not know, or for a non-decomposable layer, is an error.
        """
        self._check_metric(metric)
        for name, pair in ranks.items():
            self.layer(name)
            if pair is not None and not self._layers[name].decomposable:
                raise HalocError(
                    f"ranks given for layer '{name}', which is not decomposable", file=self.path, key=name,
                    fix="set its rank to None (kept original) or drop it from the ranks",
                )  # fmt: skip
        costs: list[Cost] = []
        for name in self._order:
            pair = ranks.get(name)
            if pair is None:
                costs.append(self.entry(name, "original"))
            else:
                r1, r2 = pair
                costs.extend(self.candidate_costs(name, int(r1), int(r2)))
        return self._combine(costs, metric)

    # -- export --------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """All slots in a fixed order: layers in model order; original first; candidates ascending."""
        order = {role: i for i, role in enumerate(ROLES)}
        out = []
        for name in self._order:
            slots = sorted(
                self._by_layer.get(name, []),
                key=lambda s: (s[0] != "original", s[1], s[2], order[s[0]]),
            )
            for role, r1, r2, key in slots:
                cost = self._entries.get(key)
                out.append(
                    {
                        "layer": name,
                        "role": role,
                        "r1": None if role == "original" else r1,
                        "r2": None if role == "original" else r2,
                        **{f: getattr(cost, f, None) for f in ("cycles", "energy_pJ", "latency_s", "utilization")},
                        "backend": self._entry_backend.get(key, ""),
                    }
                )
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV (atomic). Two builds of the same table give byte-identical files."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows():
            writer.writerow(["" if row[c] is None else (repr(float(row[c])) if isinstance(row[c], float) else row[c]) for c in CSV_COLUMNS])
        path = Path(path)
        write_text_atomic(path, buf.getvalue())
        return path


# ---------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    """What a build did (also stored in the table's metadata)."""

    entries: int = 0
    cache_hits: int = 0
    evaluated: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: tuple[str, ...] = ()


def _plan(layers: Sequence[LayerInfo], backend: CostModel, identity: BackendIdentity,
          candidates_fn: Callable[[LayerInfo], Iterable[tuple[int, int]]],
          triple_fn: Callable[[ConvShape, int, int], tuple[ConvShape, ConvShape, ConvShape]]):  # fmt: skip
    """Slots (layer, role, r1, r2) -> key, and the unique jobs by key in first-seen order."""
    fused = is_fused(backend)
    slots: dict[tuple[str, str, int, int], str] = {}
    jobs: dict[str, tuple[Job, Any]] = {}

    def add(layer: str, role: str, r1: int, r2: int, job: Job) -> None:
        workload = workload_of(backend, job)
        key = identity.key(workload)
        slots[(layer, role, r1, r2)] = key
        jobs.setdefault(key, (job, workload))

    seen: set[str] = set()
    for info in layers:
        if info.name in seen:
            raise HalocError(f"layer '{info.name}' appears twice", key=info.name, fix="give every layer a unique name")
        seen.add(info.name)
        add(info.name, "original", 0, 0, Job("conv", (info.shape,)))
        if not info.decomposable:
            continue
        for r1, r2 in candidates_fn(info):
            r1, r2 = int(r1), int(r2)
            triple = triple_fn(info.shape, r1, r2)
            for role, shape in zip(SUB_ROLES, triple):
                add(info.name, role, r1, r2, Job("conv", (shape,)))
            if fused:
                add(info.name, "fused", r1, r2, Job("fused", tuple(triple)))
    return slots, jobs


def build_table(
    layers: Sequence[LayerInfo],
    backend: CostModel,
    out_path: str | Path,
    *,
    candidates_fn: Callable[[LayerInfo], Iterable[tuple[int, int]]],
    executor: Executor | None = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
    rebuild: bool = False,
    strict: bool | str = True,
    triple_fn: Callable[[ConvShape, int, int], tuple[ConvShape, ConvShape, ConvShape]] | None = None,
) -> CostTable:
    """Evaluate every slot of ``layers`` on ``backend`` into the SQLite file ``out_path``.

    Entries already in the file (same key) are cache hits and are not evaluated again; each
    finished job is committed at once, so an interrupted build resumes on rerun. Failed jobs
    are never stored. ``strict=True`` (default): any failure raises :class:`HalocError` at
    the end (after saving every success). ``strict="originals"``: only a failed original
    layer raises; candidates with a failed sub-convolution are dropped (absent from
    :meth:`CostTable.candidates`, listed by :meth:`CostTable.dropped_candidates`) with a
    warning. ``strict=False``: nothing raises.
    """
    if strict not in (True, False, "originals"):
        raise HalocError(f"strict must be True, False or 'originals', got {strict!r}", key="strict")
    from tqdm import tqdm

    if triple_fn is None:
        from haloc_hw.workload import tucker2_triple as triple_fn
    out_path = Path(out_path)
    executor = executor or SerialExecutor()
    start = time.perf_counter()

    # plan first: a bad layer list or candidate raises before anything on disk is touched
    identity = BackendIdentity.of(backend)
    slots, jobs = _plan(layers, backend, identity, candidates_fn, triple_fn)
    if rebuild:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "haloc_hw_version": haloc_version,
        **dict(metadata or {}),
        "backend": identity.name,
        "backend_version": identity.version,
        "backend_fingerprint_sha256": hashlib.sha256(canonical_json(identity.fingerprint).encode()).hexdigest(),
        "key_fields": dict(identity.key_fields),
        "fused": is_fused(backend),
        "schema_version": SCHEMA_VERSION,
        "complete": False,
    }

    conn = _connect(out_path, create=True)
    report = BuildReport(entries=len(jobs))
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process never corrupts the file
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM layers")
        conn.execute("DELETE FROM slots")
        conn.execute("DELETE FROM metadata")
        conn.executemany(
            "INSERT INTO layers (position, layer, kind, decomposable, shape) VALUES (?, ?, ?, ?, ?)",
            [
                (i, info.name, info.kind, int(info.decomposable), canonical_json({**shape_fields(info.shape), "W": info.shape.W, "H": info.shape.H}))
                for i, info in enumerate(layers)
            ],
        )
        conn.executemany("INSERT INTO slots (layer, role, r1, r2, key) VALUES (?, ?, ?, ?, ?)", [(*slot, key) for slot, key in slots.items()])
        conn.executemany("INSERT INTO metadata (name, value) VALUES (?, ?)", [(k, canonical_json(v)) for k, v in meta.items()])
        conn.execute("COMMIT")

        existing = {row[0] for row in conn.execute("SELECT key FROM entries")}
        todo = [(key, job, workload) for key, (job, workload) in jobs.items() if key not in existing]
        report.cache_hits = len(jobs) - len(todo)
        log.info("%s: %d entries, %d cached, %d to evaluate on %s (%d workers)",
                 out_path, len(jobs), report.cache_hits, len(todo), executor.name, executor.workers)  # fmt: skip

        errors: list[str] = []
        failed_keys: set[str] = set()
        bar = tqdm(total=len(jobs), initial=report.cache_hits, unit="entry", desc=f"{identity.name} table",
                   disable=not progress, dynamic_ncols=True, smoothing=0.1)  # fmt: skip
        bar.set_postfix(cached=report.cache_hits, failed=0, refresh=False)
        try:
            fn = functools.partial(evaluate_job, backend)
            for result in executor.run(fn, [job for _, job, _ in todo]):
                key, job, workload = todo[result.index]
                if result.ok:
                    conn.execute("BEGIN IMMEDIATE")
                    _insert_entry(conn, key, identity, job, workload, result.value)
                    conn.execute("COMMIT")
                    report.evaluated += 1
                else:
                    report.failed += 1
                    failed_keys.add(key)
                    errors.append(f"{job.kind} {' + '.join(s.key for s in job.shapes)}: {result.error}")
                    log.warning("evaluation failed (not stored): %s", errors[-1])
                bar.update(1)
                bar.set_postfix(cached=report.cache_hits, failed=report.failed, refresh=False)
        finally:
            bar.close()

        report.seconds = time.perf_counter() - start
        report.errors = tuple(errors)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR REPLACE INTO metadata (name, value) VALUES (?, ?)",
            [
                ("complete", canonical_json(report.failed == 0)),
                ("last_build", canonical_json({"entries": report.entries, "cache_hits": report.cache_hits,
                                               "evaluated": report.evaluated, "failed": report.failed,
                                               "seconds": round(report.seconds, 3), "finished": _now()})),
            ],
        )  # fmt: skip
        conn.execute("COMMIT")
        try:  # back to one self-contained file, unless a reader holds it open right now
            conn.execute("PRAGMA busy_timeout = 200")
            conn.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError:
            log.info("%s: stays in WAL mode while other readers have it open", out_path)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()

    failed_originals = sorted({layer for (layer, role, _, _), key in slots.items() if role == "original" and key in failed_keys})
    if report.failed and (strict is True or (strict == "originals" and failed_originals)):
        what = f"original layer(s) {', '.join(failed_originals)} among them; " if failed_originals else ""
        raise HalocError(
            f"{report.failed} of {report.entries} evaluations failed ({what}the {report.evaluated + report.cache_hits} others are saved);"
            f" first: {report.errors[0]}",
            file=out_path,
            fix="fix the cause and rerun the same command: only the missing entries are evaluated",
        )
    table = CostTable.open(out_path)
    table.build_report = report
    return table
