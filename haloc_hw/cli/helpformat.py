"""One help formatter for every ``haloc-hw`` command: each option's default shown once, or not at all.

argparse's :class:`~argparse.ArgumentDefaultsHelpFormatter` appends ``(default: X)`` to every
option, so an option whose help already says its default ("default: one per CPU core")
showed it twice, and options whose default is ``None`` (decided at run time) or a flag's
``False`` showed "(default: None)". This formatter appends the default only when it says
something: the option takes a value, the default is set, and the help does not state the
default in its own words (which are kept, since they say more than the bare value).
:func:`use_everywhere` gives it to a parser and all its sub-command parsers.
"""

from __future__ import annotations

import argparse
import re

_STATED = re.compile(r"\bdefault\b", re.IGNORECASE)
_AUTO = " (default: %(default)s)"  # what BooleanOptionalAction appends by itself


def _meaningful(action: argparse.Action) -> bool:
    default = action.default
    if default is None or default is argparse.SUPPRESS or action.required:
        return False
    if isinstance(default, (str, list, tuple, dict)) and not default:
        return False
    if isinstance(action, argparse.BooleanOptionalAction):
        return True
    if action.nargs == 0:  # store_true / store_false / store_const / count: the flag's absence says it
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


class DefaultsOnceFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` only where it adds information (see the module docstring)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace(_AUTO, "")
        if _STATED.search(text.replace("%(default)s", "")) or "%(default)" in text:
            return text
        return text + _AUTO if _meaningful(action) else text


def use_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command parser below it :class:`DefaultsOnceFormatter`."""
    parser.formatter_class = DefaultsOnceFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                use_everywhere(child)
