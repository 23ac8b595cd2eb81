"""Energy and area without Accelergy: primitive estimators from published data, compound-component
expansion as Accelergy defines it, and Accelergy-format ERT/ART output (interface 3).

Public API: :func:`estimate`, :func:`estimate_design`, :class:`EnergyEstimate`, :class:`Entry`,
:func:`write_outputs`, :func:`load_files`. See docs/ENERGY.md for the data, the interpolation and the
technology rule.
"""

from haloc_hw.energy.estimator import estimate, estimate_design
from haloc_hw.energy.result import EnergyEstimate, Entry

__all__ = ["estimate", "estimate_design", "EnergyEstimate", "Entry"]
