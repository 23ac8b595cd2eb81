"""The estimator's behaviour: compound expansion, user tables winning, outputs, bad input."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from haloc_hw.energy import estimate, estimate_design
from haloc_hw.energy import data as energy_data
from haloc_hw.energy.components import Component
from haloc_hw.energy.sram import estimate_sram
from haloc_hw.energy.technology import area_scale, energy_scale, parse_node
from haloc_hw.energy.writers import ART_FILE, ERT_FILE, TABLE_CSV, TABLE_MD, render, write_outputs
from haloc_hw.errors import HalocError
from haloc_hw.spec import load_arch
from haloc_hw.spec.design import load_design
from haloc_hw.spec.energy import load_energy_table
from conftest import REPO

EYERISS = REPO / "arch" / "eyeriss.yaml"


def comp(name: str, cls: str, instances: int = 1, **attrs) -> Component:
    return Component(path=f"sys.{name}", name=name, cls=cls, attributes=attrs, instances=instances)


# ------------------------------------------------------------------ technology and SRAM rules


def test_parse_node_forms():
    assert parse_node("45nm") == 45 and parse_node(32) == 32 and parse_node("0.065um") == pytest.approx(65)
    with pytest.raises(HalocError, match="technology"):
        parse_node("fast")


def test_technology_scaling_is_consistent():
    assert energy_scale(45, 45) == 1.0
    assert energy_scale(45, 32) * energy_scale(32, 45) == pytest.approx(1.0)
    assert energy_scale(65, 45) < 1.0 < energy_scale(45, 65)  # smaller nodes spend less
    assert area_scale(45, 32) == pytest.approx(0.46)  # Stillmaker & Baas table entry
    # between tabulated nodes the factor lies between its neighbours
    assert energy_scale(45, 32) < energy_scale(45, 40) < 1.0


def test_sram_reproduces_table_rows_and_interpolates_monotonically():
    row = estimate_sram(64, 16384, 45)
    assert row.read == pytest.approx(32.2859, rel=1e-6) and row.area == pytest.approx(429589, rel=1e-6)
    reads = [estimate_sram(64, d, 45).read for d in (256, 1024, 4096, 8192, 12000, 16384, 65536)]
    assert all(a < b for a, b in zip(reads, reads[1:]))
    wide = [estimate_sram(w, 4096, 45).read for w in (32, 64, 128, 256)]
    assert all(a < b for a, b in zip(wide, wide[1:]))
    # log-log in depth between two tabulated depths: the estimate lies between them
    mid = estimate_sram(64, 12000, 45).read
    assert estimate_sram(64, 8192, 45).read < mid < estimate_sram(64, 16384, 45).read
    # node: the 32 nm table row is reproduced, and 65 nm costs more than 45 nm
    assert estimate_sram(64, 16384, 32).read == pytest.approx(18.1554, rel=1e-6)
    assert estimate_sram(64, 16384, 65).read > row.read
    # a smaller array than CACTI's minimum is scaled down from it, never up
    assert estimate_sram(8, 16, 45).read < estimate_sram(32, 64, 45).read


def test_wire_energy_by_length():
    # Aladdin plug-in model: 64 bits x 0.2 x 1.627 fF/um x 1000 um x 1 V^2 = 20.8256 pJ
    e = estimate([comp("bus", "wire", width=64, length="1mm")], {}).entries[0]
    assert e.actions["transfer"] == pytest.approx(64 * 0.2 * 1.627e-3 * 1000)
    assert estimate([comp("bus", "wire", width=64, length=500)], {}).entries[0].actions["transfer"] == pytest.approx(e.actions["transfer"] / 2)
    with pytest.raises(HalocError, match="length"):
        estimate([comp("bus", "wire", width=64, length="far")], {})


def test_leak_is_per_cycle():
    a = estimate_sram(64, 1024, 45, cycle_seconds=1e-9).leak
    b = estimate_sram(64, 1024, 45, cycle_seconds=2e-9).leak
    assert b == pytest.approx(2 * a)


def test_every_data_row_names_a_source(monkeypatch):
    for name in ("logic.csv", "sram_cacti.csv", "dram.csv", "technology_scaling.csv", "wire.csv"):
        assert all(r["source"].strip() for r in energy_data.read_table(name))
    energy_data.read_table.cache_clear()
    monkeypatch.setattr(energy_data, "_text", lambda name: "a,source\n1,\n")
    with pytest.raises(HalocError, match="no source"):
        energy_data.read_table("bad.csv")
    energy_data.read_table.cache_clear()


# ------------------------------------------------------------------ compound expansion

ADDER_PAIR = {
    "name": "pair",
    "attributes": {"technology": "must_specify", "width": 16, "half": "width // 2"},
    "subcomponents": [{"name": "a[1..4]", "class": "aladdin_adder", "attributes": {"width": "half"}, "energy_scale": 2}],
    "actions": [
        {"name": "run", "subcomponents": [{"name": "a[1..3]", "actions": [{"name": "add", "energy_scale": 0.5}]}]},
        {"name": "leak", "subcomponents": [{"name": "a[1..4]", "actions": [{"name": "leak"}]}]},
    ],
}


def test_compound_energy_and_area_rules():
    got = estimate([comp("p", "pair", technology="45nm")], {"pair": ADDER_PAIR}).entries[0]
    add8 = 0.21 * 8 / 32  # aladdin_adder at 45 nm, linear in width
    # 3 referenced copies x action scale 0.5 x subcomponent scale 2
    assert got.actions["run"] == pytest.approx(3 * 0.5 * 2 * add8)
    assert got.area == pytest.approx(4 * 278 * 8 / 32)  # 4 copies
    assert got.actions["leak"] == pytest.approx(4 * 2 * 0.0024 * 8 / 32)


def test_given_attributes_win_over_class_defaults():
    got = estimate([comp("p", "pair", technology="45nm", width=32)], {"pair": ADDER_PAIR}).entries[0]
    assert got.actions["run"] == pytest.approx(3 * 0.5 * 2 * 0.21 * 16 / 32)


def test_user_ert_and_art_win_per_component():
    comps = [comp("glb", "smartbuffer_SRAM", technology="45nm", width=64, depth=1024), comp("mac", "intmac", 4, technology="45nm", datawidth=8)]
    user_ert = {"ERT": {"version": 0.3, "tables": [
        {"name": "system.PE[0..3].mac", "actions": [{"name": "mac_random", "arguments": None, "energy": 1.5}]},
        {"name": "system.other", "actions": [{"name": "read", "energy": 3.0}]},
    ]}}
    user_art = {"ART": {"version": 0.3, "tables": [{"name": "sys.glb", "area": 1000.0}]}}
    est = estimate(comps, {}, user_ert=user_ert, user_art=user_art)
    glb, mac = est.entry("glb"), est.entry("mac")
    assert glb.energy_origin == "estimated" and glb.area_origin == "user" and glb.area == 1000.0
    assert mac.energy_origin == "user" and mac.actions == {"mac_random": 1.5} and mac.area_origin == "estimated"
    doc = est.ert_doc()
    assert [t["name"] for t in doc["ERT"]["tables"]][-1] == "system.other"  # kept, not dropped
    assert est.total_area_um2 == pytest.approx(1000.0 + 4 * mac.area)


def test_ert_art_documents_and_energy_table_for_the_cost_models(tmp_path):
    design = load_design([EYERISS])
    est = estimate_design(design)
    ert = est.ert_doc()["ERT"]
    assert ert["version"] == "0.4"
    names = {t["name"]: {a["name"]: a["energy"] for a in t["actions"]} for t in ert["tables"]}
    glb = names["system.eyeriss.shared_glb[1..1]"]
    assert {"read", "write", "update", "leak"} <= set(glb)
    assert "system.eyeriss.DummyBuffer.PE.mac[1..168]" in names
    # the EnergyTable the cost models read, through load_energy_table's own rules
    table = est.energy_table(load_arch(EYERISS))
    assert table.storage["shared_glb"].read == pytest.approx(glb["read"])
    assert table.storage["shared_glb"].fill == pytest.approx(glb["write"])
    assert table.compute == pytest.approx(names["system.eyeriss.DummyBuffer.PE.mac[1..168]"]["mac_random"])
    assert not table.unmatched_levels
    paths = write_outputs(est, tmp_path / "out")
    assert set(paths) == {ERT_FILE, ART_FILE, TABLE_MD, TABLE_CSV}
    again = load_energy_table(paths[ERT_FILE], load_arch(EYERISS))
    assert again.storage == table.storage and again.compute == table.compute
    art = yaml.safe_load(paths[ART_FILE].read_text())["ART"]
    assert all(t["area"] >= 0 for t in art["tables"])
    assert "shared_glb" in paths[TABLE_MD].read_text() and "Sources" in paths[TABLE_MD].read_text()


def test_user_ert_among_the_files_is_reported_as_given():
    design = load_design([REPO / "arch" / "eyeriss.ert.yaml", EYERISS])
    est = estimate_design(design)
    assert {e.energy_origin for e in est.entries} == {"user"}
    assert est.entry("shared_glb").actions["read"] == 74.144
    assert est.entry("shared_glb").area_origin == "estimated"


# ------------------------------------------------------------------ bad input


def test_unknown_subcomponent_class():
    bad = {"name": "b", "attributes": {}, "subcomponents": [{"name": "x", "class": "warp_core"}], "actions": []}
    with pytest.raises(HalocError) as err:
        estimate([comp("b", "b", technology="45nm")], {"b": bad}, classes_file="classes.yaml")
    msg = str(err.value)
    assert "warp_core" in msg and "classes.yaml" in msg and "subcomponents[0].class" in msg and "fix:" in msg and "\n" not in msg


def test_missing_attribute_the_estimator_needs():
    with pytest.raises(HalocError) as err:
        estimate([comp("glb", "SRAM", technology="45nm", width=64)], {}, file="arch.yaml")
    assert "depth" in str(err.value) and "arch.yaml" in str(err.value) and "fix:" in str(err.value)
    with pytest.raises(HalocError, match="technology"):
        estimate([comp("add", "intadder", width=8)], {})
    with pytest.raises(HalocError, match="must_specify"):
        estimate([comp("p", "pair", width=8)], {"pair": ADDER_PAIR})


def test_unknown_class_without_estimator_or_user_energy():
    with pytest.raises(HalocError, match="unknown class 'memristor_xbar'"):
        estimate([comp("x", "memristor_xbar", technology="45nm")], {}, file="arch.yaml")
    # with the user's energies it is fine; its area stays unknown rather than invented
    est = estimate([comp("x", "memristor_xbar")], {}, user_ert={"ERT": {"tables": [{"name": "x", "actions": [{"name": "read", "energy": 2.0}]}]}})
    assert est.entries[0].energy_origin == "user" and est.entries[0].area is None


def test_generic_storage_class_is_priced_by_its_subclass():
    plain = estimate([comp("buf", "smartbuffer_SRAM", technology="45nm", width=64, depth=1024)], {}).entries[0]
    generic = estimate([comp("buf", "storage", technology="45nm", width=64, depth=1024, subclass="smartbuffer_SRAM")], {}).entries[0]
    assert generic.actions == plain.actions
    with pytest.raises(HalocError, match="no subclass"):
        estimate([comp("buf", "storage", technology="45nm", width=64, depth=1024)], {})


def test_unknown_action_of_a_subcomponent():
    bad = {"name": "b", "subcomponents": [{"name": "s", "class": "aladdin_adder"}], "actions": [{"name": "go", "subcomponents": [{"name": "s", "actions": [{"name": "teleport"}]}]}]}
    with pytest.raises(HalocError, match="no action 'teleport'"):
        estimate([comp("b", "b", technology="45nm")], {"b": bad})


def test_expression_errors_name_the_key():
    bad = {"name": "b", "attributes": {"w": "width * widht"}, "subcomponents": [], "actions": []}
    with pytest.raises(HalocError, match="widht"):
        estimate([comp("b", "b", technology="45nm", width=8)], {"b": bad})


def test_render_refuses_non_finite_energies():
    est = estimate([comp("p", "pair", technology="45nm")], {"pair": ADDER_PAIR})
    est.entries[0].actions["run"] = math.nan
    with pytest.raises(HalocError, match="energy of sys.p.run"):
        render(est)


# ------------------------------------------------------------------ CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env_path = str(REPO)
    return subprocess.run([sys.executable, "-c", "import sys; from haloc_hw.cli import main; sys.exit(main())", *args], cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})


def test_cli_writes_ert_art_and_table(tmp_path):
    out = tmp_path / "energy"
    res = _cli("energy", str(EYERISS), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert str(out) in res.stdout and "6 components" in res.stdout
    assert yaml.safe_load((out / ERT_FILE).read_text())["ERT"]["tables"]
    assert (out / TABLE_CSV).read_text().startswith("component,action,energy_pJ,area_um2")


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path):
    arch = tmp_path / "arch.yaml"
    arch.write_text(EYERISS.read_text().replace("class: intmac", "class: quantum_mac"))
    out = tmp_path / "energy"
    res = _cli("energy", str(arch), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("haloc-hw: error:")]
    assert len(errors) == 1 and "quantum_mac" in errors[0] and "fix:" in errors[0]
    assert not out.exists()
