"""The analytical model against real Timeloop 3.0.3 runs (../shared/timeloop-golden).

For every golden case, evaluating ``map.yaml`` must give exactly the cycles of
``model/timeloop-model.stats.txt``, exactly the same per-level, per-data-space counts, and
the total energy of ``summary.json`` within 0.1 %. The stats file is parsed here with a
small reader of its own so that this test does not depend on the library's parser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from haloc_hw.cost.analytical.model import AnalyticalModel
from haloc_hw.cost.analytical.nest import structure_from_mapping
from haloc_hw.spec.constraints import load_mapping
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import load_arch
from haloc_hw.workload import load_problem
from conftest import GOLDEN, golden_cases

CASES = golden_cases()
pytestmark = pytest.mark.skipif(not CASES, reason=f"golden Timeloop runs not found at {GOLDEN}")

FIELDS = {
    "partition_size": "Partition size",
    "utilized_capacity": "Utilized capacity",
    "utilized_instances": "Utilized instances (max)",
    "utilized_clusters": "Utilized clusters (max)",
    "reads": "Scalar reads (per-instance)",
    "updates": "Scalar updates (per-instance)",
    "fills": "Scalar fills (per-instance)",
    "temporal_reductions": "Temporal reductions (per-instance)",
    "address_generations": "Address generations (per-cluster)",
}


def parse_stats(path: Path) -> dict[str, dict]:
    """Level name -> {"fields": {...}, "ds": {data space: {field: value}}} from a stats.txt."""
    out: dict[str, dict] = {}
    cur: dict | None = None
    ds: dict | None = None
    for line in path.read_text().splitlines():
        if line.startswith("Networks"):
            break
        text = line.strip()
        head = re.fullmatch(r"=== (\S+) ===", text)
        if head:
            cur = out.setdefault(head.group(1), {"fields": {}, "ds": {}})
            ds = None
            continue
        if cur is None:
            continue
        sect = re.fullmatch(r"(Weights|Inputs|Outputs):", text)
        if sect:
            ds = cur["ds"].setdefault(sect.group(1), {})
            continue
        kv = re.match(r"([A-Za-z ()\-]+?)\s*: (-?\d[\d.]*)", text)
        if kv:
            (ds if ds is not None else cur["fields"])[kv.group(1).strip()] = float(kv.group(2))
    return out


def load_case(name: str):
    case = GOLDEN / name
    arch = load_arch(case / "arch.yaml")
    energy = load_energy_table(case / "ERT.yaml", arch)
    mapping = load_mapping(case / "map.yaml", arch)
    shape = load_problem(case / "problem.yaml")
    return arch, energy, mapping, shape


@pytest.mark.parametrize("name", CASES)
def test_golden_case_matches_timeloop(name: str) -> None:
    arch, energy, mapping, shape = load_case(name)
    ev = AnalyticalModel(arch, energy).evaluate(shape, mapping)
    ref = parse_stats(GOLDEN / name / "model" / "timeloop-model.stats.txt")
    summary = json.loads((GOLDEN / name / "summary.json").read_text())["model"]

    assert ev.cycles == summary["cycles"]
    assert ev.computes == summary["computes"]
    assert ev.computes == ref["mac"]["fields"]["Computes (total)"]
    assert ev.mac_cycles == ref["mac"]["fields"]["Cycles"]
    assert ev.utilization == pytest.approx(summary["utilization"], abs=0.005)
    assert ev.energy_pJ == pytest.approx(summary["energy_pJ"], rel=1e-3)
    assert ev.mac_energy_pJ == pytest.approx(ref["mac"]["fields"]["Energy (total)"], abs=0.01)
    assert [lvl.name for lvl in ev.levels] == list(arch.level_names)
    for lvl in ev.levels:
        r = ref[lvl.name]
        assert lvl.cycles == r["fields"]["Cycles"], lvl.name
        assert lvl.throttling == pytest.approx(r["fields"]["Bandwidth throttling"], abs=0.005)
        assert set(lvl.dataspaces) == set(r["ds"]), lvl.name
        for dsn, st in lvl.dataspaces.items():
            for attr, key in FIELDS.items():
                assert getattr(st, attr) == r["ds"][dsn][key], (lvl.name, dsn, attr)
            # printed with 2 decimals
            assert st.energy_pJ == pytest.approx(r["ds"][dsn]["Energy (total)"], abs=0.006), (lvl.name, dsn)


@pytest.mark.parametrize("name", CASES)
def test_golden_batch_path_equals_single(name: str) -> None:
    """The batch entry point on the golden rows gives the same cycles and energy."""
    arch, energy, mapping, shape = load_case(name)
    model = AnalyticalModel(arch, energy)
    ev = model.evaluate(shape, mapping)
    structure, row = structure_from_mapping(mapping, arch, shape)
    res = model.evaluate_batch(shape, structure, np.stack([row, row]))
    assert res.valid.all()
    assert (res.cycles == ev.cycles).all()
    assert np.allclose(res.energy_pJ, ev.energy_pJ, rtol=1e-12)
