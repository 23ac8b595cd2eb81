"""General problems (haloc_hw.problem) in the model, the map space and the mapper.

Counts on the two-level design (tests/data) are derived by hand from the rules of
shared/TIMELOOP-MODEL.md (§3.2 deliveries, §4.6 first-read elision), not from our output.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from haloc_hw.cost.analytical.mapper import Mapper, MapperSettings
from haloc_hw.cost.analytical.mapspace import MapSpace
from haloc_hw.cost.analytical.model import AnalyticalModel
from haloc_hw.cost.analytical.nest import structure_from_mapping
from haloc_hw.cost.analytical.report import stats_json, stats_text
from haloc_hw.errors import HalocError
from haloc_hw.problem import Problem, as_conv_shape, as_problem, load_workload, problem_from_doc, read_problem
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import arch_from_dict, load_arch
from haloc_hw.spec.mapping import Constraints, Directive, Mapping
from haloc_hw.spec.model import ActionEnergy, EnergyTable
from haloc_hw.workload import ConvShape, load_problem, problem_yaml
from conftest import GOLDEN

DATA = Path(__file__).resolve().parent / "data"
PROBLEMS = DATA / "problems"


def T(level: str, perm: str = "", **f: int) -> Directive:
    return Directive(target=level, type="temporal", factors=f, permutation=perm)


def SP(level: str, perm: str, split: int, **f: int) -> Directive:
    return Directive(target=level, type="spatial", factors=f, permutation=perm, split=split)


def counts(ev) -> dict:
    return {(lvl.name, ds): (st.reads, st.fills, st.updates) for lvl in ev.levels for ds, st in lvl.dataspaces.items()}


@pytest.fixture(scope="module")
def two_level():
    arch = load_arch(DATA / "two_level.arch.yaml")
    return arch, load_energy_table(DATA / "two_level.ert.yaml", arch)


# ------------------------------------------------------------------ reading


def test_reads_v3_and_v4_files_with_their_projections():
    conv = read_problem(PROBLEMS / "conv1d.v4.yaml")
    assert conv.dims == {"R": 3, "P": 6} and conv.macs == 18
    assert conv.data_space("Inputs").projection == ((("R", 1), ("P", 1)),)
    assert [t.read_write for t in conv.data_spaces] == [False, False, True]
    mm = read_problem(PROBLEMS / "matmul.v3.yaml")
    assert mm.space_names == ("A", "B", "Z") and mm.data_space("Z").read_write
    assert mm.relevant("K") == frozenset({"A", "B"}) and mm.relevant("N") == frozenset({"B", "Z"})
    dot = read_problem(PROBLEMS / "dotprod.yaml")
    assert dot.data_space("Z").projection == () and dot.data_space("A").projection == ((("K", 1),),)
    dil = read_problem(PROBLEMS / "conv1d_oc_dilated.yaml")
    assert dil.data_space("Inputs").projection == ((("R", 2), ("P", 1)),)


def test_a_cnn_layer_file_is_a_conv_shape_and_converts_exactly(tmp_path):
    shape = ConvShape(C=3, M=8, R=3, S=5, P=7, Q=9, N=2, Wstride=2, Hdilation=2)
    for dialect in ("v3", "v4"):
        path = tmp_path / f"p_{dialect}.yaml"
        path.write_text(problem_yaml(shape, dialect))
        assert load_workload(path) == shape
        prob = read_problem(path)
        assert prob == as_problem(shape) and as_conv_shape(prob) == shape
    depthwise = ConvShape(C=1, M=1, R=3, S=3, P=14, Q=14, G=32)
    assert as_conv_shape(as_problem(depthwise)) == depthwise
    assert shape.to_problem() == as_problem(shape)


def test_cnn_names_with_other_projections_are_not_a_convolution(tmp_path):
    # the CNN-Layer dimensions, but Inputs ignore the sliding window: not a convolution
    text = problem_yaml(ConvShape(C=2, M=2, R=3, S=1, P=4, Q=1), "v4").replace(
        "- - R\n          - Wdilation\n        - - P\n          - Wstride", "- - P")
    path = tmp_path / "fake.yaml"
    path.write_text(text)
    with pytest.raises(HalocError, match="not those of a CNN layer") as info:
        load_problem(path)
    assert str(path) in str(info.value)
    prob = load_workload(path)
    assert isinstance(prob, Problem) and prob.data_space("Inputs").projection[2] == (("P", 1),)


@pytest.mark.parametrize(("edit", "match"), [
    ({"projection": [[["X"]]]}, "unknown dimension 'X'"),
    ({"projection": [[["R", "Hstride"]]]}, "unknown coefficient 'Hstride'"),
    ({"projection": ["R**2"]}, "construct"),
    ({"projection": ["R*P"]}, "exactly one dimension"),
])
def test_bad_projections_name_the_construct(tmp_path, edit, match):
    doc = {"shape": {"name": "x", "dimensions": ["R", "P"],
                     "data_spaces": [{"name": "W", **edit}, {"name": "O", "projection": [[["P"]]], "read_write": True}]},
           "instance": {"R": 3, "P": 4}}
    with pytest.raises(HalocError, match=match) as info:
        problem_from_doc(doc, file=tmp_path / "p.yaml")
    assert "p.yaml" in str(info.value) and "projection" in info.value.key


@pytest.mark.parametrize(("doc", "match"), [
    ({"shape": {"dimensions": ["RR"], "data_spaces": [{"name": "W", "projection": [[["RR"]]]}]}, "instance": {"RR": 2}},
     "more than one character"),
    ({"shape": {"dimensions": ["R"], "data_spaces": [{"name": "W", "projection": [[["R"]]]}]}, "instance": {}},
     "R missing"),
    ({"shape": {"dimensions": ["R"], "coefficients": [{"name": "c", "default": 0}],
                "data_spaces": [{"name": "W", "projection": [[["R", "c"]]]}]}, "instance": {"R": 2}},
     "coefficient 0"),
    ({"shape": {"dimensions": ["R"], "data_spaces": [{"name": "W", "projection": [[["R"]]]}]},
      "instance": {"R": 2, "densities": {"W": 0.5}}}, "dense workloads only"),
])
def test_bad_problems(doc, match):
    with pytest.raises(HalocError, match=match):
        problem_from_doc(doc)


def test_extra_instance_keys_and_dense_densities_are_accepted():
    doc = {"shape": {"dimensions": ["R"], "data_spaces": [{"name": "W", "projection": [[["R"]]]}]},
           "instance": {"R": 2, "H": 224, "densities": {"W": {"density": 1.0}}}}
    assert problem_from_doc(doc).dims == {"R": 2}


# ------------------------------------------------------------------ hand-counted evaluations


def test_conv1d_output_stationary_counts_and_energy_with_leak(two_level):
    arch, ert = two_level
    prob = read_problem(PROBLEMS / "conv1d.v4.yaml")
    # Buffer R3 | MainMemory P6. Buffer tiles W3 I3 O1. Over P6: W stays (fills 3), I slides
    # by 1 (3 + 5*1 = 8), O moves (1 + 5 = 6); O partition 6 -> reads 18-6, fills 6-6.
    mp = Mapping((T("Buffer", "R", R=3), T("MainMemory", "P", P=6)))
    ev = AnalyticalModel(arch, ert).evaluate(prob, mp)
    assert ev.cycles == 18 and ev.computes == 18
    assert counts(ev) == {
        ("Buffer", "Weights"): (18, 3, 0), ("Buffer", "Inputs"): (18, 8, 0), ("Buffer", "Outputs"): (12, 0, 18),
        ("MainMemory", "Weights"): (3, 0, 0), ("MainMemory", "Inputs"): (8, 0, 0), ("MainMemory", "Outputs"): (0, 0, 6),
    }
    # MAC 18*2; Buffer 21+26+30 = 77; MainMemory 17*10; leak 18 cycles * (0.5 + 0.25) (the MAC's leak is not charged)
    assert ev.leak_pJ == pytest.approx(13.5)
    assert ev.level("Buffer").leak_pJ == pytest.approx(9.0)
    assert ev.energy_pJ == pytest.approx(36 + 77 + 170 + 13.5)
    js = stats_json(ev)
    assert js["leak_pJ"] == pytest.approx(13.5) and js["levels"][1]["leak_pJ"] == pytest.approx(9.0)
    assert js["levels"][1]["energy_pJ"] == pytest.approx(77 + 9.0)
    assert "Leakage energy (total) : 9.000000 pJ" in stats_text(ev, arch=arch, energy=ert)
    assert ev.to_cost().breakdown["levels"]["Buffer"] == pytest.approx(86.0)


def test_conv1d_weight_stationary(two_level):
    arch, ert = two_level
    prob = read_problem(PROBLEMS / "conv1d.v4.yaml")
    # Buffer P6 | MainMemory R3: tiles W1 I6 O6; over R3: W 1+2 = 3, I slides (6 + 2 = 8), O stays (6).
    ev = AnalyticalModel(arch, ert).evaluate(prob, Mapping((T("Buffer", "P", P=6), T("MainMemory", "R", R=3))))
    assert counts(ev) == {
        ("Buffer", "Weights"): (18, 3, 0), ("Buffer", "Inputs"): (18, 8, 0), ("Buffer", "Outputs"): (12, 0, 18),
        ("MainMemory", "Weights"): (3, 0, 0), ("MainMemory", "Inputs"): (8, 0, 0), ("MainMemory", "Outputs"): (0, 0, 6),
    }


def test_matmul_counts(two_level):
    arch, ert = two_level
    prob = read_problem(PROBLEMS / "matmul.v3.yaml")
    # Buffer K8 | MainMemory M4 (inner) N2. Tiles A8 B8 Z1.
    # A: M moves it (8 per step) and so does the N step (translation changes): 8 + 6*8 + 8 = 64.
    # B: M does not index it (free), N refetches: 8 + 8 = 16. Z: 1 + 6 + 1 = 8, partition 8.
    mp = Mapping((T("Buffer", "K", K=8), T("MainMemory", "MN", M=4, N=2)))
    ev = AnalyticalModel(arch, ert).evaluate(prob, mp)
    assert ev.computes == 64 and ev.cycles == 64
    assert counts(ev) == {
        ("Buffer", "A"): (64, 64, 0), ("Buffer", "B"): (64, 16, 0), ("Buffer", "Z"): (56, 0, 64),
        ("MainMemory", "A"): (64, 0, 0), ("MainMemory", "B"): (16, 0, 0), ("MainMemory", "Z"): (0, 0, 8),
    }
    ev2 = AnalyticalModel(arch, ert).evaluate(prob, Mapping((
        Directive(target="Buffer", type="datatype", keep=("A", "Z"), bypass=("B",)),
        T("Buffer", "K", K=8), T("MainMemory", "MN", M=4, N=2))))
    assert "B" not in ev2.level("Buffer").dataspaces
    assert counts(ev2)[("MainMemory", "B")] == (64, 0, 0)  # every MAC read of B now comes from memory


def test_dot_product_scalar_output(two_level):
    arch, ert = two_level
    prob = read_problem(PROBLEMS / "dotprod.yaml")
    # Buffer K4 | MainMemory K2: A/B tiles 4 slide by 4 (4 + 4 = 8); Z is one point, partition 1.
    ev = AnalyticalModel(arch, ert).evaluate(prob, Mapping((T("Buffer", "K", K=4), T("MainMemory", "K", K=2))))
    assert counts(ev) == {
        ("Buffer", "A"): (8, 8, 0), ("Buffer", "B"): (8, 8, 0), ("Buffer", "Z"): (7, 0, 8),
        ("MainMemory", "A"): (8, 0, 0), ("MainMemory", "B"): (8, 0, 0), ("MainMemory", "Z"): (0, 0, 1),
    }


def test_dilated_projection_tile_sizes(two_level):
    arch, ert = two_level
    prob = read_problem(PROBLEMS / "conv1d_oc_dilated.yaml")
    mp = Mapping((T("Buffer", "RP", R=3, P=4), T("MainMemory", "KP", K=4, P=2)))
    ev = AnalyticalModel(arch, ert).evaluate(prob, mp)
    buf = ev.level("Buffer").dataspaces
    # Inputs axis R*2 + P: 1 + 2*(3-1) + (4-1) = 8 points
    assert (buf["Weights"].utilized_capacity, buf["Inputs"].utilized_capacity, buf["Outputs"].utilized_capacity) == (3, 8, 4)
    space = MapSpace(arch, Constraints(()), prob)
    row = np.array([space.bounds[c.dim] if (c.level == 1 and c.dim in "RP") else 1 for c in space.columns])
    tiles = space.tile_sizes(space.extents(row[None, :]))
    assert int(tiles["Inputs"][0, 1]) == 1 + 2 * 2 + 7  # R3, P8 at the buffer


def test_unknown_data_space_in_a_mapping_is_named(two_level):
    arch, ert = two_level
    prob = read_problem(PROBLEMS / "matmul.v3.yaml")
    bad = Mapping((Directive(target="Buffer", type="datatype", keep=("Weights",)), T("Buffer", "K", K=8),
                   T("MainMemory", "MN", M=4, N=2)))
    with pytest.raises(HalocError, match="unknown data space 'Weights'"):
        AnalyticalModel(arch, ert).evaluate(prob, bad)


# ------------------------------------------------------------------ CNN path unchanged


TINY = {
    "architecture": {"version": 0.3, "subtree": [{
        "name": "sys",
        "local": [{"name": "DRAM", "class": "DRAM", "attributes": {"word-bits": 16}}],
        "subtree": [{
            "name": "chip",
            "local": [{"name": "glb", "class": "SRAM", "attributes": {"entries": 4096, "word-bits": 16}}],
            "subtree": [{"name": "PE[0..15]", "local": [
                {"name": "spad", "class": "regfile", "attributes": {"entries": 64, "meshX": 4, "word-bits": 16}},
                {"name": "mac", "class": "intmac", "attributes": {"meshX": 4}}]}],
        }],
    }]}
}
TINY_E = EnergyTable(storage={"DRAM": ActionEnergy(100.0, 100.0, 100.0, 100.0),
                              "glb": ActionEnergy(10.0, 12.0, 11.0, 12.0, leak=0.3),
                              "spad": ActionEnergy(1.0, 1.5, 1.25, 1.5, leak=0.05)}, compute=1.0)


@pytest.mark.parametrize("shape", [
    ConvShape(C=4, M=8, R=3, S=3, P=6, Q=4, N=2, Wstride=2, Hdilation=2),
    ConvShape(C=1, M=1, R=3, S=3, P=8, Q=8, G=8),            # depthwise (MobileNetV2 style)
    ConvShape(C=2, M=4, R=1, S=1, P=4, Q=4, G=2, Hstride=2),  # grouped 1x1
])
def test_conv_shape_and_its_problem_evaluate_identically_on_random_mappings(shape):
    arch = arch_from_dict(TINY)
    model = AnalyticalModel(arch, TINY_E)
    space = MapSpace(arch, Constraints(()), shape)
    prob = as_problem(shape)
    space_p = MapSpace(arch, Constraints(()), prob)
    rng = np.random.default_rng(7)
    checked = 0
    for keep in space.keep_combos[:3]:
        rows = space.rows(keep, max_rows=4000)
        rows_p = space_p.rows(keep, max_rows=4000)
        assert np.array_equal(rows, rows_p)  # the same map space
        if rows.shape[0] == 0:
            continue
        pick = rows[rng.choice(rows.shape[0], size=min(25, rows.shape[0]), replace=False)]
        for row in pick:
            spec = space.structure(keep, row)
            mp = Mapper(arch, Constraints(()), TINY_E)._mapping(space, spec, row)
            a, b = model.evaluate(shape, mp), model.evaluate(prob, mp)
            assert (a.cycles, a.energy_pJ, counts(a)) == (b.cycles, b.energy_pJ, counts(b))
            assert a.leak_pJ > 0
            checked += 1
    assert checked >= 20


def test_leak_counts_utilized_instances_only():
    arch = arch_from_dict(TINY)
    shape = ConvShape(C=2, M=2, R=3, S=1, P=4, Q=1)
    mp = Mapping((T("spad", "R", R=3), SP("glb", "MC", 1, M=2, C=2), T("glb", "P", P=4)))
    ev = AnalyticalModel(arch, TINY_E).evaluate(shape, mp)
    # 12 cycles; glb: 1 instance, spad: 4 of 16 instances used
    assert ev.level("glb").leak_pJ == pytest.approx(0.3 * 12)
    assert ev.level("spad").leak_pJ == pytest.approx(0.05 * 12 * 4)
    no_leak = EnergyTable(storage={k: dataclasses.replace(v, leak=0.0) for k, v in TINY_E.storage.items()}, compute=1.0)
    ev0 = AnalyticalModel(arch, no_leak).evaluate(shape, mp)
    assert ev.energy_pJ - ev0.energy_pJ == pytest.approx(0.3 * 12 + 0.05 * 48)
    assert ev0.leak_pJ == 0.0


# ------------------------------------------------------------------ mapper and map space


@pytest.mark.parametrize("name", ["conv1d.v4.yaml", "matmul.v3.yaml", "dotprod.yaml", "conv1d_oc_dilated.yaml"])
def test_mapper_on_general_problems(two_level, name):
    arch, ert = two_level
    prob = read_problem(PROBLEMS / name)
    res = Mapper(arch, Constraints(()), ert, MapperSettings(metric=("energy",))).search(prob)
    ev = res.evaluation
    assert ev.computes == prob.macs
    # the best energy is no worse than keeping everything in the buffer, innermost dims first
    hand = Mapping(tuple(T("Buffer", "".join(prob.dims), **prob.dims) for _ in range(1)))
    ref = AnalyticalModel(arch, ert).evaluate(prob, hand)
    assert ev.energy_pJ <= ref.energy_pJ + 1e-9
    # the mapping found is evaluated by the model exactly as reported
    assert AnalyticalModel(arch, ert).evaluate(prob, res.mapping).energy_pJ == pytest.approx(ev.energy_pJ)


def _fanout_only_arch():
    arch = arch_from_dict(TINY)
    levels = list(arch.levels)
    glb = levels[1]
    # a fan-out-only container between glb and the PEs: glb -> 4 columns -> 4 PEs each
    col = dataclasses.replace(glb, name="column", cls="container", size_words=0, instances=4, mesh_x=4, mesh_y=1,
                              fanout_only=True, attributes={})
    spad = dataclasses.replace(levels[2], instances=16, mesh_x=4, mesh_y=4)
    mac = dataclasses.replace(arch.arithmetic, instances=16, mesh_x=4, mesh_y=4)
    return dataclasses.replace(arch, levels=(levels[0], glb, col, spad), arithmetic=mac)


def test_fan_out_only_levels_have_no_temporal_loops_unless_constrained():
    arch = _fanout_only_arch()
    shape = ConvShape(C=4, M=4, R=1, S=1, P=4, Q=1)
    space = MapSpace(arch, Constraints(()), shape)
    col = arch.index("column")
    free = {space.columns[j] for d in space.dims for j in space._free[d]}
    assert not [c for c in free if c.level == col and c.kind == "T"]
    assert [c for c in free if c.level == col and c.kind != "T"]  # its spatial factors stay free
    res = Mapper(arch, Constraints(()), TINY_E).search(shape)
    t = res.mapping.get("column", "temporal")
    assert t is None or all(v == 1 for v in t.factors.values())
    # a constraint on the container that names a temporal factor opens it
    cons = Constraints((Directive(target="column", type="temporal", max_factors={"P": 4}),))
    space2 = MapSpace(arch, cons, shape)
    free2 = {space2.columns[j] for d in space2.dims for j in space2._free[d]}
    assert sorted(c.dim for c in free2 if c.level == col and c.kind == "T") == ["P"]


def test_one_word_registers_that_keep_one_data_space_are_mapped():
    # glb above three 1-word registers (one per data space, each told what to keep, the rest free)
    doc = {"architecture": {"version": 0.3, "subtree": [{
        "name": "sys",
        "local": [{"name": "DRAM", "class": "DRAM", "attributes": {"word-bits": 16}},
                  {"name": "glb", "class": "SRAM", "attributes": {"entries": 4096, "word-bits": 16}},
                  {"name": "w_reg", "class": "regfile", "attributes": {"entries": 1, "word-bits": 16}},
                  {"name": "i_reg", "class": "regfile", "attributes": {"entries": 1, "word-bits": 16}},
                  {"name": "o_reg", "class": "regfile", "attributes": {"entries": 1, "word-bits": 16}},
                  {"name": "mac", "class": "intmac", "attributes": {}}]}]}}
    arch = arch_from_dict(doc)
    cons = Constraints(tuple(Directive(target=n, type="datatype", keep=(ds,))
                             for n, ds in (("w_reg", "Weights"), ("i_reg", "Inputs"), ("o_reg", "Outputs"))))
    shape = ConvShape(C=4, M=4, R=3, S=1, P=6, Q=1)
    space = MapSpace(arch, cons, shape)
    assert space.keep_options(arch.index("o_reg")) == [frozenset({"Outputs"})]
    e = EnergyTable(storage={n: ActionEnergy(1.0, 1.0, 1.0, 1.0) for n in arch.level_names}, compute=1.0)
    res = Mapper(arch, cons, e).search(shape)
    for name, ds in (("w_reg", "Weights"), ("i_reg", "Inputs"), ("o_reg", "Outputs")):
        assert set(res.evaluation.level(name).dataspaces) == {ds}
        assert res.evaluation.level(name).dataspaces[ds].utilized_capacity == 1


def test_structure_keeps_the_problems_data_space_names(two_level):
    arch, _ = two_level
    prob = read_problem(PROBLEMS / "matmul.v3.yaml")
    st, _ = structure_from_mapping(Mapping((T("Buffer", "K", K=8), T("MainMemory", "MN", M=4, N=2))), arch, prob)
    assert st.spaces == ("A", "B", "Z") and st.keep[1] == frozenset({"A", "B", "Z"})


# ------------------------------------------------------------------ one statistics type



@pytest.mark.skipif(not (GOLDEN / "r18_l3").is_dir(), reason="golden Timeloop runs not found")
@pytest.mark.parametrize("case", ["r18_l3", "r20_s3_r16_in"])
def test_parser_and_model_fill_the_same_statistics_type(case):
    from haloc_hw.cost.stats import DataSpaceStats, LevelStats
    from haloc_hw.cost.stats_parser import parse_stats
    from haloc_hw.spec.constraints import load_mapping

    d = GOLDEN / case
    arch = load_arch(d / "arch.yaml")
    ev = AnalyticalModel(arch, load_energy_table(d / "ERT.yaml", arch)).evaluate(
        load_problem(d / "problem.yaml"), load_mapping(d / "map.yaml", arch))
    ref = parse_stats(d / "model" / "timeloop-model.stats.txt")
    for lvl in ev.levels:
        theirs = ref.level(lvl.name)
        assert type(lvl) is type(theirs) is LevelStats
        assert set(lvl.dataspaces) == set(theirs.dataspaces)
        for ds, ours in lvl.dataspaces.items():
            assert type(ours) is type(theirs.dataspaces[ds]) is DataSpaceStats
            # every count field by field; the report prints energies with two decimals
            assert dataclasses.replace(ours, energy_pJ=0.0) == dataclasses.replace(theirs.dataspaces[ds], energy_pJ=0.0)
            assert ours.energy_pJ == pytest.approx(theirs.dataspaces[ds].energy_pJ, abs=0.006)


def test_fan_out_from_the_innermost_level_straight_to_the_macs():
    # MainMemory -> Buffer -> 4 MACs. Buffer: X:M4 to the MACs, then K8; MainMemory N2.
    # The MACs' deliveries follow the one-point-tile rule: A moves with every K step (16 per
    # MAC, 4 groups -> 64 reads), B is shared by the 4 MACs (16 reads), and Z stays in the MAC
    # across K (1 + N step = 2 per MAC, 4 groups -> 8 updates; partition 8 -> no reads).
    doc = {"architecture": {"version": 0.3, "subtree": [{
        "name": "chip",
        "local": [{"name": "MainMemory", "class": "SRAM", "attributes": {"entries": 65536, "word-bits": 8}},
                  {"name": "Buffer", "class": "regfile", "attributes": {"entries": 64, "word-bits": 8}}],
        "subtree": [{"name": "PE[0..3]", "local": [{"name": "MACC", "class": "intmac", "attributes": {"meshX": 4}}]}]}]}}
    arch = arch_from_dict(doc)
    assert arch.fanout(arch.index("Buffer")) == (4, 1)
    e = EnergyTable(storage={n: ActionEnergy(1.0, 1.0, 1.0, 1.0) for n in arch.level_names}, compute=1.0)
    prob = read_problem(PROBLEMS / "matmul.v3.yaml")
    mp = Mapping((SP("Buffer", "M", 1, M=4), T("Buffer", "K", K=8), T("MainMemory", "N", N=2)))
    ev = AnalyticalModel(arch, e).evaluate(prob, mp)
    assert ev.computes == 64 and ev.cycles == 16 and ev.mac_instances == 4
    assert counts(ev) == {
        ("Buffer", "A"): (64, 32, 0), ("Buffer", "B"): (16, 16, 0), ("Buffer", "Z"): (0, 0, 8),
        ("MainMemory", "A"): (32, 0, 0), ("MainMemory", "B"): (16, 0, 0), ("MainMemory", "Z"): (0, 0, 8),
    }


def test_power_gated_at_groups_leaking_instances():
    arch = arch_from_dict(TINY)
    levels = list(arch.levels)
    spad = dataclasses.replace(levels[2], attributes={**levels[2].attributes, "power_gated_at": "glb"})
    arch = dataclasses.replace(arch, levels=(levels[0], levels[1], spad))
    shape = ConvShape(C=2, M=2, R=3, S=1, P=4, Q=1)
    mp = Mapping((T("spad", "R", R=3), SP("glb", "MC", 1, M=2, C=2), T("glb", "P", P=4)))
    ev = AnalyticalModel(arch, TINY_E).evaluate(shape, mp)
    # all 16 spads share glb's single power gate, which is on: every spad leaks, 12 cycles
    assert ev.level("spad").leak_pJ == pytest.approx(0.05 * 12 * 16)
