"""The map space, the mapper and the analytical cost backend.

Quality is checked against real timeloop-mapper runs (../shared/timeloop-golden): on every
golden case, with its constraints, our best mapping must be within 5 % of Timeloop's in
cycles and energy, and no worse on the median case. Exactness of the search is checked
against brute force on small spaces.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from haloc_hw.cost.analytical.backend import AnalyticalCostModel
from haloc_hw.cost.analytical.mapper import Mapper, MapperSettings, parse_metric
from haloc_hw.cost.analytical.mapspace import MapSpace, ordered_factorizations
from haloc_hw.cost.analytical.model import AnalyticalModel
from haloc_hw.cost.base import Cost
from haloc_hw.errors import HalocError
from haloc_hw.spec.constraints import load_constraints
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.mapping import Constraints
from haloc_hw.spec.model import Architecture
from haloc_hw.spec.loader import load_arch
from haloc_hw.spec.shipped import default_ert_path
from haloc_hw.workload import ConvShape, load_problem
from conftest import GOLDEN, REPO, golden_cases

CASES = golden_cases()
needs_golden = pytest.mark.skipif(not CASES, reason=f"golden Timeloop runs not found at {GOLDEN}")


@pytest.fixture(scope="module")
def eyeriss():
    if not CASES:
        pytest.skip(f"golden Timeloop runs not found at {GOLDEN}")
    d = GOLDEN / "r18_l3"
    arch = load_arch(d / "arch.yaml")
    return arch, load_constraints(d / "constraints.yaml", arch), load_energy_table(d / "ERT.yaml", arch)


def resized(arch: Architecture, mx: int, my: int, **sizes: int) -> Architecture:
    """The golden Eyeriss hierarchy with an ``mx`` x ``my`` PE array (and optional level sizes)."""
    levels = []
    for lvl in arch.levels:
        if lvl.name == "DummyBuffer":
            lvl = dataclasses.replace(lvl, instances=mx, mesh_x=mx, mesh_y=1)
        elif lvl.instances > 1:
            lvl = dataclasses.replace(lvl, instances=mx * my, mesh_x=mx, mesh_y=my)
        if lvl.name in sizes:
            lvl = dataclasses.replace(lvl, size_words=sizes[lvl.name])
        levels.append(lvl)
    mac = dataclasses.replace(arch.arithmetic, instances=mx * my, mesh_x=mx, mesh_y=my)
    return dataclasses.replace(arch, levels=tuple(levels), arithmetic=mac)


def factor(mapping, target: str, kind: str, dim: str) -> int:
    d = mapping.get(target, kind)
    return 1 if d is None else int(d.factors.get(dim, 1))


def check_mapping(arch: Architecture, shape: ConvShape, mapping) -> None:
    """Factors multiply to the bounds and X/Y spatial factors fit every level's fan-out."""
    for dim, bound in shape.dims.items():
        prod = 1
        for lvl in arch.levels:
            prod *= factor(mapping, lvl.name, "temporal", dim) * factor(mapping, lvl.name, "spatial", dim)
        assert prod == bound, dim
    for i, lvl in enumerate(arch.levels):
        sp = mapping.get(lvl.name, "spatial")
        if sp is None:
            continue
        perm = sp.permutation + (sp.permutation_suffix or "")
        x = math.prod(int(sp.factors.get(d, 1)) for d in perm[: sp.split])
        y = math.prod(int(sp.factors.get(d, 1)) for d in perm[sp.split:])
        fx, fy = arch.fanout(i)
        assert x <= fx and y <= fy, (lvl.name, x, y, fx, fy)


# --------------------------------------------------------------------------------------------
# Map space


def test_ordered_factorizations_count_and_caps():
    rows = ordered_factorizations(12, 3)
    # 12 = 2^2 * 3: C(2+2, 2) * C(1+2, 2) = 6 * 3 = 18 ordered triples
    assert rows.shape == (18, 3)
    assert (rows.prod(axis=1) == 12).all()
    assert len({tuple(r) for r in rows}) == 18
    capped = ordered_factorizations(12, 3, [2, None, 1])
    assert (capped[:, 0] <= 2).all() and (capped[:, 2] == 1).all() and len(capped) == 2
    assert ordered_factorizations(7, 0).shape == (0, 0)


