"""Reading constraints and mappings (Timeloop's per-level directives) into plain data.

Constraints come from v0.3 files (``architecture_constraints`` / ``mapspace_constraints``
with ``targets`` lists whose ``factors`` and ``permutation`` are strings) and from the
per-node ``constraints`` of a v0.4 architecture. A mapping comes from a ``mapping:`` list
such as the golden ``map.yaml``. Strings are kept as written: the loader splits a
constraint permutation into its fixed innermost prefix and fixed outermost suffix, but
completing a permutation (appending missing dimensions) is the cost model's job, because
that depends on the problem.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError
from haloc_hw.spec.mapping import Constraints, Directive, Mapping
from haloc_hw.spec.model import DATA_SPACES, Architecture
from haloc_hw.spec.shipped import resolve_spec_path
from haloc_hw.spec.yamltags import read_spec_mapping
from haloc_hw.workload import GROUPED_PROBLEM_DIMS

log = logging.getLogger(__name__)

CONSTRAINT_SECTIONS: tuple[str, ...] = ("architecture_constraints", "mapspace_constraints")
_TYPE_ALIASES = {
    "temporal": "temporal",
    "spatial": "spatial",
    "bypass": "datatype",
    "datatype": "datatype",
    "dataspace": "datatype",
}
_ENTRY_KEYS = {"target", "type", "factors", "permutation", "split", "keep", "bypass"}
_IGNORED_TYPES = ("utilization", "max_overbooked_proportion", "max-overbooked-proportion")
_FACTOR_RE = re.compile(r"^([A-Za-z])\s*(<=|>=|=)?\s*(-?\d+)$")
_RANGE_RE = re.compile(r"\[\s*\d+\s*\.\.\s*\d+\s*\]$")


def strip_range(name: str) -> str:
    """``DummyBuffer[0..13]`` -> ``DummyBuffer`` (how Timeloop names levels and targets)."""
    return _RANGE_RE.sub("", str(name)).strip()


# ---------------------------------------------------------------------------------------------
# Small parsers shared by constraints, mappings and v0.4 node constraints
# ---------------------------------------------------------------------------------------------


def parse_factors(
    value: Any, *, file: str | Path | None, key: str, dims: Sequence[str] = GROUPED_PROBLEM_DIMS
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Parse ``"N=1 R=0"``, ``"C1 M8"``, ``[N=1, C<=4]`` or ``{N: 1}``.

    Returns (exact factors, max factors, min factors). ``=`` or no operator is exact,
    ``<=``/``>=`` are bounds (Timeloop's newer syntax).
    """
    exact: dict[str, int] = {}
    upper: dict[str, int] = {}
    lower: dict[str, int] = {}
    if value is None:
        return exact, upper, lower
    if isinstance(value, dict):
        tokens = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, str):
        tokens = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        tokens = []
        for item in value:
            tokens.extend(str(item).replace(",", " ").split())
    else:
        raise HalocError(
            f"factors must be a string like 'N=1 R=0' or a list, not {type(value).__name__}",
            file=file,
            key=key,
            fix="write factors as a string such as \"C=1 M=0\"",
        )
    # "N = 1" written with spaces splits into three tokens: glue them back.
    glued: list[str] = []
    for tok in tokens:
        if glued and (tok in ("=", "<=", ">=") or glued[-1].endswith(("=",))):
            glued[-1] += tok
        else:
            glued.append(tok)
    for tok in glued:
        match = _FACTOR_RE.match(tok)
        if not match:
            raise HalocError(
                f"cannot read factor '{tok}'",
                file=file,
                key=key,
                fix="write each factor as DIM=VALUE (constraints) or DIMVALUE (mappings), e.g. 'C=1' or 'C1'",
            )
        dim, op, num = match.group(1), match.group(2) or "=", int(match.group(3))
        _check_dim(dim, dims, file=file, key=key)
        if num < 0:
            raise HalocError(f"factor {dim}={num} is negative", file=file, key=key, fix="use 0 (whole dimension) or a positive factor")
        target = {"=": exact, "<=": upper, ">=": lower}[op]
        if dim in target and target[dim] != num:
            raise HalocError(f"dimension {dim} given twice ({target[dim]} and {num})", file=file, key=key, fix=f"keep one value for {dim}")
        target[dim] = num
    return exact, upper, lower


