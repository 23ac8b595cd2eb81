"""The estimator against real Accelergy: reference numbers pinned as facts, each with its source.

The numbers below are the energies (pJ) and areas (um^2) that real Accelergy v0.4 wrote in the
reference outputs of the public timeloop-accelergy-exercises repository
(workspace/example_designs/example_designs/<design>/ref_outputs/default_problem/
timeloop-mapper.ERT.yaml and .ART.yaml; tutorial 02: workspace/tutorial_exercises/
02_interface_and_design_space_exploration_2024/outputs). The component specs and compound
classes here are written for this test, with the same attribute values as those components.
These designs are the calibration set (their CACTI points are in data/energy/sram_cacti.csv);
benchmarks/bench_energy_accuracy.py reports the error on the other designs.
"""

from __future__ import annotations

import pytest

from haloc_hw.energy import estimate
from haloc_hw.energy.components import Component

GCS = {"global_cycle_seconds": 1e-9}

# A register-file buffer in the style of the exercises' designs: a >= 32 x 64 register file
# scaled down to the real size, plus two address adders. Its own attribute named area_scale is
# also the component's area scale in Accelergy (so the array's area is scaled twice).
RF_BUFFER = {
    "name": "rf_buffer",
    "attributes": {
        "technology": "must_specify",
        "width": "must_specify",
        "depth": "must_specify",
        "arr_w": "max(32, width)",
        "arr_d": "max(64, depth)",
        "area_scale": "(width / arr_w) * (depth / arr_d)",
        "dyn": "(width / arr_w) * ((depth / arr_d) ** (1.56 / 2))",
        "bits": "max(1, ceil(log2(depth)))",
    },
    "subcomponents": [
        {"name": "store", "class": "regfile", "area_scale": "area_scale", "attributes": {"width": "arr_w", "depth": "arr_d"}},
        {"name": "agen[0..1]", "class": "intadder", "attributes": {"width": "bits"}},
    ],
    "actions": [
        {"name": "read", "subcomponents": [{"name": "store", "actions": [{"name": "read", "energy_scale": "dyn"}]}, {"name": "agen[1]", "actions": [{"name": "add"}]}]},
        {"name": "write", "subcomponents": [{"name": "store", "actions": [{"name": "write", "energy_scale": "dyn"}]}, {"name": "agen[0]", "actions": [{"name": "add"}]}]},
        {"name": "leak", "subcomponents": [{"name": "store", "actions": [{"name": "leak", "energy_scale": "area_scale"}]}, {"name": "agen[0..1]", "actions": [{"name": "leak"}]}]},
    ],
}

# A MAC as the exercises' intmac: an adder of adder_width and a multiplier (eyeriss_like's
# reference used an aladdin_adder for the multiplier too, which is what its numbers reflect).
MAC_ADD_ADD = {
    "name": "mac_aa",
    "attributes": {"technology": "must_specify", "multiplier_width": "must_specify", "adder_width": "must_specify"},
    "subcomponents": [
        {"name": "add", "class": "aladdin_adder", "attributes": {"width": "adder_width"}},
        {"name": "mul", "class": "aladdin_adder", "attributes": {"width_a": "multiplier_width", "width_b": "multiplier_width"}},
    ],
    "actions": [{"name": "compute", "subcomponents": [{"name": "add", "actions": [{"name": "read"}]}, {"name": "mul", "actions": [{"name": "read"}]}]}],
}
CLASSES = {"rf_buffer": RF_BUFFER, "mac_aa": MAC_ADD_ADD}


def one(cls: str, **attrs):
    comp = Component(path=f"system.{cls}", name=cls, cls=cls, attributes={**GCS, **attrs}, instances=1)
    return estimate([comp], CLASSES).entries[0]


