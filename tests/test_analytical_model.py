"""Hand-checked cases for the analytical model, the batch path, and its error messages.

Expected numbers in the small cases were worked out by hand from the rules of
``shared/TIMELOOP-MODEL.md`` (the derivations are in the comments), on a 4x4 PE array with
8-word scratchpads that is not the golden Eyeriss shape.
"""

from __future__ import annotations

import copy
import json
import math
import dataclasses
import random

import numpy as np
import pytest

from haloc_hw.cost.analytical.model import AnalyticalModel, Evaluation
from haloc_hw.cost.analytical.nest import (
    MappingStructure,
    mapping_from_structure,
    structure_from_mapping,
)
from haloc_hw.errors import HalocError
from haloc_hw.spec.loader import arch_from_dict
from haloc_hw.spec.mapping import Directive, Mapping
from haloc_hw.spec.model import DATA_SPACES, ActionEnergy, EnergyTable
from haloc_hw.workload import ConvShape
from conftest import GOLDEN


TINY_DOC = {
    "architecture": {
        "version": 0.3,
        "subtree": [{
            "name": "sys",
            "local": [{"name": "DRAM", "class": "DRAM", "attributes": {"word-bits": 16, "block-size": 1}}],
            "subtree": [{
                "name": "chip",
                "local": [{"name": "glb", "class": "smartbuffer_SRAM",
                           "attributes": {"entries": 256, "word-bits": 16, "block-size": 1}}],
                "subtree": [{
                    "name": "PE[0..15]",
                    "local": [
                        {"name": "spad", "class": "smartbuffer_RF",
                         "attributes": {"entries": 8, "meshX": 4, "word-bits": 16, "block-size": 1}},
                        {"name": "mac", "class": "intmac", "attributes": {"meshX": 4, "datawidth": 16}},
                    ],
                }],
            }],
        }],
    }
}
TINY_ENERGY = EnergyTable(
    storage={"DRAM": ActionEnergy(100.0, 100.0, 100.0, 100.0), "glb": ActionEnergy(10.0, 12.0, 12.0, 12.0),
             "spad": ActionEnergy(1.0, 1.0, 1.0, 1.0)},
    compute=1.0,
)


def tiny_arch(**glb_attrs):
    doc = copy.deepcopy(TINY_DOC)
    doc["architecture"]["subtree"][0]["subtree"][0]["local"][0]["attributes"].update(glb_attrs)
    return arch_from_dict(doc)


def T(level: str, perm: str = "", **f: int) -> Directive:
    return Directive(target=level, type="temporal", factors=f, permutation=perm)


def SP(level: str, perm: str, split: int, **f: int) -> Directive:
    return Directive(target=level, type="spatial", factors=f, permutation=perm, split=split)


def K(level: str, *keep: str) -> Directive:
    return Directive(target=level, type="datatype", keep=keep, bypass=tuple(d for d in DATA_SPACES if d not in keep))


def counts(ev: Evaluation) -> dict:
    return {(lvl.name, ds): (st.reads, st.fills, st.updates) for lvl in ev.levels for ds, st in lvl.dataspaces.items()}


# --------------------------------------------------------------------------------------
# hand-checked small cases


def test_tiny_mesh_multicast_and_reduction() -> None:
    # C=2 M=2 R=3 P=4. Nest: spad R3 | glb X:M2 Y:C2, T:P4 | DRAM.
    # spad tiles W3 I3 O1; D into spad over P4: W 3 (irrelevant), I 3+3*1=6 (halo), O 1+3*1=4.
    # glb run {M2,C2}: W 4 groups -> 12; I 2 groups (C) -> 12, fills 24/4=6; O 2 groups (M) -> 8.
    # partitions O: 8 -> 8 -> 8*1/2 = 4: spad O reads 12-4=8, fills 4-4=0.
    shape = ConvShape(C=2, M=2, R=3, S=1, P=4, Q=1)
    mp = Mapping((K("spad", *DATA_SPACES), K("glb", *DATA_SPACES), K("DRAM", *DATA_SPACES),
                  T("spad", "R", R=3), SP("glb", "MC", 1, M=2, C=2), T("glb", "P", P=4), T("DRAM")))
    ev = AnalyticalModel(tiny_arch(), TINY_ENERGY).evaluate(shape, mp)
    assert ev.cycles == 12 and ev.mac_cycles == 12
    assert ev.computes == 48
    assert ev.utilization == pytest.approx(48 / (16 * 12))
    assert counts(ev) == {
        ("spad", "Weights"): (12, 3, 0), ("spad", "Inputs"): (12, 6, 0), ("spad", "Outputs"): (8, 0, 12),
        ("glb", "Weights"): (12, 12, 0), ("glb", "Inputs"): (12, 12, 0), ("glb", "Outputs"): (0, 0, 8),
        ("DRAM", "Weights"): (12, 0, 0), ("DRAM", "Inputs"): (12, 0, 0), ("DRAM", "Outputs"): (0, 0, 8),
    }
    spad = ev.level("spad")
    assert spad.utilized_instances == 4
    assert {ds: st.partition_size for ds, st in spad.dataspaces.items()} == {"Weights": 3, "Inputs": 6, "Outputs": 4}
    assert {ds: st.utilized_capacity for ds, st in spad.dataspaces.items()} == {"Weights": 3, "Inputs": 3, "Outputs": 1}
    assert ev.level("glb").dataspaces["Inputs"].utilized_capacity == 12
    # spad 4*(15+18+20)=212, glb 264+264+96=624, DRAM 3200, MAC 48
    assert ev.energy_pJ == pytest.approx(212 + 624 + 3200 + 48)
    assert ev.mac_energy_pJ == pytest.approx(48)
    cost = ev.to_cost()
    assert cost.cycles == 12 and cost.energy_pJ == pytest.approx(4084)
    js = ev.to_json()
    assert js["levels"]["spad"]["Outputs"] == {"reads": 8, "fills": 0, "updates": 12, "energy_pJ": pytest.approx(80)}
    assert js["cycles"] == 12 and js["computes"] == 48


