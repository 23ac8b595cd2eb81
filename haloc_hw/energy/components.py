"""What the estimator needs to know about one leaf component (interface 2's ``ComponentSpec``).

The estimator reads only the fields below, by name, so it works with
:class:`haloc_hw.spec.design.ComponentSpec` (frontend) and with :class:`Component`, the plain
record that :mod:`haloc_hw.energy.files` builds from v0.3/v0.4 files directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class ComponentLike(Protocol):
    path: str  # dotted, ranges removed: "system.PE.weights_spad"
    name: str  # leaf name
    cls: str  # class as written
    attributes: dict[str, Any]  # evaluated, inherited, '-' replaced by '_'
    instances: int  # copies in the whole design
    kind: str  # "storage" | "compute" | "other"


@dataclass(frozen=True)
class Component:
    path: str
    name: str
    cls: str
    attributes: dict[str, Any] = field(default_factory=dict)
    instances: int = 1
    kind: str = "other"
