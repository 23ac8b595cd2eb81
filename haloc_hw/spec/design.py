"""A timeloopfe v0.4 user's file set, read as published, into one :class:`Design`.

:func:`load_design` takes the files a user passes to timeloopfe's
``Specification.from_yaml_files`` (any order; one of them may be a Jinja2 top file that
includes the rest) and does what timeloopfe does before Timeloop runs:

1. render every file with Jinja2 (``set_values`` are the template variables, timeloopfe's
   ``jinja_parse_data``) and parse it, resolving includes (:mod:`haloc_hw.spec.render`);
2. merge the files by top-level key (:mod:`haloc_hw.spec.merge`);
3. refuse sparse / compute-in-memory constructs (:mod:`haloc_hw.spec.sparse`);
4. evaluate ``variables:`` (``set_values`` override same-named entries first) and the
   architecture's attributes, with container attributes inherited
   (:mod:`haloc_hw.spec.process`, :mod:`haloc_hw.spec.expressions`);
5. build the :class:`~haloc_hw.spec.model.Architecture` the cost models read, one
   :class:`ComponentSpec` per leaf, the compound component classes, and every constraint
   (node constraints, ``extra_mapping_constraints`` and other ``*constraints`` sections) as
   directives.

A v0.3 architecture (``subtree:``) is read as before (Timeloop 3.0.3 semantics, no
expression evaluation); its components become :class:`ComponentSpec` records too.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError
from haloc_hw.spec.constraints import directive_from_entry, resolve_target
from haloc_hw.spec.expressions import QuotedStr, evaluate, evaluate_mapping
from haloc_hw.spec.loader import arch_from_dict
from haloc_hw.spec.mapping import Directive
from haloc_hw.spec.merge import merge_documents
from haloc_hw.spec.model import Architecture
from haloc_hw.spec.process import process_architecture
from haloc_hw.spec.render import load_spec_file
from haloc_hw.spec.sparse import DENSE_ONLY, check_document_dense
from haloc_hw.spec.yamltags import TaggedNode
from haloc_hw.workload import GROUPED_PROBLEM_DIMS

log = logging.getLogger(__name__)

# Top-level keys timeloopfe knows (any key containing "constraints" is a constraints
# section, e.g. extra_mapping_constraints, architecture_constraints).
KNOWN_TOP_KEYS: frozenset[str] = frozenset(
    {
        "architecture",
        "components",
        "compound_components",
        "mapping",
        "mapper",
        "problem",
        "sparse_optimizations",
        "variables",
        "mapspace",
        "globals",
        "ERT",
        "ART",
        "model",
        "dumped_by_timeloop_front_end",
    }
)

_RESERVED_GLOBALS = ("version", "environment_variables", "expression_custom_functions", "accelergy_plug_ins")


@dataclass(frozen=True)
class ComponentSpec:
    """One leaf component of the processed spec.

    ``attributes`` are evaluated, with the container attributes and variables it inherits
    (below its own), keys with ``-`` replaced by ``_``. ``instances`` counts all copies in
    the whole design. ``kind`` is ``storage``, ``compute`` or ``other`` (networks and other
    components outside the storage chain).
    """

    path: str
    name: str
    cls: str
    attributes: dict[str, Any]
    instances: int
    kind: str


@dataclass(frozen=True)
class Design:
    """Everything a timeloopfe file set describes, processed.

    ``problem`` is the value of ``problem:``; ``mapping`` is ``{"mapping": [entries]}``
    (a document Timeloop reads) or ``None``; ``ert``/``art`` are the user's ``ERT``/``ART``
    documents if given. ``fingerprint`` hashes the processed content, so it changes with
    any ``set_values`` entry or included file.
    """

    files: tuple[Path, ...]
    set_values: dict[str, Any]
    variables: dict[str, Any]
    architecture: Architecture
    components: tuple[ComponentSpec, ...]
    compound_classes: dict[str, dict[str, Any]]
    constraints: tuple[Directive, ...]
    mapper: dict[str, Any] | None
    problem: dict[str, Any] | None
    mapping: dict[str, Any] | None
    ert: dict[str, Any] | None
    art: dict[str, Any] | None
    fingerprint: str
    included_files: tuple[Path, ...] = field(default=(), compare=False)
    # per top-level key, the file it came from (the top file for included content)
    sources: dict[str, Path] = field(default_factory=dict, compare=False)


def parse_set_values(pairs: Sequence[str]) -> dict[str, Any]:
    """``["meshX=16", "architecture=eyeriss_like"]`` -> ``{"meshX": 16, "architecture": "eyeriss_like"}``.

    Integers, floats and ``true``/``false`` become numbers/booleans; anything else stays a
    string. A pair without ``=`` or with an empty key raises :class:`HalocError`.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = str(pair).partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise HalocError(f"cannot read --set '{pair}'", key="--set", fix="write --set NAME=VALUE with NAME a template/variable name")
        out[key] = _typed(raw.strip())
    return out


