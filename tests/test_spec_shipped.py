"""The shipped specs: Eyeriss describes exactly the golden hardware, the copies under arch/
and mappings/ equal the package data, and everything loads together."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
import yaml

from haloc_hw.errors import HalocError
from haloc_hw.spec import load_arch, load_constraints, load_energy_table
from haloc_hw.spec.energy import read_ert
from haloc_hw.spec.shipped import (
    DATA_DIR,
    default_arch_path,
    default_constraints_path,
    default_ert_path,
    default_mapper_path,
    ert_path_for,
    resolve_spec_path,
    shipped_files,
)
from conftest import REPO

GOLDEN = REPO.parent / "shared" / "timeloop-golden" / "r18_l1"
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden Timeloop runs not found at {GOLDEN}")
ARCHES = ["eyeriss", "eyeriss_16x16"]


@pytest.mark.parametrize("kind", ["arch", "mappings"])
def test_top_level_copies_equal_package_data(kind: str) -> None:
    packaged = {p.name for p in (DATA_DIR / kind).iterdir() if p.is_file()}
    top = {p.name for p in (REPO / kind).iterdir() if p.is_file()}
    assert packaged and packaged == top
    for name in packaged:
        assert filecmp.cmp(DATA_DIR / kind / name, REPO / kind / name, shallow=False), name


@needs_golden
def test_eyeriss_is_the_golden_hardware() -> None:
    ours = load_arch(default_arch_path())
    gold = load_arch(GOLDEN / "arch.yaml")
    assert ours.version == "0.4" and gold.version == "0.3"
    assert ours.level_names == gold.level_names == ("DRAM", "shared_glb", "DummyBuffer", "ifmap_spad", "weights_spad", "psum_spad")
    for a, b in zip(ours.levels, gold.levels):
        assert (a.instances, a.mesh_x, a.mesh_y, a.word_bits) == (b.instances, b.mesh_x, b.mesh_y, b.word_bits), a.name
        if a.name == "DummyBuffer":
            # ours is a fan-out container; the golden one a regfile kept empty by constraints
            assert a.fanout_only and not b.fanout_only
            continue
        assert a == b, a.name
    assert ours.arithmetic == gold.arithmetic
    assert [ours.fanout(i) for i in range(len(ours.levels))] == [gold.fanout(i) for i in range(len(gold.levels))]


@needs_golden
def test_eyeriss_energy_is_the_golden_ert() -> None:
    assert read_ert(default_ert_path()) == read_ert(GOLDEN / "ERT.yaml")
    gold_arch = load_arch(GOLDEN / "arch.yaml")
    ours = load_energy_table(default_ert_path(), load_arch(default_arch_path()))
    gold = load_energy_table(GOLDEN / "ERT.yaml", gold_arch)
    assert ours.storage == gold.storage and ours.compute == gold.compute == 2.2


@needs_golden
def test_row_stationary_is_the_golden_constraints_and_mapper() -> None:
    gold_arch = load_arch(GOLDEN / "arch.yaml")
    ours = load_constraints(default_constraints_path(), gold_arch)
    gold = load_constraints(GOLDEN / "constraints.yaml", gold_arch)
    assert ours.directives == gold.directives
    assert yaml.safe_load(default_mapper_path().read_text()) == yaml.safe_load((GOLDEN / "mapper.yaml").read_text())


@pytest.mark.parametrize("name", ARCHES)
def test_shipped_arrays_load_with_constraints_and_energy(name: str) -> None:
    arch_path = resolve_spec_path(f"arch/{name}.yaml")
    arch = load_arch(arch_path)
    ert_path = ert_path_for(arch_path)
    assert ert_path is not None
    energy = load_energy_table(ert_path, arch)
    assert energy.unmatched_levels == ()
    cons = load_constraints(default_constraints_path(), arch)
    assert {d.target for d in cons.directives} == set(arch.level_names)
    assert arch.level("DummyBuffer").fanout_only


def test_the_16x16_array_is_larger() -> None:
    small = load_arch(default_arch_path())
    big = load_arch(resolve_spec_path("arch/eyeriss_16x16.yaml"))
    assert (big.arithmetic.mesh_x, big.arithmetic.mesh_y, big.arithmetic.instances) == (16, 16, 256)
    assert big.fanout(big.index("shared_glb")) == (16, 1) and big.fanout(big.index("DummyBuffer")) == (1, 16)
    for lvl in ("shared_glb", "weights_spad", "psum_spad"):
        assert big.level(lvl).size_words > small.level(lvl).size_words  # type: ignore[operator]
    assert (big.level("weights_spad").size_words, big.level("psum_spad").size_words) == (448, 32)


def test_resolve_spec_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # away from the repo: falls back to package data
    assert resolve_spec_path("arch/eyeriss.yaml") == default_arch_path()
    assert resolve_spec_path("eyeriss_16x16") == DATA_DIR / "arch" / "eyeriss_16x16.yaml"
    assert resolve_spec_path("mappings/mapper.yaml") == default_mapper_path()
    local = tmp_path / "arch" / "eyeriss.yaml"
    local.parent.mkdir()
    local.write_text("architecture: {}\n")
    assert resolve_spec_path("arch/eyeriss.yaml") == Path("arch/eyeriss.yaml")  # a local file wins
    with pytest.raises(HalocError, match="arch/eyeriss.yaml"):
        resolve_spec_path("arch/nope.yaml")
    assert {p.name for p in shipped_files("mappings")} == {"mapper.yaml", "row_stationary.yaml"}


def test_loaders_find_shipped_files_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    arch = load_arch("arch/eyeriss_16x16.yaml")
    assert arch.source == DATA_DIR / "arch" / "eyeriss_16x16.yaml"
    assert load_energy_table("arch/eyeriss_16x16.ert.yaml", arch).compute == 2.2
    assert load_constraints("mappings/row_stationary.yaml", arch).directives
    with pytest.raises(HalocError, match="file not found"):
        load_arch("arch/eyeriss_17x17.yaml")


@needs_golden
def test_golden_mapping_targets_exist_in_the_v04_eyeriss() -> None:
    from haloc_hw.spec import load_mapping

    arch = load_arch(default_arch_path())
    mapping = load_mapping(GOLDEN / "map.yaml", arch)
    spatial = {d.target for d in mapping.directives if d.type == "spatial"}
    assert spatial == {"shared_glb", "DummyBuffer"}
    # the spatial factors of the golden mapping fit the fan-outs of our levels
    for d in mapping.directives:
        if d.type == "spatial":
            fx, fy = arch.fanout(arch.index(d.target))
            total = 1
            for v in d.factors.values():
                total *= v
            assert total <= fx * fy


def test_default_constraints_follow_the_design_folder(tmp_path: Path) -> None:
    """A design's own constraints.yaml wins; a Jinja2 top file without one keeps only its node
    constraints; a plain v0.3 arch gets the row-stationary file."""
    from haloc_hw.spec.shipped import default_constraints_paths

    ws = REPO / "arch" / "ws_array"
    assert default_constraints_paths(ws / "top.yaml.jinja2") == [(ws / "constraints.yaml").resolve()]
    lone = tmp_path / "top.yaml.jinja2"
    lone.write_text("variables: {}\n")
    assert default_constraints_paths(lone) == []
    assert default_constraints_paths(REPO / "arch" / "eyeriss.yaml") == [default_constraints_path(REPO / "arch" / "eyeriss.yaml")]


def test_custom_v04_design_prices_a_layer_without_naming_constraints() -> None:
    """`--arch arch/ws_array/top.yaml.jinja2` alone is enough: the row-stationary constraints
    name Eyeriss' levels and used to refuse this design."""
    from haloc_hw.cost.analytical.backend import AnalyticalCostModel
    from haloc_hw.workload import ConvShape

    model = AnalyticalCostModel.from_files(REPO / "arch" / "ws_array" / "top.yaml.jinja2")
    layer = ConvShape(C=16, M=32, R=3, S=3, P=8, Q=8)
    (cost,) = model.evaluate([layer])
    assert cost.energy_pJ > 0 and cost.cycles >= layer.macs / (16 * 16)  # at most one MAC per PE per cycle
