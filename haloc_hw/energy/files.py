"""Reading the files ``haloc-hw energy`` is given into components, compound classes and user tables.

Until the front end's ``load_design`` is available this reads plain (non-Jinja) v0.3 and v0.4
files itself, each file contributing by top-level key, in any order:

* ``architecture`` -- v0.4 ``nodes`` (``!Container`` / ``!Component`` / ``!Parallel`` /
  ``!Hierarchical``; ``spatial: {meshX, meshY}`` multiplies the instances below) or v0.3
  ``subtree`` / ``local`` (``name[0..N]`` ranges multiply instances). Attributes are inherited from
  enclosing containers, keys with ``-`` become ``_``, and values are evaluated over the variables and
  the inherited attributes with :func:`haloc_hw.spec.expressions.evaluate_mapping`.
* ``variables`` / ``globals`` -- evaluated first; ``--set KEY=VALUE`` overrides same-named variables.
* ``components: classes:`` (v0.4) / ``compound_components: classes:`` (v0.3) -- compound classes.
* ``ERT`` / ``ART`` -- the user's own tables (they win per component).

The architecture is also loaded with :func:`haloc_hw.spec.load_arch` so the estimate can be turned
into the EnergyTable the cost models read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from haloc_hw.energy.compound import _lenient
from haloc_hw.energy.components import Component
from haloc_hw.errors import HalocError
from haloc_hw.spec.expressions import evaluate_mapping
from haloc_hw.spec.yamltags import TaggedNode, read_spec_mapping

_NAME_RANGE = re.compile(r"^\s*([^\[\]]+?)\s*\[\s*(\d+)\s*\.\.\s*(\d+)\s*\]\s*$")
_STORAGE_HINTS = ("sram", "dram", "regfile", "buffer", "storage", "spad", "cache", "fifo")
_COMPUTE_HINTS = ("mac", "mult", "adder", "compute", "alu", "pe_")
_SKIP_ATTRS = ("version",)
_GENERIC = ("storage", "compute")  # Timeloop's v0.3 generic classes; the real class is 'subclass'


def _class_of(body: Mapping[str, Any], *, file: Path, key: str) -> str:
    cls = body.get("class")
    if isinstance(cls, str) and cls.strip().lower() in _GENERIC and isinstance(body.get("subclass"), str):
        cls = body["subclass"]
    if not isinstance(cls, str) or not cls.strip():
        raise HalocError("component has no class", file=file, key=f"{key}.class", fix="give the component a 'class'")
    return cls.strip()


@dataclass
class LoadedFiles:
    files: tuple[Path, ...]
    components: list[Component] = field(default_factory=list)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    ert: dict[str, Any] | None = None
    art: dict[str, Any] | None = None
    arch_file: Path | None = None
    classes_file: Path | None = None


def _kind(cls: str) -> str:
    low = cls.lower()
    if any(h in low for h in _STORAGE_HINTS):
        return "storage"
    if any(h in low for h in _COMPUTE_HINTS):
        return "compute"
    return "other"


def _attrs(raw: Any, scope: Mapping[str, Any], *, file: Path, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise HalocError("attributes must be a mapping", file=file, key=key, fix="write 'attributes: {name: value}'")
    norm = {str(k).replace("-", "_"): v for k, v in raw.items() if k not in _SKIP_ATTRS}
    return evaluate_mapping(_lenient(norm, scope), scope, file=file, key=key)


def _split(name: Any, *, file: Path, key: str) -> tuple[str, int]:
    if not isinstance(name, str) or not name.strip():
        raise HalocError("node has no name", file=file, key=key, fix="give every node a 'name'")
    m = _NAME_RANGE.match(name)
    if not m:
        return name.strip(), 1
    return m.group(1), int(m.group(3)) - int(m.group(2)) + 1


def _mesh(body: Mapping[str, Any], *, file: Path, key: str) -> int:
    spatial = body.get("spatial") or {}
    if not isinstance(spatial, Mapping):
        raise HalocError("'spatial' must be a mapping", file=file, key=f"{key}.spatial", fix="write 'spatial: {meshX: 4}'")
    n = 1
    for axis in ("meshX", "meshY"):
        v = spatial.get(axis, 1)
        try:
            n *= int(v)
        except (TypeError, ValueError):
            raise HalocError(f"'{axis}' must be an integer, found {v!r}", file=file, key=f"{key}.spatial.{axis}", fix="give an integer") from None
    return n


def _walk_v4(nodes: Any, *, file: Path, key: str, path: list[str], scope: dict[str, Any], inst: int, out: list[Component]) -> tuple[dict[str, Any], int, list[str]]:
    if not isinstance(nodes, list):
        raise HalocError("'nodes' must be a list", file=file, key=key, fix="list the architecture's nodes")
    for i, node in enumerate(nodes):
        nkey = f"{key}[{i}]"
        if not isinstance(node, TaggedNode):
            raise HalocError("node has no !Container/!Component/!Parallel/!Hierarchical tag", file=file, key=nkey, fix="tag each node")
        body = node.body or {}
        if node.tag in ("Parallel", "Hierarchical"):
            # siblings in a !Parallel do not inherit from each other
            sub_scope, sub_inst, sub_path = _walk_v4(body.get("nodes") or [], file=file, key=f"{nkey}.nodes", path=list(path), scope=dict(scope), inst=inst, out=out)
            if node.tag == "Hierarchical":
                scope, inst, path = sub_scope, sub_inst, sub_path
            continue
        name, count = _split(body.get("name"), file=file, key=f"{nkey}.name")
        own = _attrs(body.get("attributes"), scope, file=file, key=f"{nkey}.attributes")
        mesh = _mesh(body, file=file, key=nkey) * count
        if node.tag == "Container":
            scope = {**scope, **own}
            inst *= mesh
            path = [*path, name]
            continue
        cls = _class_of(body, file=file, key=nkey)
        out.append(Component(path=".".join([*path, name]), name=name, cls=cls, attributes={**scope, **own}, instances=inst * mesh, kind=_kind(cls)))
    return scope, inst, path


def _walk_v3(tree: Any, *, file: Path, key: str, path: list[str], scope: dict[str, Any], inst: int, out: list[Component]) -> None:
    if not isinstance(tree, list):
        raise HalocError("'subtree' must be a list", file=file, key=key, fix="list the sub-trees")
    for i, node in enumerate(tree):
        nkey = f"{key}[{i}]"
        if not isinstance(node, Mapping):
            raise HalocError("sub-tree must be a mapping", file=file, key=nkey, fix="give name, attributes, local, subtree")
        name, count = _split(node.get("name"), file=file, key=f"{nkey}.name")
        here = {**scope, **_attrs(node.get("attributes"), scope, file=file, key=f"{nkey}.attributes")}
        n = inst * count
        for j, comp in enumerate(node.get("local") or []):
            ckey = f"{nkey}.local[{j}]"
            if not isinstance(comp, Mapping):
                raise HalocError("local component must be a mapping", file=file, key=ckey, fix="give name, class, attributes")
            cname, ccount = _split(comp.get("name"), file=file, key=f"{ckey}.name")
            cls = _class_of(comp, file=file, key=ckey)
            attrs = {**here, **_attrs(comp.get("attributes"), here, file=file, key=f"{ckey}.attributes")}
            out.append(Component(path=".".join([*path, name, cname]), name=cname, cls=cls, attributes=attrs, instances=n * ccount, kind=_kind(cls)))
        _walk_v3(node.get("subtree") or [], file=file, key=f"{nkey}.subtree", path=[*path, name], scope=here, inst=n, out=out)


def _classes(doc: Any, *, file: Path, key: str) -> dict[str, dict[str, Any]]:
    body = doc.get("classes") if isinstance(doc, Mapping) else doc
    if not isinstance(body, list):
        raise HalocError("compound classes must be a list under 'classes'", file=file, key=f"{key}.classes", fix="write 'classes: [- name: ...]'")
    out = {}
    for i, c in enumerate(body):
        if not isinstance(c, Mapping) or "name" not in c:
            raise HalocError("compound class has no name", file=file, key=f"{key}.classes[{i}]", fix="give each class a 'name'")
        out[str(c["name"])] = dict(c)
    return out


def load_files(paths: Sequence[str | Path], *, set_values: Mapping[str, Any] | None = None) -> LoadedFiles:
    """Components, compound classes and user ERT/ART of a set of v0.3/v0.4 spec files."""
    files = tuple(Path(p) for p in paths)
    if not files:
        raise HalocError("no input files", key="FILES", fix="pass the architecture file and its component classes")
    docs = []
    for f in files:
        if not f.is_file():
            raise HalocError("file not found", file=f, fix="check the path")
        docs.append((f, read_spec_mapping(f)))
    out = LoadedFiles(files)
    variables: dict[str, Any] = {}
    for f, doc in docs:
        for top in ("globals", "variables"):
            block = doc.get(top)
            if isinstance(block, Mapping):
                raw = {k: v for k, v in block.items() if k not in _SKIP_ATTRS and not (top == "globals" and isinstance(v, (list, Mapping)))}
                raw.update({k: v for k, v in (set_values or {}).items() if k in raw})
                variables.update(evaluate_mapping(_lenient(raw, variables), variables, file=f, key=top))
    for k, v in (set_values or {}).items():
        variables.setdefault(k, v)
    for f, doc in docs:
        for top in ("compound_components", "components"):
            if top in doc and doc[top] is not None:
                if top == "components" and not (isinstance(doc[top], Mapping) and "classes" in doc[top]):
                    continue
                out.classes.update(_classes(doc[top], file=f, key=top))
                out.classes_file = out.classes_file or f
        if "ERT" in doc:
            out.ert = {"ERT": doc["ERT"]}
        if "ART" in doc:
            out.art = {"ART": doc["ART"]}
        arch = doc.get("architecture")
        if arch is not None:
            if out.arch_file is not None:
                raise HalocError("two files define 'architecture'", file=f, key="architecture", fix=f"pass one architecture (the other is {out.arch_file})")
            out.arch_file = f
            if not isinstance(arch, Mapping):
                raise HalocError("'architecture' must be a mapping", file=f, key="architecture", fix="write 'architecture: {version: 0.4, nodes: [...]}'")
            if "nodes" in arch:
                _walk_v4(arch["nodes"], file=f, key="architecture.nodes", path=[], scope=dict(variables), inst=1, out=out.components)
            elif "subtree" in arch:
                _walk_v3(arch["subtree"], file=f, key="architecture.subtree", path=[], scope=dict(variables), inst=1, out=out.components)
            else:
                raise HalocError("architecture has neither 'nodes' (v0.4) nor 'subtree' (v0.3)", file=f, key="architecture", fix="write a v0.4 'nodes' list or a v0.3 'subtree'")
    if out.arch_file is None:
        raise HalocError("no file defines 'architecture'", file=files[0], key="architecture", fix="pass the architecture file too")
    # the variables themselves are scope, not attributes of the components
    for i, c in enumerate(out.components):
        attrs = {k: v for k, v in c.attributes.items() if k not in variables or k in ("technology", "global_cycle_seconds")}
        out.components[i] = Component(c.path, c.name, c.cls, attrs, c.instances, c.kind)
    return out