@needs_golden
def test_whole_dimension_and_fixed_factors(eyeriss):
    arch, cons, _ = eyeriss
    shape = ConvShape(C=16, M=16, R=3, S=3, P=8, Q=8)
    space = MapSpace(arch, cons, shape)
    rows = space.rows(space.keep_combos[0])
    assert rows.shape[0] > 0
    merged = space.slot_factors(rows)
    w = arch.index("weights_spad")
    d = arch.index("DummyBuffer")
    assert (merged[(w, "temporal", "R")] == 3).all()  # R=0 -> the whole R at weights_spad
    assert (merged[(d, "spatial", "S")] == 3).all()  # S=0 at DummyBuffer spatial
    assert (merged[(arch.index("ifmap_spad"), "temporal", "C")] == 1).all()


@needs_golden
def test_space_rows_are_exactly_the_valid_mappings(eyeriss):
    """Pruned enumeration == brute force over every factorization, filtered by the model."""
    arch, cons, energy = eyeriss
    shape = ConvShape(C=16, M=16, R=3, S=3, P=8, Q=8)
    space = MapSpace(arch, cons, shape)
    keep = space.keep_combos[0]
    rows = space.rows(keep)
    # brute force: cartesian product of every dimension's factorizations, no pruning
    base = space.base_row()
    per_dim = [(space._free[d], space.dim_options(d)) for d in space.dims if space._free[d]]
    full = []
    for combo in itertools.product(*[range(len(o)) for _, o in per_dim]):
        r = base.copy()
        for (cols, opts), k in zip(per_dim, combo):
            r[cols] = opts[k]
        full.append(r)
    full = np.stack(full)
    model = AnalyticalModel(arch, energy)
    mapper = Mapper(arch, cons, energy)
    spec = space.structure(keep, full[0])
    merged = space.slot_factors(full)
    slots = tuple(sorted(merged, key=lambda k: (k[0], k[1] != "temporal", space.dims.index(k[2]))))
    st = mapper._model_structure(space, spec, slots)
    valid = model.evaluate_batch(shape, st, np.stack([merged[k] for k in slots], axis=1)).valid
    assert valid.sum() < len(full)  # the check prunes something
    assert {r.tobytes() for r in full[valid]} == {r.tobytes() for r in rows}


@needs_golden
def test_free_permutation_orders_are_canonical(eyeriss):
    arch, cons, _ = eyeriss
    dropped = Constraints(tuple(d for d in cons.directives if not (d.target == "DRAM" and d.type == "temporal")), "t")
    shape = ConvShape(C=64, M=64, R=3, S=3, P=14, Q=14)
    space = MapSpace(arch, dropped, shape)
    assert space.free_temporal_levels() == [arch.index("DRAM")]
    row = space.rows(space.keep_combos[0])[0].copy()
    dram = arch.index("DRAM")
    active = [d for d in space.dims if row[space.col_index[_col(dram, d)]] > 1]
    orders = space.temporal_orders(dram, row)
    assert len(orders) == len(set(orders)) == math.factorial(len(active))
    assert all(sorted(o) == sorted(space.dims) for o in orders)


def _col(level: int, dim: str):
    from haloc_hw.cost.analytical.mapspace import Column

    return Column(level, "T", dim)


# --------------------------------------------------------------------------------------------
# Mapper against the golden timeloop-mapper runs


def _golden(case: str):
    d = GOLDEN / case
    arch = load_arch(d / "arch.yaml")
    return (arch, load_constraints(d / "constraints.yaml", arch), load_energy_table(d / "ERT.yaml", arch),
            load_problem(d / "problem.yaml"), json.loads((d / "summary.json").read_text())["mapper"])


