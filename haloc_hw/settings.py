"""Typed settings of a run: what the command line means, as frozen dataclasses.

The CLI (:mod:`haloc_hw.cli.options`) turns parsed options into these once; everything
below it (pipeline, sweep, cost backends) reads fields, never an ``argparse.Namespace``.
A run's ``config.yaml`` is :meth:`RunConfig.to_dict` (plus facts the run found, such as
the table's hash), and ``--resume`` compares a new :class:`RunConfig` with the one read
back by :meth:`RunConfig.from_dict` (:func:`config_differences`).

Backend settings carry, per field, an :func:`option` record (flag, help, type) so the CLI
can offer each backend's options without the backend touching argparse; a field whose
flag another backend or the command already defines shares that one option.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from haloc_hw.errors import HalocError
from haloc_hw.rankspace import Budget

# Budget when no --budget-* flag is given: a fraction of the original model's table cost.
# 0.7 leaves the search a real choice on ResNet-20 at Eyeriss energy, whose cheapest ranks
# reach about 0.47 (the 16-channel layers barely shrink at rank 8).
DEFAULT_BUDGET = "0.7"

CLI_KEY = "cli"


def option(help: str, *, flag: str | None = None, type: Callable[[str], Any] | None = None,
           action: str | None = None, nargs: str | None = None, choices: tuple[str, ...] | None = None,
           metavar: str | None = None) -> dict[str, Any]:
    """Field metadata describing the command-line option of a settings field (read by the CLI only)."""
    spec = {"help": help, "flag": flag, "type": type, "action": action, "nargs": nargs, "choices": choices,
            "metavar": metavar}
    return {CLI_KEY: {k: v for k, v in spec.items() if v is not None}}


# ---------------------------------------------------------------------------------------
# cost backends


@dataclass(frozen=True)
class AnalyticalSettings:
    """The embedded Timeloop-compatible model: which constraints, energy table, clock and template variables."""

    constraints: tuple[str, ...] = field(default=(), metadata=option(
        "mapping constraints (default: constraints.yaml beside the arch, else mappings/row_stationary.yaml)",
        action="append", metavar="FILE"))
    ert: str | None = field(default=None, metadata=option(
        "energy table (default: ARCH.ert.yaml or ERT.yaml beside the arch)", metavar="FILE"))
    clock_hz: float | None = field(default=None, metadata=option(
        "clock frequency: gives latency_s = cycles / HZ", type=float, metavar="HZ"))
    set_values: tuple[str, ...] = field(default=(), metadata=option(
        "template variable of a Jinja2 / v0.4 arch, also overriding a same-named entry of variables: (repeatable)",
        flag="--set", action="append", metavar="KEY=VALUE"))


@dataclass(frozen=True)
class TimeloopSettings:
    """Real ``timeloop-mapper`` / ``timeloop-model`` runs."""

    constraints: tuple[str, ...] = field(default=(), metadata=AnalyticalSettings.__dataclass_fields__["constraints"].metadata)
    ert: str | None = field(default=None, metadata=AnalyticalSettings.__dataclass_fields__["ert"].metadata)
    clock_hz: float | None = field(default=None, metadata=AnalyticalSettings.__dataclass_fields__["clock_hz"].metadata)
    bin_dir: str | None = field(default=None, metadata=option(
        "folder holding timeloop-mapper and timeloop-model (default: PATH)", flag="--timeloop-bin", metavar="DIR"))
    mapper: str | None = field(default=None, metadata=option(
        "mapper settings YAML (default: mappings/mapper.yaml when present)", metavar="FILE"))
    threads: int | None = field(default=None, metadata=option(
        "mapper num-threads (default: 1 when --jobs > 1, else the mapper file's value)", flag="--timeloop-threads",
        type=int, metavar="N"))
    components: tuple[str, ...] = field(default=(), metadata=option(
        "component files passed to accelergy (only when accelergy is on PATH)", flag="--accelergy-components",
        nargs="+", metavar="FILE"))
    timeout_s: float | None = field(default=None, metadata=option(
        "seconds per Timeloop process (default 600)", flag="--timeloop-timeout", type=float, metavar="S"))


GPU_DTYPES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
GPU_MEMORY_FORMATS: tuple[str, ...] = ("channels_last", "contiguous")


@dataclass(frozen=True)
class GpuSettings:
    """Measured latency with PyTorch. ``device``/``batch`` ``None``: cuda / 128 (the command's own options)."""

    device: str | None = field(default=None, metadata=option(
        "cpu | cuda | cuda:N (training, and the gpu backend's timing; default: cuda when available)"))
    dtype: str = field(default="bf16", metadata=option(
        "tensor dtype of gpu timing; fp32 is strict IEEE, tf32 allows TF32", choices=GPU_DTYPES))
    batch: int | None = None
    memory_format: str = field(default="channels_last", metadata=option(
        "memory format of gpu timing", choices=GPU_MEMORY_FORMATS))
    warmup: int | None = field(default=None, metadata=option("untimed calls per workload (gpu backend)",
                                                             type=int, metavar="N"))
    repeats: int | None = field(default=None, metadata=option("timed samples per workload (gpu backend)",
                                                              type=int, metavar="N"))
    threads: int | None = field(default=None, metadata=option(
        "CPU threads when the gpu backend times on --device cpu (default: torch's current count)", type=int,
        metavar="N"))
    cuda_graphs: bool = field(default=True, metadata=option(
        "launch every call eagerly instead of replaying CUDA graphs (gpu timing and the search; same "
        "arithmetic, more host work)", flag="--no-cuda-graphs", action="store_false"))


# ---------------------------------------------------------------------------------------
# a run


@dataclass(frozen=True)
class DataSettings:
    """Which data, how much of it, how it is batched. ``name`` ``None``: local Fashion-MNIST, else synthetic."""

    name: str | None = None
    root: str | None = None
    subset: int | None = None
    val_fraction: float = 0.2
    batch: int = 64
    seed: int = 0
    device: str | None = None


@dataclass(frozen=True)
class TableSettings:
    """Where the cost table comes from and how a new one is built."""

    backend: str = "analytical"
    backend_settings: Any = None
    arch: tuple[str, ...] = ("arch/eyeriss.yaml",)
    path: str | None = None
    jobs: int | None = None
    step: int | None = None
    equal: bool = True
    max_macs_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "backend_settings"}
        out["arch"] = list(self.arch)
        bs = self.backend_settings
        out["backend_settings"] = None if bs is None else _plain(dataclasses.asdict(bs))
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TableSettings":
        from haloc_hw.cost.backends import get_backend_spec

        raw = dict(raw)
        backend = str(raw.get("backend", "analytical"))
        kind = get_backend_spec(backend).settings_type
        bs = raw.pop("backend_settings", None)
        settings = None if kind is None else settings_from_mapping(kind, bs or {})
        raw["arch"] = tuple(raw.get("arch") or ())
        return cls(**_known(cls, raw), backend_settings=settings)


