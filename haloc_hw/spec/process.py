"""timeloopfe's processing of a v0.4 architecture: expressions, inheritance, node kinds.

Given the merged ``architecture:`` node list and the evaluated variables, this pass does
what timeloopfe does before anything reaches Timeloop or Accelergy, and no more:

* ``!Nothing`` nodes, ``class: nothing`` and ``enabled: false`` components are dropped;
* every component's and container's ``attributes`` are evaluated in order
  (:func:`~haloc_hw.spec.expressions.evaluate_mapping`) over the variables, the attributes of
  the containers above, and the node's own earlier attributes; ``spatial`` meshes likewise;
* a container's attributes are inherited by every later leaf (timeloopfe hands them to
  Accelergy as tree attributes), below the leaf's own; containers inside ``!Parallel`` and
  components with a fan-out inside ``!Parallel`` are refused, as timeloopfe does;
* network classes (``XY_NoC``, ``Legacy``, ``ReductionTree``, ``SimpleMulticast``) and a
  container's ``networks`` are kept as components of kind ``other`` but leave the storage
  chain (Timeloop 3's default network model is what we count);
* sparse optimisations, density/compression attributes and compute-in-memory classes are
  refused (:mod:`haloc_hw.spec.sparse`);
* constraint blocks are checked: what the model supports passes on, the rest is refused by
  name.

The result is the same node list with plain values (the loader builds the storage chain
from it) plus one :class:`Leaf` record per component, from which
:class:`~haloc_hw.spec.design.ComponentSpec` is made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError
from haloc_hw.spec.expressions import QuotedStr, evaluate, evaluate_mapping
from haloc_hw.spec.sparse import check_component_dense
from haloc_hw.spec.yamltags import TaggedNode

log = logging.getLogger(__name__)

STORAGE_WORDS = ("dram", "sram", "regfile", "smartbuffer", "storage", "buffer")
COMPUTE_WORDS = ("mac", "compute")
NETWORK_CLASSES = ("XY_NoC", "Legacy", "ReductionTree", "SimpleMulticast")
LEAF_KEYS = frozenset(
    {
        "name",
        "class",
        "subclass",
        "attributes",
        "spatial",
        "constraints",
        "sparse_optimizations",
        "required_actions",
        "area_scale",
        "energy_scale",
        "enabled",
    }
)
CONTAINER_KEYS = frozenset({"name", "attributes", "spatial", "constraints", "sparse_optimizations", "networks"})

# Constraint keys the model honours, per block; anything else non-empty is refused by name.
SUPPORTED_CONSTRAINTS: dict[str, frozenset[str]] = {
    "spatial": frozenset({"factors", "permutation", "split", "target", "type"}),
    "temporal": frozenset({"factors", "permutation", "target", "type"}),
    "dataspace": frozenset({"keep", "bypass", "target", "type"}),
}
KNOWN_UNSUPPORTED = {
    "no_reuse": "no_reuse (reuse suppression)",
    "no_link_transfer": "no_link_transfer",
    "rmw_first_update": "rmw_first_update",
    "no_coalesce": "no_coalesce (Timeloop 3.0.3 always coalesces)",
    "default_max_factor": "default_max_factor",
    "default_min_factor": "default_min_factor",
    "remainders": "remainders (imperfect factorization)",
}


@dataclass
class Leaf:
    """One component after processing (attributes evaluated, inherited ones included)."""

    path: str
    name: str
    cls: str
    attributes: dict[str, Any]
    instances: int
    kind: str  # storage | compute | other


def kind_of_class(cls: str) -> str:
    """storage / compute / other (networks) / nothing / unknown, by the words in the class."""
    if cls in NETWORK_CLASSES or any(n in cls for n in NETWORK_CLASSES):
        return "other"
    low = cls.lower()
    if low == "nothing":
        return "nothing"
    if any(w in low for w in STORAGE_WORDS):
        return "storage"
    if any(w in low for w in COMPUTE_WORDS):
        return "compute"
    return "unknown"


def _plain(value: Any) -> Any:
    """QuotedStr -> str, recursively (processed values are plain data)."""
    if isinstance(value, QuotedStr):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def check_constraint_group(cons: Any, *, file: Path, key: str) -> dict[str, Any] | None:
    """A node's ``constraints`` with every unsupported part refused by name."""
    if cons is None:
        return None
    if not isinstance(cons, dict):
        raise HalocError("constraints must be a mapping", file=file, key=key, fix="use {dataspace: ..., temporal: ..., spatial: ...}")
    out: dict[str, Any] = {}
    for kind, block in cons.items():
        kind = str(kind)
        if block is None or block == {} or block == []:
            continue
        if kind not in SUPPORTED_CONSTRAINTS:
            raise HalocError(
                f"constraint '{kind}' is not modelled by haloc-hw",
                file=file,
                key=f"{key}.{kind}",
                fix="remove it (supported: dataspace keep/bypass, temporal and spatial factors/permutation, spatial split)",
            )
        if not isinstance(block, dict):
            raise HalocError(f"'{kind}' must be a mapping", file=file, key=f"{key}.{kind}", fix="e.g. {factors: [N=1], permutation: [N, C]}")
        for sub, value in block.items():
            sub = str(sub)
            if sub in SUPPORTED_CONSTRAINTS[kind]:
                continue
            if value is None or value == [] or value == "" or value == {}:
                continue
            what = KNOWN_UNSUPPORTED.get(sub, f"'{sub}'")
            raise HalocError(
                f"{kind} constraint {what} is not modelled by haloc-hw",
                file=file,
                key=f"{key}.{kind}.{sub}",
                fix=f"remove '{sub}' (supported here: {', '.join(sorted(SUPPORTED_CONSTRAINTS[kind] - {'target', 'type'}))})",
            )
        out[kind] = {k: v for k, v in block.items() if str(k) in SUPPORTED_CONSTRAINTS[kind]}
    return out


