"""Layer shapes: from a torch model to Timeloop problems, and Tucker-2 triples.

A :class:`ConvShape` is one dense (optionally grouped) convolution in Timeloop's problem
dimensions. Everything downstream (cost models, tables, the search) sees only these.

Conventions (the same as Timeloop's CNN-Layer shape): ``P``/``R``/``Wstride``/``Wdilation``
run along the width, ``Q``/``S``/``Hstride``/``Hdilation`` along the height. A torch
``Conv2d`` with ``kernel_size=(kh, kw)`` therefore has ``R = kw`` and ``S = kh``.
"""

from __future__ import annotations

import logging
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from haloc_hw.errors import HalocError

if TYPE_CHECKING:  # torch is imported lazily: cost models that only read tables do not need it
    from torch import nn

    from haloc_hw.problem import Problem

log = logging.getLogger(__name__)

PROBLEM_DIMS: tuple[str, ...] = ("C", "M", "R", "S", "N", "P", "Q")
GROUPED_PROBLEM_DIMS: tuple[str, ...] = ("G", "C", "M", "R", "S", "N", "P", "Q")
COEFFICIENTS: tuple[str, ...] = ("Wstride", "Hstride", "Wdilation", "Hdilation")
DIALECTS: tuple[str, ...] = ("v3", "v4")
#: The slots of a layer in a cost table: the original layer, the three convolutions of a Tucker-2
#: triple (input projection, core, output projection), and the triple timed as one block.
ROLES: tuple[str, ...] = ("original", "in", "core", "out", "fused")
#: The Tucker-2 sub-convolutions, in the order :func:`tucker2_triple` returns them.
SUB_ROLES: tuple[str, ...] = ("in", "core", "out")

# Smallest channel count of a layer that is worth decomposing (see LayerInfo.decomposable).
MIN_DECOMPOSE_CHANNELS = 16


@dataclass(frozen=True, order=True)
class ConvShape:
    """One convolution in Timeloop's terms.

    ``C``/``M`` are input/output channels *per group*; ``G`` is the number of groups
    (depthwise: ``G`` = channels, ``C = M = 1``). ``P``/``Q`` are output width/height,
    ``R``/``S`` kernel width/height. Padding is implicit (Timeloop models the input extent
    ``(P-1)*stride + (R-1)*dilation + 1``).

    ``W``/``H`` are the width/height of the layer's real input tensor (before padding). They
    are metadata, not part of the Timeloop problem: they are excluded from equality, ordering
    and hashing, so two layers with the same problem are the same dictionary key whatever
    their padding. ``None`` means "derive it": :attr:`in_w`/:attr:`in_h` then assume "same"
    padding (input = output × stride), which holds for every layer of the shipped models.
    Only :func:`tucker2_triple` needs them (the first 1×1 runs at the input resolution).
    """

    C: int
    M: int
    R: int
    S: int
    P: int
    Q: int
    N: int = 1
    G: int = 1
    Wstride: int = 1
    Hstride: int = 1
    Wdilation: int = 1
    Hdilation: int = 1
    W: int | None = field(default=None, compare=False)
    H: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Accept any integer type (numpy, torch) but store plain ints so hashes and YAML agree.
        for name in (*GROUPED_PROBLEM_DIMS, *COEFFICIENTS, "W", "H"):
            value = getattr(self, name)
            if value is None and name in ("W", "H"):
                continue
            try:
                number = operator.index(value)
            except TypeError:
                number = 0
            if isinstance(value, bool) or number < 1:
                raise HalocError(
                    f"convolution dimension {name} must be a positive integer, got {value!r}",
                    key=name,
                    fix="give every problem dimension and coefficient as an integer >= 1",
                )
            object.__setattr__(self, name, int(number))

    @property
    def dims(self) -> dict[str, int]:
        """Problem dimension bounds; ``G`` only when grouped."""
        base = {"C": self.C, "M": self.M, "R": self.R, "S": self.S, "N": self.N, "P": self.P, "Q": self.Q}
        return {"G": self.G, **base} if self.G > 1 else base

    @property
    def coefficients(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COEFFICIENTS}

    @property
    def macs(self) -> int:
        return self.G * self.C * self.M * self.R * self.S * self.N * self.P * self.Q

    @property
    def weights(self) -> int:
        return self.G * self.C * self.M * self.R * self.S

    @property
    def in_w(self) -> int:
        """Input width: ``W`` if known, else ``P * Wstride`` ("same" padding)."""
        return self.W if self.W is not None else self.P * self.Wstride

    @property
    def in_h(self) -> int:
        """Input height: ``H`` if known, else ``Q * Hstride`` ("same" padding)."""
        return self.H if self.H is not None else self.Q * self.Hstride

    @property
    def key(self) -> str:
        """Canonical text of the Timeloop problem (no ``W``/``H``); safe as a file name.

        Equal shapes have equal keys, so it serves to name files and to hash table entries.
        """
        text = f"g{self.G}_c{self.C}_m{self.M}_r{self.R}_s{self.S}_p{self.P}_q{self.Q}_n{self.N}"
        if (self.Wstride, self.Hstride) != (1, 1):
            text += f"_st{self.Wstride}x{self.Hstride}"
        if (self.Wdilation, self.Hdilation) != (1, 1):
            text += f"_dl{self.Wdilation}x{self.Hdilation}"
        return text

    def to_problem(self) -> "Problem":
        """This layer as a general :class:`~haloc_hw.problem.Problem` (Timeloop's CNN-Layer projections)."""
        from haloc_hw.problem import as_problem

        return as_problem(self)

    @property
    def stride(self) -> int | tuple[int, int]:
        """Stride as one number when square, else ``(Wstride, Hstride)``."""
        return self.Wstride if self.Wstride == self.Hstride else (self.Wstride, self.Hstride)


