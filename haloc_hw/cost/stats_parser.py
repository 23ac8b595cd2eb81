"""Read Timeloop's ``*.stats.txt`` reports into plain numbers.

Timeloop writes its results only as a human-oriented text report. The timeloop backend needs
cycles and energy from it, and tests compare per-level counts with the analytical model, so
this module turns the report into dataclasses. It understands two generations:

* Timeloop 3.0.x: ``Computes = N`` followed by ``fJ/Compute`` lines, ``Utilization: 0.58``
  (a fraction), SPECS keys ``Size`` / ``Word bits`` / ``Block size`` / ``Vector access energy``,
  STATS keys ``Scalar reads (per-instance)``.
* Newer Timeloop (sparse-aware): ``Actual Computes = N`` with ``pJ/Compute``,
  ``Utilization: 58.00%``, SPECS keys ``Data storage size`` / ``Data word bits`` /
  ``Vector read energy``, STATS keys ``Actual scalar reads (per-instance)``, and a
  ``Total topology energy`` line.

Total energy is taken from the per-compute ``Total`` line times the compute count (the
``Energy: X uJ`` summary line keeps only two decimals, which loses up to 0.5 % on small
layers); where the newer ``Total topology energy`` line exists it is used instead because
it is printed in pJ with more significant digits than ``pJ/Compute``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from haloc_hw.cost.stats import DataSpaceStats, LevelSpecs, LevelStats
from haloc_hw.errors import HalocError

__all__ = ["TimeloopStats", "parse_stats"]

_LEVEL_RE = re.compile(r"^Level (\d+)\s*$")
_NAME_RE = re.compile(r"^=== (.+) ===\s*$")
_KV_RE = re.compile(r"^(\s*)([^:=]+?)\s*:\s*(.*?)\s*$")
_PER_COMPUTE_RE = re.compile(r"^\s+(.+?)\s*=\s*([-+0-9.eE]+|nan|inf|-)\s*$")
_NUMBER_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class TimeloopStats:
    """Everything the project reads from one ``stats.txt``."""

    cycles: int
    computes: int
    utilization: float  # fraction in [0, 1] whatever the report's style
    energy_pJ: float
    per_compute_fJ: dict[str, float]  # per level and network, plus "Total"
    levels: dict[str, LevelStats]
    energy_uJ_rounded: float | None = None

    @property
    def fJ_per_compute(self) -> float:
        return self.per_compute_fJ["Total"]

    def level(self, name: str) -> LevelStats:
        try:
            return self.levels[name]
        except KeyError:
            raise HalocError(
                f"no level '{name}' in the stats (levels: {', '.join(self.levels)})", key=name, fix="use a level name from the arch"
            ) from None


# Key aliases: the newer (sparse-aware) report name -> the 3.0.x name.
_SPEC_ALIASES = {
    "data storage size": "size",
    "data word bits": "word bits",
    "data block size": "block size",
}
_STAT_ALIASES = {
    "actual scalar reads (per-instance)": "scalar reads (per-instance)",
    "actual scalar updates (per-instance)": "scalar updates (per-instance)",
    "actual scalar fills (per-instance)": "scalar fills (per-instance)",
    "max utilized data storage capacity": "utilized capacity",
    "actual computes (total)": "computes (total)",
}


def _number(text: str | None) -> float | None:
    """Leading number of ``text`` (``'0.25 pJ'`` -> 0.25, ``'168 (14*12)'`` -> 168); ``None`` for ``-`` or no text."""
    if text is None:
        return None
    match = _NUMBER_RE.match(text.strip())
    return float(match.group(0)) if match else None


def _int(text: str | None) -> int | None:
    value = _number(text)
    return None if value is None else int(round(value))


def _read_source(path_or_text: str | Path) -> tuple[str, str]:
    """Return (text, label used in error messages)."""
    if isinstance(path_or_text, Path) or ("\n" not in path_or_text and len(path_or_text) < 4096):
        path = Path(path_or_text)
        try:
            return path.read_text(errors="strict"), str(path)
        except FileNotFoundError:
            raise HalocError("stats file not found", file=path, fix="check that Timeloop finished and wrote its stats") from None
        except (OSError, UnicodeDecodeError) as err:
            raise HalocError(f"cannot read stats file ({err.__class__.__name__}: {err})", file=path, fix="re-run Timeloop for this job") from None
    return path_or_text, "<stats text>"


def parse_stats(path_or_text: str | Path) -> TimeloopStats:
    """Parse a Timeloop ``stats.txt`` (a :class:`Path`, a path string, or the report text itself).

    Raises :class:`HalocError` naming the file when the report is truncated (no summary) or
    is not a Timeloop report at all.
    """
    text, label = _read_source(path_or_text)
    lines = text.splitlines()

    def fail(what: str) -> HalocError:
        return HalocError(
            f"not a complete Timeloop stats report: {what}",
            file=label,
            fix="the run was probably cut short; delete this job's folder and run it again",
        )

    levels: dict[str, LevelStats] = {}
    summary: dict[str, str] = {}
    per_compute: dict[str, float] = {}
    computes: int | None = None
    per_compute_scale = 1.0  # to fJ
    topology_energy_pJ: float | None = None

    # ---- per-level sections -------------------------------------------------------------
    cur: dict | None = None
    section = ""
    dataspace: str | None = None

    def flush() -> None:
        if cur is None:
            return
        specs_raw = cur["specs"]
        read_e = _number(specs_raw.get("vector read energy"))
        write_e = _number(specs_raw.get("vector write energy"))
        vae = _number(specs_raw.get("vector access energy"))
        if vae is None and (read_e is not None or write_e is not None):
            vae = max(v for v in (read_e, write_e) if v is not None)
        specs = LevelSpecs(
            size=_int(specs_raw.get("size")),
            word_bits=_int(specs_raw.get("word bits")),
            block_size=_int(specs_raw.get("block size")),
            instances=_int(specs_raw.get("instances")),
            vector_access_energy_pJ=vae if vae is not None else _number(specs_raw.get("compute energy")),
            energy_source=specs_raw.get("vector access energy source"),
            read_bandwidth=_number(specs_raw.get("read bandwidth")),
            write_bandwidth=_number(specs_raw.get("write bandwidth")),
            technology=specs_raw.get("technology"),
            leak_per_cycle_pJ=_number(specs_raw.get("per-instance-cycle leakage")),
        )
        spaces = {}
        for ds, raw in cur["spaces"].items():
            spaces[ds] = DataSpaceStats(
                reads=_int(raw.get("scalar reads (per-instance)")) or 0,
                updates=_int(raw.get("scalar updates (per-instance)")) or 0,
                fills=_int(raw.get("scalar fills (per-instance)")) or 0,
                temporal_reductions=_int(raw.get("temporal reductions (per-instance)")) or 0,
                utilized_capacity=_int(raw.get("utilized capacity")) or 0,
                partition_size=_int(raw.get("partition size")) or 0,
                utilized_instances=_int(raw.get("utilized instances (max)")) or 0,
                energy_pJ=_number(raw.get("energy (total)")) or 0.0,
                utilized_clusters=_int(raw.get("utilized clusters (max)")) or 0,
                address_generations=_int(raw.get("address generations (per-cluster)")) or 0,
            )
        stats = cur["stats"]
        levels[cur["name"]] = LevelStats(
            index=cur["index"],
            name=cur["name"],
            specs=specs,
            dataspaces=spaces,
            cycles=_int(stats.get("cycles")),
            computes=_int(stats.get("computes (total)")),
            utilized_instances=_int(stats.get("utilized instances")),
            total_energy_pJ=_number(stats.get("energy (total)")),
            leak_pJ=_number(specs_raw.get("leakage energy (total)")) or 0.0,
        )

    i = 0
    n = len(lines)
    in_levels = False
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if stripped == "Buffer and Arithmetic Levels":
            in_levels = True
        elif stripped in ("Networks", "Operational Intensity Stats", "Summary Stats") and in_levels:
            flush()
            cur = None
            in_levels = False
            if stripped == "Summary Stats":
                break
        elif stripped == "Summary Stats":
            break
        elif stripped.startswith("Total topology energy:"):
            topology_energy_pJ = _number(stripped.split(":", 1)[1])
        elif in_levels:
            m = _LEVEL_RE.match(stripped)
            if m:
                flush()
                cur = {"index": int(m.group(1)), "name": None, "specs": {}, "stats": {}, "spaces": {}}
                section, dataspace = "", None
            elif cur is not None and cur["name"] is None and (name := _NAME_RE.match(stripped)):
                cur["name"] = name.group(1)
            elif cur is not None and stripped in ("SPECS", "MAPPING", "STATS"):
                section, dataspace = stripped, None
            elif cur is not None and section in ("SPECS", "STATS"):
                kv = _KV_RE.match(line)
                if kv and not stripped.startswith("@"):
                    indent, key, value = len(kv.group(1)), kv.group(2).strip().lower(), kv.group(3)
                    if section == "SPECS":
                        cur["specs"][_SPEC_ALIASES.get(key, key)] = value
                    elif value == "" and indent <= 4:
                        dataspace = kv.group(2).strip()
                        cur["spaces"][dataspace] = {}
                    elif dataspace is not None and indent > 4:
                        cur["spaces"][dataspace][_STAT_ALIASES.get(key, key)] = value
                    else:
                        dataspace = None
                        cur["stats"][_STAT_ALIASES.get(key, key)] = value
        i += 1
    else:
        raise fail("no 'Summary Stats' section")

    # ---- summary -------------------------------------------------------------------------
    i += 1
    block: str | None = None
    want_block = False
    while i < n:
        line = lines[i]
        stripped = line.strip()
        i += 1
        if not stripped or set(stripped) == {"-"}:
            block = None if not stripped else block
            continue
        if stripped.startswith("Computes =") or stripped.startswith("Actual Computes ="):
            computes = _int(stripped.split("=", 1)[1])
            want_block = True
            continue
        if stripped.startswith("Algorithmic Computes ="):
            want_block = False
            continue
        if re.fullmatch(r"(fJ|pJ)/Compute", stripped):
            if want_block:
                block = "per_compute"
                per_compute.clear()
                per_compute_scale = 1.0 if stripped.startswith("fJ") else 1000.0
            continue
        if block == "per_compute":
            m = _PER_COMPUTE_RE.match(line)
            if m:
                value = _number(m.group(2))
                per_compute[m.group(1).strip()] = (value or 0.0) * per_compute_scale
                continue
            block = None
        if ":" in stripped:
            key, value = stripped.split(":", 1)
            summary[key.strip()] = value.strip()

    if "Cycles" not in summary:
        raise fail("no 'Cycles:' in the summary")
    if computes is None:
        raise fail("no 'Computes =' line")
    if "Total" not in per_compute:
        raise fail("no 'Total' line under fJ/Compute")
    cycles = _int(summary["Cycles"])
    util_text = summary.get("Utilization")
    if util_text is None:
        raise fail("no 'Utilization:' in the summary")
    util = _number(util_text) or 0.0
    if util_text.endswith("%"):
        util /= 100.0
    if topology_energy_pJ is not None:
        energy_pJ = topology_energy_pJ
    else:
        energy_pJ = per_compute["Total"] * computes / 1000.0
    energy_uJ = _number(summary["Energy"]) if "Energy" in summary else None
    if cycles is None:
        raise fail("unreadable 'Cycles:' value")
    return TimeloopStats(
        cycles=cycles,
        computes=computes,
        utilization=util,
        energy_pJ=energy_pJ,
        per_compute_fJ=per_compute,
        levels=levels,
        energy_uJ_rounded=energy_uJ,
    )
