"""Merging several spec files by top-level key, as timeloopfe's ``from_yaml_files`` does.

A timeloopfe user passes a set of files in any order (``arch.yaml problem.yaml
mapper.yaml ...``, or one Jinja2 top file). Each must hold a mapping; the mappings are
combined by top-level key. A key seen in one file is taken as is; a key seen again is
*combined* with the first value:

* an empty or missing value takes the other one; equal values stay;
* two mappings are combined key by key (recursively, by these rules);
* the lists timeloopfe extends (``nodes`` of an architecture, ``targets`` of constraints,
  ``classes`` of compound components, ``expression_custom_functions``...) are appended;
* anything else that differs is an error naming both files.

Public API: :func:`merge_documents`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

# Lists timeloopfe combines by appending (CombinableListNode and ArchNodes).
APPENDED_LISTS: frozenset[str] = frozenset(
    {"nodes", "targets", "classes", "expression_custom_functions", "accelergy_plug_ins", "factors", "tables"}
)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list, tuple, str)) and len(value) == 0)


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    # version: 0.4 and version: "0.4" are the same version
    return isinstance(a, (int, float, str)) and isinstance(b, (int, float, str)) and str(a) == str(b)


def combine(a: Any, b: Any, *, key: str, files: tuple[Path, Path]) -> Any:
    """Combine two values of the same key (``a`` from ``files[0]``, ``b`` from ``files[1]``)."""
    if _empty(a):
        return b
    if _empty(b) or _same(a, b):
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = combine(out[k], v, key=f"{key}.{k}", files=files) if k in out else v
        return out
    last = key.rsplit(".", 1)[-1]
    if isinstance(a, list) and isinstance(b, list) and last in APPENDED_LISTS:
        return [*a, *b]
    raise HalocError(
        f"given twice with different values (in {files[0]} and {files[1]})",
        file=files[1],
        key=key,
        fix="remove one of the two, or make them equal",
    )


def merge_documents(docs: Sequence[tuple[Path, Any]]) -> tuple[dict[str, Any], dict[str, Path]]:
    """Merge loaded files ``[(path, content), ...]`` in order.

    Returns the merged top-level mapping and, per top-level key, the first file that gave it
    (for error messages).
    """
    merged: dict[str, Any] = {}
    key2file: dict[str, Path] = {}
    for path, content in docs:
        if content is None:
            continue
        if not isinstance(content, dict):
            raise HalocError(
                f"expected a mapping of top-level keys, found {type(content).__name__}",
                file=path,
                fix="start the file with a top-level key such as 'architecture:'",
            )
        for k, v in content.items():
            key = str(k)
            if key in merged:
                merged[key] = combine(merged[key], v, key=key, files=(key2file[key], path))
            else:
                merged[key] = v
                key2file[key] = path
    return merged, key2file