# (what, class, attributes, action -> reference pJ, reference area um^2, source)
CASES = [
    ("eyeriss_like shared_glb", "smartbuffer_SRAM", {"technology": "32nm", "width": 64, "depth": 16384},
     {"read": 18.183829, "write": 14.137929, "leak": 0.005652}, 217363.36892, "eyeriss_like"),
    ("eyeriss_like ifmap_spad", "rf_buffer", {"technology": "32nm", "width": 16, "depth": 12},
     {"read": 0.202442, "write": 0.176713, "leak": 0.000101}, 70.091961, "eyeriss_like"),
    ("eyeriss_like weights_spad", "rf_buffer", {"technology": "32nm", "width": 16, "depth": 192},
     {"read": 1.976602, "write": 1.881657, "leak": 0.001592}, 5816.44278, "eyeriss_like"),
    ("eyeriss_like psum_spad", "rf_buffer", {"technology": "32nm", "width": 16, "depth": 16},
     {"read": 0.2513, "write": 0.2191, "leak": 0.000134}, 123.627348, "eyeriss_like"),
    ("eyeriss_like mac", "mac_aa", {"technology": "32nm", "multiplier_width": 8, "adder_width": 16},
     {"compute": 0.207692}, 191.82, "eyeriss_like"),
    ("eyeriss_like DRAM", "DRAM", {"type": "LPDDR4", "width": 64}, {"read": 512.0, "write": 512.0, "leak": 0.0}, 0.0, "eyeriss_like"),
    ("simba_like GlobalBuffer", "smartbuffer_SRAM", {"technology": "45nm", "width": 256, "depth": 2048},
     {"read": 51.8709, "write": 66.3109}, 199065.0, "simba_like"),
    ("simple_output_stationary shared_glb", "smartbuffer_SRAM", {"technology": "45nm", "width": 64, "depth": 16384},
     {"read": 32.3778, "write": 26.1569}, 429746.0, "simple_output_stationary"),
    ("tutorial 02 buffer (SRAM, 2 banks)", "SRAM", {"technology": "45nm", "width": 128, "depth": 512, "n_banks": 2},
     {"read": 9.65335, "write": 12.6203}, 43608.4, "02_interface_and_design_space_exploration_2024"),
    ("tutorial 02 mac (intmac, 16 bit)", "intmac", {"technology": "45nm", "datawidth": 16},
     {"mac_random": 3.275}, 1726.5, "02_interface_and_design_space_exploration_2024"),
]


@pytest.mark.parametrize("what,cls,attrs,ref_actions,ref_area,design", CASES, ids=[c[0] for c in CASES])
def test_matches_accelergy_reference(what, cls, attrs, ref_actions, ref_area, design):
    got = one(cls, **attrs)
    for action, ref in ref_actions.items():
        assert got.actions[action] == pytest.approx(ref, rel=0.01, abs=2e-6), f"{what} {action}"
    assert got.area == pytest.approx(ref_area, rel=0.01), f"{what} area"
    assert got.energy_origin == "estimated"


def test_regfile_registers_and_comparators_at_32nm():
    # 32 bits x 64 rows regfile, read = 32 registers + 64 comparators, each scaled 45 -> 32 nm by
    # 0.6593402787798331 (the factor Accelergy's library plug-in logs for that step)
    got = one("regfile", technology="32nm", width=32, depth=64)
    assert got.actions["read"] == pytest.approx((32 * 0.009 + 64 * 0.02947) * 0.6593402787798331, rel=1e-6)
    assert got.actions["write"] == pytest.approx(64 * 0.02947 * 0.6593402787798331, rel=1e-6)


def test_intadder_widths_follow_the_node_data():
    # 45 nm (Aladdin plug-in): 0.21 pJ per 32 bits -> an 11-bit adder 0.0721875 pJ
    # (reference log of simba_like: "Aladdin_table estimated 0.0721875p" for width 11)
    assert one("intadder", technology="45nm", width=11).actions["add"] == pytest.approx(0.0721875, rel=1e-9)
    # 32 nm (NeuroSim plug-in in eyeriss_like's log): 8 bits 0.016304 pJ
    assert one("intadder", technology="32nm", width=8).actions["add"] == pytest.approx(0.01630403, rel=0.02)


def test_sram_write_and_read_differ_like_cacti_for_small_arrays():
    # simple_output_stationary pe_spad: SRAM 16 x 192 at 45 nm, reference read 0.680237 / write 1.58268
    # (storage plus one 8-bit address adder each, Accelergy ERT)
    got = one("smartbuffer_SRAM", technology="45nm", width=16, depth=192)
    assert got.actions["read"] == pytest.approx(0.680237, rel=0.01)
    assert got.actions["write"] == pytest.approx(1.58268, rel=0.01)