class _Walker:
    def __init__(self, variables: dict[str, Any], *, file: Path) -> None:
        self.file = file
        self.scope: dict[str, Any] = dict(variables)
        self.inherited: dict[str, Any] = {}
        self.variables = dict(variables)
        self.mesh = 1
        self.containers: list[str] = []
        self.leaves: list[Leaf] = []

    def _eval_attrs(self, body: dict[str, Any], key: str, extra: dict[str, Any]) -> dict[str, Any]:
        attrs = body.get("attributes")
        if attrs is None:
            return {}
        if not isinstance(attrs, dict):
            raise HalocError("'attributes' must be a mapping", file=self.file, key=f"{key}.attributes", fix="write attributes as 'name: value' pairs")
        return evaluate_mapping(
            {str(k): v for k, v in attrs.items()},
            {**self.scope, **extra},
            file=self.file,
            key=f"{key}.attributes",
            unparsable="keep",
        )

    def _eval_spatial(self, body: dict[str, Any], key: str, scope: dict[str, Any]) -> dict[str, Any] | None:
        sp = body.get("spatial")
        if sp is None:
            return None
        if not isinstance(sp, dict):
            raise HalocError("'spatial' must be a mapping", file=self.file, key=f"{key}.spatial", fix="write spatial: {meshX: 14, meshY: 1}")
        return {str(k): evaluate(v, scope, file=self.file, key=f"{key}.spatial.{k}") for k, v in sp.items()}

    def _fanout(self, spatial: dict[str, Any] | None, key: str) -> int:
        if not spatial:
            return 1
        out = 1
        for axis in ("meshX", "meshY"):
            v = spatial.get(axis, 1)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 1:
                raise HalocError(f"{axis} must be a positive integer, found {v!r}", file=self.file, key=f"{key}.spatial.{axis}", fix="give a whole number >= 1")
            out *= int(v)
        return out

    def walk(self, nodes: Any, key: str, in_parallel: bool) -> list[Any]:
        if not isinstance(nodes, list):
            raise HalocError("'nodes' must be a list", file=self.file, key=key, fix="write a list of !Container / !Component nodes")
        out: list[Any] = []
        for i, node in enumerate(nodes):
            nkey = f"{key}[{i}]"
            if not isinstance(node, TaggedNode):
                raise HalocError("node has no tag", file=self.file, key=nkey, fix="start every node with !Container, !Component, !Parallel, !Hierarchical or !Nothing")
            if node.tag == "Nothing":
                continue
            if node.tag in ("Parallel", "Hierarchical"):
                if node.tag == "Parallel" and in_parallel:
                    raise HalocError("nested !Parallel", file=self.file, key=nkey, fix="list the parallel components in one !Parallel")
                unknown = set(map(str, node.body)) - {"nodes", "name"}
                if unknown:
                    raise HalocError(f"unknown key(s) {', '.join(sorted(unknown))} on !{node.tag}", file=self.file, key=nkey, fix="a branch only has 'nodes'")
                children = self.walk(node.body.get("nodes") or [], f"{nkey}.nodes", in_parallel or node.tag == "Parallel")
                out.append(TaggedNode(tag=node.tag, body={"nodes": children}, line=node.line))
                continue
            processed = self._leaf(node, nkey, in_parallel)
            if processed is not None:
                out.append(processed)
        return out

    def _leaf(self, node: TaggedNode, key: str, in_parallel: bool) -> TaggedNode | None:
        body = node.body
        is_container = node.tag == "Container"
        if in_parallel and is_container:
            raise HalocError("a !Container inside !Parallel", file=self.file, key=key, fix="put only !Component nodes inside !Parallel")
        allowed = CONTAINER_KEYS if is_container else LEAF_KEYS
        unknown = set(map(str, body)) - allowed
        if unknown:
            raise HalocError(
                f"unknown key(s) {', '.join(sorted(unknown))} on !{node.tag}",
                file=self.file,
                key=key,
                fix=f"use only {', '.join(sorted(allowed))}",
            )
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HalocError("every node needs a 'name'", file=self.file, key=f"{key}.name", fix="add 'name: SOMETHING'")
        name = str(name)
        cls = None if is_container else body.get("class")
        if not is_container and (not isinstance(cls, str) or not cls.strip()):
            raise HalocError("component has no 'class'", file=self.file, key=f"{key}.class", fix="give a class such as smartbuffer_SRAM, regfile, DRAM or intmac")
        if not is_container:
            enabled = evaluate(body.get("enabled", True), self.scope, file=self.file, key=f"{key}.enabled")
            if enabled is False:
                log.info("%s: %s: component '%s' is disabled (enabled: false); left out as timeloopfe does", self.file, key, name)
                return None
        extra = {"name": name} if is_container else {"name": name, "class": cls}
        attrs = self._eval_attrs(body, key, extra)
        spatial = self._eval_spatial(body, key, {**self.scope, **attrs})
        fan = self._fanout(spatial, key)
        if in_parallel and fan != 1:
            raise HalocError(f"component '{name}' with a fan-out inside !Parallel", file=self.file, key=f"{key}.spatial", fix="move the fan-out to a !Container above the !Parallel")
        check_component_dense(body, attrs, cls, file=self.file, key=key)
        cons = check_constraint_group(body.get("constraints"), file=self.file, key=f"{key}.constraints")
        new_body: dict[str, Any] = {"name": name, "attributes": _plain(attrs)}
        if spatial is not None:
            new_body["spatial"] = spatial
        if cons:
            new_body["constraints"] = _plain(cons)
        if is_container:
            for j, net in enumerate(body.get("networks") or []):
                self._network(net, f"{key}.networks[{j}]")
            self.mesh *= fan
            if not in_parallel:
                self.scope.update(attrs)
                self.inherited.update(attrs)
            self.containers.append(name)
            return TaggedNode(tag="Container", body=new_body, line=node.line)
        assert isinstance(cls, str)
        kind = kind_of_class(cls)
        if kind == "nothing":
            return None
        if kind == "unknown":
            raise HalocError(
                f"unknown component class '{cls}'",
                file=self.file,
                key=f"{key}.class",
                fix="use a storage class containing DRAM, SRAM, regfile, smartbuffer or storage, a compute class (mac, intmac, fpmac, compute) or a network class",
            )
        self.mesh *= fan
        merged = {**{k: _plain(v) for k, v in self.variables.items() if k != "version"}, **_plain(self.inherited), **_plain(attrs)}
        self.leaves.append(
            Leaf(
                path=".".join([*self.containers, name]),
                name=name,
                cls=str(cls),
                attributes={str(k).replace("-", "_"): v for k, v in merged.items()},
                instances=self.mesh,
                kind=kind,
            )
        )
        if kind == "other":
            if cons:
                raise HalocError("constraints on a network component", file=self.file, key=f"{key}.constraints", fix="put constraints on storage levels")
            return None
        new_body["class"] = str(cls)
        return TaggedNode(tag="Component", body=new_body, line=node.line)

    def _network(self, net: Any, key: str) -> None:
        if not isinstance(net, dict) or not isinstance(net.get("name"), str) or not isinstance(net.get("class"), str):
            raise HalocError("a network needs 'name' and 'class'", file=self.file, key=key, fix="write - {name: NoC, class: XY_NoC, attributes: {...}}")
        attrs = self._eval_attrs(net, key, {"name": net["name"], "class": net["class"]})
        merged = {**{k: _plain(v) for k, v in self.variables.items() if k != "version"}, **_plain(self.inherited), **_plain(attrs)}
        self.leaves.append(
            Leaf(
                path=".".join([*self.containers, str(net["name"])]),
                name=str(net["name"]),
                cls=str(net["class"]),
                attributes={str(k).replace("-", "_"): v for k, v in merged.items()},
                instances=self.mesh,
                kind="other",
            )
        )


def process_architecture(arch: dict[str, Any], variables: dict[str, Any], *, file: Path) -> tuple[dict[str, Any], list[Leaf]]:
    """Process a v0.4 ``architecture`` mapping; returns (processed mapping, leaves)."""
    walker = _Walker(variables, file=file)
    nodes = walker.walk(arch.get("nodes") or [], "architecture.nodes", False)
    out = {k: v for k, v in arch.items() if k != "nodes"}
    out["nodes"] = nodes
    return out, walker.leaves
