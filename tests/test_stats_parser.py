"""The stats parser against every real Timeloop 3.0.3 report in the golden folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haloc_hw.cost.stats_parser import parse_stats
from haloc_hw.errors import HalocError
from conftest import GOLDEN, golden_cases

CASES = golden_cases("summary.json")
needs_golden = pytest.mark.skipif(not CASES, reason=f"golden Timeloop runs not found at {GOLDEN}")


def _stats_path(case: str, kind: str) -> Path:
    return GOLDEN / case / kind / f"timeloop-{kind}.stats.txt"


@needs_golden
@pytest.mark.parametrize("kind", ["mapper", "model"])
@pytest.mark.parametrize("case", CASES)
def test_every_golden_report_matches_summary(case: str, kind: str) -> None:
    expected = json.loads((GOLDEN / case / "summary.json").read_text())[kind]
    stats = parse_stats(_stats_path(case, kind))
    assert stats.cycles == expected["cycles"]
    assert stats.computes == expected["computes"]
    assert stats.utilization == pytest.approx(expected["utilization"])
    assert stats.energy_pJ == pytest.approx(expected["energy_pJ"], rel=1e-12)
    assert stats.per_compute_fJ == pytest.approx(expected["fJ_per_compute"])
    # energy must come from the fJ/Compute total, not from the 2-decimal uJ line
    assert stats.energy_pJ == pytest.approx(stats.per_compute_fJ["Total"] * stats.computes / 1000)
    assert stats.energy_uJ_rounded == pytest.approx(stats.energy_pJ / 1e6, abs=0.006)
    # arithmetic level and the storage levels named like the arch, innermost first
    assert list(stats.levels) == ["mac", "psum_spad", "weights_spad", "ifmap_spad", "DummyBuffer", "shared_glb", "DRAM"]
    mac = stats.levels["mac"]
    assert mac.index == 0 and mac.computes == stats.computes and mac.cycles == stats.cycles
    # level energies over data spaces add up to the per-compute numbers
    for name, level in stats.levels.items():
        if name == "mac":
            continue
        total = sum(ds.energy_pJ for ds in level.dataspaces.values())
        assert total * 1000 / stats.computes == pytest.approx(stats.per_compute_fJ[name], abs=0.006)


@needs_golden
def test_levels_specs_and_dataspaces_read_exactly() -> None:
    stats = parse_stats(str(_stats_path("r18_conv1", "model")))
    glb = stats.level("shared_glb")
    assert (glb.specs.size, glb.specs.word_bits, glb.specs.block_size, glb.specs.instances) == (65536, 16, 4, 1)
    assert glb.specs.vector_access_energy_pJ == pytest.approx(75.22)
    assert glb.specs.energy_source == "ERT"
    out = glb.dataspaces["Outputs"]
    assert (out.reads, out.updates, out.fills, out.temporal_reductions) == (1605632, 2408448, 0, 1605632)
    assert (out.utilized_capacity, out.partition_size, out.utilized_instances) == (50176, 802816, 1)
    assert out.energy_pJ == pytest.approx(75049848.83)
    assert set(glb.dataspaces) == {"Inputs", "Outputs"}
    dram = stats.level("DRAM")
    assert dram.specs.size is None and dram.specs.technology == "DRAM"
    assert stats.level("psum_spad").specs.instances == 168
    assert stats.level("DummyBuffer").dataspaces == {}
    with pytest.raises(HalocError, match="no level 'nope'"):
        stats.level("nope")


@needs_golden
def test_accepts_text_and_percent_utilization() -> None:
    text = _stats_path("r18_l2_ds", "model").read_text()
    assert "Utilization: 0.67" in text
    stats = parse_stats(text.replace("Utilization: 0.67", "Utilization: 66.67%"))
    assert stats.utilization == pytest.approx(0.6667)
    assert stats.cycles == 57344


NEWER_STYLE = """Buffer and Arithmetic Levels
----------------------------
Level 0
-------
=== mac ===

    SPECS
    -----
    Word bits             : 16
    Instances             : 8 (8*1)
    Compute energy        : 2.20 pJ

    STATS
    -----
    Utilized instances           : 8
    Cycles                       : 64
    Algorithmic Computes (total) : 512
    Actual Computes (total)      : 512
    Energy (total)               : 1126.58 pJ

Level 1
-------
=== buf ===

    SPECS
    -----
        Technology                   : SRAM
        Data storage size            : 64
        Data word bits               : 16
        Data block size              : 2
        Instances                    : 8 (8*1)
        Vector read energy           : 0.66 pJ
        Vector write energy          : 0.90 pJ

    MAPPING
    -------
    Loop nest:

    STATS
    -----
    Cycles               : 64
    Bandwidth throttling : 1.00
    A:
        Partition size                                              : 8
        Max utilized data storage capacity                          : 1
        Utilized instances (max)                                    : 8
        Algorithmic scalar reads (per-instance)                     : 64
        Actual scalar reads (per-instance)                          : 60
        Actual scalar fills (per-instance)                          : 8
        Actual scalar updates (per-instance)                        : 0
        Temporal reductions (per-instance)                          : 0
        Energy (total)                                              : 396.54 pJ

Total topology energy: 1523.12 pJ
Max topology cycles: 64

Summary Stats
-------------
Utilization: 100.00%
Cycles: 64
Energy: 0.00 uJ

Algorithmic Computes = 512
pJ/Algorithmic-Compute
    mac   = 9.99
    Total = 9.99

Actual Computes = 512
pJ/Compute
    mac   = 2.20
    buf   = 0.77
    Total = 2.97
"""


def test_newer_timeloop_report_style() -> None:
    stats = parse_stats(NEWER_STYLE)
    assert stats.cycles == 64 and stats.computes == 512
    assert stats.utilization == 1.0
    assert stats.per_compute_fJ == pytest.approx({"mac": 2200.0, "buf": 770.0, "Total": 2970.0})
    assert stats.energy_pJ == pytest.approx(1523.12)  # the precise topology line wins
    buf = stats.level("buf")
    assert (buf.specs.size, buf.specs.word_bits, buf.specs.block_size) == (64, 16, 2)
    assert buf.specs.vector_access_energy_pJ == pytest.approx(0.90)
    a = buf.dataspaces["A"]
    assert (a.reads, a.fills, a.utilized_capacity, a.partition_size) == (60, 8, 1, 8)
    assert stats.level("mac").computes == 512


@needs_golden
def test_truncated_or_foreign_file_is_a_user_error(tmp_path: Path) -> None:
    full = _stats_path("r20_s1", "model").read_text()
    cut = tmp_path / "timeloop-model.stats.txt"
    cut.write_text(full[: len(full) // 2])
    with pytest.raises(HalocError, match="timeloop-model.stats.txt.*not a complete Timeloop stats report"):
        parse_stats(cut)
    # cut inside the per-compute block: no Total line
    cut.write_text(full[: full.rindex("    Total ")])
    with pytest.raises(HalocError, match="Total"):
        parse_stats(cut)
    binary = tmp_path / "garbage.txt"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(HalocError, match="garbage.txt"):
        parse_stats(binary)
    with pytest.raises(HalocError, match="not found"):
        parse_stats(tmp_path / "missing.stats.txt")