@needs_golden
def test_mapper_matches_or_beats_timeloop_mapper_on_every_golden_case():
    ratios = []
    for case in CASES:
        arch, cons, energy, shape, ref = _golden(case)
        res = Mapper(arch, cons, energy).search(shape)
        ev = res.evaluation
        rc, re_ = ev.cycles / ref["cycles"], ev.energy_pJ / ref["energy_pJ"]
        assert rc <= 1.05 and re_ <= 1.05, (case, rc, re_)
        assert res.valid > 0 and res.evaluated >= res.valid
        check_mapping(arch, shape, res.mapping)
        ratios.append((rc, re_))
    med = np.median(np.array(ratios), axis=0)
    # energies in summary.json come from 2-decimal fJ/compute lines: allow that rounding
    assert med[0] <= 1.0 + 1e-9 and med[1] <= 1.0 + 1e-5, med


@needs_golden
def test_mapper_is_exhaustive_on_a_small_space(eyeriss):
    """The winner is the best of all valid mappings in the space (brute force)."""
    arch, cons, energy = eyeriss
    shape = ConvShape(C=16, M=32, R=3, S=3, P=8, Q=8)
    mapper = Mapper(arch, cons, energy)
    res = mapper.search(shape, "energy")
    space = MapSpace(arch, cons, shape)
    rows = space.rows(space.keep_combos[0])
    spec = space.structure(space.keep_combos[0], rows[0])
    cyc, en, ok = mapper._evaluate(space, spec, rows)
    assert ok.all()
    assert res.evaluation.energy_pJ == pytest.approx(en.min(), rel=1e-12)
    res_d = mapper.search(shape, "delay,energy")
    best_c = cyc.min()
    assert res_d.evaluation.cycles == best_c
    assert res_d.evaluation.energy_pJ == pytest.approx(en[cyc == best_c].min(), rel=1e-12)


@needs_golden
def test_winner_reevaluates_to_the_same_numbers_and_is_deterministic(eyeriss):
    arch, cons, energy = eyeriss
    shape = ConvShape(C=64, M=128, R=3, S=3, P=28, Q=28, Wstride=2, Hstride=2)
    a = Mapper(arch, cons, energy).search(shape)
    b = Mapper(arch, cons, energy).search(shape)
    assert a.mapping == b.mapping
    again = AnalyticalModel(arch, energy).evaluate(shape, a.mapping)
    assert again.cycles == a.evaluation.cycles and again.energy_pJ == pytest.approx(a.evaluation.energy_pJ)


@needs_golden
def test_metrics_pick_their_own_optimum(eyeriss):
    arch, cons, energy = eyeriss
    shape = ConvShape(C=64, M=128, R=3, S=3, P=28, Q=28)
    m = Mapper(arch, cons, energy)
    res = {k: m.search(shape, k).evaluation for k in ("delay,energy", "energy", "edp", "delay")}
    edp = {k: v.cycles * v.energy_pJ for k, v in res.items()}
    assert res["energy"].energy_pJ <= min(v.energy_pJ for v in res.values()) * (1 + 1e-12)
    assert res["delay"].cycles <= min(v.cycles for v in res.values())
    assert edp["edp"] <= min(edp.values()) * (1 + 1e-12)
    assert res["delay"].cycles == res["delay,energy"].cycles


@needs_golden
@pytest.mark.parametrize("mx,my", [(4, 4), (16, 16)])
def test_other_array_sizes(eyeriss, mx, my):
    arch, cons, energy = eyeriss
    arch2 = resized(arch, mx, my, psum_spad=24, shared_glb=32768)
    cons2 = load_constraints(GOLDEN / "r18_l3" / "constraints.yaml", arch2)
    shape = ConvShape(C=32, M=64, R=3, S=3, P=16, Q=16)
    res = Mapper(arch2, cons2, energy).search(shape)
    check_mapping(arch2, shape, res.mapping)
    ev = res.evaluation
    assert ev.cycles >= shape.macs / (mx * my)
    # brute-force best cycles over the whole space
    space = MapSpace(arch2, cons2, shape)
    rows = space.rows(space.keep_combos[0])
    cyc, _, ok = Mapper(arch2, cons2, energy)._evaluate(space, space.structure(space.keep_combos[0], rows[0]), rows)
    assert ev.cycles == cyc[ok].min()
    if mx == 16:  # X: Q16, Y: S3 x C4 (or M4) -> 192 of 256 PEs
        assert ev.utilization == pytest.approx(0.75)


