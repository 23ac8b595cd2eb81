"""The ``timeloop`` cost backend: real ``timeloop-mapper`` / ``timeloop-model`` runs.

Each workload is one job with its own work directory (also the process' current
directory, because Timeloop and Accelergy drop logs there):

``jobs/<key>/``  arch.yaml, problem.yaml, constraints.yaml, mapper.yaml, ERT.yaml (inputs),
                 ``mapper/timeloop-mapper.{stats.txt,map.yaml,...}``, ``map.yaml`` (the best
                 mapping), ``model/timeloop-model.stats.txt`` and the logs.

The directory is built under a temporary name and renamed to ``jobs/<key>`` only when the
run succeeded, so a kept directory always holds a complete result; failed runs are moved
to ``jobs/failed/<key>`` for diagnosis and never cached.

Timeloop 3.0.x facts this module relies on (see TIMELOOP-FORMATS.md):

* it concatenates its input files as YAML text, so no top-level key may appear twice
  (checked before running);
* ``-o DIR`` must exist (created first);
* ``timeloop-mapper`` exits 0 when no valid mapping exists and simply writes no stats: that
  is detected and reported as "no valid mapping";
* the mapper's result depends on ``num-threads``, so the thread count is pinned (1 per job
  when several jobs run side by side) and is part of the fingerprint;
* ``timeloop-model`` is given the mapping but *not* the constraints (it compares ``split``
  literally and rejects valid mappings).

The energy table: when ``accelergy`` is on PATH it is run once per architecture
(``accelergy arch.yaml [components...] -o DIR``) and its ``ERT.yaml`` is used; otherwise the
shipped ERT is. Which one was used is part of the fingerprint and of every entry's breakdown.

Processes run without a shell, in a new session, and a timeout kills the whole process
group (the mapper's worker threads and any helper it started).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from haloc_hw.cost.base import Cost, make_breakdown
from haloc_hw.cost.stats_parser import TimeloopStats, parse_stats
from haloc_hw.errors import HalocError
from haloc_hw.fileio import file_sha256, read_yaml, write_text_atomic
from haloc_hw.workload import ConvShape

log = logging.getLogger(__name__)

BACKEND_NAME = "timeloop"
ADAPTER_VERSION = "1"
MAPPER_EXE = "timeloop-mapper"
MODEL_EXE = "timeloop-model"
ACCELERGY_EXE = "accelergy"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAPPER_SETTINGS: dict[str, Any] = {
    "algorithm": "random-pruned",
    "optimization-metrics": ["delay", "energy"],
    "live-status": False,
    "timeout": 15000,
    "victory-condition": 500,
    "max-permutations-per-if-visit": 16,
}
_MISSING_FIX = "install Timeloop and put its bin folder on PATH, pass --timeloop-bin DIR, or use --backend analytical (needs no external tool)"


def find_timeloop(bin_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Paths of ``timeloop-mapper`` and ``timeloop-model`` in ``bin_dir`` (or its ``bin/``) or on PATH."""
    found: dict[str, Path] = {}
    for exe in (MAPPER_EXE, MODEL_EXE):
        if bin_dir is not None:
            for folder in (Path(bin_dir), Path(bin_dir) / "bin"):
                cand = folder / exe
                if cand.is_file() and os.access(cand, os.X_OK):
                    found[exe] = cand.resolve()
                    break
        else:
            hit = shutil.which(exe)
            if hit:
                found[exe] = Path(hit).resolve()
    missing = [exe for exe in (MAPPER_EXE, MODEL_EXE) if exe not in found]
    if missing:
        where = f"in {bin_dir}" if bin_dir is not None else "on PATH"
        raise HalocError(f"{' and '.join(missing)} not found {where}", key="timeloop-bin", fix=_MISSING_FIX)
    return found[MAPPER_EXE], found[MODEL_EXE]


def _dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def _hyphenate(settings: dict[str, Any]) -> dict[str, Any]:
    """Timeloop 3.0.x silently ignores ``num_threads``-style keys: write them hyphenated."""
    return {str(k).replace("_", "-"): v for k, v in settings.items()}


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


