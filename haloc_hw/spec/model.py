"""The internal architecture model that both Timeloop dialects are read into.

One :class:`Architecture` is a chain of storage levels, outermost (DRAM) first, ending in
one arithmetic level. A spatial fan-out sits *between* a level and the next one: level ``i``
feeds ``fanout(i)`` instances of level ``i + 1``. A v0.4 ``!Container`` with a ``spatial``
mesh that splits a fan-out into two stages is a :class:`StorageLevel` with
``fanout_only=True``: it keeps no data space and has no capacity, but it is a place where
mappings put spatial loops and constraints can name it. A v0.3 buffer that only serves as a
fan-out point (the golden ``DummyBuffer``, a 16-word regfile) is read as an ordinary level
with its capacity, exactly as Timeloop sees it; its constraints make it keep nothing.

Timeloop numbers storage levels innermost first; :meth:`Architecture.timeloop_index`
converts. Everything here is plain, frozen data: readers build it, writers and cost models
only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_SPACES: tuple[str, ...] = ("Weights", "Inputs", "Outputs")


@dataclass(frozen=True)
class StorageLevel:
    """One storage level (a buffer, or a fan-out-only node).

    ``instances`` counts all copies of this level in the whole array; ``mesh_x * mesh_y ==
    instances``. Bandwidths are words per cycle per instance; ``None`` means unlimited.
    ``size_words`` is ``None`` for DRAM (unbounded) and ``0`` for fan-out-only levels.
    """

    name: str
    cls: str
    size_words: int | None
    word_bits: int = 16
    block_size: int = 1
    cluster_size: int = 1
    instances: int = 1
    mesh_x: int = 1
    mesh_y: int = 1
    read_bandwidth: float | None = None
    write_bandwidth: float | None = None
    shared_bandwidth: float | None = None
    multiple_buffering: float = 1.0
    fanout_only: bool = False
    is_dram: bool = False
    technology: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def effective_size(self) -> int | None:
        """Capacity usable for tiles (``None`` = unbounded), as Timeloop's "Effective size"."""
        if self.size_words is None:
            return None
        return int(self.size_words // self.multiple_buffering)


@dataclass(frozen=True)
class ArithmeticLevel:
    """The MAC array at the bottom of the hierarchy."""

    name: str
    cls: str
    instances: int
    mesh_x: int
    mesh_y: int
    word_bits: int = 16
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Architecture:
    """A storage hierarchy, outermost first, above one arithmetic level."""

    name: str
    levels: tuple[StorageLevel, ...]
    arithmetic: ArithmeticLevel
    source: Path | None = field(default=None, compare=False, hash=False)
    # Directives written on the nodes of a v0.4 file (``constraints:`` blocks); the
    # constraint loader merges them with constraint files. Not part of the hardware, so
    # not compared.
    node_constraints: tuple[Any, ...] = field(default=(), compare=False, hash=False)
    # Dialect the architecture was read from ("0.3" or "0.4"), for messages only.
    version: str | None = field(default=None, compare=False, hash=False)
    # Names a v0.4 mapping or constraint may target that are not levels here: a container
    # (``PE``) or the ``inter_<name>_spatial`` level timeloopfe inserts for every node with a
    # fan-out. Each maps to (level, collapsed): ``collapsed`` means timeloopfe's dummy level
    # has no storage counterpart here (its fan-out is the fan-out of ``level``, the level
    # above), so only spatial directives carry over and its temporal factors must all be 1.
    target_aliases: dict[str, tuple[str, bool]] = field(default_factory=dict, compare=False, hash=False)

    def level(self, name: str) -> StorageLevel:
        for lvl in self.levels:
            if lvl.name == name:
                return lvl
        raise KeyError(name)

    def index(self, name: str) -> int:
        """Position of a level, outermost = 0."""
        for i, lvl in enumerate(self.levels):
            if lvl.name == name:
                return i
        raise KeyError(name)

    def timeloop_index(self, name: str) -> int:
        """Timeloop's storage-level number (innermost = 0)."""
        return len(self.levels) - 1 - self.index(name)

    def child_mesh(self, i: int) -> tuple[int, int]:
        """(meshX, meshY) of whatever lies directly below level ``i``."""
        below = self.levels[i + 1] if i + 1 < len(self.levels) else self.arithmetic
        return below.mesh_x, below.mesh_y

    def fanout(self, i: int) -> tuple[int, int]:
        """Spatial fan-out (FX, FY) from level ``i`` to its children."""
        lvl = self.levels[i]
        cx, cy = self.child_mesh(i)
        return cx // lvl.mesh_x, cy // lvl.mesh_y

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(lvl.name for lvl in self.levels)


@dataclass(frozen=True)
class ActionEnergy:
    """Per-vector energies (pJ) of one storage level, as Timeloop charges them."""

    read: float
    fill: float
    update: float
    vector_access: float  # max over all actions / cluster size (what Timeloop prints)


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action for every level of an architecture, in pJ.

    ``storage`` maps level name → :class:`ActionEnergy` (per vector of ``block_size`` words);
    ``compute`` is the energy of one MAC. ``unmatched_levels`` lists levels that got no entry
    (they cost 0, as in Timeloop with no ERT match); ``source`` says where the numbers came from.
    """

    storage: dict[str, ActionEnergy]
    compute: float
    unmatched_levels: tuple[str, ...] = ()
    source: str = ""

    def for_level(self, name: str) -> ActionEnergy:
        return self.storage.get(name, ActionEnergy(0.0, 0.0, 0.0, 0.0))
