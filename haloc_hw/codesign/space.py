"""The design-space file: a base design, values for its variables, and constraints between them.

```yaml
codesign_space:
  design: [../arch/ws_array/top.yaml.jinja2]   # base design files, relative to this file
  constraint_files: []                         # extra Timeloop constraint files (optional)
  variables:                                   # every point sets these on the design (--set)
    meshX: [8, 12, 16]                         # a list
    meshY: {range: [8, 16, 4]}                 # start, stop (inclusive), step
    glb_depth: {log2_range: [12, 14]}          # 2**12, 2**13, 2**14
  constraints:                                 # expressions over the variables; all must hold
  - meshX * meshY <= 256
  area_limit_mm2: 2.5                          # estimated chip area; larger points are left out
  reference: {meshX: 14, meshY: 12}            # optional: a point whose dominance is reported
```

Points are the Cartesian product of the variables in the order written (the first
variable changes slowest), so the same file always gives the same points in the same order.
Everything is checked before anything is evaluated: a variable with no values, a value that
is not a number or string, a constraint that does not parse or names an unknown variable,
and a space whose points all violate the constraints (the error names the constraint that
removed them).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from haloc_hw.codesign.expr import evaluate
from haloc_hw.errors import HalocError

TOP_KEY = "codesign_space"
_KEYS = {"design", "constraint_files", "variables", "constraints", "area_limit_mm2", "reference", "name"}
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Point:
    """One design point: its position in the enumeration and its variable values."""

    index: int
    values: dict[str, Any]

    @property
    def id(self) -> str:
        """A stable name from the values alone (the same point keeps its id when the space grows)."""
        text = json.dumps(self.values, sort_keys=True, separators=(",", ":"))
        return "p" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass(frozen=True)
class DesignSpace:
    """A validated design-space file (see the module docstring)."""

    path: Path
    name: str
    design: tuple[Path, ...]
    constraint_files: tuple[Path, ...]
    variables: dict[str, tuple[Any, ...]]
    constraints: tuple[str, ...]
    area_limit_mm2: float | None
    reference: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.variables.values())


def _values(name: str, spec: Any, *, file: Path) -> tuple[Any, ...]:
    key = f"{TOP_KEY}.variables.{name}"
    if isinstance(spec, (int, float, str)) and not isinstance(spec, bool):
        spec = [spec]
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ("range", "log2_range"):
        kind, args = next(iter(spec.items()))
        if not (isinstance(args, list) and len(args) in ((2, 3) if kind == "range" else (2,))
                and all(isinstance(a, int) and not isinstance(a, bool) for a in args)):
            form = "[start, stop, step]" if kind == "range" else "[low_exponent, high_exponent]"
            raise HalocError(f"{kind} needs integers {form}, got {args!r}", file=file, key=f"{key}.{kind}",
                             fix=f"write {{{kind}: {form}}} with integers")
        if kind == "range":
            start, stop, step = (*args, 1) if len(args) == 2 else args
            if step <= 0:
                raise HalocError(f"range step must be positive, got {step}", file=file, key=f"{key}.range",
                                 fix="give a step of 1 or more")
            values = list(range(start, stop + 1, step))
        else:
            values = [2 ** e for e in range(args[0], args[1] + 1)]
    else:
        raise HalocError(f"variable '{name}' must be a list, {{range: [a, b, step]}} or {{log2_range: [a, b]}}",
                         file=file, key=key, fix="write e.g. [8, 16] or {range: [8, 16, 4]}")
    if not values:
        raise HalocError(f"variable '{name}' has no values", file=file, key=key,
                         fix="give at least one value (check that a range's start is not above its stop)")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise HalocError(f"value {v!r} of '{name}' is not a number or a string", file=file, key=key,
                             fix="give plain numbers or strings")
    if len(set(values)) != len(values):
        raise HalocError(f"variable '{name}' repeats a value", file=file, key=key, fix="give each value once")
    return tuple(values)


def _paths(value: Any, *, file: Path, key: str, required: bool) -> tuple[Path, ...]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HalocError("must be a file name or a list of file names", file=file, key=key,
                         fix="write e.g. [../arch/ws_array/top.yaml.jinja2]")
    if required and not value:
        raise HalocError("no design files given", file=file, key=key,
                         fix="name the base design, e.g. design: [../arch/eyeriss_space/top.yaml.jinja2]")
    out = []
    for v in value:
        p = Path(v)
        p = p if p.is_absolute() else (file.parent / p)
        if not p.exists():
            raise HalocError(f"file '{v}' not found (looked in {file.parent})", file=file, key=key,
                             fix="give the path relative to the space file")
        out.append(p.resolve())
    return tuple(out)


def space_from_dict(doc: Any, *, file: str | Path = "<memory>") -> DesignSpace:
    """Validate a loaded space document (the ``codesign_space:`` mapping or the whole file)."""
    file = Path(file)
    if isinstance(doc, dict) and TOP_KEY in doc:
        doc = doc[TOP_KEY]
    if not isinstance(doc, dict):
        raise HalocError(f"no '{TOP_KEY}' mapping", file=file, key=TOP_KEY,
                         fix="start the file with codesign_space: {design: [...], variables: {...}}")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise HalocError(f"unknown key(s) {', '.join(unknown)}", file=file, key=f"{TOP_KEY}.{unknown[0]}",
                         fix=f"use {', '.join(sorted(_KEYS))}")
    design = _paths(doc.get("design"), file=file, key=f"{TOP_KEY}.design", required=True)
    cfiles = _paths(doc.get("constraint_files"), file=file, key=f"{TOP_KEY}.constraint_files", required=False)
    variables_doc = doc.get("variables")
    if not isinstance(variables_doc, dict) or not variables_doc:
        raise HalocError("no variables", file=file, key=f"{TOP_KEY}.variables",
                         fix="give at least one variable with values, e.g. meshX: [8, 16]")
    variables = {str(k): _values(str(k), v, file=file) for k, v in variables_doc.items()}
    cons = doc.get("constraints") or []
    if not isinstance(cons, list) or not all(isinstance(c, str) for c in cons):
        raise HalocError("constraints must be a list of expressions", file=file, key=f"{TOP_KEY}.constraints",
                         fix="write e.g. ['meshX * meshY <= 512']")
    sample = {k: v[0] for k, v in variables.items()}
    for i, c in enumerate(cons):  # parses, and names only variables
        evaluate(c, sample, file=file, key=f"{TOP_KEY}.constraints[{i}]")
    area = doc.get("area_limit_mm2")
    if area is not None and (isinstance(area, bool) or not isinstance(area, (int, float)) or area <= 0):
        raise HalocError(f"area_limit_mm2 must be a positive number, got {area!r}", file=file,
                         key=f"{TOP_KEY}.area_limit_mm2", fix="give the limit in mm^2, e.g. 2.5")
    ref = doc.get("reference")
    if ref is not None:
        if not isinstance(ref, dict) or set(ref) - set(variables):
            raise HalocError("reference must map space variables to values", file=file, key=f"{TOP_KEY}.reference",
                             fix=f"use the variables {', '.join(variables)}")
        ref = {k: ref.get(k, v[0]) for k, v in variables.items()}
    size = math.prod(len(v) for v in variables.values())
    if size > MAX_POINTS:
        raise HalocError(f"the space has {size} points", file=file, key=f"{TOP_KEY}.variables",
                         fix=f"give fewer values (at most {MAX_POINTS} points)")
    return DesignSpace(path=file, name=str(doc.get("name") or file.stem), design=design, constraint_files=cfiles,
                       variables=variables, constraints=tuple(cons), area_limit_mm2=None if area is None else float(area),
                       reference=ref, raw=dict(doc))


def load_space(path: str | Path) -> DesignSpace:
    """Read and validate a design-space file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise HalocError("design-space file not found", file=path, key="--space", fix="pass a space YAML (see spaces/)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HalocError(f"malformed YAML{where}", file=path, fix="fix the YAML syntax") from None
    return space_from_dict(doc, file=path.resolve())


def check_point(space: DesignSpace, values: Mapping[str, Any]) -> str | None:
    """The first constraint ``values`` violates, or ``None``."""
    for i, c in enumerate(space.constraints):
        if not evaluate(c, values, file=space.path, key=f"{TOP_KEY}.constraints[{i}]"):
            return c
    return None


def enumerate_points(space: DesignSpace) -> tuple[list[Point], dict[str, int]]:
    """The points that satisfy every constraint, and how many points each constraint removed.

    A point is counted against the first constraint it violates. When no point is left the
    error names the constraint(s) that removed them.
    """
    names = list(space.variables)
    kept: list[Point] = []
    removed = {c: 0 for c in space.constraints}
    for i, combo in enumerate(itertools.product(*space.variables.values())):
        values = dict(zip(names, combo))
        bad = check_point(space, values)
        if bad is None:
            kept.append(Point(i, values))
        else:
            removed[bad] += 1
    if not kept:
        culprits = [f"'{c}' ({n} of {space.size})" for c, n in sorted(removed.items(), key=lambda kv: -kv[1]) if n]
        raise HalocError(f"every point violates the constraints: removed by {', '.join(culprits)}", file=space.path,
                         key=f"{TOP_KEY}.constraints", fix="relax the constraint or change the variables' values")
    return kept, removed


def find_point(points: Sequence[Point], values: Mapping[str, Any]) -> Point | None:
    for p in points:
        if all(p.values.get(k) == v for k, v in values.items()):
            return p
    return None
