"""timeloopfe's constraint macros, expanded into plain factors and keep/bypass lists.

timeloopfe lets a node's constraints use shorthands that its front end rewrites before
Timeloop sees them; they depend on the problem, so they are expanded here with the
problem's dimensions and data spaces:

* ``factors_only`` (temporal/spatial): the listed factors, every other dimension ``=1``;
* ``no_iteration_over_dataspaces``: every dimension a listed data space projects on ``=1``;
* ``must_iterate_over_dataspaces``: every dimension *none* of them projects on ``=1``;
* ``keep_only`` / ``bypass_only`` (dataspace): the listed ones kept (bypassed), all
  others bypassed (kept);
* ``*`` in a data-space list stands for every data space.

A macro that conflicts with a factor written beside it is an error, as in timeloopfe.
``maximize_dims`` (a greedy search over the problem's bounds) is not expanded: it is
refused by name by :func:`haloc_hw.spec.process.check_constraint_group`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

ITERATION_MACROS = ("factors_only", "no_iteration_over_dataspaces", "must_iterate_over_dataspaces")
DATASPACE_MACROS = ("keep_only", "bypass_only")
_FACTOR_NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=|=)\s*(.*)$")


@dataclass(frozen=True)
class ProblemInfo:
    """What the macros need from the problem: dimensions and each data space's dimensions."""

    dims: tuple[str, ...]
    spaces: dict[str, tuple[str, ...]]


def _names_in(value: Any, dims: Sequence[str]) -> list[str]:
    if isinstance(value, str):
        return [value] if value in dims else []
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _names_in(v, dims)]
    return []


def problem_info(problem: Any) -> ProblemInfo | None:
    """Read dimensions and data-space projections from a ``problem:`` mapping (v0.3 or v0.4)."""
    if not isinstance(problem, dict) or not isinstance(problem.get("shape"), dict):
        return None
    shape = problem["shape"]
    dims_raw = shape.get("dimensions")
    if not isinstance(dims_raw, list):
        return None
    dims = tuple(str(d) for d in dims_raw)
    spaces: dict[str, tuple[str, ...]] = {}
    for ds in shape.get("data_spaces") or shape.get("data-spaces") or []:
        if isinstance(ds, dict) and isinstance(ds.get("name"), str):
            spaces[ds["name"]] = tuple(dict.fromkeys(_names_in(ds.get("projection"), dims)))
    return ProblemInfo(dims=dims, spaces=spaces)


def _factor_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t for t in value.replace(",", " ").split() if t]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _named(factors: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in factors:
        m = _FACTOR_NAME.match(f)
        if m:
            out[m.group(1)] = f
    return out


def _add_ones(factors: list[str], dims: Sequence[str], *, file: Path, key: str, macro: str) -> list[str]:
    named = _named(factors)
    out = list(factors)
    for d in dims:
        if d in named:
            m = _FACTOR_NAME.match(named[d])
            assert m is not None
            if macro != "factors_only" and not (m.group(2) == "=" and m.group(3).strip() == "1"):
                raise HalocError(
                    f"{macro} sets {d}=1 but the factors say {named[d]}",
                    file=file,
                    key=f"{key}.{macro}",
                    fix=f"remove {named[d]} or the macro",
                )
            continue
        out.append(f"{d}=1")
    return out


def _spaces(value: Any, info: ProblemInfo, *, file: Path, key: str) -> list[str]:
    items = [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    out: list[str] = []
    for item in items:
        names = list(info.spaces) if item == "*" else [item]
        for n in names:
            if n not in info.spaces:
                raise HalocError(f"unknown data space '{n}'", file=file, key=key, fix=f"use {', '.join(info.spaces)}")
            if n not in out:
                out.append(n)
    return out


def uses_macros(block: dict[str, Any]) -> bool:
    return any(block.get(m) is not None for m in (*ITERATION_MACROS, *DATASPACE_MACROS)) or any(
        isinstance(v, list) and "*" in v for v in block.values()
    )


def expand_block(kind: str, block: dict[str, Any], info: ProblemInfo | None, *, file: Path, key: str) -> dict[str, Any]:
    """One constraint block with its macros replaced by plain entries."""
    if not uses_macros(block):
        return block
    if info is None:
        used = [m for m in (*ITERATION_MACROS, *DATASPACE_MACROS) if block.get(m) is not None] or ["*"]
        raise HalocError(
            f"constraint macro '{used[0]}' needs the problem to expand",
            file=file,
            key=f"{key}.{used[0]}",
            fix="pass the problem file with the architecture",
        )
    out = {k: v for k, v in block.items() if k not in (*ITERATION_MACROS, *DATASPACE_MACROS)}
    if kind == "dataspace":
        keep = _spaces(out.get("keep") or [], info, file=file, key=f"{key}.keep")
        bypass = _spaces(out.get("bypass") or [], info, file=file, key=f"{key}.bypass")
        if block.get("keep_only") is not None:
            only = _spaces(block["keep_only"], info, file=file, key=f"{key}.keep_only")
            keep = list(dict.fromkeys([*keep, *only]))
            bypass = list(dict.fromkeys([*bypass, *(s for s in info.spaces if s not in only)]))
        if block.get("bypass_only") is not None:
            only = _spaces(block["bypass_only"], info, file=file, key=f"{key}.bypass_only")
            bypass = list(dict.fromkeys([*bypass, *only]))
            keep = list(dict.fromkeys([*keep, *(s for s in info.spaces if s not in only)]))
        if "keep" in out or keep:
            out["keep"] = keep
        if "bypass" in out or bypass:
            out["bypass"] = bypass
        return out
    factors = _factor_list(out.get("factors"))
    if block.get("factors_only") is not None:
        only = _factor_list(block["factors_only"])
        named = _named(factors)
        for f in only:
            m = _FACTOR_NAME.match(f)
            if m and m.group(1) in named and named[m.group(1)].replace(" ", "") != f.replace(" ", ""):
                raise HalocError(f"factors_only gives {f} but the factors say {named[m.group(1)]}", file=file, key=f"{key}.factors_only", fix="keep one")
        factors = list(dict.fromkeys([*factors, *only]))
        factors = _add_ones(factors, info.dims, file=file, key=key, macro="factors_only")
    if block.get("no_iteration_over_dataspaces") is not None:
        spaces = _spaces(block["no_iteration_over_dataspaces"], info, file=file, key=f"{key}.no_iteration_over_dataspaces")
        dims = [d for d in info.dims if any(d in info.spaces[s] for s in spaces)]
        factors = _add_ones(factors, dims, file=file, key=key, macro="no_iteration_over_dataspaces")
    if block.get("must_iterate_over_dataspaces") is not None:
        spaces = _spaces(block["must_iterate_over_dataspaces"], info, file=file, key=f"{key}.must_iterate_over_dataspaces")
        dims = [d for d in info.dims if not any(d in info.spaces[s] for s in spaces)]
        factors = _add_ones(factors, dims, file=file, key=key, macro="must_iterate_over_dataspaces")
    out["factors"] = factors
    return out