def parse_permutation(
    value: Any,
    *,
    file: str | Path | None,
    key: str,
    dims: Sequence[str] = GROUPED_PROBLEM_DIMS,
    allow_suffix: bool = True,
) -> tuple[str | None, str | None]:
    """Split a permutation (innermost first) into (fixed prefix, fixed outermost suffix).

    ``"NPQR SCM"`` or ``"NPQR_SCM"`` -> ("NPQR", "SCM"); ``"NMCPQRS"`` -> ("NMCPQRS", None);
    a list ``[N, P, _, S]`` works the same. Empty parts become ``None``.
    """
    if value is None:
        return None, None
    if isinstance(value, (list, tuple)):
        text = "".join("_" if str(v).strip() in ("_", "") else str(v).strip() for v in value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise HalocError(
            f"permutation must be a string like 'NCPQRS M', not {type(value).__name__}",
            file=file,
            key=key,
            fix="write the permutation as a string of dimension letters, innermost first",
        )
    parts = re.split(r"[\s_]+", text)
    if len(parts) > 2:
        raise HalocError(
            f"permutation '{value}' has more than one separator",
            file=file,
            key=key,
            fix="use at most one '_' or space between the fixed inner and outer dimensions",
        )
    if len(parts) == 2 and not allow_suffix:
        raise HalocError(
            f"permutation '{value}' has a separator, which a mapping cannot have",
            file=file,
            key=key,
            fix="list all dimensions, innermost first, without spaces",
        )
    seen: set[str] = set()
    for dim in "".join(parts):
        _check_dim(dim, dims, file=file, key=key)
        if dim in seen:
            raise HalocError(f"dimension {dim} appears twice in permutation '{value}'", file=file, key=key, fix="list each dimension once")
        seen.add(dim)
    prefix = parts[0] or None
    suffix = (parts[1] or None) if len(parts) == 2 else None
    return prefix, suffix


def _check_dim(dim: str, dims: Sequence[str], *, file: str | Path | None, key: str) -> None:
    if dim not in dims:
        raise HalocError(
            f"unknown problem dimension '{dim}'",
            file=file,
            key=key,
            fix=f"use only the dimensions {' '.join(dims)}",
        )


def _data_spaces(value: Any, *, file: str | Path | None, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (str, list, tuple)):
        raise HalocError(f"expected a list of data spaces, not {value!r}", file=file, key=key, fix=f"write a list such as [{', '.join(DATA_SPACES)}]")
    items = value.split() if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        name = str(item)
        if name not in DATA_SPACES:
            raise HalocError(f"unknown data space '{name}'", file=file, key=key, fix=f"use {', '.join(DATA_SPACES)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def _split(value: Any, *, file: str | Path | None, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HalocError(f"split must be a non-negative integer, not {value!r}", file=file, key=key, fix="give the number of leading permutation dims mapped to X")
    return value


def directive_from_entry(
    entry: Any,
    *,
    file: str | Path | None,
    key: str,
    arch: Architecture | None = None,
    dims: Sequence[str] = GROUPED_PROBLEM_DIMS,
    is_mapping: bool = False,
) -> Directive | None:
    """One ``{target, type, ...}`` entry -> :class:`Directive` (``None`` for ignored types)."""
    if not isinstance(entry, dict):
        raise HalocError("each entry must be a mapping with 'target' and 'type'", file=file, key=key, fix="write '- target: NAME\\n  type: temporal'")
    target = entry.get("target")
    if not target:
        raise HalocError("entry has no 'target'", file=file, key=f"{key}.target", fix="name the level this entry applies to")
    target = strip_range(str(target))
    raw_type = str(entry.get("type", "")).strip()
    if raw_type in _IGNORED_TYPES:
        log.warning("%s: %s: constraint type '%s' is not modelled; ignored", file, key, raw_type)
        return None
    if raw_type not in _TYPE_ALIASES:
        raise HalocError(
            f"unknown type '{raw_type}'",
            file=file,
            key=f"{key}.type",
            fix="use temporal, spatial, bypass or datatype",
        )
    dtype = _TYPE_ALIASES[raw_type]
    unknown = set(map(str, entry)) - _ENTRY_KEYS
    if unknown:
        log.warning("%s: %s: ignoring unsupported key(s) %s", file, key, ", ".join(sorted(unknown)))
    if arch is not None and target not in arch.level_names and target not in arch.target_aliases:
        raise HalocError(
            f"unknown level '{target}'",
            file=file,
            key=f"{key}.target",
            fix=f"use one of {known_targets(arch)}",
        )
    if dtype == "datatype":
        keep = _data_spaces(entry.get("keep"), file=file, key=f"{key}.keep")
        bypass = _data_spaces(entry.get("bypass"), file=file, key=f"{key}.bypass")
        both = set(keep) & set(bypass)
        if both:
            raise HalocError(f"{', '.join(sorted(both))} both kept and bypassed", file=file, key=key, fix="list each data space in keep or bypass, not both")
        return Directive(
            target=target,
            type="datatype",
            keep=keep if "keep" in entry else None,
            bypass=bypass if "bypass" in entry else None,
        )
    exact, upper, lower = parse_factors(entry.get("factors"), file=file, key=f"{key}.factors", dims=dims)
    if is_mapping:
        zero = [d for d, v in exact.items() if v == 0]
        if zero or upper or lower:
            raise HalocError(
                "a mapping needs exact positive factors",
                file=file,
                key=f"{key}.factors",
                fix="write every factor as DIMVALUE with VALUE >= 1, e.g. 'C4'",
            )
    prefix, suffix = parse_permutation(
        entry.get("permutation"), file=file, key=f"{key}.permutation", dims=dims, allow_suffix=not is_mapping
    )
    split = _split(entry.get("split"), file=file, key=f"{key}.split")
    if dtype == "temporal" and split is not None:
        raise HalocError("'split' only applies to spatial entries", file=file, key=f"{key}.split", fix="remove split or use type: spatial")
    return Directive(
        target=target,
        type=dtype,  # type: ignore[arg-type]
        factors=exact,
        permutation=prefix,
        permutation_suffix=suffix,
        split=split,
        max_factors=upper,
        min_factors=lower,
    )


def known_targets(arch: Architecture) -> str:
    """The names a directive may target: the levels, then the v0.4 aliases."""
    text = f"the storage levels {', '.join(arch.level_names)}"
    if arch.target_aliases:
        text += f" (or {', '.join(sorted(arch.target_aliases))})"
    return text


def _trivial(d: Directive) -> bool:
    """A temporal/spatial directive that allows nothing but factor 1 everywhere it names."""
    return not d.max_factors and not d.min_factors and all(v == 1 for v in d.factors.values())


def resolve_target(d: Directive, arch: Architecture, *, file: str | Path | None, key: str) -> Directive | None:
    """Move a directive that targets a v0.4 alias (container, ``inter_*_spatial``) to its level.

    Returns ``None`` for what a collapsed timeloopfe dummy level carries and this model has
    no place for (bypass-all datatype entries, all-1 temporal factors). A collapsed alias
    with temporal loops or kept data spaces cannot be expressed and raises
    :class:`HalocError`; so does a target that names nothing.
    """
    if d.target in arch.level_names:
        return d
    alias = arch.target_aliases.get(d.target)
    if alias is None:
        raise HalocError(f"unknown level '{d.target}'", file=file, key=f"{key}.target", fix=f"use one of {known_targets(arch)}")
    level, collapsed = alias
    if d.type == "datatype":
        if d.keep:
            raise HalocError(
                f"'{d.target}' is a fan-out point that stores nothing, but the entry keeps {', '.join(d.keep)}",
                file=file,
                key=f"{key}.keep",
                fix="keep data spaces on a storage component instead",
            )
        return None
    if d.type == "temporal" and (collapsed or arch.level(level).fanout_only):
        if not _trivial(d):
            raise HalocError(
                f"temporal factors on the fan-out point '{d.target}' (timeloopfe pins them to 1)",
                file=file,
                key=f"{key}.factors",
                fix="move the temporal loops to a storage level",
            )
        return None if collapsed else replace(d, target=level)
    return replace(d, target=level)


def merge_resolved(directives: Iterable[Directive], *, file: str | Path | None) -> tuple[Directive, ...]:
    """Join a mapping's directives that resolved to the same (level, type).

    A level's own spatial entry and the one of timeloopfe's ``inter_*_spatial`` level above
    its children both land on the level; one of them must be trivial (all factors 1).
    """
    out: dict[tuple[str, str], Directive] = {}
    for d in directives:
        k = (d.target, d.type)
        if k not in out:
            out[k] = d
        elif _trivial(out[k]) and d.type != "datatype":
            out[k] = d
        elif _trivial(d) and d.type != "datatype":
            continue
        else:
            raise HalocError(f"two {d.type} entries for {d.target}", file=file, key=f"mapping.{d.target}", fix="give one entry per level and type")
    return tuple(out.values())


def node_constraint_directives(
    constraints: Any,
    *,
    target: str,
    spatial_target: str | None,
    file: str | Path | None,
    key: str,
    dims: Sequence[str] = GROUPED_PROBLEM_DIMS,
) -> list[Directive]:
    """v0.4 per-node ``constraints: {dataspace, temporal, spatial}`` -> directives.

    ``spatial_target`` is the level whose spatial loops the node's ``spatial`` block
    constrains (for a container: the level above it, which fans out into the container).
    """
    if constraints is None:
        return []
    if not isinstance(constraints, dict):
        raise HalocError("constraints must be a mapping", file=file, key=key, fix="use {dataspace: ..., temporal: ..., spatial: ...}")
    unknown = set(constraints) - {"dataspace", "temporal", "spatial"}
    if unknown:
        raise HalocError(
            f"unknown constraint kind(s) {', '.join(sorted(map(str, unknown)))}",
            file=file,
            key=key,
            fix="use dataspace, temporal and spatial",
        )
    out: list[Directive] = []
    for kind in ("dataspace", "temporal", "spatial"):
        block = constraints.get(kind)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise HalocError(f"'{kind}' must be a mapping", file=file, key=f"{key}.{kind}", fix="e.g. {factors: [N=1], permutation: [N, C]}")
        tgt = target
        if kind == "spatial":
            if spatial_target is None:
                raise HalocError(
                    "spatial constraints here have no level above to fan out from",
                    file=file,
                    key=f"{key}.spatial",
                    fix="move the spatial constraint to a node below a storage level",
                )
            tgt = spatial_target
        entry = dict(block)
        entry.update({"target": tgt, "type": "datatype" if kind == "dataspace" else kind})
        d = directive_from_entry(entry, file=file, key=f"{key}.{kind}", dims=dims)
        if d is not None:
            out.append(d)
    return out


# ---------------------------------------------------------------------------------------------
# Merging
# ---------------------------------------------------------------------------------------------


def _merge_dicts(a: dict[str, int], b: dict[str, int], what: str, d: Directive, source: str) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        if k in out and out[k] != v:
            raise HalocError(
                f"{what} for {k} given twice with different values ({out[k]} and {v})",
                file=source,
                key=f"{d.target}.{d.type}",
                fix="keep one value",
            )
        out[k] = v
    return out


def _merge_opt(a: Any, b: Any, what: str, d: Directive, source: str) -> Any:
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise HalocError(f"{what} given twice with different values ({a!r} and {b!r})", file=source, key=f"{d.target}.{d.type}", fix="keep one value")


def merge_directives(directives: Iterable[Directive], source: str = "") -> tuple[Directive, ...]:
    """Merge directives with the same (target, type), as Timeloop merges the two sections.

    Conflicting values raise :class:`HalocError`; order of first appearance is kept.
    """
    merged: dict[tuple[str, str], Directive] = {}
    for d in directives:
        k = (d.target, d.type)
        if k not in merged:
            merged[k] = d
            continue
        m = merged[k]
        keep = None if m.keep is None and d.keep is None else tuple(dict.fromkeys((m.keep or ()) + (d.keep or ())))
        bypass = None if m.bypass is None and d.bypass is None else tuple(dict.fromkeys((m.bypass or ()) + (d.bypass or ())))
        if keep and bypass and set(keep) & set(bypass):
            raise HalocError(f"{', '.join(sorted(set(keep) & set(bypass)))} both kept and bypassed", file=source, key=f"{d.target}.datatype", fix="keep one")
        merged[k] = Directive(
            target=m.target,
            type=m.type,
            factors=_merge_dicts(m.factors, d.factors, "factor", d, source),
            permutation=_merge_opt(m.permutation, d.permutation, "permutation", d, source),
            permutation_suffix=_merge_opt(m.permutation_suffix, d.permutation_suffix, "permutation suffix", d, source),
            split=_merge_opt(m.split, d.split, "split", d, source),
            keep=keep,
            bypass=bypass,
            max_factors=_merge_dicts(m.max_factors, d.max_factors, "max factor", d, source),
            min_factors=_merge_dicts(m.min_factors, d.min_factors, "min factor", d, source),
        )
    return tuple(merged.values())


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _section_targets(doc: dict[str, Any], section: str, file: Path) -> list[Any]:
    body = doc.get(section)
    if body is None:
        return []
    if isinstance(body, dict):
        targets = body.get("targets", [])
    elif isinstance(body, list):
        targets = body
    else:
        raise HalocError(f"'{section}' must hold a 'targets' list", file=file, key=section, fix=f"write '{section}:\\n  targets:\\n  - target: ...'")
    if targets is None:
        return []
    if not isinstance(targets, list):
        raise HalocError("'targets' must be a list", file=file, key=f"{section}.targets", fix="write a list of '- target: ...' entries")
    return targets


def load_constraints(
    paths: str | Path | Sequence[str | Path],
    arch: Architecture,
    *,
    dims: Sequence[str] = GROUPED_PROBLEM_DIMS,
) -> Constraints:
    """Read and merge constraints from v0.3 files plus the v0.4 node constraints of ``arch``.

    Every target must be a level of ``arch`` and every dimension one of ``dims``. A file
    that has neither constraints section raises :class:`HalocError` (it was probably
    passed by mistake); files are merged in order with the architecture's own node
    constraints first.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    directives: list[Directive] = []
    for d in arch.node_constraints:
        r = resolve_target(d, arch, file=arch.source, key="constraints")
        if r is not None:
            directives.append(r)
    sources: list[str] = [str(arch.source)] if arch.node_constraints else []
    for p in paths:
        path = resolve_spec_path(p, key="constraints")
        doc = read_spec_mapping(path)
        if not any(s in doc for s in CONSTRAINT_SECTIONS):
            raise HalocError(
                "no architecture_constraints or mapspace_constraints in this file",
                file=path,
                fix="pass a constraints file (see mappings/row_stationary.yaml)",
            )
        for section in CONSTRAINT_SECTIONS:
            for i, entry in enumerate(_section_targets(doc, section, path)):
                d = directive_from_entry(entry, file=path, key=f"{section}.targets[{i}]", arch=arch, dims=dims)
                if d is not None:
                    r = resolve_target(d, arch, file=path, key=f"{section}.targets[{i}]")
                    if r is not None:
                        directives.append(r)
        sources.append(str(path))
    source = ", ".join(sources)
    return Constraints(directives=merge_directives(directives, source), source=source)


def load_mapping(path: str | Path, arch: Architecture | None = None, *, dims: Sequence[str] = GROUPED_PROBLEM_DIMS) -> Mapping:
    """Read a complete mapping (a ``mapping:`` list such as the golden ``map.yaml``).

    Factors are exact (``C1 M8`` or ``C=1``); permutations are kept as written (innermost
    first, possibly partial). With ``arch``, targets are checked against its levels.
    """
    path = Path(path)
    doc = read_spec_mapping(path)
    entries = doc.get("mapping")
    if entries is None:
        raise HalocError("no 'mapping' list in this file", file=path, key="mapping", fix="pass a mapping file such as timeloop-mapper.map.yaml")
    if isinstance(entries, dict) and "targets" in entries:
        entries = entries["targets"]
    if not isinstance(entries, list):
        raise HalocError("'mapping' must be a list of entries", file=path, key="mapping", fix="write '- target: ...' entries")
    return mapping_from_entries(entries, file=path, arch=arch, dims=dims)


def mapping_from_entries(
    entries: Any, *, file: str | Path | None, arch: Architecture | None = None, dims: Sequence[str] = GROUPED_PROBLEM_DIMS
) -> Mapping:
    """A ``mapping:`` list (already loaded) -> :class:`Mapping`.

    With ``arch``, targets are checked against its levels; v0.4 names (containers,
    timeloopfe's ``inter_<name>_spatial`` levels) are moved to the level they stand for.
    """
    if not isinstance(entries, list):
        raise HalocError("'mapping' must be a list of entries", file=file, key="mapping", fix="write '- target: ...' entries")
    directives: list[Directive] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(entries):
        d = directive_from_entry(entry, file=file, key=f"mapping[{i}]", arch=arch, dims=dims, is_mapping=True)
        if d is None:
            continue
        if (d.target, d.type) in seen:
            raise HalocError(f"two {d.type} entries for {d.target}", file=file, key=f"mapping[{i}]", fix="give one entry per level and type")
        seen.add((d.target, d.type))
        if arch is not None:
            r = resolve_target(d, arch, file=file, key=f"mapping[{i}]")
            if r is None:
                continue
            d = r
        directives.append(d)
    return Mapping(directives=merge_resolved(directives, file=file) if arch is not None else tuple(directives))


def mapping_to_yaml(mapping: Mapping) -> dict[str, Any]:
    """A mapping in exactly the golden ``map.yaml`` form (readable by timeloop-model 3.0.x).

    Factors are written as ``"C1 M8 ..."`` in the directive's order, permutations as one
    string; datatype entries always carry both ``keep`` and ``bypass`` lists.
    """
    out: list[dict[str, Any]] = []
    for d in mapping.directives:
        entry: dict[str, Any] = {"target": d.target, "type": d.type}
        if d.type == "datatype":
            entry["keep"] = list(d.keep or ())
            entry["bypass"] = list(d.bypass or ())
        else:
            if d.factors:
                entry["factors"] = " ".join(f"{k}{v}" for k, v in d.factors.items())
            if d.permutation:
                entry["permutation"] = d.permutation + (d.permutation_suffix or "")
            if d.type == "spatial" and d.split is not None:
                entry["split"] = d.split
        out.append(entry)
    return {"mapping": out}
