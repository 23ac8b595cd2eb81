"""The golden Timeloop 3.0.3 runs: what we read from arch.yaml + ERT.yaml must equal the
SPECS that timeloop-model printed for the same files, and their constraints / map.yaml must
load (and the mapping must write back to exactly the golden form)."""

from __future__ import annotations

import re

import pytest
import yaml

from haloc_hw.spec import load_arch, load_constraints, load_energy_table, load_mapping, mapping_to_yaml
from conftest import GOLDEN

CASES = sorted(p.parent.parent.name for p in GOLDEN.glob("*/model/timeloop-model.stats.txt")) if GOLDEN.is_dir() else []

pytestmark = pytest.mark.skipif(not CASES, reason=f"golden Timeloop runs not found at {GOLDEN}")


def parse_specs(text: str) -> dict[str, dict[str, str]]:
    """{level name: {SPECS key: value string}} from a timeloop-model stats.txt."""
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    in_specs = False
    for line in text.splitlines():
        head = re.match(r"^=== (\S+) ===$", line.strip())
        if head:
            current = out.setdefault(head.group(1), {})
            in_specs = False
            continue
        if current is None:
            continue
        if line.strip() == "SPECS":
            in_specs = True
            continue
        if line.strip() in ("STATS", "MAPPING"):
            in_specs = False
            continue
        if line.startswith(("Level ", "Networks", "Operational Intensity", "Summary")):
            current = None
            continue
        if in_specs and ":" in line:
            k, v = line.split(":", 1)
            current[k.strip()] = v.strip()
    return out


def _opt_num(text: str) -> float | None:
    return None if text.strip() == "-" else float(text.split()[0])


@pytest.mark.parametrize("case", CASES)
def test_levels_match_timeloop_specs(case: str) -> None:
    folder = GOLDEN / case
    arch = load_arch(folder / "arch.yaml")
    ert = load_energy_table(folder / "ERT.yaml", arch)
    specs = parse_specs((folder / "model" / "timeloop-model.stats.txt").read_text())
    storage_specs = {k: v for k, v in specs.items() if "Size" in v}
    assert set(storage_specs) == set(arch.level_names)
    for lvl in arch.levels:
        s = storage_specs[lvl.name]
        assert _opt_num(s["Size"]) == lvl.size_words
        assert int(s["Word bits"]) == lvl.word_bits
        assert int(s["Block size"]) == lvl.block_size
        assert int(s["Cluster size"]) == lvl.cluster_size
        inst = re.match(r"(\d+) \((\d+)\*(\d+)\)", s["Instances"])
        assert inst, s["Instances"]
        assert (int(inst.group(1)), int(inst.group(2)), int(inst.group(3))) == (lvl.instances, lvl.mesh_x, lvl.mesh_y)
        assert _opt_num(s["Read bandwidth"]) == lvl.read_bandwidth
        assert _opt_num(s["Write bandwidth"]) == lvl.write_bandwidth
        assert _opt_num(s["Shared bandwidth"]) == lvl.shared_bandwidth
        assert float(s["Multiple buffering"]) == lvl.multiple_buffering
        assert _opt_num(s["Effective size"]) == lvl.effective_size
        assert (s["Technology"] == "DRAM") == lvl.is_dram
        assert s["Vector access energy source"] == "ERT"
        printed = float(s["Vector access energy"].split()[0])
        assert round(ert.for_level(lvl.name).vector_access, 2) == pytest.approx(printed, abs=1e-9)
    mac = specs[arch.arithmetic.name]
    assert int(mac["Word bits"]) == arch.arithmetic.word_bits
    inst = re.match(r"(\d+) \((\d+)\*(\d+)\)", mac["Instances"])
    assert inst
    assert (int(inst.group(1)), int(inst.group(2)), int(inst.group(3))) == (
        arch.arithmetic.instances,
        arch.arithmetic.mesh_x,
        arch.arithmetic.mesh_y,
    )
    assert round(ert.compute, 2) == pytest.approx(float(mac["Compute energy"].split()[0]))
    assert ert.unmatched_levels == ()


@pytest.mark.parametrize("case", CASES)
def test_constraints_and_mapping_load(case: str) -> None:
    folder = GOLDEN / case
    arch = load_arch(folder / "arch.yaml")
    cons = load_constraints(folder / "constraints.yaml", arch)
    # Every level is constrained; DummyBuffer's temporal entry is merged from both sections.
    assert {d.target for d in cons.directives} == set(arch.level_names)
    dummy_t = cons.for_target("DummyBuffer", "temporal")
    assert len(dummy_t) == 1 and dummy_t[0].permutation == "NMCPQRS" and dummy_t[0].factors["S"] == 1
    mapping = load_mapping(folder / "map.yaml", arch)
    assert mapping_to_yaml(mapping) == yaml.safe_load((folder / "map.yaml").read_text())


def test_parse_specs_reads_the_glb_block() -> None:
    specs = parse_specs((GOLDEN / CASES[0] / "model" / "timeloop-model.stats.txt").read_text())
    assert specs["shared_glb"]["Size"] == "65536"
    assert specs["shared_glb"]["Vector access energy"] == "75.22 pJ"
    assert specs["DRAM"]["Size"] == "-"
