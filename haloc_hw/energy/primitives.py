"""Primitive estimators: one component class with its attributes -> energy per action and area.

A primitive is what Accelergy hands to a plug-in: a class name (``SRAM``, ``DRAM``,
``aladdin_adder``, ``intadder``, ``intmac`` ...) and its attributes. Each estimator returns the
energy of every action it knows (pJ; ``leak`` per cycle of ``global_cycle_seconds``) and an area
(um^2), with the source of the figures. The figures come from ``data/energy/*.csv``:

* ``SRAM`` -- :mod:`haloc_hw.energy.sram` (CACTI table, log-log interpolation, node exponent);
* ``DRAM`` -- energy per bit by ``type`` (``dram.csv``) times ``width``; leak and area 0;
* logic and small storage (``logic.csv``): the row of the class and action at the tabulated node
  nearest the component's (in log distance), scaled linearly by each width group the component gives
  (the library plug-in's rule) and to the component's node by :mod:`haloc_hw.energy.technology`;
* ``intmac`` / ``fpmac`` as primitives -- one adder plus one multiplier (Aladdin's model of a MAC).

Accelergy's required actions for a top-level primitive are ``read``, ``write``, ``update`` and
``leak``; storage also answers ``idle`` (= leak) and ``random_read``-style names are not invented
here (Timeloop maps ``read``/``write`` itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from haloc_hw.energy.data import number, read_table
from haloc_hw.energy.sram import estimate_sram
from haloc_hw.energy.technology import area_scale, energy_scale, parse_node
from haloc_hw.errors import HalocError

LOGIC_TABLE = "logic.csv"
DRAM_TABLE = "dram.csv"
DEFAULT_CYCLE_SECONDS = 1e-9


@dataclass(frozen=True)
class PrimitiveEstimate:
    """Energies of one primitive instance: {action: pJ}, area in um^2, where the figures come from."""

    cls: str
    actions: dict[str, float]
    area: float
    source: str
    aliases: dict[str, str] = field(default_factory=dict)

    def energy(self, action: str, *, file: str | Path | None = None, key: str = "") -> float:
        name = self.aliases.get(action, action)
        if name not in self.actions:
            raise HalocError(
                f"class '{self.cls}' has no action '{action}' (it has {', '.join(sorted(self.actions))})",
                file=file,
                key=key,
                fix="use one of the listed actions",
            )
        return self.actions[name]


def _attr(attrs: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        if n in attrs and attrs[n] is not None:
            return attrs[n]
    return None


def _need_number(attrs: Mapping[str, Any], names: tuple[str, ...], cls: str, *, file: Any, key: str) -> float:
    value = _attr(attrs, names)
    if value is None:
        raise HalocError(
            f"class '{cls}' needs attribute '{names[0]}' to be estimated",
            file=file,
            key=f"{key}.attributes.{names[0]}",
            fix=f"give '{names[0]}' in the component's attributes",
        )
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise HalocError(
            f"attribute '{names[0]}' of class '{cls}' must be a number, found {value!r}",
            file=file,
            key=f"{key}.attributes.{names[0]}",
            fix="give a number",
        ) from None
    if not math.isfinite(out) or out < 0:
        raise HalocError(f"attribute '{names[0]}' must be a non-negative number, found {value!r}", file=file, key=f"{key}.attributes.{names[0]}", fix="give a number >= 0")
    return out


def _node(attrs: Mapping[str, Any], cls: str, *, file: Any, key: str) -> float:
    tech = attrs.get("technology")
    if tech is None or str(tech).strip().lower() in ("", "must_specify", "set me"):
        raise HalocError(
            f"class '{cls}' needs attribute 'technology' to be estimated",
            file=file,
            key=f"{key}.attributes.technology",
            fix="give 'technology: 45nm' on the component or an enclosing container",
        )
    return parse_node(tech, file=file, key=f"{key}.attributes.technology")


def _cycle(attrs: Mapping[str, Any], *, file: Any, key: str) -> float:
    value = attrs.get("global_cycle_seconds", DEFAULT_CYCLE_SECONDS)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise HalocError(f"global_cycle_seconds must be a number, found {value!r}", file=file, key=f"{key}.attributes.global_cycle_seconds", fix="give seconds, e.g. 1e-9") from None
    return out if out > 0 else DEFAULT_CYCLE_SECONDS


# ----------------------------------------------------------------------------- SRAM / DRAM


def _sram(cls: str, attrs: Mapping[str, Any], *, file: Any, key: str) -> PrimitiveEstimate:
    width = _need_number(attrs, ("width", "datawidth"), cls, file=file, key=key)
    depth = _need_number(attrs, ("depth", "entries"), cls, file=file, key=key)
    node = _node(attrs, cls, file=file, key=key)
    banks = int(_attr(attrs, ("n_banks",)) or 1) if cls.lower() == "sram" and "n_banks" in attrs else 1
    ports = int(float(_attr(attrs, ("n_rw_ports", "n_rdwr_ports", "n_ports")) or 1))
    est = estimate_sram(width, depth, node, n_banks=banks, n_ports=ports, cycle_seconds=_cycle(attrs, file=file, key=key))
    actions = {"read": est.read, "write": est.write, "update": est.write, "leak": est.leak}
    return PrimitiveEstimate(cls, actions, est.area, est.source, {"idle": "leak", "random_read": "read", "random_fill": "write", "random_update": "write"})


@lru_cache(maxsize=1)
def _dram_types() -> dict[str, tuple[float, str]]:
    return {r["type"].upper(): (number(r, "pj_per_bit", DRAM_TABLE), r["source"]) for r in read_table(DRAM_TABLE)}


def _dram(cls: str, attrs: Mapping[str, Any], *, file: Any, key: str) -> PrimitiveEstimate:
    width = _need_number(attrs, ("width", "datawidth"), cls, file=file, key=key)
    kind = str(attrs.get("type", "LPDDR4")).strip().upper()
    types = _dram_types()
    if kind not in types:
        raise HalocError(
            f"unknown DRAM type '{attrs.get('type')}'",
            file=file,
            key=f"{key}.attributes.type",
            fix=f"use one of {', '.join(sorted(types))}",
        )
    per_bit, source = types[kind]
    e = per_bit * width
    actions = {"read": e, "write": e, "update": e, "leak": 0.0}
    return PrimitiveEstimate(cls, actions, 0.0, f"{kind} {per_bit} pJ/bit: {source}", {"idle": "leak", "random_read": "read", "random_fill": "write", "random_update": "write"})


# ----------------------------------------------------------------------------- logic table


@dataclass(frozen=True)
class _LogicRow:
    actions: tuple[str, ...]
    node: float
    groups: tuple[tuple[str, ...], ...]  # each group: alternative names, or one "a+b" sum
    ref_bits: float
    energy: float
    area: float
    source: str


@lru_cache(maxsize=1)
def _logic() -> dict[str, tuple[_LogicRow, ...]]:
    out: dict[str, list[_LogicRow]] = {}
    for r in read_table(LOGIC_TABLE):
        groups = tuple(tuple(g.split("|")) for g in r["scale_attrs"].split(";") if g.strip())
        out.setdefault(r["class"].lower(), []).append(
            _LogicRow(
                actions=tuple(a.strip() for a in r["actions"].split("|")),
                node=number(r, "node_nm", LOGIC_TABLE),
                groups=groups,
                ref_bits=number(r, "ref_bits", LOGIC_TABLE),
                energy=number(r, "energy_pj", LOGIC_TABLE),
                area=number(r, "area_um2", LOGIC_TABLE),
                source=r["source"],
            )
        )
    return {k: tuple(v) for k, v in out.items()}


def logic_classes() -> tuple[str, ...]:
    return tuple(sorted(_logic()))


def _group_value(attrs: Mapping[str, Any], group: tuple[str, ...], *, file: Any, key: str) -> float | None:
    for alt in group:
        parts = alt.split("+")
        if all(p in attrs and attrs[p] is not None for p in parts):
            try:
                return sum(float(attrs[p]) for p in parts)
            except (TypeError, ValueError):
                raise HalocError(f"attribute '{alt}' must be a number, found {[attrs[p] for p in parts]!r}", file=file, key=f"{key}.attributes.{parts[0]}", fix="give a number") from None
    return None


def _table_logic(cls: str, attrs: Mapping[str, Any], *, file: Any, key: str) -> PrimitiveEstimate:
    rows = _logic()[cls.lower()]
    dummy = cls.lower().startswith("dummy")
    node = 45.0 if dummy else _node(attrs, cls, file=file, key=key)
    cycle = _cycle(attrs, file=file, key=key)
    nodes = sorted({r.node for r in rows}, key=lambda n: (abs(math.log(n / node)), -n))
    best = nodes[0]
    actions: dict[str, float] = {}
    area = 0.0
    sources = []
    for row in rows:
        if row.node != best:
            continue
        width_scale = 1.0
        for group in row.groups:
            v = _group_value(attrs, group, file=file, key=key)
            if v is not None:
                width_scale *= v / row.ref_bits
        e = row.energy * width_scale * energy_scale(row.node, node)
        for a in row.actions:
            actions[a] = e * (cycle / DEFAULT_CYCLE_SECONDS if a == "leak" else 1.0)
        area = row.area * width_scale * area_scale(row.node, node)
        if row.source not in sources:
            sources.append(row.source)
    scaled = "" if best == node else f", scaled {best:g} -> {node:g} nm (Stillmaker & Baas 2017)"
    return PrimitiveEstimate(cls, actions, area, "; ".join(sources) + scaled, {"idle": "leak"})


# ----------------------------------------------------------------------------- MAC as a primitive


def _mac(cls: str, attrs: Mapping[str, Any], *, file: Any, key: str) -> PrimitiveEstimate:
    """A MAC as one adder plus one multiplier (Aladdin's model of a MAC).

    Integer: ``aladdin_adder`` of ``adder_width`` (default: the MAC's width) and ``aladdin_multiplier``
    of ``multiplier_width`` x ``multiplier_width`` (energy and area quadratic in the operand width,
    as the library plug-in scales both operands; Horowitz ISSCC 2014 shows the same: 0.2 pJ at 8 bit,
    3.1 pJ at 32 bit). Float: single-precision adder and multiplier, scaled by exponent + mantissa.
    """
    sub = dict(attrs)
    if cls.lower().startswith("fp"):
        sub.setdefault("exponent", 8)
        sub.setdefault("mantissa", 24)
        add, mul = _table_logic("fpadder", sub, file=file, key=key), _table_logic("fpmultiplier", sub, file=file, key=key)
        e_add, e_mul = add.actions["add"], mul.actions["multiply"]
    else:
        width = _attr(attrs, ("width", "datawidth"))
        m_width = _attr(attrs, ("multiplier_width",)) or width
        a_width = _attr(attrs, ("adder_width",)) or width
        if m_width is None or a_width is None:
            _need_number(attrs, ("datawidth", "multiplier_width"), cls, file=file, key=key)
        base = {k: v for k, v in attrs.items() if k in ("technology", "global_cycle_seconds")}
        add = _table_logic("aladdin_adder", {**base, "width": a_width}, file=file, key=key)
        mul = _table_logic("aladdin_multiplier", {**base, "width_a": m_width, "width_b": m_width}, file=file, key=key)
        e_add, e_mul = add.actions["add"], mul.actions["multiply"]
    mac = e_add + e_mul
    actions = {"mac_random": mac, "compute": mac, "leak": add.actions["leak"] + mul.actions["leak"]}
    return PrimitiveEstimate(cls, actions, add.area + mul.area, f"adder + multiplier ({add.source}; {mul.source})", {"mac_reused": "mac_random", "mac": "mac_random", "read": "mac_random", "idle": "leak"})


# ----------------------------------------------------------------------------- registry

Estimator = Callable[..., PrimitiveEstimate]

_SPECIAL: dict[str, Estimator] = {
    "sram": _sram,
    "dram": _dram,
    "intmac": _mac,
    "fpmac": _mac,
}


def has_estimator(cls: str) -> bool:
    low = cls.lower()
    return low in _SPECIAL or low in _logic()


def known_classes() -> tuple[str, ...]:
    return tuple(sorted({*_SPECIAL, *_logic()}))


def estimate_primitive(cls: str, attrs: Mapping[str, Any], *, file: str | Path | None = None, key: str = "") -> PrimitiveEstimate:
    """Energy per action and area of one instance of primitive class ``cls``."""
    low = cls.lower()
    if low in _SPECIAL:
        return _SPECIAL[low](cls, attrs, file=file, key=key)
    if low in _logic():
        return _table_logic(cls, attrs, file=file, key=key)
    raise HalocError(
        f"no estimator for class '{cls}'",
        file=file,
        key=f"{key}.class" if key else "class",
        fix=f"define it as a compound component, give its energies in an ERT, or use one of: {', '.join(known_classes())}",
    )
