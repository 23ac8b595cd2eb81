"""Per-level Timeloop statistics: one result type for a parsed report and for the model.

``timeloop-model`` prints, per storage level, per-instance counts of every kept data space
(reads, fills, updates, ...), and the analytical model computes the same numbers. Both
fill :class:`LevelStats` / :class:`DataSpaceStats`, so a comparison is field by field:
:mod:`haloc_hw.cost.stats_parser` from a ``stats.txt`` (with the printed :class:`LevelSpecs`
and Timeloop's level index), :mod:`haloc_hw.cost.analytical.model` from its evaluation
(with bandwidth throttling). Fields a source does not know stay at their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LevelSpecs:
    """Hardware parameters Timeloop reports for one storage level (``None`` when printed as ``-``)."""

    size: int | None = None
    word_bits: int | None = None
    block_size: int | None = None
    instances: int | None = None
    vector_access_energy_pJ: float | None = None
    energy_source: str | None = None
    read_bandwidth: float | None = None
    write_bandwidth: float | None = None
    technology: str | None = None
    leak_per_cycle_pJ: float | None = None  # "Per-instance-cycle leakage" (newer reports)


@dataclass(frozen=True)
class DataSpaceStats:
    """Per-instance counts of one data space kept at one level, plus its total access energy
    (leakage is the level's, see :attr:`LevelStats.leak_pJ`)."""

    partition_size: int = 0
    utilized_capacity: int = 0
    utilized_instances: int = 0
    reads: int = 0
    updates: int = 0
    fills: int = 0
    temporal_reductions: int = 0
    energy_pJ: float = 0.0
    utilized_clusters: int = 0
    address_generations: int = 0


@dataclass(frozen=True)
class LevelStats:
    """One level: a storage level (kept data spaces, leakage) or, in a parsed report, the
    arithmetic level (index 0, ``computes``, its printed ``total_energy_pJ``)."""

    name: str
    utilized_instances: int | None = None
    cycles: int | None = None
    throttling: float | None = None
    dataspaces: dict[str, DataSpaceStats] = field(default_factory=dict)
    leak_pJ: float = 0.0  # leakage of the whole level over the run (ERT ``leak``)
    index: int | None = None  # Timeloop's level number (0 = arithmetic), when read from a report
    specs: LevelSpecs | None = None
    computes: int | None = None
    total_energy_pJ: float | None = None  # "Energy (total)" as printed for the arithmetic level

    @property
    def energy_pJ(self) -> float:
        """The printed total where there is one, else access energy of the data spaces plus leakage."""
        if self.total_energy_pJ is not None:
            return self.total_energy_pJ
        return float(sum(d.energy_pJ for d in self.dataspaces.values())) + self.leak_pJ