def test_stride2_batch2_with_bypass() -> None:
    # N=2 R=3 P=3 Wstride=2; spad keeps W,O (bypasses Inputs), glb keeps I,O (bypasses Weights).
    # Nest: spad R3 | glb X:N2, T:P3 | DRAM. Input width extent (3-1)*2 + 3 = 7.
    # D into spad: W 3; I 3 + 2*partial(shift 2 of width 3)=3+2*2=7; O 1+2*1=3.
    # glb run {N2}: W 1 group, I 2, O 2. Inputs bypass at spad: factor 9*2/14 -> glb reads 18.
    shape = ConvShape(C=1, M=1, R=3, S=1, P=3, Q=1, N=2, Wstride=2)
    mp = Mapping((K("spad", "Weights", "Outputs"), K("glb", "Inputs", "Outputs"), K("DRAM", *DATA_SPACES),
                  T("spad", "R", R=3), SP("glb", "N", 1, N=2), T("glb", "P", P=3)))
    ev = AnalyticalModel(tiny_arch(), TINY_ENERGY).evaluate(shape, mp)
    assert ev.cycles == 9 and ev.computes == 18
    assert counts(ev) == {
        ("spad", "Weights"): (9, 3, 0), ("spad", "Outputs"): (6, 0, 9),
        ("glb", "Inputs"): (18, 14, 0), ("glb", "Outputs"): (0, 0, 6),
        ("DRAM", "Weights"): (3, 0, 0), ("DRAM", "Inputs"): (14, 0, 0), ("DRAM", "Outputs"): (0, 0, 6),
    }
    assert ev.level("glb").dataspaces["Inputs"].utilized_capacity == 14
    assert ev.level("spad").dataspaces["Outputs"].partition_size == 3
    assert ev.energy_pJ == pytest.approx(54 + 420 + 2300 + 18)


def test_depthwise_groups() -> None:
    # G=4 C=M=1 P=2: glb X:G4, spad T:P2. Every data space has a G axis -> no multicast.
    shape = ConvShape(C=1, M=1, R=1, S=1, P=2, Q=1, G=4)
    mp = Mapping((T("spad", "P", P=2), SP("glb", "G", 1, G=4)))
    ev = AnalyticalModel(tiny_arch(), TINY_ENERGY).evaluate(shape, mp)
    assert ev.cycles == 2 and ev.computes == 8
    assert counts(ev) == {
        ("spad", "Weights"): (2, 1, 0), ("spad", "Inputs"): (2, 2, 0), ("spad", "Outputs"): (0, 0, 2),
        ("glb", "Weights"): (4, 4, 0), ("glb", "Inputs"): (8, 8, 0), ("glb", "Outputs"): (0, 0, 8),
        ("DRAM", "Weights"): (4, 0, 0), ("DRAM", "Inputs"): (8, 0, 0), ("DRAM", "Outputs"): (0, 0, 8),
    }
    assert ev.energy_pJ == pytest.approx(36 + 360 + 2000 + 8)


def test_link_transfers_systolic_inputs() -> None:
    # R3 unrolled along X under a temporal P4 (stride 1): after each P step, PE r takes its
    # input from PE r+1's previous one. Inputs at glb: first visit 3 groups x 1; the type-1
    # visits (weight 3) reuse elements 0 and 1 -> 1 group, link transfers 2*3 = 6.
    # spad Inputs: peer = 6 / 3 instances = 2 -> reads 4+2, fills 2+2.
    shape = ConvShape(C=1, M=1, R=3, S=1, P=4, Q=1)
    mp = Mapping((SP("glb", "R", 1, R=3), T("glb", "P", P=4)))
    model = AnalyticalModel(tiny_arch(), TINY_ENERGY)
    ev = model.evaluate(shape, mp)
    assert ev.cycles == 4 and ev.computes == 12
    assert counts(ev) == {
        ("spad", "Weights"): (4, 1, 0), ("spad", "Inputs"): (6, 4, 0), ("spad", "Outputs"): (0, 0, 4),
        ("glb", "Weights"): (3, 3, 0), ("glb", "Inputs"): (6, 6, 0), ("glb", "Outputs"): (0, 0, 4),
        ("DRAM", "Weights"): (3, 0, 0), ("DRAM", "Inputs"): (6, 0, 0), ("DRAM", "Outputs"): (0, 0, 4),
    }
    assert ev.energy_pJ == pytest.approx(57 + 246 + 1300 + 12)
    assert model.fallback_rows >= 1


