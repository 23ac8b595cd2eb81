"""Design-space files and the parameterised designs (no torch, no cost model)."""

from __future__ import annotations


import pytest

from haloc_hw.codesign.design_point import price_point
from haloc_hw.codesign.space import enumerate_points, load_space, space_from_dict
from haloc_hw.errors import HalocError
from haloc_hw.spec import load_arch
from conftest import REPO as ROOT

EYERISS_TOP = ROOT / "arch" / "eyeriss_space" / "top.yaml.jinja2"
WS_TOP = ROOT / "arch" / "ws_array" / "top.yaml.jinja2"


def _space(variables, constraints=(), **extra):
    doc = {"design": [str(EYERISS_TOP)], "variables": variables, "constraints": list(constraints), **extra}
    return space_from_dict({"codesign_space": doc}, file=ROOT / "space.yaml")


def test_ranges_lists_and_product_order():
    s = _space({"meshX": [8, 16], "glb_depth": {"log2_range": [12, 14]}, "meshY": {"range": [8, 16, 4]}})
    assert s.variables == {"meshX": (8, 16), "glb_depth": (4096, 8192, 16384), "meshY": (8, 12, 16)}
    points, removed = enumerate_points(s)
    assert len(points) == 18 and removed == {}
    assert points[0].values == {"meshX": 8, "glb_depth": 4096, "meshY": 8}
    assert points[1].values == {"meshX": 8, "glb_depth": 4096, "meshY": 12}  # the last variable changes fastest
    assert len({p.id for p in points}) == 18


def test_constraints_remove_points_and_count_them():
    s = _space({"meshX": [8, 16, 32], "meshY": [8, 16]}, ["meshX * meshY <= 256", "meshX >= meshY"])
    points, removed = enumerate_points(s)
    assert sorted((p.values["meshX"], p.values["meshY"]) for p in points) == [(8, 8), (16, 8), (16, 16), (32, 8)]
    assert removed == {"meshX * meshY <= 256": 1, "meshX >= meshY": 1}  # (32, 16) and (8, 16)


def test_all_points_removed_names_the_constraint():
    s = _space({"meshX": [32, 64], "meshY": [16]}, ["meshX * meshY <= 256"])
    with pytest.raises(HalocError, match=r"removed by 'meshX \* meshY <= 256' \(2 of 2\)"):
        enumerate_points(s)


@pytest.mark.parametrize("spec, match", [
    ([], "has no values"),
    ({"range": [16, 8, 4]}, "has no values"),
    ({"log2_range": [3.5, 4]}, "log2_range needs integers"),
    ({"between": [1, 2]}, "must be a list"),
])
def test_variable_without_values_is_refused(spec, match):
    with pytest.raises(HalocError, match=match) as err:
        _space({"meshX": spec})
    assert "codesign_space.variables.meshX" in str(err.value) and "\n" not in str(err.value)


def test_bad_constraint_and_keys_are_refused():
    with pytest.raises(HalocError, match="meshZ"):
        _space({"meshX": [8]}, ["meshZ < 4"])
    with pytest.raises(HalocError, match="unknown key"):
        _space({"meshX": [8]}, area_limit=3)
    with pytest.raises(HalocError, match="positive number"):
        _space({"meshX": [8]}, area_limit_mm2=-1)
    with pytest.raises(HalocError, match="not found"):
        space_from_dict({"design": ["nope.yaml"], "variables": {"a": [1]}}, file=ROOT / "space.yaml")


def test_shipped_spaces_load():
    for name in ("eyeriss", "ws_array"):
        s = load_space(ROOT / "spaces" / f"{name}.yaml")
        points, _ = enumerate_points(s)
        assert points and all(p.exists() for p in s.design)
    eyeriss = load_space(ROOT / "spaces" / "eyeriss.yaml")
    assert eyeriss.size == 64 and eyeriss.reference == {"meshX": 14, "meshY": 12, "glb_depth": 16384,
                                                        "weights_spad_depth": 192}


def test_eyeriss_space_default_is_the_shipped_eyeriss(tmp_path):
    priced = price_point([EYERISS_TOP], [], {}, workdir=tmp_path)
    shipped = load_arch(ROOT / "arch" / "eyeriss.yaml")
    assert priced.arch.levels == shipped.levels  # names, sizes, word bits, blocks, meshes, bandwidths
    assert priced.arch.arithmetic == shipped.arithmetic
    assert [shipped.fanout(i) for i in range(len(shipped.levels))] == \
        [priced.arch.fanout(i) for i in range(len(priced.arch.levels))]


def test_eyeriss_space_variables_change_only_what_they_name(tmp_path):
    priced = price_point([EYERISS_TOP], [], {"meshX": 16, "glb_depth": 8192}, workdir=tmp_path)
    shipped = load_arch(ROOT / "arch" / "eyeriss.yaml")
    assert priced.arch.arithmetic.instances == 16 * 12
    assert priced.arch.level("shared_glb").size_words == 8192 * 4
    assert priced.arch.level("weights_spad").size_words == shipped.level("weights_spad").size_words


def test_ws_array_renders_with_its_variables(tmp_path):
    priced = price_point([WS_TOP], [], {"meshX": 8, "meshY": 4, "datawidth": 8, "weights_spad_depth": 32},
                         workdir=tmp_path)
    arch = priced.arch
    assert [lv.name for lv in arch.levels] == ["DRAM", "glb", "weights_spad", "accum"]
    assert arch.arithmetic.instances == 32 and arch.level("weights_spad").size_words == 32
    assert all(lv.word_bits == 8 for lv in arch.levels)
    assert arch.level("glb").read_bandwidth == 16  # 2 * meshX
    kept = {(d.target, d.type): d for d in priced.constraints.directives}
    assert kept[("glb", "datatype")].bypass == ("Weights",)
    assert kept[("weights_spad", "datatype")].keep == ("Weights",)
    bigger = price_point([WS_TOP], [], {"meshX": 16, "meshY": 16}, workdir=tmp_path)
    assert bigger.area_mm2 > priced.area_mm2 > 0


def test_shipped_ws_array_ert_is_the_current_estimate(tmp_path):
    import yaml

    price_point([WS_TOP], [], {}, workdir=tmp_path)
    for name in ("ERT", "ART"):
        shipped = yaml.safe_load((ROOT / "arch" / "ws_array" / f"{name}.yaml").read_text())
        assert shipped == yaml.safe_load((tmp_path / f"{name}.yaml").read_text()), f"regenerate arch/ws_array/{name}.yaml"
