"""Every ``haloc-hw`` sub-command's ``--help``: each option's default shown once, none for unset defaults."""

from __future__ import annotations

import argparse
import re
from typing import Iterator

import pytest

from haloc_hw.cli import build_parser
from haloc_hw.cli.helpformat import DefaultsOnceFormatter

_ENTRY_START = re.compile(r"^  ?-", re.MULTILINE)
_DEFAULT_WORD = re.compile(r"\bdefault\b", re.IGNORECASE)


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, (*path, name))


def _option_entries(help_text: str) -> list[str]:
    """The help text split into one whitespace-normalised string per option."""
    starts = [m.start() for m in _ENTRY_START.finditer(help_text)]
    entries = []
    for a, b in zip(starts, [*starts[1:], len(help_text)]):
        chunk = help_text[a:b]
        # an option's entry ends at the first blank line (a group title follows)
        chunk = chunk.split("\n\n")[0]
        entries.append(" ".join(chunk.split()))
    return entries


PARSERS = list(_walk(build_parser()))


def test_every_command_is_walked() -> None:
    names = {" ".join(path) for path, _ in PARSERS}
    assert {"search", "baseline", "tables", "bench", "report html", "report runs", "cost map", "sweep"} <= names


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[" ".join(p) or "haloc-hw" for p, _ in PARSERS])
def test_help_shows_each_default_once_and_never_none(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert "(default: None)" not in text
    assert "(default: False)" not in text  # a flag's absence is its default
    for entry in _option_entries(text):
        # "(default: X)" at most once, and never beside a default the help states in its own words
        if "(default:" in entry:
            assert len(_DEFAULT_WORD.findall(entry)) == 1, f"{' '.join(path)}: {entry}"


def test_search_help_shows_real_defaults_from_the_formatter() -> None:
    (search,) = [p for path, p in PARSERS if path == ("search",)]
    entries = {e.split()[0]: e for e in _option_entries(search.format_help())}
    assert entries["--batch"].endswith("(default: 64)")
    assert entries["--epochs-search"].endswith("(default: 3)")
    assert "(default: one per CPU core)" in entries["--jobs"]  # the hand-written text wins
    assert "default" not in entries["--resume"]
    assert "default" not in entries["--table"]


def test_formatter_rules() -> None:
    p = argparse.ArgumentParser(prog="x", formatter_class=DefaultsOnceFormatter)
    p.add_argument("--n", type=int, default=5, help="count")
    p.add_argument("--m", default=None, help="unset")
    p.add_argument("--k", default=2, help="k (default: two, usually)")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--eq", action=argparse.BooleanOptionalAction, default=True, help="equal ranks")
    entries = {e.split()[0]: e for e in _option_entries(p.format_help())}
    assert entries["--n"].endswith("count (default: 5)")
    assert entries["--m"].endswith("unset")
    assert entries["--k"].endswith("k (default: two, usually)")
    assert entries["--flag"].endswith("a flag")
    assert entries["--eq,"].endswith("equal ranks (default: True)")


def test_one_spelling_of_no_cuda_graphs() -> None:
    spellings = {opt for _, parser in PARSERS for action in parser._actions for opt in action.option_strings
                 if opt.startswith("--no-cuda-graph")}
    assert spellings == {"--no-cuda-graphs"}


def test_bench_uses_the_plural_spelling() -> None:
    (bench,) = [p for path, p in PARSERS if path == ("bench",)]
    assert bench.parse_args(["--model", "resnet20", "--no-cuda-graphs"]).cuda_graph is False
    assert bench.parse_args(["--model", "resnet20"]).cuda_graph is True
    assert "--no-cuda-graph" not in {opt for action in bench._actions for opt in action.option_strings}