def test_irregular_multicast_diagonal_reuse() -> None:
    # R3 (X) and P2 (Y) unrolled together: Inputs offsets r+p take 4 distinct values
    # (groups of sizes 1,2,2,1), Weights 3 groups, Outputs 2 groups.
    shape = ConvShape(C=1, M=1, R=3, S=1, P=2, Q=1)
    mp = Mapping((SP("glb", "RP", 1, R=3, P=2),))
    ev = AnalyticalModel(tiny_arch(), TINY_ENERGY).evaluate(shape, mp)
    assert ev.cycles == 1 and ev.computes == 6
    assert counts(ev) == {
        ("spad", "Weights"): (1, 1, 0), ("spad", "Inputs"): (1, 1, 0), ("spad", "Outputs"): (0, 0, 1),
        ("glb", "Weights"): (3, 3, 0), ("glb", "Inputs"): (4, 4, 0), ("glb", "Outputs"): (0, 0, 2),
        ("DRAM", "Weights"): (3, 0, 0), ("DRAM", "Inputs"): (4, 0, 0), ("DRAM", "Outputs"): (0, 0, 2),
    }
    assert ev.energy_pJ == pytest.approx(30 + 178 + 900 + 6)


def test_bandwidth_throttling_tiny() -> None:
    # The first tiny case reads 24 words from the glb in 12 cycles (2/cycle) and writes 32
    # (fills 24 + updates 8): read bandwidth 1.5 -> 0.75 -> 16 cycles; shared 4 -> 14 cycles.
    shape = ConvShape(C=2, M=2, R=3, S=1, P=4, Q=1)
    mp = Mapping((T("spad", "R", R=3), SP("glb", "MC", 1, M=2, C=2), T("glb", "P", P=4)))
    ev = AnalyticalModel(tiny_arch(read_bandwidth=1.5), TINY_ENERGY).evaluate(shape, mp)
    assert ev.cycles == 16
    assert ev.level("glb").throttling == pytest.approx(0.75)
    assert ev.level("spad").cycles == 12
    ev = AnalyticalModel(tiny_arch(shared_bandwidth=4), TINY_ENERGY).evaluate(shape, mp)
    assert ev.cycles == 14
    assert ev.utilization == pytest.approx(48 / (16 * 14))


# --------------------------------------------------------------------------------------
# golden architecture: throttling example and error messages


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.is_dir():
        pytest.skip(f"golden Timeloop runs not found at {GOLDEN}")
    from haloc_hw.spec.constraints import load_mapping
    from haloc_hw.spec.energy import load_energy_table
    from haloc_hw.spec.loader import load_arch
    from haloc_hw.workload import load_problem

    case = GOLDEN / "r18_l3"
    arch = load_arch(case / "arch.yaml")
    return arch, load_energy_table(case / "ERT.yaml", arch), load_mapping(case / "map.yaml", arch), load_problem(case / "problem.yaml")


GOLDEN_KEEP = (K("psum_spad", "Outputs"), K("weights_spad", "Weights"), K("ifmap_spad", "Inputs"), K("DummyBuffer"),
               K("shared_glb", "Inputs", "Outputs"), K("DRAM", *DATA_SPACES))


def test_throttled_glb_example(golden) -> None:
    # TIMELOOP-MODEL.md section 6: Timeloop prints 1,818,880 cycles (MAC 688,128).
    arch, energy, _, _ = golden
    shape = ConvShape(C=64, M=64, R=3, S=3, P=56, Q=56)
    mp = Mapping(GOLDEN_KEEP + (
        T("psum_spad", "M", M=4), T("weights_spad", "RC", R=3, C=4), SP("DummyBuffer", "SC", 0, S=3, C=4),
        SP("shared_glb", "Q", 1, Q=14), T("shared_glb", "CP", C=2, P=56), T("DRAM", "MQC", M=16, Q=4, C=2)))
    ev = AnalyticalModel(arch, energy).evaluate(shape, mp)
    assert ev.mac_cycles == 688128
    assert ev.cycles == 1818880
    assert ev.level("shared_glb").throttling == pytest.approx(0.378, abs=5e-4)
    assert ev.level("shared_glb").cycles == 1818880


def _with(mapping: Mapping, *replace: Directive) -> Mapping:
    keys = {(d.target, d.type) for d in replace}
    return Mapping(tuple(d for d in mapping.directives if (d.target, d.type) not in keys) + replace)


def test_capacity_overflow_names_level_space_and_amount(golden) -> None:
    arch, energy, mapping, shape = golden
    # C8 in the weights spad and M16 in the psum spad: weights tile C8 x M16 x R3 = 384 > 192 words.
    bad = _with(mapping, T("weights_spad", "CRMSNPQ", C=8, R=3), T("DRAM", "CMRSNPQ", C=8, M=1),
                T("psum_spad", "MCRSNPQ", M=16))
    with pytest.raises(HalocError) as err:
        AnalyticalModel(arch, energy).evaluate(shape, bad)
    msg = str(err.value)
    assert "weights_spad" in msg and "Weights 384" in msg and "overflows by 192 words" in msg