@dataclass(frozen=True)
class LayerInfo:
    """One compute layer found in a model.

    ``name`` is the module path (``"layer1.0.conv1"``); ``kind`` is ``"conv"`` or
    ``"linear"`` (a Linear is a 1×1 convolution with ``P = Q = 1``). ``decomposable`` marks
    the layers that Tucker-2 rank selection works on: a Conv2d with one group, a kernel
    larger than 1×1 and at least :data:`MIN_DECOMPOSE_CHANNELS` input and output channels
    (so the stem conv of a CNN and depthwise convs are left alone).
    """

    name: str
    shape: ConvShape
    kind: Literal["conv", "linear"]
    decomposable: bool


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def shape_from_conv(conv: nn.Conv2d, input_hw: tuple[int, int], batch: int = 1) -> ConvShape:
    """The :class:`ConvShape` of ``conv`` applied to a ``batch × C × H × W`` input.

    Output size follows torch's formula ``floor((H + 2p - d(k-1) - 1) / s) + 1``; string
    padding (``"same"``/``"valid"``) is honoured.
    """
    h, w = (int(v) for v in input_hw)
    kh, kw = _pair(conv.kernel_size)
    sh, sw = _pair(conv.stride)
    dh, dw = _pair(conv.dilation)
    if isinstance(conv.padding, str):
        if conv.padding == "same":
            ph, pw = (dh * (kh - 1)) / 2, (dw * (kw - 1)) / 2
        else:  # "valid"
            ph = pw = 0
    else:
        ph, pw = _pair(conv.padding)
    q = int((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1)
    p = int((w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
    if p < 1 or q < 1:
        raise HalocError(
            f"a {kh}x{kw} convolution gets a {h}x{w} input, too small for any output",
            key="input_size",
            fix="use a larger input size",
        )
    groups = int(conv.groups)
    return ConvShape(
        C=int(conv.in_channels) // groups,
        M=int(conv.out_channels) // groups,
        R=kw,
        S=kh,
        P=p,
        Q=q,
        N=int(batch),
        G=groups,
        Wstride=sw,
        Hstride=sh,
        Wdilation=dw,
        Hdilation=dh,
        W=w,
        H=h,
    )


def shape_from_linear(linear: nn.Linear, batch: int = 1) -> ConvShape:
    """A Linear layer as a 1×1 convolution: ``C = in_features``, ``M = out_features``, ``P = Q = 1``."""
    return ConvShape(C=int(linear.in_features), M=int(linear.out_features), R=1, S=1, P=1, Q=1, N=int(batch), W=1, H=1)


def is_decomposable(conv: nn.Module) -> bool:
    """Whether Tucker-2 rank selection should consider this module (see :class:`LayerInfo`)."""
    from torch import nn

    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        return False
    kh, kw = _pair(conv.kernel_size)
    return kh * kw > 1 and min(conv.in_channels, conv.out_channels) >= MIN_DECOMPOSE_CHANNELS


def extract_shapes(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32), batch: int = 1) -> list[LayerInfo]:
    """Every Conv2d and Linear of ``model`` as a :class:`LayerInfo`, in forward order.

    Runs one forward pass with forward hooks (the model is put in eval mode for the pass
    and restored afterwards), so shapes are the ones the model really computes. The pass
    runs on the meta device (no arithmetic) and falls back to a real pass on zeros when an
    operation has no meta kernel.
    A module called several times yields one entry per call, named ``name#2``, ``name#3``...
    """
    import torch
    from torch import nn

    if len(input_size) != 3 or any(int(v) < 1 for v in input_size):
        raise HalocError(f"input size must be C,H,W with positive integers, got {tuple(input_size)}", key="input_size")
    if int(batch) < 1:
        raise HalocError(f"batch must be >= 1, got {batch}", key="batch")
    found: list[LayerInfo] = []
    calls: dict[str, int] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0]
            calls[name] = calls.get(name, 0) + 1
            label = name if calls[name] == 1 else f"{name}#{calls[name]}"
            if isinstance(module, nn.Conv2d):
                if x.dim() == 3:  # unbatched input
                    n, hw = 1, tuple(x.shape[-2:])
                else:
                    n, hw = int(x.shape[0]), tuple(x.shape[-2:])
                shape = shape_from_conv(module, hw, n)
                if (shape.Q, shape.P) != tuple(output.shape[-2:]):  # pragma: no cover - torch formula changed
                    raise RuntimeError(f"{label}: computed output {shape.Q}x{shape.P}, torch gave {tuple(output.shape)}")
                found.append(LayerInfo(label, shape, "conv", is_decomposable(module)))
            else:
                n = int(x.numel() // module.in_features)
                found.append(LayerInfo(label, shape_from_linear(module, n), "linear", False))

        return hook

    handles = [
        module.register_forward_hook(make_hook(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    size = (int(batch), *(int(v) for v in input_size))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if not _forward_on_meta(model, size, dtype):
                # some op has no meta kernel: run the real thing
                found.clear()
                calls.clear()
                model(torch.zeros(size, device=device, dtype=dtype))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HalocError(
            f"the model fails on a {batch}x{'x'.join(str(v) for v in input_size)} input: {first}",
            key="input_size",
            fix="give the C,H,W the model was built for",
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not any(layer.kind == "conv" for layer in found):
        raise HalocError(
            f"model {type(model).__name__} has no Conv2d layer run by its forward pass",
            key="model",
            fix="give a convolutional network",
        )
    return found


def _forward_on_meta(model: nn.Module, size: tuple[int, ...], dtype: Any) -> bool:
    """Run ``model`` on a meta-device input with meta copies of its weights (shapes only).

    This costs no arithmetic, so extracting shapes of a large model at 224×224 is instant
    even on a busy CPU. Returns ``False`` when some operation has no meta implementation;
    shape errors (a wrong input size) propagate as ``RuntimeError`` like a real forward.
    """
    import torch
    from torch.func import functional_call

    state = {name: torch.empty_like(t, device="meta") for name, t in model.named_parameters()}
    state.update({name: torch.empty_like(t, device="meta") for name, t in model.named_buffers()})
    try:
        functional_call(model, state, (torch.zeros(size, device="meta", dtype=dtype),))
    except HalocError:
        raise
    except Exception as err:  # noqa: BLE001 - any meta failure (no kernel, data-dependent code) means "run it for real"
        log.debug("meta forward failed for %s (%s); using a real forward pass", type(model).__name__, err)
        return False
    return True


def check_rank(name: str, value: Any, limit: int, what: str) -> int:
    """``value`` if it is an integer rank in ``1..limit`` (``what`` names the channels), else :class:`HalocError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise HalocError(
            f"rank {name}={value!r} is outside 1..{limit} (the layer has {limit} {what})",
            key=name,
            fix=f"choose {name} between 1 and {limit}",
        )
    return value


def tucker2_triple(shape: ConvShape, r1: int, r2: int) -> tuple[ConvShape, ConvShape, ConvShape]:
    """The three convolutions replacing ``shape`` after Tucker-2 with ranks ``(r1, r2)``.

    ``r2`` is the input-channel rank, ``r1`` the output-channel rank (as in
    :func:`haloc_hw.decompose.tucker2`):

    * ``in``: 1×1, ``C → r2``, at the *input* resolution (``in_w × in_h``), stride 1;
    * ``core``: the original kernel, ``r2 → r1``, original stride and dilation, output resolution;
    * ``out``: 1×1, ``r1 → M``, at the output resolution.
    """
    if shape.G != 1:
        raise HalocError(
            f"a grouped convolution (G={shape.G}) has no Tucker-2 decomposition here",
            key="G",
            fix="decompose only layers with groups == 1",
        )
    r1 = check_rank("r1", r1, shape.M, "output channels")
    r2 = check_rank("r2", r2, shape.C, "input channels")
    w, h = shape.in_w, shape.in_h
    first = ConvShape(C=shape.C, M=r2, R=1, S=1, P=w, Q=h, N=shape.N, W=w, H=h)
    core = ConvShape(
        C=r2,
        M=r1,
        R=shape.R,
        S=shape.S,
        P=shape.P,
        Q=shape.Q,
        N=shape.N,
        Wstride=shape.Wstride,
        Hstride=shape.Hstride,
        Wdilation=shape.Wdilation,
        Hdilation=shape.Hdilation,
        W=w,
        H=h,
    )
    last = ConvShape(C=r1, M=shape.M, R=1, S=1, P=shape.P, Q=shape.Q, N=shape.N, W=shape.P, H=shape.Q)
    return first, core, last


def _projections(grouped: bool) -> dict[str, list]:
    """Data-space projections in Timeloop's sum-of-products form ``[[dim, coefficient?], ...]``."""
    def g() -> list:  # a fresh list per use: shared objects would become YAML anchors
        return [[["G"]]] if grouped else []

    return {
        "Weights": [*g(), [["C"]], [["M"]], [["R"]], [["S"]]],
        "Inputs": [[["N"]], *g(), [["C"]], [["R", "Wdilation"], ["P", "Wstride"]], [["S", "Hdilation"], ["Q", "Hstride"]]],
        "Outputs": [[["N"]], *g(), [["M"]], [["Q"]], [["P"]]],
    }


def to_timeloop_problem(shape: ConvShape, dialect: str = "v3") -> dict[str, Any]:
    """The Timeloop problem document for ``shape``.

    ``"v3"`` is what Timeloop 3.0.x reads (hyphenated ``data-spaces``/``read-write``); it is
    exactly the structure of the golden ``problem.yaml`` files. ``"v4"`` is the timeloopfe
    form (``version: 0.4``, ``data_spaces``/``read_write``). A grouped shape gets a ``G``
    dimension in all three data spaces. Every dimension and coefficient is in ``instance``.
    """
    if dialect not in DIALECTS:
        raise HalocError(f"unknown Timeloop dialect '{dialect}'", key="dialect", fix=f"use one of {', '.join(DIALECTS)}")
    grouped = shape.G > 1
    dims = list(GROUPED_PROBLEM_DIMS if grouped else PROBLEM_DIMS)
    ds_key, rw_key = ("data-spaces", "read-write") if dialect == "v3" else ("data_spaces", "read_write")
    projections = _projections(grouped)
    data_spaces: list[dict[str, Any]] = []
    for name in ("Weights", "Inputs", "Outputs"):
        entry: dict[str, Any] = {"name": name, "projection": projections[name]}
        if name == "Outputs":
            entry[rw_key] = True
        data_spaces.append(entry)
    problem_shape = {
        "name": "CNN-Layer",
        "dimensions": dims,
        "coefficients": [{"name": c, "default": 1} for c in COEFFICIENTS],
        ds_key: data_spaces,
    }
    instance = {**shape.dims, **shape.coefficients}
    body: dict[str, Any] = {"shape": problem_shape, "instance": instance}
    if dialect == "v4":
        body = {"version": 0.4, **body}
    return {"problem": body}


def problem_yaml(shape: ConvShape, dialect: str = "v3") -> str:
    """:func:`to_timeloop_problem` as YAML text (block style, insertion order, no anchors).

    For the v3 dialect the text is byte-identical to the golden ``problem.yaml`` files.
    """
    import yaml

    class _NoAliasDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(
        to_timeloop_problem(shape, dialect), Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False
    )


_FLOW_LIST = re.compile(r"^\[(.*)\]$")


def _instance_value(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HalocError(f"value {value!r} is not an integer", file=path, key=f"problem.instance.{key}", fix="write a positive integer")
    return value


def load_problem(path: str | Path) -> ConvShape:
    """Read a Timeloop problem file (v3 hyphenated or v4 underscored) into a :class:`ConvShape`.

    ``instance`` carries the numbers; the shape section must declare the standard
    CNN-Layer dimensions (with ``G`` when grouped), and where it lists data spaces their
    projections must be the CNN layer's (a general problem is read by
    :func:`haloc_hw.problem.load_workload`). Missing dimensions raise :class:`HalocError`;
    missing coefficients take the shape's defaults (1).
    """
    from haloc_hw.fileio import read_yaml

    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("problem"), dict):
        raise HalocError("no 'problem' mapping at the top level", file=path, key="problem", fix="give a Timeloop problem file")
    problem = doc["problem"]
    instance = problem.get("instance")
    if not isinstance(instance, dict):
        raise HalocError("missing or malformed 'instance'", file=path, key="problem.instance", fix="add the dimension bounds")
    shape_section = problem.get("shape")
    declared: list[str] | None = None
    if isinstance(shape_section, dict):
        dims = shape_section.get("dimensions")
        if isinstance(dims, str):  # some v4 files write "[C, M, ...]" as one string
            match = _FLOW_LIST.match(dims.strip())
            dims = [d.strip() for d in (match.group(1) if match else dims).split(",") if d.strip()]
        if isinstance(dims, list):
            declared = [str(d) for d in dims]
    if declared is not None:
        unknown = [d for d in declared if d not in GROUPED_PROBLEM_DIMS]
        if unknown:
            raise HalocError(
                f"dimension(s) {', '.join(unknown)} are not CNN-Layer dimensions",
                file=path,
                key="problem.shape.dimensions",
                fix=f"use dimensions among {', '.join(GROUPED_PROBLEM_DIMS)}",
            )
    needed = list(PROBLEM_DIMS)
    if (declared is not None and "G" in declared) or "G" in instance:
        needed = list(GROUPED_PROBLEM_DIMS)
    missing = [d for d in needed if d not in instance]
    if missing:
        raise HalocError(
            f"dimension(s) {', '.join(missing)} missing from instance",
            file=path,
            key="problem.instance",
            fix="give every problem dimension a bound",
        )
    if isinstance(shape_section, dict) and (shape_section.get("data_spaces") or shape_section.get("data-spaces")):
        # honour the projections: CNN-Layer names with other projections are not a convolution
        from haloc_hw.problem import as_conv_shape, problem_from_doc

        conv = as_conv_shape(problem_from_doc(problem, file=path))
        if conv is None:
            raise HalocError(
                "the shape's data-space projections are not those of a CNN layer",
                file=path,
                key="problem.shape.data_spaces",
                fix="read it as a general problem (haloc_hw.problem.load_workload / read_problem)",
            )
        return conv
    values = {d: _instance_value(path, d, instance[d]) for d in needed}
    for coef in COEFFICIENTS:
        if coef in instance:
            values[coef] = _instance_value(path, coef, instance[coef])
    try:
        return ConvShape(**values)
    except HalocError as err:
        raise HalocError(err.message, file=path, key=f"problem.instance.{err.key}", fix=err.fix) from None


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"3,224,224"`` (or ``"3x224x224"``) -> ``(3, 224, 224)``; anything else is a :class:`HalocError`.

    The one parser behind every ``--input-size`` option.
    """
    try:
        values = tuple(int(p) for p in str(text).replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise HalocError(f"bad input size '{text}'", key="--input-size", fix="write C,H,W, e.g. 3,224,224")
    return values  # type: ignore[return-value]
