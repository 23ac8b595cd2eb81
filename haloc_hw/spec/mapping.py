"""Constraints and mappings: Timeloop's per-level directives as plain data.

Both are lists of directives that target a level by name. A mapping directive fixes
everything (all factors, the full permutation); a constraint directive leaves parts open.
Permutation strings list dimensions innermost first, as in Timeloop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DirectiveType = Literal["temporal", "spatial", "datatype"]


@dataclass(frozen=True)
class Directive:
    """One ``{target, type, ...}`` entry of a mapping or of constraints.

    ``factors`` maps a dimension to its factor; in constraints ``0`` means "the whole
    dimension" and missing dimensions are free. ``permutation`` is innermost first. For
    constraints, ``permutation_suffix`` holds the part after a ``_``/space separator (fixed
    outermost dims); the part before it is a fixed innermost prefix. ``split`` is the number
    of leading permutation positions mapped to X (spatial only). ``keep``/``bypass`` are
    data-space names (datatype only).
    """

    target: str
    type: DirectiveType
    factors: dict[str, int] = field(default_factory=dict)
    permutation: str | None = None
    permutation_suffix: str | None = None
    split: int | None = None
    keep: tuple[str, ...] | None = None
    bypass: tuple[str, ...] | None = None
    max_factors: dict[str, int] = field(default_factory=dict)
    min_factors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Constraints:
    """Architecture + map-space constraints (merged; both restrict the mapper the same way)."""

    directives: tuple[Directive, ...] = ()
    source: str = ""

    def for_target(self, target: str, type_: DirectiveType) -> list[Directive]:
        return [d for d in self.directives if d.target == target and d.type == type_]


@dataclass(frozen=True)
class Mapping:
    """A complete mapping (Timeloop's ``mapping:`` list)."""

    directives: tuple[Directive, ...]

    def get(self, target: str, type_: DirectiveType) -> Directive | None:
        for d in self.directives:
            if d.target == target and d.type == type_:
                return d
        return None
