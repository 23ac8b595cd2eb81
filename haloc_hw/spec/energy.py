"""Reading an Accelergy energy reference table (ERT, v0.2-0.4) the way Timeloop 3.0.3 does.

A table matches a level by the last dotted component of its name with a trailing
``[a..b]`` removed (``system.eyeriss.PE[0..167].mac`` -> ``mac``). Per action the maximum
energy over its argument variants is taken. Storage op energies are per *vector* (one
block of ``block_size`` words):

* read   <- ``random_read``, else ``read``
* fill   <- ``random_fill``, else ``random_write``, ``fill``, ``write``
* update <- ``random_update``, else ``random_write``, ``update``, ``random_fill``, ``write``
  (see ``FILL_ACTIONS`` for how this serves Timeloop 3.0.3 and later versions)
* compute <- ``mac_random``, else ``mult_random``, ``mac``, ``mult``, ``compute``

``leak`` (pJ per instance and cycle) is read as written (0 when absent) and priced by
the cost model per level: ``leak * cycles * leaking instances`` (Timeloop's
``BufferLevel::FinalizeBufferEnergy``). A ``leak`` on the arithmetic level is ignored, as
Timeloop charges leakage to storage levels only.

An op with no action gets the vector access energy = max over all actions / cluster size
(also the value Timeloop prints). A ``vector_access_energy`` attribute on the level wins
over the ERT. Tables that match no level are ignored (as in Timeloop), but an ERT that
matches no level at all is almost certainly the wrong file and raises :class:`HalocError`.
Levels without a table cost 0 and are listed in ``unmatched_levels``, except fan-out-only
levels, which store nothing and so need no energy.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError
from haloc_hw.spec.constraints import strip_range
from haloc_hw.spec.model import ActionEnergy, Architecture, EnergyTable
from haloc_hw.spec.shipped import resolve_spec_path
from haloc_hw.spec.yamltags import read_spec_mapping

log = logging.getLogger(__name__)

READ_ACTIONS = ("random_read", "read")
# Timeloop 3.0.3 looks up fill <- random_fill, write and update <- random_update, random_fill,
# write; later versions (the v0.4-era references) fill <- random_fill, random_write, fill,
# write and update <- random_update, random_write, update, write. The chains below give
# each generation's answer on the tables it is used with: 3.0.3-era tables have no
# ``random_write``/``fill``/``update`` actions, v0.4-era Accelergy tables write ``update``.
FILL_ACTIONS = ("random_fill", "random_write", "fill", "write")
UPDATE_ACTIONS = ("random_update", "random_write", "update", "random_fill", "write")
COMPUTE_ACTIONS = ("mac_random", "mult_random", "mac", "mult", "compute")
LEAK_ACTION = "leak"
_RANGES = re.compile(r"\[[^\]]*\]")
_USER_ENERGY_KEYS = ("vector-access-energy", "vector_access_energy")


def _energy(value: Any, *, file: Path, key: str) -> float:
    if isinstance(value, bool):
        raise HalocError(f"energy must be a number, found {value!r}", file=file, key=key, fix="give the energy in pJ")
    if not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise HalocError(f"energy must be a number, found {value!r}", file=file, key=key, fix="give the energy in pJ") from None
    if not math.isfinite(value) or value < 0:
        raise HalocError(f"energy must be a non-negative number, found {value}", file=file, key=key, fix="give the energy in pJ")
    return float(value)


def component_name(full: str) -> str:
    """``system.eyeriss.DummyBuffer[0..13]`` -> ``DummyBuffer`` (ranges contain dots too)."""
    return strip_range(_RANGES.sub("", full).split(".")[-1])


def read_ert(path: str | Path) -> dict[str, dict[str, float]]:
    """ERT file -> {component name (last dotted part, range removed): {action: max pJ}}."""
    path = Path(path)
    doc = read_spec_mapping(path)
    ert = doc.get("ERT")
    if ert is None:
        raise HalocError("no 'ERT' key", file=path, key="ERT", fix="pass an Accelergy energy reference table (ERT.yaml)")
    if not isinstance(ert, dict) or not isinstance(ert.get("tables"), list):
        raise HalocError("'ERT' must hold a 'tables' list", file=path, key="ERT.tables", fix="write 'ERT: {version: 0.3, tables: [...]}'")
    version = ert.get("version")
    if version is not None and str(version) not in ("0.2", "0.3", "0.4"):
        raise HalocError(f"unsupported ERT version {version}", file=path, key="ERT.version", fix="use an ERT of version 0.2, 0.3 or 0.4")
    out: dict[str, dict[str, float]] = {}
    for i, table in enumerate(ert["tables"]):
        tkey = f"ERT.tables[{i}]"
        if not isinstance(table, dict) or "name" not in table:
            raise HalocError("table has no 'name'", file=path, key=tkey, fix="give each table the component's full name")
        comp = component_name(str(table["name"]))
        actions = table.get("actions") or []
        if not isinstance(actions, list):
            raise HalocError("'actions' must be a list", file=path, key=f"{tkey}.actions", fix="write '- name: read\\n  energy: 1.0'")
        energies: dict[str, float] = {}
        for j, action in enumerate(actions):
            akey = f"{tkey}.actions[{j}]"
            if not isinstance(action, dict) or "name" not in action:
                raise HalocError("action has no 'name'", file=path, key=akey, fix="give each action a name and an energy")
            name = str(action["name"])
            # v0.2-0.4 write one entry per argument combination; some writers nest them.
            if "energy" in action:
                values = [_energy(action["energy"], file=path, key=f"{akey}.energy")]
            elif isinstance(action.get("arguments"), list):
                values = [
                    _energy(arg.get("energy"), file=path, key=f"{akey}.arguments[{k}].energy")
                    for k, arg in enumerate(action["arguments"])
                    if isinstance(arg, dict) and "energy" in arg
                ]
                if not values:
                    raise HalocError("action has no energy", file=path, key=akey, fix="add 'energy: <pJ>'")
            else:
                raise HalocError("action has no energy", file=path, key=akey, fix="add 'energy: <pJ>'")
            energies[name] = max([energies.get(name, -math.inf), *values])
        out[comp] = energies
    return out


def _first(actions: dict[str, float], names: tuple[str, ...]) -> float | None:
    for n in names:
        if n in actions:
            return actions[n]
    return None


def load_energy_table(path: str | Path, arch: Architecture) -> EnergyTable:
    """Energies per vector access for every level of ``arch`` from an ERT file."""
    path = resolve_spec_path(path, key="ERT")
    tables = read_ert(path)
    storage: dict[str, ActionEnergy] = {}
    unmatched: list[str] = []
    matched_any = False
    for lvl in arch.levels:
        user = next((lvl.attributes[k] for k in _USER_ENERGY_KEYS if k in lvl.attributes), None)
        actions = tables.get(lvl.name)
        if user is not None:
            e = _energy(user, file=arch.source or path, key=f"{lvl.name}.attributes.vector-access-energy")
            storage[lvl.name] = ActionEnergy(e, e, e, e, leak=(actions or {}).get(LEAK_ACTION, 0.0))
            matched_any = matched_any or actions is not None
            continue
        if actions is None:
            if not lvl.fanout_only:  # a fan-out point stores nothing, so it needs no energy
                unmatched.append(lvl.name)
            continue
        matched_any = True
        vector = (max(actions.values()) if actions else 0.0) / lvl.cluster_size
        read = _first(actions, READ_ACTIONS)
        fill = _first(actions, FILL_ACTIONS)
        update = _first(actions, UPDATE_ACTIONS)
        storage[lvl.name] = ActionEnergy(
            read=vector if read is None else read,
            fill=vector if fill is None else fill,
            update=vector if update is None else update,
            vector_access=vector,
            leak=actions.get(LEAK_ACTION, 0.0),
        )
    compute = 0.0
    mac = tables.get(arch.arithmetic.name)
    if mac is None:
        unmatched.append(arch.arithmetic.name)
    else:
        matched_any = True
        value = _first(mac, COMPUTE_ACTIONS)
        compute = (max(mac.values()) if mac else 0.0) if value is None else value
    if not matched_any:
        raise HalocError(
            f"no table matches any level (tables: {', '.join(sorted(tables)) or 'none'})",
            file=path,
            key="ERT.tables",
            fix=f"name tables after the levels ({', '.join((*arch.level_names, arch.arithmetic.name))}), e.g. system.PE[0..167].mac",
        )
    if unmatched:
        log.info("%s: no energy table for %s (they cost 0 pJ)", path, ", ".join(unmatched))
    return EnergyTable(storage=storage, compute=compute, unmatched_levels=tuple(unmatched), source=str(path))
