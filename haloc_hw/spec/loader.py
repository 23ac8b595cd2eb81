"""Reading Timeloop architecture files (v0.3 tree and v0.4 node list) into :class:`Architecture`.

Both dialects become the same chain of storage levels, outermost first, above one
arithmetic level, with the quantities Timeloop 3.0.3 derives (see TIMELOOP-MODEL.md §1.2):

* **v0.3** ``architecture: {version: 0.3, subtree: [...]}``: walk the tree top-down; each
  ``local:`` list is read outer -> inner (the last-listed component is the innermost), then
  the node's single ``subtree``. Instances are the product of all ``NAME[a..b]`` ranges on
  the path; ``meshY = instances / meshX`` (no ``meshX``: ``meshX = instances``). Attributes
  of tree nodes (``technology``...) are inherited by the components below, as Accelergy
  does. A buffer that keeps nothing (the golden ``DummyBuffer``, class ``regfile``, depth
  16) is an ordinary level here because it has a capacity; only the writer's marker
  attribute ``haloc_fanout_only`` turns a v0.3 component back into a fan-out-only level.
* **v0.4** ``architecture: {version: 0.4, nodes: [...]}`` with ``!Container``,
  ``!Component``, ``!Parallel`` (and ``!Hierarchical``) tags: nodes are read in order, a
  container's attributes and ``spatial: {meshX, meshY}`` apply to everything after it.
  ``!Parallel`` children become a chain in listed order, exactly like a v0.3 ``local``
  list (the first listed is outermost): Timeloop 3.0 models a chain, and bypass
  constraints give each parallel buffer its own data space. A spatial container becomes a
  fan-out-only level (``fanout_only=True``, ``size_words=0``) when another spatial
  container follows it before the next component: that is exactly where a v0.3 tree
  needs a dummy buffer to split the fan-out into two stages (the golden ``DummyBuffer``
  between the 14-column X stage and the 12-row Y stage). The last spatial container
  above a component only multiplies instances. A container's ``constraints.spatial``
  describes the loops that fan out *into* it, so it targets the level above it.

Every problem a user can cause raises :class:`HalocError` naming the file, key and fix.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError
from haloc_hw.spec.constraints import node_constraint_directives
from haloc_hw.spec.mapping import Directive
from haloc_hw.spec.model import Architecture, ArithmeticLevel, StorageLevel
from haloc_hw.spec.shipped import resolve_spec_path
from haloc_hw.spec.yamltags import TaggedNode
from haloc_hw.workload import GROUPED_PROBLEM_DIMS

log = logging.getLogger(__name__)

FANOUT_MARKER = "haloc_fanout_only"
FANOUT_CLASS = "Container"

_STORAGE_WORDS = ("dram", "sram", "regfile", "smartbuffer", "storage", "buffer")
_COMPUTE_WORDS = ("mac", "compute")
_NAME_RE = re.compile(r"^\s*([^\[\]]+?)\s*(?:\[\s*(\d+)\s*\.\.\s*(\d+)\s*\])?\s*$")

# Attribute aliases (after '-' -> '_' normalisation), first match wins.
_WORD_BITS = ("word_bits", "word_width", "datawidth")
_BLOCK = ("block_size", "n_words")
_CLUSTER = ("cluster_size",)
_WIDTH = ("width", "memory_width", "data_storage_width")
_DEPTH = ("depth", "memory_depth", "data_storage_depth")
# Spellings we accept in a v0.3 file but Timeloop 3.0.x silently ignores (it would use its
# defaults): worth a warning, because the same file fed to Timeloop gives other results.
_TIMELOOP3_IGNORES = {
    "word_bits": "word-bits",
    "cluster_size": "cluster-size",
    "multiple_buffering": "multiple-buffering",
    "read-bandwidth": "read_bandwidth",
    "write-bandwidth": "write_bandwidth",
    "shared-bandwidth": "shared_bandwidth",
    "memory-width": "memory_width",
    "memory-depth": "memory_depth",
    "n-words": "n_words",
    "word-width": "word_width",
    "vector_access_energy": "vector-access-energy",
}


@dataclass
class _Node:
    """One component or fan-out point, before validation."""

    name: str
    cls: str
    kind: str  # "storage" | "compute" | "fanout"
    attrs: dict[str, Any]  # normalised keys, inherited attributes included
    raw_attrs: dict[str, Any]
    instances: int
    mesh_x: int | None
    mesh_y: int | None
    key: str
    line: int = 0
    constraints: list[Directive] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _norm_attrs(attrs: Any, *, file: Path, key: str) -> dict[str, Any]:
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise HalocError("'attributes' must be a mapping", file=file, key=key, fix="write attributes as 'name: value' pairs")
    return {str(k).replace("-", "_"): v for k, v in attrs.items()}


def _lookup(attrs: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for n in names:
        if n in attrs and attrs[n] is not None:
            return n, attrs[n]
    return None, None


def _is_inf(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("inf", "infinity", "unlimited", "-")
    return isinstance(value, float) and math.isinf(value)


def _number(value: Any, *, file: Path, key: str, integer: bool = False, positive: bool = True) -> float | int:
    if isinstance(value, bool):
        raise HalocError(f"expected a number, found {value!r}", file=file, key=key, fix="give a positive number")
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise HalocError(f"expected a number, found {value!r}", file=file, key=key, fix="give a positive number") from None
    if not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise HalocError(f"expected a number, found {value!r}", file=file, key=key, fix="give a positive number")
    if positive and value <= 0:
        raise HalocError(f"must be positive, found {value}", file=file, key=key, fix="give a positive number")
    if integer:
        if float(value) != int(value):
            raise HalocError(f"must be a whole number, found {value}", file=file, key=key, fix="give an integer")
        return int(value)
    return value


def _split_name(raw: Any, *, file: Path, key: str) -> tuple[str, int]:
    """``PE[0..167]`` -> ("PE", 168); ``DRAM`` -> ("DRAM", 1)."""
    if not isinstance(raw, str) or not raw.strip():
        raise HalocError("every node needs a 'name'", file=file, key=key, fix="add 'name: SOMETHING'")
    m = _NAME_RE.match(raw)
    if not m:
        raise HalocError(f"cannot read name '{raw}'", file=file, key=key, fix="write NAME or NAME[0..N-1]")
    name, lo, hi = m.group(1), m.group(2), m.group(3)
    if lo is None:
        return name, 1
    lo_i, hi_i = int(lo), int(hi)
    if hi_i < lo_i:
        raise HalocError(f"empty range in '{raw}'", file=file, key=key, fix="write NAME[0..N-1] with N >= 1")
    return name, hi_i - lo_i + 1


def _kind_of(cls: Any, *, file: Path, key: str) -> str:
    if not isinstance(cls, str) or not cls.strip():
        raise HalocError("component has no 'class'", file=file, key=key, fix="give a class such as smartbuffer_SRAM, regfile, DRAM or intmac")
    low = cls.lower()
    if any(w in low for w in _STORAGE_WORDS):
        return "storage"
    if any(w in low for w in _COMPUTE_WORDS):
        return "compute"
    raise HalocError(
        f"unknown component class '{cls}'",
        file=file,
        key=key,
        fix="use a storage class containing DRAM, SRAM, regfile, smartbuffer or storage, or a compute class (mac, intmac, fpmac, compute)",
    )


# ---------------------------------------------------------------------------------------------
# v0.3 tree
# ---------------------------------------------------------------------------------------------


def _walk_v3(tree: Any, *, file: Path, key: str, attrs: dict[str, Any], inst: int, out: list[_Node]) -> None:
    if not isinstance(tree, list):
        raise HalocError("'subtree' must be a list", file=file, key=key, fix="write '- name: ...' entries")
    if len(tree) > 1:
        raise HalocError(
            f"a subtree with {len(tree)} branches",
            file=file,
            key=key,
            fix="describe one chain: give each node at most one subtree entry (Timeloop models a single hierarchy)",
        )
    for i, node in enumerate(tree):
        nkey = f"{key}[{i}]"
        if not isinstance(node, dict):
            raise HalocError("subtree entries must be mappings", file=file, key=nkey, fix="write 'name:', 'local:', 'subtree:'")
        _name, mult = _split_name(node.get("name"), file=file, key=f"{nkey}.name")
        node_attrs = {**attrs, **_norm_attrs(node.get("attributes"), file=file, key=f"{nkey}.attributes")}
        node_inst = inst * mult
        local = node.get("local") or []
        if not isinstance(local, list):
            raise HalocError("'local' must be a list", file=file, key=f"{nkey}.local", fix="write '- name: ...' entries")
        for j, comp in enumerate(local):
            ckey = f"{nkey}.local[{j}]"
            if not isinstance(comp, dict):
                raise HalocError("local entries must be mappings", file=file, key=ckey, fix="write 'name:', 'class:', 'attributes:'")
            cname, cmult = _split_name(comp.get("name"), file=file, key=f"{ckey}.name")
            own = _norm_attrs(comp.get("attributes"), file=file, key=f"{ckey}.attributes")
            for raw_key in comp.get("attributes") or {}:
                if raw_key in _TIMELOOP3_IGNORES:
                    log.warning(
                        "%s: %s.attributes.%s: Timeloop 3.0.x ignores this spelling (it reads '%s'); haloc-hw uses it",
                        file,
                        ckey,
                        raw_key,
                        _TIMELOOP3_IGNORES[raw_key],
                    )
            cattrs = {**node_attrs, **own}
            cls = comp.get("class")
            kind = _kind_of(cls, file=file, key=f"{ckey}.class")
            if kind == "storage" and own.get(FANOUT_MARKER):
                kind, cls = "fanout", FANOUT_CLASS
            cinst = node_inst * cmult
            if "instances" in own:
                cinst = _number(own["instances"], file=file, key=f"{ckey}.attributes.instances", integer=True)
            mx = own.get("meshX")
            my = own.get("meshY")
            out.append(
                _Node(
                    name=cname,
                    cls=str(cls),
                    kind=kind,
                    attrs=cattrs,
                    raw_attrs=dict(comp.get("attributes") or {}),
                    instances=int(cinst),
                    mesh_x=None if mx is None else _number(mx, file=file, key=f"{ckey}.attributes.meshX", integer=True),
                    mesh_y=None if my is None else _number(my, file=file, key=f"{ckey}.attributes.meshY", integer=True),
                    key=ckey,
                )
            )
        sub = node.get("subtree")
        if sub:
            _walk_v3(sub, file=file, key=f"{nkey}.subtree", attrs=node_attrs, inst=node_inst, out=out)


# ---------------------------------------------------------------------------------------------
# v0.4 node list
# ---------------------------------------------------------------------------------------------


@dataclass
class _Event:
    tag: str  # Container | Component
    body: dict[str, Any]
    key: str
    line: int


def _flatten_v4(nodes: Any, *, file: Path, key: str, in_parallel: bool, out: list[_Event]) -> None:
    if not isinstance(nodes, list):
        raise HalocError("'nodes' must be a list", file=file, key=key, fix="write a list of !Container / !Component nodes")
    for i, node in enumerate(nodes):
        nkey = f"{key}[{i}]"
        if not isinstance(node, TaggedNode):
            raise HalocError(
                "node has no tag",
                file=file,
                key=nkey,
                fix="start every node with !Container, !Component, !Parallel or !Hierarchical",
            )
        if node.tag == "Nothing":
            continue
        if node.tag in ("Parallel", "Hierarchical"):
            if node.tag == "Parallel" and in_parallel:
                raise HalocError("nested !Parallel", file=file, key=nkey, fix="list the parallel components in one !Parallel")
            _flatten_v4(node.body.get("nodes"), file=file, key=f"{nkey}.nodes", in_parallel=in_parallel or node.tag == "Parallel", out=out)
        elif node.tag == "Container" and in_parallel:
            raise HalocError("a !Container inside !Parallel", file=file, key=nkey, fix="put only !Component nodes inside !Parallel")
        else:
            out.append(_Event(node.tag, node.body, nkey, node.line))


def _spatial(body: dict[str, Any], *, file: Path, key: str) -> tuple[int, int] | None:
    sp = body.get("spatial")
    if sp is None:
        return None
    if not isinstance(sp, dict):
        raise HalocError("'spatial' must be a mapping", file=file, key=f"{key}.spatial", fix="write spatial: {meshX: 14, meshY: 1}")
    unknown = set(sp) - {"meshX", "meshY"}
    if unknown:
        raise HalocError(f"unknown spatial key(s) {', '.join(sorted(map(str, unknown)))}", file=file, key=f"{key}.spatial", fix="use meshX and meshY")
    mx = _number(sp.get("meshX", 1), file=file, key=f"{key}.spatial.meshX", integer=True)
    my = _number(sp.get("meshY", 1), file=file, key=f"{key}.spatial.meshY", integer=True)
    return int(mx), int(my)


def _walk_v4(
    nodes: Any,
    *,
    file: Path,
    key: str,
    dims: Sequence[str] = GROUPED_PROBLEM_DIMS,
    aliases: dict[str, tuple[str, bool]] | None = None,
) -> tuple[list[_Node], str | None]:
    """Read a (processed) v0.4 node list into nodes, outermost first.

    ``aliases`` receives the extra names mappings may target (see
    :attr:`Architecture.target_aliases`). A fan-out-only level whose node gives no temporal
    constraint gets one pinning every temporal factor in ``dims`` to 1, as timeloopfe's
    processed spec does for the dummy level it inserts.
    """
    if aliases is None:
        aliases = {}
    events: list[_Event] = []
    _flatten_v4(nodes, file=file, key=key, in_parallel=False, out=events)
    first_name: str | None = None
    if events and events[0].tag == "Container":
        first_name = events[0].body.get("name")

    attrs: dict[str, Any] = {}
    mx, my = 1, 1
    out: list[_Node] = []
    for idx, ev in enumerate(events):
        body = ev.body
        name, mult = _split_name(body.get("name"), file=file, key=f"{ev.key}.name")
        if mult != 1:
            raise HalocError(
                f"v0.4 names carry no ranges ('{body.get('name')}')",
                file=file,
                key=f"{ev.key}.name",
                fix="remove [a..b] and give the count as spatial: {meshX: N}",
            )
        own = _norm_attrs(body.get("attributes"), file=file, key=f"{ev.key}.attributes")
        sp = _spatial(body, file=file, key=ev.key)
        above = out[-1].name if out else None
        if ev.tag == "Container":
            attrs = {**attrs, **own}
            if sp is not None:
                mx, my = mx * sp[0], my * sp[1]
            # A spatial container is a level iff another spatial container follows it
            # before the next component (it then splits the fan-out into two stages).
            becomes_level = False
            if sp is not None:
                for nxt in events[idx + 1 :]:
                    if nxt.tag == "Component":
                        break
                    if "spatial" in nxt.body and nxt.body.get("spatial") is not None:
                        becomes_level = True
                        break
            cons = body.get("constraints")
            if sp is not None and sp != (1, 1) and above is not None:
                # timeloopfe's inter_<name>_spatial level sits where the container is, with
                # the instances above it: its spatial loops are the fan-out of the level
                # above here. (A container that is a level here is timeloopfe's next
                # inter_ level, or the component below, not this one.)
                aliases[name] = (above, True)
                aliases[f"inter_{name}_spatial"] = (above, True)
            if becomes_level:
                level = _Node(
                    name=name,
                    cls=FANOUT_CLASS,
                    kind="fanout",
                    attrs=dict(attrs),
                    raw_attrs=dict(body.get("attributes") or {}),
                    instances=mx * my,
                    mesh_x=mx,
                    mesh_y=my,
                    key=ev.key,
                    line=ev.line,
                )
                level.constraints = node_constraint_directives(
                    cons, target=name, spatial_target=above, file=file, key=f"{ev.key}.constraints", dims=dims
                )
                if not (isinstance(cons, dict) and cons.get("temporal")):
                    # timeloopfe pins the temporal factors of a fan-out-only node to 1
                    level.constraints.append(Directive(target=name, type="temporal", factors={d: 1 for d in dims}))
                out.append(level)
            elif cons:
                if not isinstance(cons, dict) or set(cons) - {"spatial"}:
                    raise HalocError(
                        "only 'spatial' constraints can be given on a container that is not a level",
                        file=file,
                        key=f"{ev.key}.constraints",
                        fix="move dataspace/temporal constraints to a component",
                    )
                directives = node_constraint_directives(
                    cons, target=name, spatial_target=above, file=file, key=f"{ev.key}.constraints", dims=dims
                )
                if out:
                    out[-1].constraints.extend(directives)
        else:
            cls = body.get("class")
            kind = _kind_of(cls, file=file, key=f"{ev.key}.class")
            if sp is not None:
                mx, my = mx * sp[0], my * sp[1]
            node = _Node(
                name=name,
                cls=str(cls),
                kind=kind,
                attrs={**attrs, **own},
                raw_attrs=dict(body.get("attributes") or {}),
                instances=mx * my,
                mesh_x=mx,
                mesh_y=my,
                key=ev.key,
                line=ev.line,
            )
            for axis, value in (("meshX", mx), ("meshY", my)):
                given = own.get(axis)
                if given is not None and _number(given, file=file, key=f"{ev.key}.attributes.{axis}", integer=True) != value:
                    raise HalocError(
                        f"attribute {axis}: {given} disagrees with the containers above ({axis} {value})",
                        file=file,
                        key=f"{ev.key}.attributes.{axis}",
                        fix=f"remove the attribute (v0.4 takes meshes from 'spatial' on containers) or set it to {value}",
                    )
            cons = body.get("constraints")
            if cons and kind == "compute":
                raise HalocError("a compute component takes no constraints", file=file, key=f"{ev.key}.constraints", fix="put constraints on storage levels")
            own_fanout = sp is not None and sp != (1, 1)
            if own_fanout and above is not None:
                # timeloopfe puts an inter_<name>_spatial level above a component with its
                # own fan-out; here that fan-out is the one of the level above.
                aliases[f"inter_{name}_spatial"] = (above, True)
            node.constraints = node_constraint_directives(
                cons,
                target=name,
                # the spatial block of a component with its own fan-out describes the loops
                # that fan out into it (timeloopfe moves it to the inter_ level above)
                spatial_target=above if own_fanout else name,
                file=file,
                key=f"{ev.key}.constraints",
                dims=dims,
            )
            out.append(node)
    return out, first_name


# ---------------------------------------------------------------------------------------------
# building the model
# ---------------------------------------------------------------------------------------------


def _mesh(n: _Node, *, file: Path) -> tuple[int, int]:
    inst = n.instances
    mx, my = n.mesh_x, n.mesh_y
    where = f"{n.key}.attributes.meshX"
    if mx is None and my is None:
        return inst, 1
    if mx is not None and inst % mx:
        raise HalocError(f"meshX {mx} does not divide the {inst} instances of '{n.name}'", file=file, key=where, fix="make meshX a divisor of the instance count")
    if mx is None:
        assert my is not None
        if inst % my:
            raise HalocError(f"meshY {my} does not divide the {inst} instances of '{n.name}'", file=file, key=where, fix="make meshY a divisor of the instance count")
        mx = inst // my
    if my is None:
        my = inst // mx
    if mx * my != inst:
        raise HalocError(f"meshX*meshY = {mx * my} but '{n.name}' has {inst} instances", file=file, key=where, fix="make meshX*meshY equal the instance count")
    return int(mx), int(my)


def _storage_level(n: _Node, *, file: Path) -> StorageLevel:
    a = n.attrs
    akey = f"{n.key}.attributes"
    mesh_x, mesh_y = _mesh(n, file=file)
    wb_key, wb = _lookup(a, _WORD_BITS)
    word_bits = 16 if wb is None else int(_number(wb, file=file, key=f"{akey}.{wb_key}", integer=True))
    technology = a.get("technology")
    technology = None if technology is None else str(technology)
    if n.kind == "fanout":
        return StorageLevel(
            name=n.name,
            cls=FANOUT_CLASS,
            size_words=0,
            word_bits=word_bits,
            instances=n.instances,
            mesh_x=mesh_x,
            mesh_y=mesh_y,
            fanout_only=True,
            technology=technology,
            attributes=dict(n.raw_attrs),
        )
    bs_key, bs_raw = _lookup(a, _BLOCK)
    cs_key, cs_raw = _lookup(a, _CLUSTER)
    w_key, w_raw = _lookup(a, _WIDTH)
    bs = None if bs_raw is None else _number(bs_raw, file=file, key=f"{akey}.{bs_key}", integer=True)
    cs = None if cs_raw is None else _number(cs_raw, file=file, key=f"{akey}.{cs_key}", integer=True)
    if w_raw is not None:
        width = _number(w_raw, file=file, key=f"{akey}.{w_key}", integer=True)
        fix = f"make {w_key} = word bits x block size x cluster size"
        if bs is not None and cs is None:
            q, r = divmod(width, word_bits * bs)
            if r or q < 1:
                raise HalocError(f"{w_key} {width} is not a multiple of word bits {word_bits} x block size {bs}", file=file, key=f"{akey}.{w_key}", fix=fix)
            cs = q
        elif cs is not None and bs is None:
            q, r = divmod(width, word_bits * cs)
            if r or q < 1:
                raise HalocError(f"{w_key} {width} is not a multiple of word bits {word_bits} x cluster size {cs}", file=file, key=f"{akey}.{w_key}", fix=fix)
            bs = q
        elif bs is None and cs is None:
            q, r = divmod(width, word_bits)
            if r or q < 1:
                raise HalocError(f"{w_key} {width} is not a multiple of word bits {word_bits}", file=file, key=f"{akey}.{w_key}", fix=fix)
            bs, cs = q, 1
    bs = 1 if bs is None else int(bs)
    cs = 1 if cs is None else int(cs)
    is_dram = "dram" in n.cls.lower() or (technology or "").upper() == "DRAM"
    if is_dram and cs != 1:
        raise HalocError(
            f"DRAM '{n.name}' has cluster size {cs}",
            file=file,
            key=akey,
            fix="give DRAM width = word bits x block size (Timeloop requires cluster size 1 for DRAM)",
        )
    size: int | None
    if is_dram:
        size = None
    else:
        if "entries" in a and a["entries"] is not None:
            size = None if _is_inf(a["entries"]) else int(_number(a["entries"], file=file, key=f"{akey}.entries", integer=True))
        else:
            d_key, depth = _lookup(a, _DEPTH)
            if depth is not None:
                size = None if _is_inf(depth) else int(_number(depth, file=file, key=f"{akey}.{d_key}", integer=True)) * bs
            elif a.get("sizeKB") is not None:
                kb = _number(a["sizeKB"], file=file, key=f"{akey}.sizeKB")
                size = int(kb * 1024 * 8 // word_bits)
                if size <= 0:
                    raise HalocError("sizeKB gives less than one word", file=file, key=f"{akey}.sizeKB", fix="give a larger size")
            else:
                raise HalocError(
                    f"storage level '{n.name}' has no capacity",
                    file=file,
                    key=akey,
                    fix="give depth (memory_depth), entries or sizeKB, or depth: inf for an unbounded store",
                )

    def bw(name: str) -> float | None:
        k, v = _lookup(a, (name,))
        if v is None or _is_inf(v):
            return None
        return float(_number(v, file=file, key=f"{akey}.{k}"))

    mb_key, mb = _lookup(a, ("multiple_buffering",))
    multiple = 1.0 if mb is None else float(_number(mb, file=file, key=f"{akey}.{mb_key}"))
    return StorageLevel(
        name=n.name,
        cls=n.cls,
        size_words=size,
        word_bits=word_bits,
        block_size=bs,
        cluster_size=cs,
        instances=n.instances,
        mesh_x=mesh_x,
        mesh_y=mesh_y,
        read_bandwidth=bw("read_bandwidth"),
        write_bandwidth=bw("write_bandwidth"),
        shared_bandwidth=bw("shared_bandwidth"),
        multiple_buffering=multiple,
        fanout_only=False,
        is_dram=is_dram,
        technology=technology,
        attributes=dict(n.raw_attrs),
    )


def _build(
    nodes: list[_Node], *, file: Path, name: str, version: str, aliases: dict[str, tuple[str, bool]] | None = None
) -> Architecture:
    levels: list[StorageLevel] = []
    arithmetic: ArithmeticLevel | None = None
    directives: list[Directive] = []
    for n in nodes:
        if arithmetic is not None:
            raise HalocError(
                f"'{n.name}' lies below the compute level '{arithmetic.name}'",
                file=file,
                key=n.key,
                fix="make the compute (mac) component the innermost one",
            )
        if n.kind == "compute":
            mesh_x, mesh_y = _mesh(n, file=file)
            wb_key, wb = _lookup(n.attrs, _WORD_BITS)
            arithmetic = ArithmeticLevel(
                name=n.name,
                cls=n.cls,
                instances=n.instances,
                mesh_x=mesh_x,
                mesh_y=mesh_y,
                word_bits=16 if wb is None else int(_number(wb, file=file, key=f"{n.key}.attributes.{wb_key}", integer=True)),
                attributes=dict(n.raw_attrs),
            )
        else:
            if any(lv.name == n.name for lv in levels):
                raise HalocError(f"two levels named '{n.name}'", file=file, key=n.key, fix="give every level a unique name")
            levels.append(_storage_level(n, file=file))
        directives.extend(n.constraints)
    if not levels:
        raise HalocError("no storage level", file=file, key="architecture", fix="add at least a DRAM (class DRAM) above the compute level")
    if arithmetic is None:
        raise HalocError("no arithmetic (compute) level", file=file, key="architecture", fix="add an innermost component of class intmac (or mac/fpmac/compute)")
    chain: list[StorageLevel | ArithmeticLevel] = [*levels, arithmetic]
    node_by_name = {n.name: n for n in nodes}
    for parent, child in zip(chain, chain[1:]):
        if child.mesh_x % parent.mesh_x or child.mesh_y % parent.mesh_y:
            raise HalocError(
                f"fan-out from '{parent.name}' ({parent.mesh_x}x{parent.mesh_y}) to '{child.name}' "
                f"({child.mesh_x}x{child.mesh_y}) is not a whole number",
                file=file,
                key=node_by_name[child.name].key,
                fix="make the child's meshX and meshY multiples of the parent's",
            )
    return Architecture(
        name=name,
        levels=tuple(levels),
        arithmetic=arithmetic,
        source=file,
        node_constraints=tuple(directives),
        version=version,
        target_aliases={k: v for k, v in (aliases or {}).items() if k not in {lv.name for lv in levels}},
    )


def arch_from_dict(
    doc: dict[str, Any], *, file: str | Path = "<memory>", dims: Sequence[str] = GROUPED_PROBLEM_DIMS
) -> Architecture:
    """Build an :class:`Architecture` from an already-loaded document (``architecture:`` key).

    A v0.4 node list is expected as timeloopfe processed it (plain values); raw files go
    through :func:`haloc_hw.spec.design.load_design`, which evaluates expressions first.
    ``dims`` are the problem dimensions node constraints may name.
    """
    file = Path(file)
    arch = doc.get("architecture")
    if arch is None:
        raise HalocError("no 'architecture' key", file=file, key="architecture", fix="pass an architecture file (see arch/eyeriss.yaml)")
    if not isinstance(arch, dict):
        raise HalocError("'architecture' must be a mapping", file=file, key="architecture", fix="write 'architecture: {version: 0.4, nodes: [...]}'")
    version = arch.get("version")
    if "nodes" in arch:
        if version is not None and str(version) not in ("0.4", "0.5"):
            raise HalocError(f"'nodes' is v0.4 syntax but version is {version}", file=file, key="architecture.version", fix="set version: 0.4")
        aliases: dict[str, tuple[str, bool]] = {}
        nodes, first = _walk_v4(arch["nodes"], file=file, key="architecture.nodes", dims=dims, aliases=aliases)
        return _build(nodes, file=file, name=str(first or file.stem), version="0.4", aliases=aliases)
    if "subtree" in arch:
        if version is not None and str(version) not in ("0.3", "0.2"):
            raise HalocError(f"'subtree' is v0.3 syntax but version is {version}", file=file, key="architecture.version", fix="set version: 0.3")
        nodes3: list[_Node] = []
        _walk_v3(arch["subtree"], file=file, key="architecture.subtree", attrs={}, inst=1, out=nodes3)
        root = arch["subtree"][0].get("name") if arch["subtree"] else None
        root_name = _split_name(root, file=file, key="architecture.subtree[0].name")[0] if root else file.stem
        return _build(nodes3, file=file, name=root_name, version="0.3")
    raise HalocError(
        "architecture has neither 'nodes' (v0.4) nor 'subtree' (v0.3)",
        file=file,
        key="architecture",
        fix="write 'architecture: {version: 0.4, nodes: [...]}' or the v0.3 tree form",
    )


def load_arch(path: str | Path, *, set_values: Mapping[str, Any] | None = None) -> Architecture:
    """Read a Timeloop architecture file (v0.3 tree or v0.4 nodes; the version is detected).

    The file goes through the same front end as a timeloopfe user's file set
    (:func:`haloc_hw.spec.design.load_design`): Jinja2 templates (``set_values`` are their
    variables and override same-named ``variables:``), includes, expressions, inheritance.
    A relative path that does not exist falls back to the shipped file of that name
    (``arch/eyeriss.yaml`` works outside the repository too).
    """
    from haloc_hw.spec.design import load_design  # design imports this module

    path = resolve_spec_path(path, key="architecture")
    return load_design([path], set_values=set_values).architecture