@needs_golden
def test_depthwise_and_batched_layers(eyeriss):
    arch, cons, energy = eyeriss
    m = Mapper(arch, cons, energy)
    dw = ConvShape(C=1, M=1, R=3, S=3, P=28, Q=28, G=32)
    res = m.search(dw)
    check_mapping(arch, dw, res.mapping)
    assert res.evaluation.computes == dw.macs
    batched = ConvShape(C=32, M=32, R=3, S=3, P=14, Q=14, N=4)
    res_b = m.search(batched)
    check_mapping(arch, batched, res_b.mapping)
    single = m.search(dataclasses.replace(batched, N=1))
    # four images cost at most four times one image, and no less than it
    assert single.evaluation.cycles <= res_b.evaluation.cycles <= 4 * single.evaluation.cycles


@needs_golden
def test_free_loop_orders_are_searched(eyeriss):
    """Dropping the GLB/DRAM order hints can only help: the hinted orders are in the space."""
    arch, cons, energy = eyeriss
    hints = {("shared_glb", "temporal"), ("DRAM", "temporal")}
    free = Constraints(tuple(
        dataclasses.replace(d, permutation=None, permutation_suffix=None) if (d.target, d.type) in hints else d
        for d in cons.directives), "free")
    shape = ConvShape(C=64, M=64, R=3, S=3, P=14, Q=14)
    fixed = Mapper(arch, cons, energy).search(shape).evaluation
    res = Mapper(arch, free, energy).search(shape)
    check_mapping(arch, shape, res.mapping)
    assert res.evaluation.cycles <= fixed.cycles
    assert res.evaluation.energy_pJ <= fixed.energy_pJ * 1.0001


@needs_golden
def test_no_valid_mapping_names_level_and_constraint(eyeriss):
    arch, cons, energy = eyeriss
    wide = ConvShape(C=8, M=8, R=13, S=3, P=8, Q=8)  # R=0 at weights_spad: 13 > ifmap_spad's 12 words
    with pytest.raises(HalocError) as err:
        Mapper(arch, cons, energy).search(wide)
    text = str(err.value)
    assert "ifmap_spad" in text and "R=13" in text and "weights_spad" in text


def test_settings_and_metric_parsing(tmp_path):
    assert parse_metric("delay,energy") == ("delay", "energy")
    assert parse_metric(["edp"]) == ("edp",)
    with pytest.raises(HalocError):
        parse_metric("speed")
    p = tmp_path / "mapper.yaml"
    p.write_text("mapper:\n  optimization-metrics: [energy]\n  num-threads: 2\n  refine-top: 3\n  max_evaluations: 500\n")
    s = MapperSettings.from_file(p)
    assert s.metric == ("energy",) and s.refine_top == 3 and s.max_evaluations == 500
    p.write_text("mapper:\n  refine-top: -1\n")
    with pytest.raises(HalocError):
        MapperSettings.from_file(p)
    for bad in ("5", "[1]", "[delay, speed]"):
        p.write_text(f"mapper:\n  optimization-metrics: {bad}\n")
        with pytest.raises(HalocError, match="optimization-metrics") as err:
            MapperSettings.from_file(p)
        assert str(p) in str(err.value)
    shipped = REPO / "mappings" / "mapper.yaml"
    if shipped.is_file():
        assert MapperSettings.from_file(shipped).metric == ("delay", "energy")


