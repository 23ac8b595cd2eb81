"""haloc-hw: hardware-aware Tucker-2 rank selection (HALOC) for Eyeriss-style accelerators and GPUs.

Each sub-command lives in its own module under :mod:`haloc_hw.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code. User errors (:class:`HalocError`) are printed
as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from haloc_hw import __version__
from haloc_hw.cli.helpformat import use_everywhere
from haloc_hw.errors import HalocError

# Sub-command modules, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "workloads",
    "train",
    "bench",
    "report",
    "cost",
    "tables",
    "search",
    "baseline",
    "sweep",
    "energy",
    "codesign",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``haloc-hw`` parser; with ``only``, just that sub-command is fully registered.

    The others get a bare entry named by their module docstring, because registering a
    command may import heavy modules (torch): ``haloc-hw --help`` and commands that need no
    torch must start fast.
    """
    parser = argparse.ArgumentParser(prog="haloc-hw", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"haloc-hw {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    lazy = only is not None
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"haloc_hw.cli.{name}")
        if not lazy or name == only:
            module.register(sub)
        else:
            sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0].strip())
    use_everywhere(parser)  # one help style: each default shown once
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command module named in ``argv``: "" when none (top-level help or version), ``None``
    when the word is no module's name (a command such as ``evaluate`` that a module adds
    beside its own, or a typo): then every command is registered."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMAND_MODULES else None
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_of(argv))
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except HalocError as err:
        print(f"haloc-hw: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("haloc-hw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
