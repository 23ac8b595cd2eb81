"""SRAM energy per access, leakage and area from a table of CACTI outputs.

Data: ``data/energy/sram_cacti.csv`` -- arrays CACTI evaluated for real Accelergy runs, each row
naming the run it comes from. The estimate for an array of ``width`` bits x ``depth`` rows:

1. **Minimum array.** CACTI (and Accelergy's plug-in around it) does not model arrays narrower than
   32 bits (width is rounded up to a multiple of 8) or shallower than ``64 * n_banks`` rows. A smaller
   array is priced as that minimum array and scaled down by the plug-in's published rule: dynamic
   energy by ``(0.7 * w/W + 0.3) * (d/D) ** 0.78``, leakage and area by ``(w/W) * (d/D)``. Table rows are
   mapped onto their minimum array by the inverse of the same rule.
2. **Interpolation in size** (at the 45 nm reference node). Each quantity q (read, write, leak, area)
   is modelled as ``q = f_q(D) * W ** b_q``: the width exponent ``b_q`` is measured between table rows
   of equal depth (mean log-slope; 1 without such a pair), and ``log f_q`` is interpolated piecewise
   linearly in ``log D`` between the table's depths (log-log interpolation; rows of equal depth are
   averaged in log space; beyond the ends the end segment is extended). Banked rows (n_banks > 1)
   inform dynamic energy only; their area and leakage against the unbanked model give the bank
   overhead ``static ∝ banks ** g`` (banks rounded up to a power of two, as the plug-in does).
3. **Technology.** Rows at other nodes are brought to 45 nm, and the estimate taken to the wanted
   node, by ``q ∝ node ** k_q``, where ``k_q`` is measured from table rows that give the same array at
   two nodes (CACTI's own node scaling, e.g. ``k_read`` ≈ 1.7 and ``k_area`` ≈ 2.0 from the 64 x 16384
   array at 32 and 45 nm).
4. **Ports and cycle.** ``n_rw_ports`` / ``n_rdwr_ports`` > 1 keep the per-access energy and multiply
   leakage and area by the port count (first-order: one more word line and bit-line pair per cell and
   port; not calibrated). Leakage is per cycle: the 1 ns table value times ``global_cycle_seconds / 1 ns``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from haloc_hw.energy.data import number, read_table

TABLE = "sram_cacti.csv"
REFERENCE_NM = 45.0
QUANTITIES = ("read", "write", "leak", "area")
_COLUMNS = {"read": "read_pj", "write": "write_pj", "leak": "leak_pj", "area": "area_um2"}
_DEPTH_EXPONENT = 1.56 / 2  # dynamic energy vs rows, the CACTI plug-in's published rule


@dataclass(frozen=True)
class SramEstimate:
    read: float
    write: float
    leak: float  # per cycle of global_cycle_seconds
    area: float
    source: str


def minimum_array(width: float, depth: float, n_banks: int) -> tuple[float, float, float, float]:
    """(W, D, dynamic factor, static factor) of the array CACTI is asked for."""
    banks = 2 ** math.ceil(math.log2(max(1, n_banks)))
    w_min = max(math.ceil(width / 8) * 8, 32)
    d_min = max(depth, 64 * banks)
    ws, ds = width / w_min, depth / d_min
    return float(w_min), float(d_min), (ws * 0.7 + 0.3) * ds**_DEPTH_EXPONENT, ws * ds


@dataclass(frozen=True)
class _Row:
    width: float
    depth: float
    node: float
    banks: int
    values: dict[str, float]  # of the minimum array
    source: str


@lru_cache(maxsize=1)
def _rows() -> tuple[_Row, ...]:
    out = []
    for r in read_table(TABLE):
        w, d = number(r, "width", TABLE), number(r, "depth", TABLE)
        W, D, dyn, stat = minimum_array(w, d, int(number(r, "n_banks", TABLE)))
        vals = {q: number(r, _COLUMNS[q], TABLE) for q in QUANTITIES}
        core = {
            "read": vals["read"] / dyn,
            "write": vals["write"] / dyn,
            "leak": vals["leak"] / stat,
            "area": vals["area"] / stat,
        }
        banks = int(number(r, "n_banks", TABLE))
        out.append(_Row(W, D, number(r, "node_nm", TABLE), banks, core, r["source"]))
    return tuple(out)


@lru_cache(maxsize=1)
def node_exponents() -> dict[str, float]:
    """k_q from rows giving the same array at two nodes (mean over pairs); 2 for area, 1 else if none."""
    rows = _rows()
    pairs: dict[str, list[float]] = {q: [] for q in QUANTITIES}
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if (a.width, a.depth) == (b.width, b.depth) and a.node != b.node:
                for q in QUANTITIES:
                    if a.values[q] > 0 and b.values[q] > 0:
                        pairs[q].append(math.log(a.values[q] / b.values[q]) / math.log(a.node / b.node))
    default = {"read": 1.0, "write": 1.0, "leak": 1.0, "area": 2.0}
    return {q: (sum(v) / len(v) if v else default[q]) for q, v in pairs.items()}


def _usable(row: _Row, q: str) -> bool:
    """Banked rows carry per-bank overheads in area and leakage: they inform dynamic energy only."""
    return row.values[q] > 0 and (q in ("read", "write") or row.banks == 1)


@lru_cache(maxsize=1)
def _model() -> dict[str, tuple[float, tuple[tuple[float, float], ...]]]:
    """Per quantity: (width exponent b, ((log D, log f(D)), ...) sorted by depth) at 45 nm.

    ``b`` is measured between rows of equal depth and node (so depth does not leak into it),
    1 when the table has no such pair.
    """
    k = node_exponents()
    rows = _rows()
    out = {}
    for q in QUANTITIES:
        use = [r for r in rows if _usable(r, q)]
        slopes = [
            math.log(a.values[q] / b.values[q]) / math.log(a.width / b.width)
            for i, a in enumerate(use)
            for b in use[i + 1 :]
            if a.depth == b.depth and a.node == b.node and a.width != b.width
        ]
        b = sum(slopes) / len(slopes) if slopes else 1.0
        by_depth: dict[float, list[float]] = {}
        for r in use:
            y = math.log(r.values[q] * (REFERENCE_NM / r.node) ** k[q]) - b * math.log(r.width)
            by_depth.setdefault(round(math.log(r.depth), 9), []).append(y)
        curve = tuple(sorted((d, sum(v) / len(v)) for d, v in by_depth.items()))
        out[q] = (b, curve)
    return out


def _core(W: float, D: float, node_nm: float) -> dict[str, float]:
    """Unbanked estimate of the minimum array W x D at ``node_nm``."""
    model, k = _model(), node_exponents()
    out = {}
    for q in QUANTITIES:
        b, curve = model[q]
        out[q] = math.exp(_interp(curve, math.log(D)) + b * math.log(W)) * (node_nm / REFERENCE_NM) ** k[q]
    return out


@lru_cache(maxsize=1)
def bank_exponents() -> dict[str, float]:
    """g_q with static q ∝ banks ** g_q, measured on banked rows against the unbanked model (0 if none)."""
    out = {}
    for q in ("leak", "area"):
        gs = [
            math.log(r.values[q] / _core(r.width, r.depth, r.node)[q]) / math.log(r.banks)
            for r in _rows()
            if r.banks > 1 and r.values[q] > 0
        ]
        out[q] = sum(gs) / len(gs) if gs else 0.0
    return out


def _interp(curve: tuple[tuple[float, float], ...], x: float) -> float:
    if len(curve) == 1:
        return curve[0][1]
    if x <= curve[0][0]:
        (x0, y0), (x1, y1) = curve[0], curve[1]
    elif x >= curve[-1][0]:
        (x0, y0), (x1, y1) = curve[-2], curve[-1]
    else:
        i = next(i for i in range(len(curve) - 1) if curve[i][0] <= x <= curve[i + 1][0])
        (x0, y0), (x1, y1) = curve[i], curve[i + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def estimate_sram(
    width: float, depth: float, node_nm: float, *, n_banks: int = 1, n_ports: int = 1, cycle_seconds: float = 1e-9
) -> SramEstimate:
    """Energy per access (pJ), leakage per cycle (pJ) and area (um^2) of one SRAM array."""
    if width <= 0 or depth <= 0:
        return SramEstimate(0.0, 0.0, 0.0, 0.0, "empty array (width or depth 0)")
    W, D, dyn, stat = minimum_array(width, depth, n_banks)
    core = _core(W, D, node_nm)
    banks = 2 ** math.ceil(math.log2(max(1, n_banks)))
    if banks > 1:
        g = bank_exponents()
        core["leak"] *= banks ** g["leak"]
        core["area"] *= banks ** g["area"]
    ports = max(1, int(n_ports))
    return SramEstimate(
        read=core["read"] * dyn,
        write=core["write"] * dyn,
        leak=core["leak"] * stat * ports * cycle_seconds / 1e-9,
        area=core["area"] * stat * ports,
        source=f"CACTI table (data/energy/{TABLE}), log-log interpolation in depth, width^b, node^k",
    )
