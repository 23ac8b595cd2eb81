"""The published figures the estimators use, read from ``haloc_hw/data/energy/*.csv``.

Every table row names its source in a ``source`` column; a row without one is refused when the
table is read, so a number without provenance can never enter an estimate. Lines starting with
``#`` are comments (each file explains its columns and units there).
"""

from __future__ import annotations

import csv
import io
from functools import lru_cache
from importlib import resources

from haloc_hw.errors import HalocError

#: Package folder holding the tables (shipped as package data).
DATA_PACKAGE = "haloc_hw"
DATA_DIR = ("data", "energy")


def _text(name: str) -> str:
    node = resources.files(DATA_PACKAGE)
    for part in DATA_DIR:
        node = node / part
    return (node / name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def read_table(name: str) -> tuple[dict[str, str], ...]:
    """Rows of ``data/energy/<name>`` as dicts of strings (comment lines skipped)."""
    text = _text(name)
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    rows = tuple(dict(r) for r in csv.DictReader(io.StringIO("\n".join(lines))))
    where = f"haloc_hw/data/energy/{name}"
    for i, row in enumerate(rows):
        if not (row.get("source") or "").strip():
            raise HalocError("row has no source", file=where, key=f"row {i + 1}", fix="name the published source of every figure")
    return rows


def number(row: dict[str, str], column: str, table: str) -> float:
    """One numeric cell; a malformed shipped table is a packaging bug, reported with its place."""
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        raise HalocError(
            f"column '{column}' is not a number ({row.get(column)!r})",
            file=f"haloc_hw/data/energy/{table}",
            key=column,
            fix="repair the shipped table",
        ) from None