@needs_golden
def test_small_budget_still_finds_a_good_mapping():
    arch, cons, energy, shape, ref = _golden("r18_l3")
    res = Mapper(arch, cons, energy, MapperSettings(max_evaluations=300)).search(shape)
    assert res.evaluated < 3045  # the full first tier has 3045 rows
    assert res.evaluation.cycles <= ref["cycles"] * 1.05 and res.evaluation.energy_pJ <= ref["energy_pJ"] * 1.1


# --------------------------------------------------------------------------------------------
# Backend


@needs_golden
def test_backend_costs_fingerprint_and_version(eyeriss):
    arch, cons, energy = eyeriss
    be = AnalyticalCostModel(arch, energy, cons, clock_hz=200e6)
    shapes = [ConvShape(C=16, M=16, R=3, S=3, P=8, Q=8), ConvShape(C=64, M=16, R=1, S=1, P=8, Q=8)]
    costs = be.evaluate(shapes)
    assert [type(c) for c in costs] == [Cost, Cost]
    ref = json.loads((GOLDEN / "r20_s3_r16_in" / "summary.json").read_text())["mapper"]
    assert costs[1].cycles == ref["cycles"] and costs[1].energy_pJ <= ref["energy_pJ"] * 1.0001
    assert costs[1].latency_s == pytest.approx(ref["cycles"] / 200e6)
    assert 0 < costs[0].utilization <= 1
    mapping = costs[0].breakdown["mapping"]["mapping"]
    assert {e["target"] for e in mapping} == set(arch.level_names)
    assert sum(costs[0].breakdown["levels"].values()) == pytest.approx(costs[0].energy_pJ, rel=1e-9)
    fp = be.fingerprint()
    json.dumps(fp)  # plain data
    assert fp == AnalyticalCostModel(arch, energy, cons, clock_hz=200e6).fingerprint()
    assert fp != AnalyticalCostModel(arch, energy, cons, metric="energy", clock_hz=200e6).fingerprint()
    for knob in ({"max_evaluations": 1000}, {"climb_rounds": 1}):  # search budgets change the mapping found
        assert fp != AnalyticalCostModel(arch, energy, cons, clock_hz=200e6, settings=MapperSettings(**knob)).fingerprint()
    smaller = resized(arch, 14, 12, psum_spad=8)
    assert fp["arch"] != AnalyticalCostModel(smaller, energy, cons).fingerprint()["arch"]
    assert be.name == "analytical" and be.version()
    assert AnalyticalCostModel(arch, energy, cons).evaluate(shapes[:1])[0].latency_s is None


def test_backend_from_shipped_files():
    arch_path = REPO / "arch" / "eyeriss.yaml"
    if not arch_path.is_file() or not (REPO / "mappings" / "row_stationary.yaml").is_file():
        pytest.skip("shipped arch/eyeriss.yaml or mappings/row_stationary.yaml not present")
    assert default_ert_path(arch_path) == REPO / "arch" / "eyeriss.ert.yaml"
    be = AnalyticalCostModel.from_files(arch_path)
    assert any(d.target == "weights_spad" for d in be.constraints.directives)
    (cost,) = be.evaluate([ConvShape(C=64, M=16, R=1, S=1, P=8, Q=8)])
    assert cost.cycles == 1024  # as timeloop-mapper on the golden r20_s3_r16_in case


def test_backend_missing_ert_is_a_user_error(tmp_path):
    arch_path = REPO / "arch" / "eyeriss.yaml"
    if not arch_path.is_file():
        pytest.skip("shipped arch/eyeriss.yaml not present")
    lonely = tmp_path / "arch" / "mine.yaml"
    lonely.parent.mkdir()
    lonely.write_text(arch_path.read_text())
    with pytest.raises(HalocError, match="energy table"):
        AnalyticalCostModel.from_files(lonely)


