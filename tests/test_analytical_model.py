"""Hand-checked cases for the analytical model, the batch path, and its error messages.

Expected numbers in the small cases were worked out by hand from the rules of
``shared/TIMELOOP-MODEL.md`` (the derivations are in the comments), on a 4x4 PE array with
8-word scratchpads that is not the golden Eyeriss shape.
"""

from __future__ import annotations

import copy
import json
import dataclasses
import random
from pathlib import Path

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

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "timeloop-golden"

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
        mp = mapping_from_structure(structure, rows[b], model.arch)
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
    again = mapping_from_structure(structure, row, arch)
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