def _typed(raw: Any) -> Any:
    if not isinstance(raw, str) or isinstance(raw, QuotedStr):
        return raw
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Glob each path as timeloopfe does; a file given twice is read once."""
    out: list[Path] = []
    for p in paths:
        text = str(p)
        hits = [Path(x) for x in sorted(glob.glob(text)) if os.path.isfile(x)] if any(c in text for c in "*?[") else []
        if not hits:
            path = Path(p)
            if not path.is_file():
                raise HalocError("file not found", file=path, fix="check the path")
            hits = [path]
        for h in hits:
            if not any(os.path.samefile(h, o) for o in out):
                out.append(h)
    if not out:
        raise HalocError("no spec files given", fix="pass the architecture (and problem, mapping, ...) files")
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, QuotedStr):
        return str(value)
    if isinstance(value, TaggedNode):
        return {f"!{value.tag}": _plain(value.body)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _variables(doc: dict[str, Any], key2file: dict[str, Path], set_values: dict[str, Any]) -> dict[str, Any]:
    """Evaluate ``globals`` (extra keys) and ``variables``, ``set_values`` overriding."""
    globs = doc.get("globals") or {}
    if not isinstance(globs, dict):
        raise HalocError("'globals' must be a mapping", file=key2file.get("globals"), key="globals", fix="write globals: {version: 0.4}")
    gfile = key2file.get("globals")
    if globs.get("expression_custom_functions"):
        raise HalocError(
            "expression_custom_functions would run Python files from the spec",
            file=gfile,
            key="globals.expression_custom_functions",
            fix="write the values as expressions over the built-in math functions, or compute them in the template",
        )
    if globs.get("accelergy_plug_ins"):
        log.warning("%s: globals.accelergy_plug_ins is used only by Accelergy; haloc-hw's estimator ignores it", gfile)
    if globs.get("environment_variables"):
        log.info("%s: globals.environment_variables are settings of the Timeloop tools; not needed by the model", gfile)
    raw: dict[str, Any] = {str(k): v for k, v in globs.items() if str(k) not in _RESERVED_GLOBALS}
    variables = doc.get("variables") or {}
    if not isinstance(variables, dict):
        raise HalocError("'variables' must be a mapping", file=key2file.get("variables"), key="variables", fix="write variables: {name: value}")
    raw.update({str(k): v for k, v in variables.items() if str(k) != "version"})
    for k, v in set_values.items():
        if k in raw:
            raw[k] = QuotedStr(v) if isinstance(v, str) else v
    return evaluate_mapping(raw, {}, file=key2file.get("variables") or gfile, key="variables")


def _compound_classes(doc: dict[str, Any], key2file: dict[str, Path]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for top in ("components", "compound_components"):
        block = doc.get(top)
        if block is None:
            continue
        file = key2file.get(top)
        if not isinstance(block, dict):
            raise HalocError(f"'{top}' must be a mapping with 'classes'", file=file, key=top, fix=f"write {top}: {{version: 0.4, classes: [...]}}")
        classes = block.get("classes") or []
        stack = list(classes) if isinstance(classes, list) else [classes]
        flat: list[Any] = []
        while stack:  # include_all() gives a list per file: flatten, as timeloopfe does
            item = stack.pop(0)
            if isinstance(item, list):
                stack = list(item) + stack
            else:
                flat.append(item)
        for i, cls in enumerate(flat):
            if not isinstance(cls, dict) or not isinstance(cls.get("name"), str):
                raise HalocError("a compound component class needs a 'name'", file=file, key=f"{top}.classes[{i}]", fix="write - name: CLASS, attributes: ..., subcomponents: ..., actions: ...")
            name = cls["name"]
            plain = _plain(cls)
            if name in out and out[name] != plain:
                raise HalocError(f"compound class '{name}' defined twice, differently", file=file, key=f"{top}.classes[{i}]", fix="keep one definition")
            out[name] = plain
    return out


def _problem_dims(problem: Any) -> tuple[str, ...]:
    if isinstance(problem, dict):
        shape = problem.get("shape")
        if isinstance(shape, dict) and isinstance(shape.get("dimensions"), list):
            dims = tuple(str(d) for d in shape["dimensions"])
            if dims:
                return tuple(dict.fromkeys((*dims, *GROUPED_PROBLEM_DIMS))) if set(dims) <= set(GROUPED_PROBLEM_DIMS) else dims
    return GROUPED_PROBLEM_DIMS


def _problem(doc: dict[str, Any], key2file: dict[str, Path], variables: dict[str, Any]) -> dict[str, Any] | None:
    problem = doc.get("problem")
    if problem is None:
        return None
    file = key2file.get("problem")
    if not isinstance(problem, dict):
        raise HalocError("'problem' must be a mapping", file=file, key="problem", fix="write problem: {version: 0.4, shape: ..., instance: ...}")
    out = _plain(problem)
    inst = problem.get("instance")
    if isinstance(inst, dict):
        out["instance"] = _plain(
            {k: v for k, v in evaluate_mapping({str(k): v for k, v in inst.items()}, variables, file=file, key="problem.instance").items()}
        )
    return out


def _constraint_sections(doc: dict[str, Any], key2file: dict[str, Path], arch: Architecture, dims: Sequence[str]) -> list[Directive]:
    out: list[Directive] = []
    for top, block in doc.items():
        if "constraints" not in top:
            continue
        file = key2file.get(top)
        if block is None:
            continue
        targets = block.get("targets", []) if isinstance(block, dict) else block
        if targets is None:
            continue
        if not isinstance(targets, list):
            raise HalocError("'targets' must be a list", file=file, key=f"{top}.targets", fix="write a list of '- target: ...' entries")
        flat: list[Any] = []
        for t in targets:
            flat.extend(t if isinstance(t, list) else [t])
        for i, entry in enumerate(flat):
            k = f"{top}.targets[{i}]"
            if isinstance(entry, dict):
                for unsupported in ("no_reuse", "no_coalesce", "no_link_transfer", "rmw_first_update", "remainders", "default_max_factor", "default_min_factor"):
                    if entry.get(unsupported):
                        raise HalocError(f"constraint '{unsupported}' is not modelled by haloc-hw", file=file, key=f"{k}.{unsupported}", fix=f"remove '{unsupported}'")
            d = directive_from_entry(_plain(entry), file=file, key=k, arch=arch, dims=dims)
            if d is None:
                continue
            r = resolve_target(d, arch, file=file, key=k)
            if r is not None:
                out.append(r)
    return out


def _v3_components(arch: Architecture) -> list[ComponentSpec]:
    out = []
    for lvl in arch.levels:
        if lvl.fanout_only:
            continue
        out.append(
            ComponentSpec(
                path=lvl.name,
                name=lvl.name,
                cls=lvl.cls,
                attributes={str(k).replace("-", "_"): v for k, v in lvl.attributes.items()},
                instances=lvl.instances,
                kind="storage",
            )
        )
    a = arch.arithmetic
    out.append(
        ComponentSpec(path=a.name, name=a.name, cls=a.cls, attributes={str(k).replace("-", "_"): v for k, v in a.attributes.items()}, instances=a.instances, kind="compute")
    )
    return out


def _optional_doc(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    plain = _plain(value)
    if isinstance(plain, dict) and not plain.get("tables"):
        return None
    return plain


def load_design(paths: Sequence[str | Path], *, set_values: Mapping[str, Any] | None = None) -> Design:
    """Read a timeloopfe file set (see the module docstring) into a :class:`Design`.

    Every problem a user can fix raises a one-line :class:`HalocError` naming the file, key
    and fix; nothing is written.
    """
    values = {str(k): _typed(v) for k, v in (set_values or {}).items()}
    files = _expand(paths)
    loaded = [load_spec_file(p, data=values) for p in files]
    doc, key2file = merge_documents([(f.path, f.content) for f in loaded])
    for top in doc:
        if top not in KNOWN_TOP_KEYS and "constraints" not in top:
            raise HalocError(
                f"unknown top-level key '{top}'",
                file=key2file.get(top),
                key=top,
                fix=f"use {', '.join(sorted(KNOWN_TOP_KEYS))} or a *_constraints section",
            )
    check_document_dense(doc, key2file)
    variables = _variables(doc, key2file, values)
    arch_doc = doc.get("architecture")
    arch_file = key2file.get("architecture", files[0])
    if arch_doc is None:
        raise HalocError("no 'architecture' key in these files", file=", ".join(map(str, files)), key="architecture", fix="pass the architecture file (or the top file that includes it)")
    if not isinstance(arch_doc, dict):
        raise HalocError("'architecture' must be a mapping", file=arch_file, key="architecture", fix="write 'architecture: {version: 0.4, nodes: [...]}'")
    dims = _problem_dims(doc.get("problem"))
    components: list[ComponentSpec]
    if "nodes" in arch_doc:
        processed, leaves = process_architecture(arch_doc, variables, file=Path(arch_file))
        architecture = arch_from_dict({"architecture": processed}, file=arch_file, dims=dims)
        components = [ComponentSpec(path=lf.path, name=lf.name, cls=lf.cls, attributes=lf.attributes, instances=lf.instances, kind=lf.kind) for lf in leaves]
        processed_arch: Any = processed
    else:
        architecture = arch_from_dict({"architecture": arch_doc}, file=arch_file, dims=dims)
        components = _v3_components(architecture)
        processed_arch = arch_doc
    constraints = [*_node_constraints(architecture), *_constraint_sections(doc, key2file, architecture, dims)]
    compound = _compound_classes(doc, key2file)
    problem = _problem(doc, key2file, variables)
    mapping_raw = doc.get("mapping")
    mapping = None if mapping_raw in (None, [], {}) else {"mapping": _plain(mapping_raw.get("targets", mapping_raw) if isinstance(mapping_raw, dict) else mapping_raw)}
    mapper = doc.get("mapper")
    if mapper is not None and not isinstance(mapper, dict):
        raise HalocError("'mapper' must be a mapping", file=key2file.get("mapper"), key="mapper", fix="write mapper: {version: 0.4, ...}")
    processed_doc = {
        "set_values": values,
        "variables": variables,
        "architecture": processed_arch,
        "rest": {k: v for k, v in doc.items() if k not in ("architecture",)},
    }
    digest = hashlib.sha256(json.dumps(_plain(processed_doc), sort_keys=True, default=repr).encode()).hexdigest()
    included: list[Path] = []
    for f in loaded:
        for p in f.files:
            if p not in included:
                included.append(p)
    return Design(
        files=tuple(files),
        set_values=values,
        variables=_plain(variables),
        architecture=architecture,
        components=tuple(components),
        compound_classes=compound,
        constraints=tuple(constraints),
        mapper=None if mapper is None else _plain(mapper),
        problem=problem,
        mapping=mapping,
        ert=_optional_doc(doc, "ERT"),
        art=_optional_doc(doc, "ART"),
        fingerprint=digest,
        included_files=tuple(included),
        sources=dict(key2file),
    )


def _node_constraints(arch: Architecture) -> list[Directive]:
    out = []
    for d in arch.node_constraints:
        r = resolve_target(d, arch, file=arch.source, key="constraints")
        if r is not None:
            out.append(r)
    return out


__all__ = ["DENSE_ONLY", "ComponentSpec", "Design", "evaluate", "load_design", "parse_set_values"]
