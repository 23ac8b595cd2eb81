"""Technology nodes: reading ``technology`` attributes and scaling energy and area between nodes.

Rule (``data/energy/technology_scaling.csv``, Stillmaker & Baas, Integration 2017, the table that
Accelergy's library plug-in uses): energy at node N is proportional to ``a*V^2 + b*V + c`` with the
node's fitted coefficients at V = 0.8 V; area scales by the tabulated node-to-node factor. Between
tabulated nodes the energy polynomial is interpolated linearly in the node's position in the table,
area factors bilinearly; outside 7-130 nm energy scales with the square root of the node ratio and area
linearly with it (the rule Accelergy documents for that case).

SRAM figures from CACTI use their own exponent (see :mod:`haloc_hw.energy.sram`), because CACTI's
arrays scale differently from logic.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from haloc_hw.energy.data import number, read_table
from haloc_hw.errors import HalocError

TABLE = "technology_scaling.csv"
VDD = 0.8
_TECH = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(nm|um)?\s*$", re.IGNORECASE)


def parse_node(value: Any, *, file: str | Path | None = None, key: str = "technology") -> float:
    """``45nm`` / ``"45"`` / ``45`` / ``0.045um`` -> 45.0 (nanometres)."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, (int, float)):
        nm = float(value)
    else:
        m = _TECH.match(str(value))
        if not m:
            raise HalocError(
                f"technology {value!r} is not a node size",
                file=file,
                key=key,
                fix="write the node as e.g. 45nm",
            )
        nm = float(m.group(1)) * (1000.0 if (m.group(2) or "").lower() == "um" else 1.0)
    if not math.isfinite(nm) or nm <= 0:
        raise HalocError(f"technology {value!r} is not a positive node size", file=file, key=key, fix="write the node as e.g. 45nm")
    return nm


@lru_cache(maxsize=1)
def _nodes() -> tuple[tuple[float, ...], tuple[float, ...], tuple[tuple[float, ...], ...]]:
    rows = read_table(TABLE)
    nodes = tuple(number(r, "node_nm", TABLE) for r in rows)
    energy = tuple(
        number(r, "energy_a", TABLE) * VDD**2 + number(r, "energy_b", TABLE) * VDD + number(r, "energy_c", TABLE) for r in rows
    )
    area = tuple(tuple(number(r, f"area_to_{int(n)}", TABLE) for n in nodes) for r in rows)
    return nodes, energy, area


def _position(node: float) -> tuple[float, float]:
    """(fractional index into the node list, leftover ratio outside the tabulated range)."""
    nodes = _nodes()[0]  # descending: 130 ... 7
    if node >= nodes[0]:
        return 0.0, node / nodes[0]
    if node <= nodes[-1]:
        return float(len(nodes) - 1), node / nodes[-1]
    for i in range(len(nodes) - 1):
        hi, lo = nodes[i], nodes[i + 1]
        if lo <= node <= hi:
            return i + (hi - node) / (hi - lo), 1.0
    raise AssertionError(node)  # pragma: no cover


def _energy_factor(node: float) -> float:
    energy = _nodes()[1]
    x, rest = _position(node)
    i = min(int(math.floor(x)), len(energy) - 2)
    t = x - i
    return (energy[i] * (1 - t) + energy[i + 1] * t) * math.sqrt(rest)


def energy_scale(from_nm: float, to_nm: float) -> float:
    """Factor that takes a logic energy at ``from_nm`` to ``to_nm``."""
    if from_nm == to_nm:
        return 1.0
    return _energy_factor(to_nm) / _energy_factor(from_nm)


def area_scale(from_nm: float, to_nm: float) -> float:
    """Factor that takes a logic area at ``from_nm`` to ``to_nm``."""
    if from_nm == to_nm:
        return 1.0
    area = _nodes()[2]
    x, rx = _position(from_nm)
    y, ry = _position(to_nm)
    n = len(area) - 1
    xi, yi = min(int(x), n - 1), min(int(y), n - 1)
    tx, ty = x - xi, y - yi
    value = (
        area[xi][yi] * (1 - tx) * (1 - ty)
        + area[xi][yi + 1] * (1 - tx) * ty
        + area[xi + 1][yi] * tx * (1 - ty)
        + area[xi + 1][yi + 1] * tx * ty
    )
    return value * ry / rx