@dataclass(frozen=True)
class Recipe:
    """Base training and fine-tuning: the same for the search and every baseline."""

    epochs_base: int = 3
    epochs_finetune: int = 2
    lr_finetune: float = 0.01
    distill: tuple[float, float] | None = None
    onnx: bool = True


@dataclass(frozen=True)
class SearchSettings:
    """The HALOC search's own knobs (mapped onto :class:`haloc_hw.search.SearchConfig`)."""

    epochs: int = 3
    warmup_epochs: int = 1
    lr_w: float = 0.01
    lr_alpha: float = 0.01
    lam: float = 1.0
    eta: float = 1.0
    theta: float = 2.0
    tau: float = 1.0
    tau_final: float | None = None
    stop_entropy: float | None = None
    stop_delta: float | None = None
    arch_steps: str = "per-val-batch"
    decode: str = "argmax"
    penalty: str = "hinge"
    cuda_graphs: bool = True


@dataclass(frozen=True)
class RunConfig:
    """One ``search`` or ``baseline`` run: model, data, budget, table, recipe and (a search) its settings."""

    command: str
    out: Path
    budget: Budget
    model: str = "resnet20"
    data: DataSettings = DataSettings()
    cost: TableSettings = TableSettings()
    recipe: Recipe = Recipe()
    base_model: str | None = None
    search: SearchSettings | None = None
    method: str | None = None
    progress: bool = True
    resume: bool = False

    @property
    def arch(self) -> str:
        """The one arch of a run (a sweep makes one run per arch)."""
        return self.cost.arch[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command, "method": self.method, "model": self.model, "out": str(self.out),
            "data": _plain(dataclasses.asdict(self.data)),
            "budget": {"metric": self.budget.metric, "value": self.budget.value, "relative": self.budget.relative,
                       "text": self.budget.text},
            "cost": self.cost.to_dict(), "recipe": _plain(dataclasses.asdict(self.recipe)),
            "base_model": self.base_model,
            "search": None if self.search is None else _plain(dataclasses.asdict(self.search)),
            "progress": self.progress, "resume": self.resume,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str | Path | None = None) -> "RunConfig":
        """Read :meth:`to_dict`'s output back; a document of another shape is a :class:`HalocError`."""
        try:
            b = raw["budget"]
            budget = Budget(metric=str(b["metric"]), value=float(b["value"]), relative=bool(b["relative"]),
                            text=str(b.get("text", "")))
            recipe = dict(raw.get("recipe") or {})
            if recipe.get("distill") is not None:
                recipe["distill"] = tuple(recipe["distill"])
            return cls(
                command=str(raw["command"]), out=Path(raw["out"]), budget=budget, model=str(raw["model"]),
                data=settings_from_mapping(DataSettings, raw.get("data") or {}),
                cost=TableSettings.from_dict(raw.get("cost") or {}),
                recipe=settings_from_mapping(Recipe, recipe), base_model=raw.get("base_model"),
                search=None if raw.get("search") is None else settings_from_mapping(SearchSettings, raw["search"]),
                method=raw.get("method"), progress=bool(raw.get("progress", True)), resume=bool(raw.get("resume")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise HalocError(f"not the settings of a haloc-hw run ({err.__class__.__name__}: {err})", file=source,
                             fix="choose another --out, or re-run without --resume in a fresh folder") from None


# Fields a resumed run may change: how it runs, not what it computes (the search's own
# checkpoint extends to more epochs and refuses other changes itself).
RESUMABLE_FIELDS: frozenset[str] = frozenset({
    "resume", "progress", "out", "data.device", "search.cuda_graphs", "search.epochs", "cost.jobs",
    "cost.backend_settings.cuda_graphs",
})


def config_differences(old: RunConfig, new: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted field, old, new)`` for every field that differs, less :data:`RESUMABLE_FIELDS`."""
    flat_old, flat_new = _flatten(old.to_dict()), _flatten(new.to_dict())
    keys = sorted(set(flat_old) | set(flat_new))
    return [(k, flat_old.get(k), flat_new.get(k)) for k in keys
            if k not in RESUMABLE_FIELDS and flat_old.get(k) != flat_new.get(k)]


# ---------------------------------------------------------------------------------------
# helpers


def settings_from_mapping(kind: type, raw: Mapping[str, Any]) -> Any:
    """An instance of the settings dataclass ``kind`` from plain values (lists become tuples; unknown keys are refused)."""
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise HalocError(f"unknown setting(s) {', '.join(unknown)} for {kind.__name__}", key=unknown[0],
                         fix=f"use {', '.join(sorted(names))}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def _known(kind: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in raw.items() if k in names and k != "backend_settings"}


def _plain(value: Any) -> Any:
    """Tuples as lists and paths as strings, so YAML and JSON read back the same values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
