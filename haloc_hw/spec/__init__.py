"""Architecture specs: reading and writing Timeloop architectures, constraints, mappings, ERTs.

Readers: :func:`load_arch` (v0.3 tree or v0.4 ``!Container`` nodes), :func:`load_energy_table`
(Accelergy ERT), :func:`load_constraints`, :func:`load_mapping`. Writers: :func:`arch_to_v3`,
:func:`arch_to_v4`, :func:`constraints_to_v3`, :func:`mapping_to_yaml`. Shipped files:
:func:`default_arch_path` and friends.
"""

from haloc_hw.spec.constraints import load_constraints, load_mapping, mapping_to_yaml, merge_directives
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import arch_from_dict, load_arch
from haloc_hw.spec.mapping import Constraints, Directive, Mapping
from haloc_hw.spec.model import (
    DATA_SPACES,
    ActionEnergy,
    Architecture,
    ArithmeticLevel,
    EnergyTable,
    StorageLevel,
)
from haloc_hw.spec.shipped import (
    default_arch_path,
    default_constraints_path,
    default_ert_path,
    default_mapper_path,
    ert_path_for,
    resolve_spec_path,
)
from haloc_hw.spec.writer import arch_to_v3, arch_to_v4, constraints_to_v3, fanout_bypass_directives
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
    "arch_from_dict",
    "arch_to_v3",
    "arch_to_v4",
    "classify_yaml",
    "constraints_to_v3",
    "default_arch_path",
    "default_constraints_path",
    "default_ert_path",
    "default_mapper_path",
    "ert_path_for",
    "fanout_bypass_directives",
    "load_arch",
    "load_constraints",
    "load_energy_table",
    "load_mapping",
    "mapping_to_yaml",
    "merge_directives",
    "resolve_spec_path",
]
