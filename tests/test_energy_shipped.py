"""The shipped 16x16 ERT follows from the estimator: golden 14x12 energies times the estimator's
16x16 / 14x12 ratio per component and action (as its header says)."""

from __future__ import annotations

import logging

import pytest

from haloc_hw.energy import estimate_design
from haloc_hw.spec.design import load_design
from haloc_hw.spec.energy import read_ert
from conftest import REPO



@pytest.mark.parametrize("folder", [REPO / "arch", REPO / "haloc_hw" / "data" / "arch"])
def test_16x16_ert_is_the_estimator_scaled_golden_baseline(folder, caplog):
    caplog.set_level(logging.ERROR)
    small = estimate_design(load_design([REPO / "arch" / "eyeriss.yaml"]))
    big = estimate_design(load_design([REPO / "arch" / "eyeriss_16x16.yaml"]))
    golden = read_ert(REPO / "arch" / "eyeriss.ert.yaml")
    shipped = read_ert(folder / "eyeriss_16x16.ert.yaml")
    for name in ("shared_glb", "weights_spad", "psum_spad", "ifmap_spad"):
        for action in ("read", "write"):
            ratio = big.entry(name).actions[action] / small.entry(name).actions[action]
            assert shipped[name][action] == pytest.approx(golden[name][action] * ratio, abs=1e-3), (name, action)
    assert shipped["mac"]["mac_random"] == golden["mac"]["mac_random"]
