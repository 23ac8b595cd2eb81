"""Architecture specs: reading and writing Timeloop architectures, constraints, mappings, ERTs."""

from haloc_hw.spec.constraints import load_constraints, load_mapping, mapping_to_yaml
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import load_arch
from haloc_hw.spec.mapping import Constraints, Directive, Mapping
from haloc_hw.spec.model import (
    DATA_SPACES,
    ActionEnergy,
    Architecture,
    ArithmeticLevel,
    EnergyTable,
    StorageLevel,
)
from haloc_hw.spec.yamltags import classify_yaml

__all__ = [
    "DATA_SPACES",
    "ActionEnergy",
    "Architecture",
    "ArithmeticLevel",
    "Constraints",
    "Directive",
    "EnergyTable",
    "Mapping",
    "StorageLevel",
    "classify_yaml",
    "load_arch",
    "load_constraints",
    "load_energy_table",
    "load_mapping",
    "mapping_to_yaml",
]
