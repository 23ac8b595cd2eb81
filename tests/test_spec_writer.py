"""Writers: read -> write -> read gives an equal Architecture, both dialects both ways;
constraints written as v0.3 strings read back equal; fan-out levels become dummy buffers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from haloc_hw.spec import load_arch, load_constraints
from haloc_hw.spec.mapping import Directive
from haloc_hw.spec.model import Architecture
from haloc_hw.spec.shipped import data_path, default_constraints_path
from haloc_hw.spec.writer import arch_to_v3, arch_to_v4, constraints_to_v3, fanout_bypass_directives

GOLDEN_ARCH = Path(__file__).resolve().parents[2] / "shared" / "timeloop-golden" / "r18_l1" / "arch.yaml"
SOURCES = [data_path("arch", "eyeriss.yaml"), data_path("arch", "eyeriss_16x16.yaml")]
if GOLDEN_ARCH.is_file():
    SOURCES.append(GOLDEN_ARCH)


def _v3(arch: Architecture, tmp_path: Path) -> Architecture:
    path = tmp_path / "v3.yaml"
    path.write_text(yaml.safe_dump(arch_to_v3(arch), sort_keys=False))
    return load_arch(path)


def _v4(arch: Architecture, tmp_path: Path) -> Architecture:
    path = tmp_path / "v4.yaml"
    path.write_text(arch_to_v4(arch))
    return load_arch(path)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_round_trips(source: Path, tmp_path: Path) -> None:
    arch = load_arch(source)
    via_v3 = _v3(arch, tmp_path)
    via_v4 = _v4(arch, tmp_path)
    assert via_v3 == arch and via_v3.version == "0.3"
    assert via_v4 == arch and via_v4.version == "0.4"
    # and across: v3 -> v4 -> v3
    assert _v3(via_v4, tmp_path) == arch


def test_v3_form_is_what_timeloop_reads(tmp_path: Path) -> None:
    arch = load_arch(data_path("arch", "eyeriss.yaml"))
    doc = arch_to_v3(arch)
    text = yaml.safe_dump(doc)
    assert "word-bits" in text and "block-size" in text and "word_bits" not in text
    root = doc["architecture"]["subtree"][0]
    assert [c["name"] for c in root["local"]] == ["DRAM", "shared_glb"]
    cols = root["subtree"][0]
    assert cols["name"].endswith("[0..13]")
    (dummy,) = cols["local"]
    # the fan-out container became a dummy regfile like the golden DummyBuffer
    assert dummy["class"] == "regfile" and dummy["attributes"]["depth"] == 16 and dummy["attributes"]["meshX"] == 14
    pes = cols["subtree"][0]
    assert pes["name"].endswith("[0..11]")
    assert [c["name"] for c in pes["local"]] == ["ifmap_spad", "weights_spad", "psum_spad", "mac"]


def test_fanout_bypass_directives() -> None:
    arch = load_arch(data_path("arch", "eyeriss.yaml"))
    ds = fanout_bypass_directives(arch)
    assert [(d.target, d.type) for d in ds] == [("DummyBuffer", "datatype"), ("DummyBuffer", "temporal")]
    assert ds[0].keep == () and set(ds[0].bypass or ()) == {"Weights", "Inputs", "Outputs"}
    assert set(ds[1].factors) == set("CMRSNPQ") and set(ds[1].factors.values()) == {1}
    assert fanout_bypass_directives(arch, dims=("G", "C"))[1].factors == {"G": 1, "C": 1}
    if GOLDEN_ARCH.is_file():
        assert fanout_bypass_directives(load_arch(GOLDEN_ARCH)) == ()  # golden DummyBuffer is a real buffer


def test_constraints_round_trip(tmp_path: Path) -> None:
    arch = load_arch(data_path("arch", "eyeriss.yaml"))
    cons = load_constraints(default_constraints_path(), arch)
    extra = Directive(target="DRAM", type="spatial", factors={"N": 1}, max_factors={"C": 4}, min_factors={"M": 2}, permutation_suffix="QP")
    doc = constraints_to_v3([*cons.directives, extra])
    text = yaml.safe_dump(doc, sort_keys=False)
    for entry in doc["architecture_constraints"]["targets"]:
        for key in ("factors", "permutation"):
            assert key not in entry or isinstance(entry[key], str)  # Timeloop 3.0 ignores lists
    path = tmp_path / "c.yaml"
    path.write_text(text)
    again = load_constraints(path, arch)
    assert again.directives == (*cons.directives, extra)
    dummy_spatial = next(e for e in doc["architecture_constraints"]["targets"] if e["target"] == "DummyBuffer" and e["type"] == "spatial")
    assert dummy_spatial["permutation"] == "NPQR SCM" and dummy_spatial["factors"] == "N=1 P=1 Q=1 R=1 S=0"


def test_constraints_to_v3_merges_fanout_directives_and_rejects_conflicts() -> None:
    from haloc_hw.errors import HalocError

    arch = load_arch(data_path("arch", "eyeriss.yaml"))
    cons = load_constraints(default_constraints_path(), arch)
    doc = constraints_to_v3([*cons.directives, *fanout_bypass_directives(arch)])
    entries = doc["architecture_constraints"]["targets"]
    keys = [(e["target"], e["type"]) for e in entries]
    assert len(keys) == len(set(keys))  # one entry per (target, type)
    dummy_temporal = next(e for e in entries if e["target"] == "DummyBuffer" and e["type"] == "temporal")
    assert dummy_temporal["permutation"] == "NMCPQRS" and "S=1" in dummy_temporal["factors"]
    dummy_bypass = next(e for e in entries if e["target"] == "DummyBuffer" and e["type"] == "bypass")
    assert dummy_bypass["keep"] == [] and set(dummy_bypass["bypass"]) == {"Inputs", "Outputs", "Weights"}
    clash = Directive(target="DummyBuffer", type="temporal", factors={"M": 2})
    with pytest.raises(HalocError, match="given twice"):
        constraints_to_v3([*cons.directives, clash])