def test_factor_product_error_names_dimension(golden) -> None:
    arch, energy, mapping, shape = golden
    bad = _with(mapping, T("DRAM", "CMRSNPQ", C=8, M=2))
    with pytest.raises(HalocError, match="dimension C multiply to 128.*C=256"):
        AnalyticalModel(arch, energy).evaluate(shape, bad)


def test_mesh_overflow_and_unknown_level(golden) -> None:
    arch, energy, mapping, shape = golden
    # 15 > 14 X positions below the glb
    bad = _with(mapping, SP("shared_glb", "QCMRSNP", 1, Q=14, M=2), T("DRAM", "CMRSNPQ", C=16, M=1))
    with pytest.raises(HalocError, match="do not fit the array"):
        AnalyticalModel(arch, energy).evaluate(shape, bad)
    bad = Mapping(mapping.directives + (T("L2", "C"),))
    with pytest.raises(HalocError, match="unknown level 'L2'"):
        AnalyticalModel(arch, energy).evaluate(shape, bad)


def test_first_read_elision_off(golden) -> None:
    arch, energy, mapping, shape = golden
    ev = AnalyticalModel(arch, energy, first_read_elision=False).evaluate(shape, mapping)
    # TIMELOOP-MODEL.md section 7 with P not subtracted: psum reads = CA, fills = PAS.
    st = ev.level("psum_spad").dataspaces["Outputs"]
    assert (st.reads, st.fills, st.updates) == (688128, 57344, 688128)


# --------------------------------------------------------------------------------------
# batch path


def _random_factorisation(n: int, k: int, rng: random.Random) -> list[int]:
    out = [1] * k
    p, m = 2, n
    while m > 1:
        while m % p == 0:
            out[rng.randrange(k)] *= p
            m //= p
        p += 1
    return out


def _random_rows(structure: MappingStructure, shape: ConvShape, B: int, rng: random.Random,
                 spatial_bias: float = 0.5) -> np.ndarray:
    rows = np.ones((B, len(structure.slots)), dtype=np.int64)
    by_dim: dict[str, list[int]] = {}
    for k, slot in enumerate(structure.slots):
        by_dim.setdefault(slot.dim, []).append(k)
    for b in range(B):
        for d, ks in by_dim.items():
            # bias some primes to spatial slots so that many rows fit the mesh
            pick = [k for k in ks if structure.slots[k].kind == "temporal" or rng.random() < spatial_bias]
            for k, f in zip(pick, _random_factorisation(shape.dims[d], len(pick), rng)):
                rows[b, k] = f
    return rows


def _check_batch_against_single(model: AnalyticalModel, shape: ConvShape, structure: MappingStructure,
                                rows: np.ndarray) -> int:
    res = model.evaluate_batch(shape, structure, rows)
    checked = 0
    for b in range(rows.shape[0]):
        mp = mapping_from_structure(structure, rows[b])
        if res.valid[b]:
            ev = model.evaluate(shape, mp)
            assert ev.cycles == res.cycles[b]
            assert ev.energy_pJ == pytest.approx(res.energy_pJ[b], rel=1e-12)
            checked += 1
        else:
            with pytest.raises(HalocError):
                model.evaluate(shape, mp)
    return checked


def test_batch_equals_single_on_random_golden_mappings(golden) -> None:
    arch, energy, mapping, _ = golden
    rng = random.Random(7)
    model = AnalyticalModel(arch, energy)
    shapes = [ConvShape(C=16, M=8, R=3, S=3, P=6, Q=6), ConvShape(C=8, M=4, R=3, S=3, P=8, Q=4, N=2, Wstride=2),
              ConvShape(C=1, M=1, R=3, S=3, P=6, Q=6, G=8)]
    checked = 0
    for shape in shapes:
        dims = tuple(shape.dims)
        for _ in range(3):
            base = {"psum_spad": K("psum_spad", "Outputs"), "weights_spad": K("weights_spad", "Weights"),
                    "ifmap_spad": K("ifmap_spad", "Inputs"), "DummyBuffer": K("DummyBuffer"),
                    "shared_glb": K("shared_glb", *rng.sample(DATA_SPACES, rng.randint(1, 3))),
                    "DRAM": K("DRAM", *DATA_SPACES)}
            perms = [T(lvl, "".join(rng.sample(dims, len(dims)))) for lvl in arch.level_names]
            sps = [SP("DummyBuffer", "".join(rng.sample(dims, len(dims))), rng.randint(0, len(dims))),
                   SP("shared_glb", "".join(rng.sample(dims, len(dims))), rng.randint(0, len(dims)))]
            structure, _ = structure_from_mapping(Mapping(tuple(base.values()) + tuple(perms) + tuple(sps)), arch, shape)
            rows = _random_rows(structure, shape, 40, rng)
            checked += _check_batch_against_single(model, shape, structure, rows)
    assert checked >= 30  # enough valid rows were compared


