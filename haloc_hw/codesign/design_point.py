"""Render one design point and price it: the only place co-design touches the front end and the estimator.

:func:`price_point` turns (design files, variable values) into what the cost model needs (an
:class:`~haloc_hw.spec.model.Architecture`, an :class:`~haloc_hw.spec.model.EnergyTable`
and :class:`~haloc_hw.spec.mapping.Constraints`) plus the estimated area:

* :func:`haloc_hw.spec.design.load_design` renders the files with the point's values as
  ``set_values`` (Jinja2 variables, and overrides of same-named ``variables:`` entries), so a
  space can vary anything a design exposes, in the Jinja2 or the ``variables:`` style;
* :func:`haloc_hw.energy.estimate_design` prices every component (compound components
  expanded through their subcomponents, a user's ERT/ART winning per component) and gives
  the total area; its ERT and ART are written into the point's folder, so a point can be
  inspected or rerun by hand with ``haloc-hw cost``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PricedPoint:
    """A rendered and priced design point: what the cost model and the Pareto front need."""

    arch: Any  # Architecture
    energy: Any  # EnergyTable
    constraints: Any  # Constraints
    area_mm2: float
    energy_source: str
    area_source: str
    variables: dict[str, Any] = field(default_factory=dict)


def price_point(design_files: Sequence[Path], constraint_files: Sequence[Path], values: Mapping[str, Any], *,
                workdir: Path) -> PricedPoint:
    """Render ``design_files`` with ``values`` set, and price it (see the module docstring)."""
    from haloc_hw.energy import estimate_design
    from haloc_hw.fileio import write_yaml_atomic
    from haloc_hw.spec.constraints import load_constraints, merge_directives
    from haloc_hw.spec.design import load_design
    from haloc_hw.spec.energy import load_energy_table
    from haloc_hw.spec.mapping import Constraints

    design = load_design(list(design_files), set_values=dict(values))
    arch = design.architecture
    # the design's own constraints (node constraints and its files' constraint sections),
    # then the space's constraint files, merged as one set
    extra = load_constraints(list(constraint_files), dataclasses.replace(arch, node_constraints=()))
    source = ", ".join(s for s in (str(design_files[0]), extra.source) if s)
    constraints = Constraints(merge_directives([*design.constraints, *extra.directives], source), source)
    est = estimate_design(design)
    workdir.mkdir(parents=True, exist_ok=True)
    write_yaml_atomic(workdir / "ERT.yaml", est.ert_doc())
    write_yaml_atomic(workdir / "ART.yaml", est.art_doc())
    energy = load_energy_table(workdir / "ERT.yaml", arch)
    entries = list(est.entries.values()) if isinstance(est.entries, dict) else list(est.entries)
    e_kinds = "+".join(sorted({e.energy_origin for e in entries})) or "estimated"
    a_kinds = "+".join(sorted({e.area_origin for e in entries})) or "estimated"
    return PricedPoint(arch, energy, constraints, float(est.total_area_um2) / 1e6, f"estimator ({e_kinds})",
                       f"estimator ({a_kinds})", dict(design.variables))


def fingerprint(obj: Any) -> str:
    """sha256 of a canonical JSON rendering (for table sharing between identical hardware)."""
    from haloc_hw.cost.table import canonical_json

    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
