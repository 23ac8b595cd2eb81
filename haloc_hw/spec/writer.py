"""Writing an :class:`Architecture` (and constraints) back out as Timeloop YAML.

* :func:`arch_to_v3` gives the v0.3 tree (hyphenated keys, ``NAME[0..N-1]`` ranges) that
  Timeloop 3.0.x reads. Components with the same instance count share one tree node; a
  change of instance count opens a ``subtree`` whose range is the fan-out. A fan-out-only
  level (a v0.4 spatial container) has no v0.3 equivalent, so it becomes a dummy
  ``regfile`` buffer (depth 16, like the golden ``DummyBuffer``) carrying the marker
  attribute ``haloc_fanout_only`` (Timeloop ignores attributes it does not know; our reader
  turns it back into a fan-out-only level). It must keep nothing: add
  :func:`fanout_bypass_directives` to the constraints given to Timeloop.
* :func:`arch_to_v4` gives v0.4 YAML text with ``!Container``/``!Component`` tags: each
  change of mesh is a spatial container just above the component, and a fan-out-only
  level is a spatial container followed by another spatial container (the reader's rule).
* :func:`constraints_to_v3` gives ``architecture_constraints`` with string factors and
  permutations, the only form Timeloop 3.0.x reads (lists are silently ignored there).

Reading what these write gives back an equal :class:`Architecture` (tested both ways).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from haloc_hw.spec.constraints import merge_directives
from haloc_hw.spec.loader import FANOUT_MARKER
from haloc_hw.spec.mapping import Constraints, Directive
from haloc_hw.spec.model import DATA_SPACES, Architecture, ArithmeticLevel, StorageLevel
from haloc_hw.workload import PROBLEM_DIMS

DUMMY_DEPTH = 16


def _num(x: float | int) -> float | int:
    """Write 16.0 as 16 so the YAML looks like what people write."""
    return int(x) if float(x).is_integer() else float(x)


def _storage_attrs(lvl: StorageLevel, *, hyphen: bool) -> dict[str, Any]:
    h = (lambda k: k.replace("_", "-")) if hyphen else (lambda k: k)
    a: dict[str, Any] = {}
    if lvl.technology is not None:
        a["technology"] = lvl.technology
    elif lvl.is_dram and "dram" not in lvl.cls.lower():
        a["technology"] = "DRAM"
    if lvl.fanout_only:
        a["depth"] = DUMMY_DEPTH
        a["width"] = lvl.word_bits
        a[h("word_bits") if hyphen else "datawidth"] = lvl.word_bits
        a[h("block_size")] = 1
        a[FANOUT_MARKER] = True
        return a
    if not lvl.is_dram:
        if lvl.size_words is None:
            a["depth"] = float("inf")
        elif lvl.size_words % lvl.block_size == 0:
            a["depth"] = lvl.size_words // lvl.block_size
        else:
            a["entries"] = lvl.size_words
    a["width"] = lvl.word_bits * lvl.block_size * lvl.cluster_size
    a[h("block_size")] = lvl.block_size
    a[h("word_bits") if hyphen else "datawidth"] = lvl.word_bits
    for key in ("read_bandwidth", "write_bandwidth", "shared_bandwidth"):
        value = getattr(lvl, key)
        if value is not None:
            a[key] = _num(value)
    if lvl.multiple_buffering != 1.0:
        a[h("multiple_buffering")] = _num(lvl.multiple_buffering)
    return a


def arch_to_v3(arch: Architecture) -> dict[str, Any]:
    """The v0.3 tree form of ``arch`` as a plain dict (dump it with yaml.safe_dump)."""
    root: dict[str, Any] = {"name": arch.name, "local": []}
    node, current = root, 1
    chain: list[StorageLevel | ArithmeticLevel] = [*arch.levels, arch.arithmetic]
    for comp in chain:
        if comp.instances != current:
            k = comp.instances // current
            sub: dict[str, Any] = {"name": f"{comp.name}_array[0..{k - 1}]", "local": []}
            node["subtree"] = [sub]
            node, current = sub, comp.instances
        if isinstance(comp, ArithmeticLevel):
            entry = {"name": comp.name, "class": comp.cls, "attributes": {"datawidth": comp.word_bits, "meshX": comp.mesh_x}}
        else:
            attrs = _storage_attrs(comp, hyphen=True)
            attrs["meshX"] = comp.mesh_x
            entry = {"name": comp.name, "class": "regfile" if comp.fanout_only else comp.cls, "attributes": attrs}
        node["local"].append(entry)
    return {"architecture": {"version": 0.3, "subtree": [root]}}


class _Tagged(dict):  # type: ignore[type-arg]
    """A mapping that dumps with the v0.4 tag of its subclass."""

    tag: str


class _Container(_Tagged):
    tag = "!Container"


class _Component(_Tagged):
    tag = "!Component"


class _Flow(dict):  # type: ignore[type-arg]
    """A small mapping written in flow style ({meshX: 14})."""


class _V4Dumper(yaml.SafeDumper):
    pass


def _represent_tagged(dumper: yaml.SafeDumper, data: _Tagged) -> yaml.Node:
    return dumper.represent_mapping(data.tag, dict(data).items())


def _represent_flow(dumper: yaml.SafeDumper, data: _Flow) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(data).items(), flow_style=True)


_V4Dumper.add_representer(_Container, _represent_tagged)
_V4Dumper.add_representer(_Component, _represent_tagged)
_V4Dumper.add_representer(_Flow, _represent_flow)


def _spatial(mx: int, my: int) -> _Flow:
    sp = _Flow()
    if mx != 1 or my == 1:
        sp["meshX"] = mx
    if my != 1:
        sp["meshY"] = my
    return sp


def arch_to_v4(arch: Architecture) -> str:
    """The v0.4 form of ``arch`` as YAML text (tags need text; a dict cannot carry them)."""
    nodes: list[Any] = [_Container(name=arch.name)]
    cur_x, cur_y = 1, 1
    after_fanout = False
    inherited_tech: str | None = None
    chain: list[StorageLevel | ArithmeticLevel] = [*arch.levels, arch.arithmetic]
    for comp in chain:
        if isinstance(comp, StorageLevel) and comp.fanout_only:
            c = _Container(name=comp.name, spatial=_spatial(comp.mesh_x // cur_x, comp.mesh_y // cur_y))
            attrs: dict[str, Any] = {"datawidth": comp.word_bits}
            if comp.technology != inherited_tech:
                attrs["technology"] = comp.technology
                inherited_tech = comp.technology
            c["attributes"] = attrs
            nodes.append(c)
            cur_x, cur_y = comp.mesh_x, comp.mesh_y
            after_fanout = True
            continue
        if (comp.mesh_x, comp.mesh_y) != (cur_x, cur_y) or after_fanout:
            nodes.append(_Container(name=f"{comp.name}_array", spatial=_spatial(comp.mesh_x // cur_x, comp.mesh_y // cur_y)))
            cur_x, cur_y = comp.mesh_x, comp.mesh_y
        after_fanout = False
        if isinstance(comp, ArithmeticLevel):
            nodes.append(_Component(name=comp.name, **{"class": comp.cls}, attributes={"datawidth": comp.word_bits}))
            continue
        attrs = _storage_attrs(comp, hyphen=False)
        if "technology" not in attrs and inherited_tech is not None:
            attrs = {"technology": None, **attrs}
        nodes.append(_Component(name=comp.name, **{"class": comp.cls}, attributes=attrs))
    doc = {"architecture": {"version": 0.4, "nodes": nodes}}
    header = f"# {arch.name}: written by haloc-hw (Timeloop v0.4 architecture)\n"
    return header + yaml.dump(doc, Dumper=_V4Dumper, sort_keys=False, default_flow_style=False)


def _constraint_entry(d: Directive) -> dict[str, Any]:
    if d.type == "datatype":
        entry: dict[str, Any] = {"target": d.target, "type": "bypass"}
        if d.bypass is not None:
            entry["bypass"] = list(d.bypass)
        if d.keep is not None:
            entry["keep"] = list(d.keep)
        return entry
    entry = {"target": d.target, "type": d.type}
    if d.split is not None:
        entry["split"] = d.split
    if d.permutation_suffix:  # "inner outer", or "_outer" when only the outermost dims are fixed
        entry["permutation"] = f"{d.permutation} {d.permutation_suffix}" if d.permutation else f"_{d.permutation_suffix}"
    elif d.permutation:
        entry["permutation"] = d.permutation
    parts = [f"{k}={v}" for k, v in d.factors.items()]
    parts += [f"{k}<={v}" for k, v in d.max_factors.items()]
    parts += [f"{k}>={v}" for k, v in d.min_factors.items()]
    if parts:
        entry["factors"] = " ".join(parts)
    return entry


def constraints_to_v3(constraints: Constraints | Sequence[Directive]) -> dict[str, Any]:
    """Constraints as the v0.3 ``architecture_constraints`` section (strings, not lists).

    Directives with the same target and type are merged first; conflicting values raise
    :class:`HalocError`.
    """
    directives = constraints.directives if isinstance(constraints, Constraints) else tuple(constraints)
    # One entry per (target, type): Timeloop rejects a factor given twice, and callers add
    # fanout_bypass_directives on top of constraints that may already say the same.
    directives = merge_directives(directives, "constraints")
    return {"architecture_constraints": {"targets": [_constraint_entry(d) for d in directives]}}


def fanout_bypass_directives(arch: Architecture, dims: Sequence[str] = PROBLEM_DIMS) -> tuple[Directive, ...]:
    """Directives that make every fan-out-only level a pure fan-out point for Timeloop.

    Each such level (written by :func:`arch_to_v3` as a dummy buffer) bypasses every data
    space and has all temporal factors of ``dims`` fixed to 1 (a container stores nothing,
    so a temporal loop there would be a loop of the level above). Pass the problem's
    dimensions (add ``G`` for grouped problems: Timeloop rejects constraint dims that are
    not in the problem).
    """
    out: list[Directive] = []
    for lvl in arch.levels:
        if not lvl.fanout_only:
            continue
        out.append(Directive(target=lvl.name, type="datatype", keep=(), bypass=DATA_SPACES))
        if dims:
            out.append(Directive(target=lvl.name, type="temporal", factors={d: 1 for d in dims}))
    return tuple(out)