def test_batch_equals_single_with_link_transfers_and_diagonal_groups() -> None:
    """Rows that need the per-row fallbacks, mixed with ordinary rows, in one batch."""
    arch = tiny_arch(entries=100000)
    arch = dataclasses.replace(arch, levels=tuple(dataclasses.replace(lvl, size_words=None) if lvl.name == "spad"
                                                  else lvl for lvl in arch.levels))
    model = AnalyticalModel(arch, TINY_ENERGY)
    rng = random.Random(3)
    shape = ConvShape(C=2, M=2, R=3, S=3, P=8, Q=4)
    for sperm, tperm in (("RPMC", "PRQC"), ("SQRC", "QSPM"), ("PRCS", "RMPQ")):
        mp = Mapping((SP("glb", sperm, 2), T("glb", tperm), T("spad", "".join(rng.sample(list(shape.dims), 7)))))
        structure, _ = structure_from_mapping(mp, arch, shape)
        rows = _random_rows(structure, shape, 60, rng, spatial_bias=0.8)
        before = model.fallback_rows
        assert _check_batch_against_single(model, shape, structure, rows) > 20
        assert model.fallback_rows > before


def test_structure_round_trip(golden) -> None:
    arch, energy, mapping, shape = golden
    structure, row = structure_from_mapping(mapping, arch, shape)
    again = mapping_from_structure(structure, row)
    s2, row2 = structure_from_mapping(again, arch, shape)
    assert s2 == structure and (row2 == row).all()
    assert AnalyticalModel(arch, energy).evaluate(shape, again).cycles == 688128
    # a structure with only the slots that vary gives the same result
    keep = tuple(k for k, v in enumerate(row) if v != 1)
    small = structure.with_slots(tuple(structure.slots[k] for k in keep))
    res = AnalyticalModel(arch, energy).evaluate_batch(shape, small, row[list(keep)][None, :], tile_sizes=True)
    assert res.cycles[0] == 688128 and res.valid[0]
    # tile sizes: outermost first; shared_glb Inputs 4096, Outputs 25088, Weights bypassed
    glb = arch.index("shared_glb")
    assert list(res.tile_sizes[0, glb]) == [0, 4096, 25088]


def test_batch_marks_capacity_and_mesh_invalid(golden) -> None:
    arch, energy, mapping, shape = golden
    structure, row = structure_from_mapping(mapping, arch, shape)
    rows = np.stack([row, row, row, row])
    slot = structure.slot_index
    # row 1: weights tile C64 x M16 x R3 = 3072 words > 192 (C16 moved in from DRAM, M8 -> M16 at psum)
    rows[1, slot("weights_spad", "temporal", "C")], rows[1, slot("DRAM", "temporal", "C")] = 64, 1
    rows[1, slot("psum_spad", "temporal", "M")], rows[1, slot("shared_glb", "temporal", "M")] = 16, 8
    # row 2: Q7 on X and P2 at spatial position 6 of "QCMRSNP" (split 1) -> Y; the glb's children are
    # a 14x1 row of DummyBuffers, so 2 Y positions do not fit
    rows[2, slot("shared_glb", "spatial", "Q")], rows[2, slot("shared_glb", "temporal", "Q")] = 7, 2
    rows[2, slot("shared_glb", "spatial", "P")], rows[2, slot("shared_glb", "temporal", "P")] = 2, 7
    # row 3: Q7 on X only -> fits
    rows[3, slot("shared_glb", "spatial", "Q")], rows[3, slot("shared_glb", "temporal", "Q")] = 7, 2
    model = AnalyticalModel(arch, energy)
    res = model.evaluate_batch(shape, structure, rows)
    assert list(res.valid) == [True, False, False, True]
    assert not res.capacity_ok[1] and res.mesh_ok[1]
    assert res.capacity_ok[2] and not res.mesh_ok[2]
    assert res.cycles[3] == 2 * res.cycles[0]  # half the X positions, twice the cycles
    unchecked = model.evaluate_batch(shape, structure, rows, check_capacity=False)
    assert list(unchecked.valid) == [True, True, False, True]
    bad = rows.copy()
    bad[0, slot("DRAM", "temporal", "C")] = 3
    with pytest.raises(HalocError, match="dimension C multiply to 48.*row 0"):
        model.evaluate_batch(shape, structure, bad)


# --------------------------------------------------------------------------------------
# reports


def test_stats_report_reads_back(golden, tmp_path) -> None:
    from haloc_hw.cost.analytical.report import stats_json, write_stats
    from haloc_hw.cost.stats_parser import parse_stats

    arch, energy, mapping, shape = golden
    ev = AnalyticalModel(arch, energy).evaluate(shape, mapping)
    txt, js = write_stats(ev, tmp_path / "r18_l3", title="r18_l3", arch=arch, energy=energy)
    parsed = parse_stats(txt)
    assert parsed.cycles == 688128 and parsed.computes == ev.computes
    assert parsed.energy_pJ == pytest.approx(ev.energy_pJ, rel=1e-9)
    glb = parsed.level("shared_glb").dataspaces["Inputs"]
    assert (glb.reads, glb.fills, glb.partition_size) == (5505024, 131072, 65536)
    psum = parsed.level("psum_spad").dataspaces["Outputs"]
    assert (psum.reads, psum.updates, psum.fills, psum.temporal_reductions) == (684544, 688128, 53760, 684544)
    doc = json.loads(js.read_text())
    assert doc == json.loads(json.dumps(stats_json(ev)))
    assert doc["levels"][0]["name"] == "DRAM" and doc["levels"][0]["dataspaces"]["Weights"]["reads"] == 589824


# --------------------------------------------------------------------------------------
# an independent scalar reference of the same rules, written the way the rules read:
# bound-1 loops dropped, a dummy temporal loop per empty level, explicit multicast
# histograms built by grouping PE offsets, explicit bypass scaling of those histograms.


