"""The options of the run commands, each defined once, and their conversion into typed settings.

``search``, ``baseline`` and ``sweep`` share :func:`add_run_options`; ``tables`` and the run
commands share the backend options of :func:`add_backend_options`, generated from the
fields of each backend's settings dataclass (:mod:`haloc_hw.settings`). A flag several
backends (or the command itself) use, such as ``--device``, ``--batch`` or
``--constraints``, is one option read by all of them. :func:`run_config` turns the parsed
options into the :class:`~haloc_hw.settings.RunConfig` the library runs; nothing below the
CLI sees the ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Iterable

from haloc_hw.cost.metric import BUDGET_FLAGS
from haloc_hw.cost.metric import METRICS as METRIC_NAMES
from haloc_hw.errors import HalocError
from haloc_hw.settings import (CLI_KEY, DEFAULT_BUDGET, DataSettings, Recipe, RunConfig, SearchSettings, TableSettings,
                               settings_from_mapping)

BUDGET_KINDS: tuple[str, ...] = tuple(BUDGET_FLAGS)
ARCH_STEPS: tuple[str, ...] = ("per-val-batch", "per-train-batch")
DECODES: tuple[str, ...] = ("argmax", "budget", "expected")
PENALTIES: tuple[str, ...] = ("paper", "hinge")


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default once: only when it is set and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, [], ()) or default is argparse.SUPPRESS
                or action.option_strings == [] or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))):
            return text
        return f"{text} (default: %(default)s)"


def add_run_parser(subparsers: Any, name: str, *, help: str, doc: str) -> argparse.ArgumentParser:
    """The sub-command parser of a run command (``doc``'s first line as description)."""
    return subparsers.add_parser(name, help=help, description=doc.splitlines()[0], formatter_class=HelpFormatter)


def _flag(f: dataclasses.Field) -> str:
    return f.metadata[CLI_KEY].get("flag") or "--" + f.name.replace("_", "-")


def _dest(f: dataclasses.Field) -> str:
    """Where a settings field's value is found in the parsed options."""
    if CLI_KEY not in f.metadata:
        return f.name  # read from the command's own option of that name (--batch)
    return _flag(f).lstrip("-").replace("-", "_")


def _backend_types() -> list[tuple[str, type]]:
    from haloc_hw.cost.backends import available_backends

    return [(name, spec.settings_type) for name, spec in sorted(available_backends().items())
            if spec.settings_type is not None]


def add_backend_options(parser: argparse.ArgumentParser, *, taken: Iterable[str] = ()) -> None:
    """Every backend's options, each flag once (``taken``: flags the command defines itself, e.g. ``--device``)."""
    seen = set(taken)
    for name, kind in _backend_types():
        group = None
        for f in dataclasses.fields(kind):
            if CLI_KEY not in f.metadata or _flag(f) in seen:
                continue
            seen.add(_flag(f))
            meta = dict(f.metadata[CLI_KEY])
            meta.pop("flag", None)
            text = meta.pop("help")
            default = f.default if f.default is not dataclasses.MISSING else None
            if meta.get("action") not in ("store_false", "store_true"):
                if default not in (None, (), []):
                    text += f" (default: {default})"
                meta["default"] = None
            else:
                meta["default"] = default
            group = group or parser.add_argument_group(f"{name} backend")
            group.add_argument(_flag(f), dest=_dest(f), help=text, **meta)


def backend_settings(args: argparse.Namespace, backend: str) -> Any:
    """The settings dataclass of ``backend`` from the parsed options (unset options keep the dataclass defaults)."""
    from haloc_hw.cost.backends import get_backend_spec

    kind = get_backend_spec(backend).settings_type
    if getattr(args, "set", None) and (kind is None or "set_values" not in {f.name for f in dataclasses.fields(kind)}):
        raise HalocError(f"--set (template variables) works with the analytical backend, not '{backend}'", key="--set",
                         fix="drop --set, or use --backend analytical")
    if kind is None:
        return None
    values = {}
    for f in dataclasses.fields(kind):
        value = getattr(args, _dest(f), None)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return settings_from_mapping(kind, values)


def add_run_options(p: argparse.ArgumentParser, *, arch_repeats: bool = False) -> None:
    """The options search, baseline and sweep share (same names, same defaults).

    ``arch_repeats``: ``--arch`` may be given several times and there is no ``--table`` (the
    sweep builds one table per architecture).
    """
    from haloc_hw.cost.backends import available_backends

    if arch_repeats:
        p.add_argument("--arch", action="append", default=None, metavar="FILE",
                       help="accelerator architecture YAML (repeat for several; default arch/eyeriss.yaml and "
                            "arch/eyeriss_16x16.yaml)")
    else:
        p.add_argument("--arch", default="arch/eyeriss.yaml", metavar="FILE", help="accelerator architecture YAML")
    p.add_argument("--model", default="resnet20", help="model name (resnet20, vgg16, resnet18, mobilenet_v2)")
    p.add_argument("--data", default=None, help="fashion-mnist | cifar10 | imagenet | synthetic "
                   "(default: fashion-mnist if found locally, else synthetic)")
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR", help="dataset folder")
    g = p.add_argument_group("budget (one of; a number <= 1 or N% is a fraction of the original model)")
    for kind, example in (("energy", "0.3, 150uJ, 2mJ"), ("cycles", "0.5, 2e6cycles"), ("latency", "0.5, 1.5ms, 200us"),
                          ("edp", "0.3, 4e12pJ*cycles")):
        g.add_argument(f"--budget-{kind}", default=None, metavar="B", help=f"e.g. {example}")
    p.add_argument("--metric", default=None, choices=METRIC_NAMES,
                   help=f"must agree with the budget flag; alone it uses a budget of {DEFAULT_BUDGET} of the original")
    p.add_argument("--base", type=Path, default=None, metavar="MODEL.pt", help="trained model to compress (a run dir or its model.pt)")
    if not arch_repeats:
        p.add_argument("--table", type=Path, default=None, metavar="FILE", help="cost table (.sqlite); built there if missing")
    p.add_argument("--backend", default="analytical", choices=sorted(available_backends()), help="cost backend for a new table")
    p.add_argument("--jobs", type=int, default=None, help="parallel table jobs (default: one per CPU core)")
    p.add_argument("--step", type=int, default=None, help="rank step of the candidates (default 8/16/32 by layer width)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: cuda when available)")
    p.add_argument("--batch", type=int, default=64, help="batch size of training, search and fine-tuning "
                   "(and of gpu timing)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="use N training images (default: 1000 when --data is not given, else all)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="training images held out for the search's architecture steps")
    p.add_argument("--epochs-base", type=int, default=3, help="epochs of the base training when --base is not given")
    p.add_argument("--epochs-finetune", type=int, default=2, help="fine-tuning epochs of the compressed model")
    p.add_argument("--lr-finetune", type=float, default=0.01, help="fine-tuning lr (cosine decay)")
    p.add_argument("--distill", default=None, metavar="T,ALPHA",
                   help="distil from the --base model while fine-tuning (temperature, weight), e.g. 4,0.9")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_backend_options(p, taken={"--device", "--batch"})


def add_search_options(p: argparse.ArgumentParser) -> None:
    """The HALOC search's own options (``haloc-hw search``, and the sweep's method ``haloc``).

    ``--no-cuda-graphs`` is a backend option (the gpu backend's timing reads it too).
    """
    s = p.add_argument_group("search")
    s.add_argument("--epochs-search", type=int, default=3, help="search epochs")
    s.add_argument("--warmup-epochs", type=int, default=1, help="weight-only search epochs before alpha moves")
    s.add_argument("--lr-w", type=float, default=0.01, help="SGD lr of the candidate weights")
    s.add_argument("--lr-alpha", type=float, default=0.01, help="Adam lr of alpha")
    s.add_argument("--lambda", dest="lam", type=float, default=1.0, help="weight of the feature-map MSE")
    s.add_argument("--eta", type=float, default=1.0, help="scale of the hardware factor")
    s.add_argument("--theta", type=float, default=2.0, help="exponent of (expected cost / budget)")
    s.add_argument("--tau", type=float, default=1.0, help="Gumbel-softmax temperature")
    s.add_argument("--arch-steps", choices=ARCH_STEPS, default="per-val-batch",
                   help="architecture steps per epoch: one per validation batch, spread over the epoch (default), "
                        "or one after every weight step (cycling the validation part)")
    s.add_argument("--decode", choices=DECODES, default="argmax",
                   help="final ranks: argmax of p per layer (the paper, default); the most probable ranks within 2 %% "
                        "below the budget (budget); or per layer the candidate nearest its expected cost under p, "
                        "scaled to fit the budget (expected). The last two spend what the argmax leaves unused")
    s.add_argument("--penalty", choices=PENALTIES, default="hinge",
                   help="hardware factor (E/budget)^theta only above the budget (hinge, default) "
                        "or always, as in the HALOC paper (paper)")
    s.add_argument("--tau-final", type=float, default=None, help="anneal the Gumbel temperature to this (geometric)")
    s.add_argument("--stop-entropy", type=float, default=None,
                   help="stop when every layer's normalised entropy of p is at most this (epochs-search is the cap)")
    s.add_argument("--stop-delta", type=float, default=None, help="stop when no p moved more than this in an epoch")


# ---------------------------------------------------------------------------------------
# parsed options -> settings


def budget_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~haloc_hw.rankspace.Budget` of the ``--budget-*`` flags and ``--metric``.

    At most one budget flag; ``--metric`` must agree with it. Without a flag the budget is
    :data:`DEFAULT_BUDGET` of ``--metric`` (energy by default).
    """
    from haloc_hw.cost.metric import metric_for_flag
    from haloc_hw.rankspace import parse_budget

    given = [(k, getattr(args, f"budget_{k}")) for k in BUDGET_KINDS if getattr(args, f"budget_{k}", None) is not None]
    if len(given) > 1:
        raise HalocError(f"more than one budget given ({', '.join('--budget-' + k for k, _ in given)})",
                         key="--budget", fix="give exactly one --budget-* flag")
    if not given:
        return parse_budget(DEFAULT_BUDGET, args.metric or "energy_pJ")
    kind, text = given[0]
    metric = metric_for_flag(kind)
    if args.metric and args.metric != metric:
        raise HalocError(f"--metric {args.metric} contradicts --budget-{kind}", key="--metric",
                         fix=f"drop --metric or use --metric {metric}")
    return parse_budget(str(text), metric)


def parse_distill(text: str | None) -> tuple[float, float] | None:
    """``"T,alpha"`` -> ``(T, alpha)``, both checked as the fine-tuning checks them."""
    if text is None:
        return None
    from haloc_hw.train import parse_distill as read

    return read(text)


def data_settings(args: argparse.Namespace) -> DataSettings:
    return DataSettings(name=args.data, root=None if args.data_root is None else str(args.data_root),
                        subset=args.subset, val_fraction=args.val_fraction, batch=args.batch, seed=args.seed,
                        device=args.device)


def table_settings(args: argparse.Namespace, archs: Iterable[str]) -> TableSettings:
    table = getattr(args, "table", None)
    return TableSettings(backend=args.backend, backend_settings=backend_settings(args, args.backend),
                         arch=tuple(archs), path=None if table is None else str(table), jobs=args.jobs, step=args.step)


def search_settings(args: argparse.Namespace) -> SearchSettings:
    return SearchSettings(epochs=args.epochs_search, warmup_epochs=args.warmup_epochs, lr_w=args.lr_w,
                          lr_alpha=args.lr_alpha, lam=args.lam, eta=args.eta, theta=args.theta, tau=args.tau,
                          tau_final=args.tau_final, stop_entropy=args.stop_entropy, stop_delta=args.stop_delta,
                          arch_steps=args.arch_steps, decode=args.decode, penalty=args.penalty,
                          cuda_graphs=getattr(args, "no_cuda_graphs", True))


def run_config(args: argparse.Namespace, command: str, *, archs: Iterable[str] | None = None) -> RunConfig:
    """The typed settings of a parsed ``search`` / ``baseline`` (or, with ``archs``, the sweep's template)."""
    return RunConfig(
        command=command, out=Path(args.out), budget=budget_from_args(args), model=args.model,
        data=data_settings(args), cost=table_settings(args, archs if archs is not None else (args.arch,)),
        recipe=Recipe(epochs_base=args.epochs_base, epochs_finetune=args.epochs_finetune, lr_finetune=args.lr_finetune,
                      distill=parse_distill(args.distill), onnx=not args.no_onnx),
        base_model=None if args.base is None else str(args.base),
        search=search_settings(args) if command == "search" else None,
        method=getattr(args, "method", None) if command == "baseline" else None,
        progress=not args.no_progress, resume=bool(getattr(args, "resume", False)),
    )
