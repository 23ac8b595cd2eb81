"""General Timeloop problems: dimensions, coefficients and data-space projections.

A :class:`Problem` is what Timeloop's ``problem: {shape, instance}`` describes: named
dimensions with bounds, and data spaces whose axes are sums of ``dimension * coefficient``
terms (Timeloop's projection form ``[[[P, Wstride], [R, Wdilation]], ...]``), one or more of
them read-write (the outputs). The analytical model, the map space and the mapper work on
a Problem; a :class:`~haloc_hw.workload.ConvShape` converts to one
(:func:`as_problem`) with exactly Timeloop's CNN-Layer projections, so the CNN path and a
general problem of the same shape give the same numbers.

Reading (:func:`read_problem`, :func:`problem_from_doc`) accepts v0.3 hyphenated keys
(``data-spaces``, ``read-write``) and v0.4 underscored ones (``data_spaces``,
``read_write``), projections as nested lists (each term ``[dim]``, ``[dim, coef]`` or
``[coef, dim]``) or as expression strings (``"P*Wstride + R*Wdilation"``), and takes every
bound from ``instance`` (coefficients default to the shape's ``default``, else 1). A
projection naming an unknown dimension or coefficient, a negative or zero coefficient, a
dimension name the mapping syntax cannot express (more than one character), or a missing
bound is a :class:`HalocError` naming the file, key and construct.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from haloc_hw.errors import HalocError

if TYPE_CHECKING:
    from haloc_hw.workload import ConvShape

Term = tuple[str, int]            # (dimension, coefficient value)
Axis = tuple[Term, ...]            # one data-space axis: sum of terms


@dataclass(frozen=True)
class ProblemDataSpace:
    """One tensor: its axes (sums of dim*coefficient terms) and whether it is read-write."""

    name: str
    projection: tuple[Axis, ...]
    read_write: bool = False

    @property
    def dims(self) -> frozenset[str]:
        """Dimensions that index this data space."""
        return frozenset(d for axis in self.projection for d, _ in axis)


@dataclass(frozen=True)
class Problem:
    """A Timeloop problem instance (see the module docstring).

    ``bounds`` keeps the order of ``shape.dimensions`` (Timeloop's dimension order matters
    for default permutations). Hashable, so it serves as a cache key like a ConvShape.
    """

    name: str
    bounds: tuple[tuple[str, int], ...]
    data_spaces: tuple[ProblemDataSpace, ...]
    coefficients: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        names = [d for d, _ in self.bounds]
        if len(set(names)) != len(names):
            raise HalocError(f"problem '{self.name}' repeats a dimension", key="problem.shape.dimensions",
                             fix="name each dimension once")
        for d, b in self.bounds:
            if len(d) != 1:
                raise HalocError(f"dimension '{d}' has more than one character, which mapping permutations cannot name",
                                 key="problem.shape.dimensions", fix="use one-letter dimension names")
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise HalocError(f"dimension {d} must have a positive integer bound, got {b!r}",
                                 key=f"problem.instance.{d}", fix="give every dimension a bound >= 1")
        if not self.data_spaces:
            raise HalocError(f"problem '{self.name}' has no data spaces", key="problem.shape.data_spaces",
                             fix="declare the tensors with their projections")
        ds_names = [t.name for t in self.data_spaces]
        if len(set(ds_names)) != len(ds_names):
            raise HalocError(f"problem '{self.name}' repeats a data space", key="problem.shape.data_spaces",
                             fix="name each data space once")
        for t in self.data_spaces:
            for axis in t.projection:
                for d, c in axis:
                    if d not in names:
                        raise HalocError(f"projection of '{t.name}' names unknown dimension '{d}'",
                                         key=f"problem.shape.data_spaces.{t.name}.projection",
                                         fix=f"use dimensions among {', '.join(names)}")
                    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                        raise HalocError(f"projection of '{t.name}' gives {d} the coefficient {c!r}; only positive "
                                         "integer coefficients can be modelled",
                                         key=f"problem.shape.data_spaces.{t.name}.projection",
                                         fix="use coefficients >= 1")

    @property
    def dims(self) -> dict[str, int]:
        """Bounds by dimension, in problem order (as ``ConvShape.dims``)."""
        return dict(self.bounds)

    @property
    def macs(self) -> int:
        """Operation-space points (one compute each)."""
        return math.prod(b for _, b in self.bounds)

    @property
    def space_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.data_spaces)

    def relevant(self, dim: str) -> frozenset[str]:
        """Names of the data spaces ``dim`` indexes."""
        return frozenset(t.name for t in self.data_spaces if dim in t.dims)

    def data_space(self, name: str) -> ProblemDataSpace:
        for t in self.data_spaces:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def key(self) -> str:
        """Canonical text of the problem; equal problems have equal keys."""
        dims = "_".join(f"{d}{b}" for d, b in self.bounds)
        spaces = ";".join(
            f"{t.name}{'*' if t.read_write else ''}=" + ",".join("+".join(f"{d}{c}" for d, c in ax) for ax in t.projection)
            for t in self.data_spaces)
        return f"{self.name}:{dims}:{spaces}"

    def text(self) -> str:
        """Short human description for messages."""
        return f"{self.name} " + " ".join(f"{d}={b}" for d, b in self.bounds)


Workload = Union["ConvShape", Problem]


# --------------------------------------------------------------------------------------
# ConvShape -> Problem


@lru_cache(maxsize=4096)
def _conv_problem(shape: "ConvShape") -> Problem:
    dims = shape.dims
    g = "G" in dims

    def ax(*terms: tuple[str, int]) -> Axis:
        return tuple(terms)

    gax = [ax(("G", 1))] if g else []
    weights = (*gax, ax(("C", 1)), ax(("M", 1)), ax(("R", 1)), ax(("S", 1)))
    inputs = (ax(("N", 1)), *gax, ax(("C", 1)),
              ax(("R", shape.Wdilation), ("P", shape.Wstride)),
              ax(("S", shape.Hdilation), ("Q", shape.Hstride)))
    outputs = (ax(("N", 1)), *gax, ax(("M", 1)), ax(("Q", 1)), ax(("P", 1)))
    return Problem(
        name="CNN-Layer",
        bounds=tuple(dims.items()),
        data_spaces=(ProblemDataSpace("Weights", weights), ProblemDataSpace("Inputs", inputs),
                     ProblemDataSpace("Outputs", outputs, read_write=True)),
        coefficients=tuple(shape.coefficients.items()),
    )


def as_problem(workload: Workload) -> Problem:
    """The :class:`Problem` of a ConvShape (Timeloop's CNN-Layer projections) or a Problem itself."""
    if isinstance(workload, Problem):
        return workload
    return _conv_problem(workload)


def describe(workload: Workload) -> str:
    """Short text naming a workload in messages."""
    if isinstance(workload, Problem):
        return workload.text()
    s = workload
    g = f" G={s.G}" if s.G > 1 else ""
    return (f"C={s.C} M={s.M} R={s.R} S={s.S} P={s.P} Q={s.Q} N={s.N}{g} "
            f"stride={s.Wstride}x{s.Hstride}")


def as_conv_shape(problem: Problem) -> "ConvShape | None":
    """The ConvShape whose Problem equals ``problem`` (data-space names included), else ``None``."""
    from haloc_hw.workload import GROUPED_PROBLEM_DIMS, PROBLEM_DIMS, ConvShape

    names = tuple(d for d, _ in problem.bounds)
    if names not in (PROBLEM_DIMS, GROUPED_PROBLEM_DIMS):
        return None
    b = problem.dims
    if names == GROUPED_PROBLEM_DIMS and b["G"] == 1:
        return None  # a G of 1 declared explicitly keeps its own dimension list
    # read the coefficients off the Inputs projection
    try:
        inputs = problem.data_space("Inputs")
    except KeyError:
        return None
    coef: dict[str, int] = {}
    for axis in inputs.projection:
        for d, c in axis:
            key = {"R": "Wdilation", "P": "Wstride", "S": "Hdilation", "Q": "Hstride"}.get(d)
            if key:
                coef[key] = c
    try:
        shape = ConvShape(C=b["C"], M=b["M"], R=b["R"], S=b["S"], P=b["P"], Q=b["Q"], N=b["N"], G=b.get("G", 1),
                          **{k: coef.get(k, 1) for k in ("Wstride", "Hstride", "Wdilation", "Hdilation")})
    except HalocError:
        return None
    mine = _conv_problem(shape)
    def norm(p: Problem) -> tuple:
        return tuple(sorted((t.name, tuple(tuple(sorted(ax)) for ax in t.projection), t.read_write)
                            for t in p.data_spaces))

    same = norm(mine) == norm(problem)
    return shape if same else None


# --------------------------------------------------------------------------------------
# Reading Timeloop problem documents

_FLOW_LIST = re.compile(r"^\[(.*)\]$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _name_list(value: Any, *, file: Path | None, key: str) -> list[str]:
    if isinstance(value, str):  # "[C, M, R]" written as one string
        m = _FLOW_LIST.match(value.strip())
        value = [v.strip() for v in (m.group(1) if m else value).split(",") if v.strip()]
    if not isinstance(value, list) or not value:
        raise HalocError("expected a non-empty list of dimension names", file=file, key=key,
                         fix="write dimensions: [C, M, R, ...]")
    return [str(v) for v in value]


def _int(value: Any, *, file: Path | None, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise HalocError(f"value {value!r} is not an integer", file=file, key=key, fix="write a positive integer")
    return value


def _coef_value(name: Any, coefs: dict[str, int], *, file: Path | None, key: str) -> int:
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    text = str(name).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    if text not in coefs:
        raise HalocError(f"projection names unknown coefficient '{text}'", file=file, key=key,
                         fix=f"declare it under shape.coefficients (known: {', '.join(coefs) or 'none'})")
    return coefs[text]


def _term(raw: Any, dims: list[str], coefs: dict[str, int], *, file: Path | None, key: str) -> Term:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not 1 <= len(raw) <= 2:
        raise HalocError(f"projection term {raw!r} is not [dim] or [dim, coefficient]", file=file, key=key,
                         fix="write each term as [P] or [P, Wstride]")
    parts = [str(p).strip() if not isinstance(p, int) else p for p in raw]
    if len(parts) == 1:
        d = parts[0]
        if d not in dims:
            raise HalocError(f"projection names unknown dimension '{d}'", file=file, key=key,
                             fix=f"use dimensions among {', '.join(dims)}")
        return str(d), 1
    a, b = parts
    if a in dims and b not in dims:
        return str(a), _coef_value(b, coefs, file=file, key=key)
    if b in dims and a not in dims:
        return str(b), _coef_value(a, coefs, file=file, key=key)
    bad = a if a not in dims else b
    raise HalocError(f"projection term {raw!r} must name exactly one dimension (unknown or repeated: '{bad}')",
                     file=file, key=key, fix=f"use dimensions among {', '.join(dims)}")


def _axis_from_text(text: str, dims: list[str], coefs: dict[str, int], *, file: Path | None, key: str) -> Axis:
    """``"P*Wstride + R*Wdilation"`` / ``"2*P + R"`` -> terms (sums of products of a dim and a coefficient)."""
    terms: list[Term] = []
    for part in text.split("+"):
        factors = [f.strip() for f in part.split("*")]
        if not part.strip() or any(not f for f in factors) or len(factors) > 2:
            raise HalocError(f"projection '{text}' uses a construct the model cannot express (only sums of "
                             "dim*coefficient terms)", file=file, key=key,
                             fix="write e.g. 'P*Wstride + R*Wdilation'")
        for f in factors:
            if not (_IDENT.match(f) or f.isdigit()):
                raise HalocError(f"projection '{text}' uses the construct '{f}', which the model cannot express",
                                 file=file, key=key, fix="write a sum of dim*coefficient terms")
        terms.append(_term(factors, dims, coefs, file=file, key=key))
    return tuple(terms)


def _projection(raw: Any, dims: list[str], coefs: dict[str, int], *, file: Path | None, key: str) -> tuple[Axis, ...]:
    if isinstance(raw, str):
        m = _FLOW_LIST.match(raw.strip())
        raw = [p.strip() for p in (m.group(1) if m else raw).split(",") if p.strip()]
    if isinstance(raw, list) and not raw:
        return ()  # a scalar (e.g. the output of a dot product)
    if not isinstance(raw, list):
        raise HalocError("projection must be a list of axes", file=file, key=key,
                         fix="write projection: [[[C]], [[P, Wstride], [R, Wdilation]]]")
    axes: list[Axis] = []
    for i, axis in enumerate(raw):
        akey = f"{key}[{i}]"
        if isinstance(axis, str):
            axes.append(_axis_from_text(axis, dims, coefs, file=file, key=akey))
            continue
        if not isinstance(axis, list) or not axis:
            raise HalocError(f"projection axis {axis!r} is not a list of terms", file=file, key=akey,
                             fix="write each axis as [[P, Wstride], [R, Wdilation]]")
        if all(isinstance(t, str) for t in axis) and len(axis) <= 2 and sum(t in dims for t in axis) == 1 \
                and not any(isinstance(t, list) for t in axis):
            axes.append((_term(axis, dims, coefs, file=file, key=akey),))  # a bare term [P, Wstride]
            continue
        axes.append(tuple(_term(t, dims, coefs, file=file, key=f"{akey}") for t in axis))
    return tuple(axes)


def _dense(value: Any) -> bool:
    """A density entry meaning "dense": 1 / 1.0 / {density: 1.0} (distribution ignored for density 1)."""
    if isinstance(value, dict):
        value = value.get("density", 1.0)
    try:
        return float(value) == 1.0
    except (TypeError, ValueError):
        return False


def problem_from_doc(problem: Any, *, file: str | Path | None = None) -> Problem:
    """A ``problem:`` mapping (``shape`` + ``instance``) -> :class:`Problem` (see the module docstring)."""
    path = Path(file) if file is not None else None
    if not isinstance(problem, dict):
        raise HalocError("'problem' must be a mapping", file=path, key="problem", fix="write problem: {shape, instance}")
    shape = problem.get("shape")
    instance = problem.get("instance")
    if not isinstance(shape, dict):
        raise HalocError("the problem has no 'shape' with dimensions and data spaces", file=path, key="problem.shape",
                         fix="add shape: {name, dimensions, coefficients, data_spaces}")
    if not isinstance(instance, dict):
        raise HalocError("missing or malformed 'instance'", file=path, key="problem.instance",
                         fix="add the dimension bounds")
    dims = _name_list(shape.get("dimensions"), file=path, key="problem.shape.dimensions")
    coefs: dict[str, int] = {}
    raw_coefs = shape.get("coefficients") or []
    if not isinstance(raw_coefs, list):
        raise HalocError("coefficients must be a list", file=path, key="problem.shape.coefficients",
                         fix="write coefficients: [{name: Wstride, default: 1}]")
    for i, c in enumerate(raw_coefs):
        if isinstance(c, str):
            c = {"name": c}
        if not isinstance(c, dict) or "name" not in c:
            raise HalocError("coefficient has no name", file=path, key=f"problem.shape.coefficients[{i}]",
                             fix="write {name: Wstride, default: 1}")
        name = str(c["name"])
        value = instance.get(name, c.get("default", 1))
        coefs[name] = _int(value, file=path, key=f"problem.instance.{name}")
    # other instance keys (timeloopfe writes H, W, Hpad, ... for use in expressions) are
    # ignored, as Timeloop does; a density other than dense is a sparse workload
    dens = instance.get("densities")
    if dens not in (None, {}, []) and not (isinstance(dens, dict) and all(_dense(v) for v in dens.values())):
        raise HalocError("instance densities describe a sparse workload; haloc-hw models dense workloads only",
                         file=path, key="problem.instance.densities", fix="remove the densities (or make them 1.0)")
    missing = [d for d in dims if d not in instance]
    if missing:
        raise HalocError(f"dimension(s) {', '.join(missing)} missing from instance", file=path, key="problem.instance",
                         fix="give every problem dimension a bound")
    bounds = tuple((d, _int(instance[d], file=path, key=f"problem.instance.{d}")) for d in dims)
    raw_spaces = _get(shape, "data_spaces", "data-spaces")
    if not isinstance(raw_spaces, list) or not raw_spaces:
        raise HalocError("the shape has no data spaces", file=path, key="problem.shape.data_spaces",
                         fix="list the tensors with name and projection")
    spaces: list[ProblemDataSpace] = []
    for i, t in enumerate(raw_spaces):
        tkey = f"problem.shape.data_spaces[{i}]"
        if not isinstance(t, dict) or "name" not in t:
            raise HalocError("data space has no name", file=path, key=tkey, fix="write {name: Weights, projection: ...}")
        if "projection" not in t:
            raise HalocError(f"data space '{t['name']}' has no projection", file=path, key=f"{tkey}.projection",
                             fix="give the projection, e.g. [[[C]], [[M]]]")
        rw = _get(t, "read_write", "read-write")
        spaces.append(ProblemDataSpace(
            name=str(t["name"]),
            projection=_projection(t["projection"], dims, coefs, file=path, key=f"{tkey}.projection"),
            read_write=bool(rw),
        ))
    try:
        return Problem(name=str(shape.get("name", "problem")), bounds=bounds, data_spaces=tuple(spaces),
                       coefficients=tuple(coefs.items()))
    except HalocError as err:
        raise HalocError(err.message, file=path, key=err.key, fix=err.fix) from None


def read_problem(path: str | Path) -> Problem:
    """Read a Timeloop problem file (v0.3 or v0.4) into a :class:`Problem`."""
    from haloc_hw.fileio import read_yaml

    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("problem"), dict):
        raise HalocError("no 'problem' mapping at the top level", file=path, key="problem", fix="give a Timeloop problem file")
    return problem_from_doc(doc["problem"], file=path)


def load_workload(path: str | Path) -> "ConvShape | Problem":
    """A problem file as a ConvShape when it is exactly a CNN layer, else as a general Problem.

    A file without a ``shape`` section is read as a CNN layer (the historical behaviour).
    """
    from haloc_hw.fileio import read_yaml
    from haloc_hw.workload import load_problem

    path = Path(path)
    doc = read_yaml(path)
    problem = doc.get("problem") if isinstance(doc, dict) else None
    if isinstance(problem, dict) and isinstance(problem.get("shape"), dict) \
            and _get(problem["shape"], "data_spaces", "data-spaces") is not None:
        prob = problem_from_doc(problem, file=path)
        conv = as_conv_shape(prob)
        return conv if conv is not None else prob
    return load_problem(path)