@needs_golden
def test_unconstrained_space_uses_keep_search_and_climbing(eyeriss):
    """No constraints at all: bypass choices, loop orders and factors are all free."""
    arch, cons, energy = eyeriss
    shape = ConvShape(C=8, M=16, R=3, S=3, P=4, Q=4)
    space = MapSpace(arch, Constraints((), "none"), shape)
    assert not space.keep_enumerated and len(space.free_temporal_levels()) == len(arch.levels)
    res = Mapper(arch, Constraints((), "none"), energy, MapperSettings(max_evaluations=1000, refine_rounds=1, climb_rounds=2)).search(shape)
    check_mapping(arch, shape, res.mapping)
    again = AnalyticalModel(arch, energy).evaluate(shape, res.mapping)
    assert again.cycles == res.evaluation.cycles
    # the row-stationary space is a subset of this one
    constrained = Mapper(arch, cons, energy).search(shape).evaluation
    assert res.evaluation.cycles <= constrained.cycles


@needs_golden
def test_split_inside_a_free_spatial_order(eyeriss):
    """A 14x12 fan-out straight from the GLB, with only Q's spatial position fixed (split 3).

    X gets Q plus at most two other dimensions; every enumerated row, grouped by its X/Y
    choices as the mapper groups them, must be a valid mapping for the model.
    """
    arch, cons, energy = eyeriss
    levels = tuple(lv for lv in arch.levels if lv.name != "DummyBuffer")
    flat = dataclasses.replace(arch, levels=levels)
    assert flat.fanout(flat.index("shared_glb")) == (14, 12)
    from haloc_hw.spec.mapping import Directive

    kept = [d for d in cons.directives if d.target != "DummyBuffer" and not (d.target == "shared_glb" and d.type == "spatial")]
    kept.append(Directive("shared_glb", "spatial", factors={"N": 1, "P": 1, "R": 1}, permutation="Q", split=3))
    free = Constraints(tuple(kept), "split")
    shape = ConvShape(C=16, M=16, R=3, S=3, P=8, Q=8)
    space = MapSpace(flat, free, shape)
    glb = flat.index("shared_glb")
    assert space.levels[glb].x_middle_max == 2 and space.levels[glb].y_middle_max == 4
    keep = space.keep_combos[0]
    rows = space.rows(keep)
    mapper = Mapper(flat, free, energy)
    side = space.side_key(rows)
    assert len(np.unique(side)) > 1
    for k in np.unique(side):
        sub = rows[side == k]
        spec = space.structure(keep, sub[0])
        perm, split = spec.spatial[glb], spec.split[glb]
        assert perm[0] == "Q" and split == 3
        _, _, ok = mapper._evaluate(space, spec, sub)
        assert ok.all()
    res = mapper.search(shape)
    check_mapping(flat, shape, res.mapping)
    assert res.evaluation.utilization == pytest.approx(
        shape.macs / (168 * res.evaluation.cycles))


@needs_golden
def test_large_space_path_respects_fixed_spatial_factors(eyeriss):
    """Spaces too large to join in full choose spatial factors first; the fixed S=0 on the
    DummyBuffer's Y axis must count against its fan-out there (else no row is feasible)."""
    arch, cons, energy = eyeriss
    shape = ConvShape(C=96, M=96, R=3, S=3, P=28, Q=28)
    small = MapperSettings(max_rows=5000)
    space = MapSpace(arch, cons, shape, small.limits)
    assert math.prod(len(space.dim_options(d)) for d in space.dims) > 4 * small.max_rows
    rows = space.rows(space.keep_combos[0])
    assert rows.shape[0] > 0
    res = Mapper(arch, cons, energy, small).search(shape)
    check_mapping(arch, shape, res.mapping)
    exhaustive = Mapper(arch, cons, energy).search(dataclasses.replace(shape, P=14, Q=14))
    two_stage = Mapper(arch, cons, energy, small).search(dataclasses.replace(shape, P=14, Q=14))
    assert two_stage.evaluation.cycles == exhaustive.evaluation.cycles
    assert two_stage.evaluation.energy_pJ <= exhaustive.evaluation.energy_pJ * 1.05
