"""Co-design: search accelerator parameters and Tucker-2 ranks together, return the Pareto set.

A design space (:mod:`~haloc_hw.codesign.space`) gives values for a design's variables;
every point is rendered and priced (:mod:`~haloc_hw.codesign.design_point`), gets its own
cost table and cheap rank allocations (:mod:`~haloc_hw.codesign.evaluate`), the
non-dominated points get the full HALOC search (:mod:`~haloc_hw.codesign.stages`), and
:mod:`~haloc_hw.codesign.runner` writes the run folder and report.

```python
from pathlib import Path
from haloc_hw.codesign import CodesignConfig, run
result = run("spaces/eyeriss.yaml", CodesignConfig(out=Path("runs/cd"), data="fashion-mnist"))
result.pareto
```
"""

from __future__ import annotations

from haloc_hw.codesign.config import CodesignConfig
from haloc_hw.codesign.runner import OBJECTIVES, CodesignResult, run
from haloc_hw.codesign.space import DesignSpace, Point, enumerate_points, load_space

__all__ = ["OBJECTIVES", "CodesignConfig", "CodesignResult", "DesignSpace", "Point", "enumerate_points", "load_space",
           "run"]