def _projections(shape: ConvShape) -> dict[str, tuple[list[list[tuple[str, int]]], bool]]:
    g = [[("G", 1)]] if shape.G > 1 else []
    return {
        "Weights": (g + [[("C", 1)], [("M", 1)], [("R", 1)], [("S", 1)]], False),
        "Inputs": ([[("N", 1)]] + g + [[("C", 1)], [("R", shape.Wdilation), ("P", shape.Wstride)],
                                       [("S", shape.Hdilation), ("Q", shape.Hstride)]], False),
        "Outputs": ([[("N", 1)]] + g + [[("M", 1)], [("Q", 1)], [("P", 1)]], True),
    }


def reference_evaluate(arch, energy: EnergyTable, shape: ConvShape, mapping: Mapping) -> dict:
    dims = list(shape.dims)
    S = len(arch.levels)
    lv = [arch.levels[S - 1 - s] for s in range(S)]  # innermost first
    loops = []  # dicts: level, kind, dim, n
    boundary, master = [], []
    for s in range(S):
        name = lv[s].name
        ai = S - 1 - s
        fx, fy = arch.fanout(ai)
        sp = mapping.get(name, "spatial")
        if fx * fy > 1 and sp is not None:
            perm = (sp.permutation or "") + "".join(d for d in dims if d not in (sp.permutation or ""))
            split = len(dims) if sp.split is None else sp.split
            first = None
            for pos, d in enumerate(perm):
                n = int(sp.factors.get(d, 1))
                if n > 1:
                    loops.append({"level": s, "kind": "X" if pos < split else "Y", "dim": d, "n": n})
            run = [i for i, lp in enumerate(loops) if lp["level"] == s]
            master.append(run[-1] if run else None)
        else:
            master.append(None)
        tp = mapping.get(name, "temporal")
        perm = ((tp.permutation if tp else "") or "")
        perm += "".join(d for d in dims if d not in perm)
        added = False
        for d in perm:
            n = int(tp.factors.get(d, 1)) if tp else 1
            if n > 1:
                loops.append({"level": s, "kind": "T", "dim": d, "n": n})
                added = True
        if not added:
            loops.append({"level": s, "kind": "T", "dim": dims[-1], "n": 1})
        boundary.append(len(loops) - 1)
    ext, steps, exts = {d: 1 for d in dims}, [], []
    for lp in loops:
        steps.append(ext[lp["dim"]])
        ext[lp["dim"]] *= lp["n"]
        exts.append(dict(ext))
    C = math.prod(lp["n"] for lp in loops if lp["kind"] == "T")
    spatial_all = math.prod(lp["n"] for lp in loops if lp["kind"] != "T")
    keep = []
    for s in range(S):
        dt = mapping.get(lv[s].name, "datatype")
        if dt is None:
            keep.append(set() if lv[s].fanout_only else set(DATA_SPACES))
        else:
            keep.append(set(dt.keep) if dt.keep is not None else set(DATA_SPACES) - set(dt.bypass or ()))
    inst = [math.prod(lp["n"] for lp in loops if lp["kind"] != "T" and lp["level"] > s) for s in range(S)]
    xe = [math.prod(lp["n"] for lp in loops if lp["kind"] == "X" and lp["level"] > s) for s in range(S)]
    ye = [math.prod(lp["n"] for lp in loops if lp["kind"] == "Y" and lp["level"] > s) for s in range(S)]
    out: dict = {"levels": {}, "C": C, "computes": C * spatial_all}
    energy_total = C * spatial_all * energy.compute
    rw_traffic = [[0.0, 0.0] for _ in range(S)]
    for ds, (axes, rw) in _projections(shape).items():
        def tile(e):
            return [1 + sum(c * (e[d] - 1) for d, c in terms) for terms in axes]

        def proj(v):
            return tuple(sum(c * v.get(d, 0) for d, c in terms) for terms in axes)

        size = [math.prod(tile(exts[boundary[s]])) for s in range(S)]
        hist = [dict() for _ in range(S)]
        fan = [1] * S
        link = [0.0] * S
        hist[0] = {(1, 1): float(C)}
        for s in range(S - 1):
            p = s + 1
            E = tile(exts[boundary[s]])
            Esz = math.prod(E)
            part = lambda x: Esz - math.prod(max(0, e - abs(xi)) for e, xi in zip(E, x))  # noqa: E731
            Tl = [(loops[i]["n"], proj({loops[i]["dim"]: steps[i]})) for i in range(boundary[s] + 1, len(loops))
                  if loops[i]["kind"] == "T" and loops[i]["n"] >= 2]
            visits = [(None, Esz, 1, None)]
            D = Esz
            if Tl:
                tau1 = Tl[0][1]
                p1 = part(tau1)
                cum = tuple(0 for _ in axes)
                info = []
                for j, (n, tau) in enumerate(Tl):
                    x = tuple(a - b for a, b in zip(tau, cum))
                    cum = tuple(a + b for a, b in zip(cum, tau))
                    W = (n - 1) * math.prod(m for m, _ in Tl[j + 1:])
                    delta = p1 if x == tau1 else Esz
                    D += W * delta
                    info.append((x, W, delta))
                n1 = Tl[0][0]
                visits.append((tau1, p1, n1 - 1, Esz))
                for x, W, delta in info[1:]:
                    visits.append((tau1, p1, (n1 - 1) * W, delta))
                    visits.append((x, delta, W, p1))
            run = [i for i, lp in enumerate(loops) if lp["level"] == p and lp["kind"] != "T"]
            fan[p] = math.prod(loops[i]["n"] for i in run)
            elems = []
            for idx in range(fan[p]):
                v, rem = {}, idx
                for i in run:
                    v[loops[i]["dim"]] = v.get(loops[i]["dim"], 0) + (rem % loops[i]["n"]) * steps[i]
                    rem //= loops[i]["n"]
                elems.append(proj(v))
            fx, fy = arch.fanout(S - 1 - p)
            h = max(fx, math.prod(loops[i]["n"] for i in run if loops[i]["kind"] == "X"))
            vv = max(fy, math.prod(loops[i]["n"] for i in run if loops[i]["kind"] == "Y"))

            def grouped(members):
                sizes: dict = {}
                for a in members:
                    sizes[elems[a]] = sizes.get(elems[a], 0) + 1
                hist_v: dict = {}
                for g in sizes.values():
                    hist_v[g] = hist_v.get(g, 0) + 1
                return hist_v  # group size -> count

            everyone = grouped(range(fan[p]))
            for x, sz, w, pred in visits:
                if sz == 0 or w == 0:
                    continue
                use = everyone
                if x is not None and pred == sz and fan[p] > 1:
                    reused = set()
                    for a in range(fan[p]):
                        ax_, ay_ = a % h, a // h
                        for qx, qy in ((ax_ + 1, ay_), (ax_ - 1, ay_), (ax_, ay_ + 1), (ax_, ay_ - 1)):
                            q = qy * h + qx
                            if 0 <= qx < h and 0 <= qy < vv and q < fan[p] and \
                                    tuple(o - oa for o, oa in zip(elems[q], elems[a])) == x:
                                reused.add(a)
                    rest = grouped([a for a in range(fan[p]) if a not in reused])
                    if sum(rest.values()) < sum(everyone.values()):
                        use = rest
                        link[p] += len(reused) * sz * w
                for g, c in use.items():
                    hist[p][(g, c)] = hist[p].get((g, c), 0.0) + c * sz * w
            assert abs(sum(g * v for (g, _), v in hist[p].items()) - (fan[p] * D if not link[p] else 0)) < 1e-6 or link[p]
        CA = [sum(h_.values()) for h_ in hist]
        PAS = [sum(g * v for (g, _), v in hist[s + 1].items()) / fan[s + 1] if s + 1 < S else 0.0 for s in range(S)]
        P = [0] * S
        P[S - 1] = size[S - 1]
        for s in range(S - 2, -1, -1):
            den = math.prod(tile(exts[master[s + 1]])) if master[s + 1] is not None else size[s]
            P[s] = P[s + 1] * size[s] // den
        sz = list(size)
        for s in range(S - 1):
            if ds in keep[s]:
                continue
            f = CA[s] * fan[s + 1] / sum(g * v for (g, _), v in hist[s + 1].items())
            hist[s + 1] = {k: v * f for k, v in hist[s + 1].items()}
            CA[s + 1] = sum(hist[s + 1].values())
            link[s + 1] = 0.0
            sz[s], CA[s], PAS[s], P[s] = 0, 0.0, 0.0, 0
        top = None
        for s in range(S - 1, -1, -1):
            if ds not in keep[s]:
                sz[s], CA[s], PAS[s], P[s], link[s] = 0, 0.0, 0.0, 0, 0.0
            else:
                PAS[s], top = 0.0, s
                break
        peer = [0.0] * S
        for s in range(S - 1, 0, -1):
            if link[s]:
                peer[s - 1] += link[s] / inst[s - 1]
        rnd = lambda v: math.floor(v + 0.5)  # noqa: E731  (all values are >= 0)
        for s in range(S):
            if sz[s] == 0:
                continue
            if rw:
                upd, rd = rnd(CA[s]), rnd(CA[s] + peer[s] - P[s])
                fl = rnd(PAS[s] + peer[s]) if s == top else rnd(PAS[s] + peer[s] - P[s])
            else:
                upd, rd, fl = 0, rnd(CA[s] + peer[s]), int(PAS[s] + peer[s])
            ae = energy.for_level(lv[s].name)
            bs = lv[s].block_size
            e = (-(-rd // bs) * ae.read + -(-fl // bs) * ae.fill + -(-upd // bs) * ae.update) * inst[s]
            energy_total += e
            rw_traffic[s][0] += rd / C
            rw_traffic[s][1] += (fl + upd) / C
            out["levels"][(lv[s].name, ds)] = (P[s], sz[s], inst[s], rd, fl, upd, e)
    cycles = C
    for s in range(S):
        r, w = rw_traffic[s]
        sd = 1.0
        for bw, need in ((lv[s].read_bandwidth, r), (lv[s].write_bandwidth, w), (lv[s].shared_bandwidth, r + w)):
            if bw is not None and bw < need:
                sd = min(sd, bw / need)
        cycles = max(cycles, math.ceil(C / sd))
    out["cycles"], out["energy"] = cycles, energy_total
    out["valid"] = all(
        (lv[s].effective_size is None or lv[s].is_dram or sum(size_ for (n_, _), (_, size_, *_r) in out["levels"].items()
                                                               if n_ == lv[s].name) <= lv[s].effective_size)
        and inst[s] <= lv[s].instances and xe[s] <= lv[s].mesh_x and ye[s] <= lv[s].mesh_y for s in range(S))
    out["valid"] &= (math.prod(lp["n"] for lp in loops if lp["kind"] == "X") <= arch.arithmetic.mesh_x
                     and math.prod(lp["n"] for lp in loops if lp["kind"] == "Y") <= arch.arithmetic.mesh_y)
    return out


def _compare_with_reference(model: AnalyticalModel, shape: ConvShape, structure: MappingStructure,
                            rows: np.ndarray) -> int:
    res = model.evaluate_batch(shape, structure, rows, check_capacity=True)
    n_valid = 0
    for b in range(rows.shape[0]):
        mp = mapping_from_structure(structure, rows[b])
        ref = reference_evaluate(model.arch, model.energy, shape, mp)
        assert bool(res.valid[b]) == ref["valid"], b
        if not ref["valid"]:
            continue
        n_valid += 1
        ev = model.evaluate(shape, mp)
        got = {(lvl.name, ds): (st.partition_size, st.utilized_capacity, st.utilized_instances, st.reads,
                                st.fills, st.updates, st.energy_pJ)
               for lvl in ev.levels for ds, st in lvl.dataspaces.items()}
        assert got.keys() == ref["levels"].keys()
        for k, v in ref["levels"].items():
            assert got[k][:6] == v[:6], (k, got[k], v)
            assert got[k][6] == pytest.approx(v[6], rel=1e-9, abs=1e-9)
        assert ev.cycles == ref["cycles"] == res.cycles[b]
        assert ev.energy_pJ == pytest.approx(ref["energy"], rel=1e-9)
    return n_valid


@pytest.mark.parametrize("seed", [1, 2])
def test_against_scalar_reference_on_random_mappings(golden, seed: int) -> None:
    arch, energy, _, _ = golden
    rng = random.Random(seed)
    model = AnalyticalModel(arch, energy)
    shapes = [ConvShape(C=8, M=8, R=3, S=3, P=6, Q=6), ConvShape(C=4, M=4, R=3, S=3, P=5, Q=4, N=2, Wstride=2, Hstride=2),
              ConvShape(C=1, M=1, R=3, S=3, P=4, Q=4, G=6, Wdilation=2), ConvShape(C=6, M=4, R=1, S=1, P=7, Q=7)]
    total = 0
    for shape in shapes:
        dims = tuple(shape.dims)
        for _ in range(3):
            keeps = [K("psum_spad", *rng.sample(DATA_SPACES, rng.randint(0, 2))),
                     K("weights_spad", *rng.sample(DATA_SPACES, rng.randint(0, 2))),
                     K("ifmap_spad", *rng.sample(DATA_SPACES, rng.randint(0, 2))), K("DummyBuffer"),
                     K("shared_glb", *rng.sample(DATA_SPACES, rng.randint(0, 3))), K("DRAM", *DATA_SPACES)]
            perms = [T(lvl, "".join(rng.sample(dims, len(dims)))) for lvl in arch.level_names]
            sps = [SP("DummyBuffer", "".join(rng.sample(dims, len(dims))), rng.randint(0, len(dims))),
                   SP("shared_glb", "".join(rng.sample(dims, len(dims))), rng.randint(0, len(dims)))]
            structure, _ = structure_from_mapping(Mapping(tuple(keeps + perms + sps)), arch, shape)
            rows = _random_rows(structure, shape, 25, rng, spatial_bias=0.3)
            total += _compare_with_reference(model, shape, structure, rows)
    assert total >= 20


def test_against_scalar_reference_with_link_transfers() -> None:
    arch = tiny_arch()
    arch = dataclasses.replace(arch, levels=tuple(dataclasses.replace(lvl, size_words=None) if lvl.name != "DRAM"
                                                  else lvl for lvl in arch.levels))
    model = AnalyticalModel(arch, TINY_ENERGY)
    rng = random.Random(11)
    total = 0
    for shape in (ConvShape(C=2, M=2, R=3, S=3, P=8, Q=4), ConvShape(C=2, M=1, R=3, S=2, P=6, Q=4, Wstride=2),
                  ConvShape(C=1, M=2, R=3, S=3, P=4, Q=6, Wdilation=2, N=2)):
        for sperm, tperm in (("RPMC", "PRQC"), ("SQRC", "QSPM"), ("PRCS", "RMPQ"), ("RSPQ", "PQRS")):
            keeps = (K("spad", *rng.sample(DATA_SPACES, rng.randint(1, 3))), K("glb", *DATA_SPACES))
            mp = Mapping(keeps + (SP("glb", sperm, rng.randint(0, 4)), T("glb", tperm),
                                  T("spad", "".join(rng.sample(list(shape.dims), len(shape.dims))))))
            structure, _ = structure_from_mapping(mp, arch, shape)
            rows = _random_rows(structure, shape, 25, rng, spatial_bias=0.8)
            total += _compare_with_reference(model, shape, structure, rows)
    assert total >= 50