class TimeloopCostModel:
    """Costs from real Timeloop runs (one mapper search, then the model on its best mapping).

    Build it with :meth:`from_files`. ``jobs_dir`` keeps every successful run
    (``jobs_dir/<key>``); ``threads`` is the mapper's ``num-threads`` (``None``: the value in
    ``mapper_settings``, else 1); ``timeout_s`` bounds each Timeloop process; ``clock_hz``
    (optional) turns cycles into ``latency_s``.
    """

    name = BACKEND_NAME

    def __init__(
        self,
        arch: Any,
        constraints: Any,
        ert_path: str | Path,
        *,
        jobs_dir: str | Path,
        mapper_settings: dict[str, Any] | None = None,
        bin_dir: str | Path | None = None,
        threads: int | None = 1,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        run_model: bool = True,
        clock_hz: float | None = None,
        use_accelergy: bool | None = None,
        components: Sequence[str | Path] = (),
    ) -> None:
        from haloc_hw.spec.writer import arch_to_v3

        self.mapper_exe, self.model_exe = find_timeloop(bin_dir)
        settings = dict(DEFAULT_MAPPER_SETTINGS)
        settings.update(_hyphenate(mapper_settings or {}))
        if threads is None:
            threads = settings.get("num-threads") or 1
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise HalocError(f"Timeloop threads must be an integer >= 1, got {threads!r}", key="timeloop-threads",
                             fix="pass 1 or more (--timeloop-threads, or num-threads in the mapper file)")  # fmt: skip
        if not timeout_s > 0:
            raise HalocError(f"Timeloop timeout must be > 0 seconds, got {timeout_s!r}", key="timeloop-timeout",
                             fix="pass --timeloop-timeout SECONDS")  # fmt: skip
        self.arch = arch
        self.constraints = constraints
        self.jobs_dir = Path(jobs_dir)
        self.threads = threads
        self.timeout_s = float(timeout_s)
        self.run_model = run_model
        self.clock_hz = clock_hz
        settings["num-threads"] = self.threads
        settings["live-status"] = False
        self.mapper_settings = settings
        self.arch_v3 = arch_to_v3(arch)
        self.shipped_ert = Path(ert_path)
        accelergy = shutil.which(ACCELERGY_EXE) if use_accelergy is not False else None
        if use_accelergy and accelergy is None:
            raise HalocError("accelergy not found on PATH", key="accelergy", fix="install Accelergy, or use the shipped ERT")
        if accelergy:
            self.ert_doc = self._accelergy_ert(Path(accelergy), [Path(c) for c in components])
            self.ert_source = "accelergy"
        else:
            self.ert_doc = self._read_ert(self.shipped_ert)
            self.ert_source = f"shipped:{self.shipped_ert.name}"
        self._version: str | None = None
        self._identity: Any = None

    @classmethod
    def from_files(
        cls,
        arch_path: str | Path,
        constraints_path: str | Path | Sequence[str | Path] | None = None,
        ert_path: str | Path | None = None,
        mapper_path: str | Path | None = None,
        **kwargs: Any,
    ) -> "TimeloopCostModel":
        """Load the arch, its constraints and mapper settings; the ERT defaults to the one beside the arch
        (``ARCH.ert.yaml``, or ``ERT.yaml`` in a Timeloop run folder), as for the analytical backend."""
        from haloc_hw.spec import load_arch, load_constraints
        from haloc_hw.spec.shipped import require_ert_path, resolve_spec_path

        arch_path = resolve_spec_path(arch_path, key="architecture")
        arch = load_arch(arch_path)
        constraints = load_constraints(constraints_path or [], arch)
        ert_path = require_ert_path(arch_path, ert_path)
        settings: dict[str, Any] = {}
        if mapper_path is not None:
            doc = read_yaml(mapper_path)
            if not isinstance(doc, dict) or not isinstance(doc.get("mapper"), dict):
                raise HalocError("expected a top-level 'mapper:' mapping", file=mapper_path, key="mapper",
                                 fix="see mappings/mapper.yaml")  # fmt: skip
            settings = doc["mapper"]
        return cls(arch, constraints, ert_path, mapper_settings=settings, **kwargs)

    # -- identity --------------------------------------------------------------------------

    def version(self) -> str:
        """Adapter version plus digests of the two binaries: a new Timeloop build never reuses old entries."""
        if self._version is None:
            self._version = f"{ADAPTER_VERSION}+mapper.{file_sha256(self.mapper_exe)[:16]}+model.{file_sha256(self.model_exe)[:16]}"
        return self._version

    def fingerprint(self) -> dict[str, Any]:
        from haloc_hw.spec.writer import constraints_to_v3

        return {
            "arch": self.arch_v3,
            "constraints": constraints_to_v3(self.constraints),
            "ert": self.ert_doc,
            "ert_source": self.ert_source,
            "mapper": self.mapper_settings,
            "run_model": self.run_model,
            "clock_hz": self.clock_hz,
        }

    # -- ERT -------------------------------------------------------------------------------

    @staticmethod
    def _read_ert(path: Path) -> dict[str, Any]:
        doc = read_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("ERT"), dict):
            raise HalocError("expected a top-level 'ERT:' mapping", file=path, key="ERT",
                             fix="pass an Accelergy energy reference table (ERT.yaml)")  # fmt: skip
        return {"ERT": doc["ERT"]}

    def _accelergy_ert(self, exe: Path, components: list[Path]) -> dict[str, Any]:
        """Run Accelergy once per architecture (cached under ``jobs_dir/../ert/<hash>``)."""
        arch_text = _dump({"architecture": self.arch_v3["architecture"]} if "architecture" in self.arch_v3 else self.arch_v3)
        digest = hashlib.sha256((arch_text + "".join(p.read_text() for p in components)).encode()).hexdigest()[:16]
        folder = self.jobs_dir.parent / "ert" / digest
        ert = folder / "out" / "ERT.yaml"
        if not ert.is_file():
            tmp = folder.with_name(f".{digest}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "out").mkdir(parents=True)
            (tmp / "arch.yaml").write_text(arch_text)
            argv = [str(exe), "arch.yaml", *[str(p.resolve()) for p in components], "-o", "out"]
            rc, elapsed = _run(argv, tmp, self.timeout_s, tmp / "accelergy.log")
            if rc != 0 or not (tmp / "out" / "ERT.yaml").is_file():
                raise HalocError(
                    f"accelergy failed (exit {rc}) after {elapsed:.1f} s: {_tail(tmp / 'accelergy.log')}",
                    file=tmp / "accelergy.log",
                    fix="check the components, or uninstall accelergy to use the shipped ERT",
                )
            shutil.rmtree(folder, ignore_errors=True)
            folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, folder)
        return self._read_ert(ert)

    # -- running ---------------------------------------------------------------------------

    def _job_key(self, shape: ConvShape) -> str:
        from haloc_hw.cost.table import BackendIdentity, entry_key

        if self._identity is None:
            self._identity = BackendIdentity.of(self)
        return entry_key(self, shape, self._identity)

    def _inputs(self, shape: ConvShape) -> dict[str, dict[str, Any]]:
        from haloc_hw.spec.writer import constraints_to_v3, fanout_bypass_directives
        from haloc_hw.workload import to_timeloop_problem

        dims = tuple(shape.dims)
        directives = tuple(self.constraints.directives) + tuple(fanout_bypass_directives(self.arch, dims))
        return {
            "arch.yaml": self.arch_v3,
            "problem.yaml": to_timeloop_problem(shape, "v3"),
            "constraints.yaml": constraints_to_v3(directives),
            "mapper.yaml": {"mapper": self.mapper_settings},
            "ERT.yaml": self.ert_doc,
        }

    @staticmethod
    def _check_top_keys(files: dict[str, dict[str, Any]], names: Sequence[str]) -> None:
        seen: dict[str, str] = {}
        for name in names:
            for key in files[name]:
                if key in seen:
                    raise HalocError(
                        f"top-level key '{key}' appears in both {seen[key]} and {name}; Timeloop 3.0.x concatenates its inputs",
                        key=key, fix="keep each section in one file",
                    )  # fmt: skip
                seen[key] = name

    def evaluate(self, workloads: Sequence[ConvShape]) -> list[Cost]:
        return [self._evaluate_one(shape) for shape in workloads]

    def _evaluate_one(self, shape: ConvShape) -> Cost:
        key = self._job_key(shape)
        final = self.jobs_dir / key
        tmp = self.jobs_dir / f".tmp-{key[:16]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            stats, seconds = self._run_job(shape, tmp)
        except BaseException:  # keep whatever the run left for diagnosis, never as a result
            failed = self.jobs_dir / "failed" / key
            shutil.rmtree(failed, ignore_errors=True)
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, failed)
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        latency = stats.cycles / self.clock_hz if self.clock_hz else None
        return Cost(
            cycles=float(stats.cycles),
            energy_pJ=stats.energy_pJ,
            latency_s=latency,
            utilization=stats.utilization,
            breakdown=make_breakdown(
                computes=stats.computes,
                per_compute_fJ=stats.per_compute_fJ,
                ert_source=self.ert_source,
                **{name: round(value, 3) for name, value in seconds.items()},
                job_dir=str(final),
            ),
        )

    def _run_job(self, shape: ConvShape, work: Path) -> tuple[TimeloopStats, dict[str, float]]:
        """Mapper (and model) in ``work``: the stats of the last one run, and each tool's seconds."""
        files = self._inputs(shape)
        mapper_inputs = ["arch.yaml", "problem.yaml", "constraints.yaml", "mapper.yaml", "ERT.yaml"]
        self._check_top_keys(files, mapper_inputs)
        for name, doc in files.items():
            write_text_atomic(work / name, _dump(doc))
        (work / "mapper").mkdir()
        argv = [str(self.mapper_exe), *mapper_inputs, "-o", "mapper"]
        rc, mapper_seconds = _run(argv, work, self.timeout_s, work / "mapper.log")
        seconds = {"mapper_seconds": mapper_seconds}
        stats_path = work / "mapper" / "timeloop-mapper.stats.txt"
        map_path = work / "mapper" / "timeloop-mapper.map.yaml"
        self._check_exit("timeloop-mapper", rc, shape, work, work / "mapper.log",
                         timeout_fix="raise --timeloop-timeout, or lower the mapper's search effort (timeout, victory-condition)",
                         crash_fix="read the log; check the arch, constraints and problem files there")
        if not stats_path.is_file() or stats_path.stat().st_size == 0 or not map_path.is_file():
            raise HalocError(f"timeloop-mapper found no valid mapping for {shape.key}: {_tail(work / 'mapper.log', 2)}",
                             file=work, fix="relax the constraints for this layer shape, or raise the mapper's timeout")  # fmt: skip
        shutil.copyfile(map_path, work / "map.yaml")
        if not self.run_model:
            return parse_stats(stats_path), seconds
        model_inputs = ["arch.yaml", "problem.yaml", "map.yaml", "ERT.yaml"]
        (work / "model").mkdir()
        argv = [str(self.model_exe), *model_inputs, "-o", "model"]
        rc, seconds["model_seconds"] = _run(argv, work, self.timeout_s, work / "model.log")
        model_stats = work / "model" / "timeloop-model.stats.txt"
        self._check_exit("timeloop-model", rc, shape, work, work / "model.log", timeout_fix="raise --timeloop-timeout",
                         crash_fix="read the log; the mapping in map.yaml may not fit the arch")
        if not model_stats.is_file() or model_stats.stat().st_size == 0:
            raise HalocError(f"timeloop-model wrote no stats for {shape.key}: {_tail(work / 'model.log', 2)}",
                             file=work, fix="read model.log in that folder")  # fmt: skip
        return parse_stats(model_stats), seconds

    def _check_exit(self, tool: str, rc: int, shape: ConvShape, work: Path, log_path: Path, *,
                    timeout_fix: str, crash_fix: str) -> None:
        """A timeout or a non-zero exit of ``tool`` becomes a :class:`HalocError` naming its job folder or log."""
        if rc == _TIMED_OUT:
            raise HalocError(f"{tool} timed out after {self.timeout_s:g} s for {shape.key}", file=work, fix=timeout_fix)
        if rc != 0:
            raise HalocError(f"{tool} crashed (exit {rc}) for {shape.key}: {_tail(log_path)}", file=log_path, fix=crash_fix)


_TIMED_OUT = -1000


def _run(argv: list[str], cwd: Path, timeout_s: float, log_path: Path) -> tuple[int, float]:
    """Run ``argv`` in ``cwd`` (no shell, own process group), output to ``log_path``.

    Returns (exit code, seconds); the exit code is ``_TIMED_OUT`` when the timeout killed it.
    An interrupt (Ctrl-C) also kills the whole group before propagating.
    """
    start = time.perf_counter()
    with log_path.open("wb") as logf:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # fmt: skip
        except OSError as err:
            raise HalocError(f"cannot start {argv[0]}: {err.strerror}", file=argv[0], fix=_MISSING_FIX) from None
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = _TIMED_OUT
        except BaseException:
            _kill_group(proc)
            raise
    return rc, time.perf_counter() - start


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
