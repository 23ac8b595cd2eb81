"""``haloc-hw cost model|map`` on the golden Timeloop files and the shipped specs."""

from __future__ import annotations

import json

import pytest
import yaml

from haloc_hw.cli import main
from haloc_hw.cost.analytical.model import AnalyticalModel
from haloc_hw.spec.constraints import load_mapping
from haloc_hw.spec.energy import load_energy_table
from haloc_hw.spec.loader import load_arch
from haloc_hw.workload import load_problem
from conftest import GOLDEN, REPO

pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden Timeloop runs not found at {GOLDEN}")


def _summary(case: str) -> dict:
    return json.loads((GOLDEN / case / "summary.json").read_text())


def test_model_json_matches_timeloop_model_in_any_file_order(capsys):
    d = GOLDEN / "r18_l3"
    files = [d / "map.yaml", d / "ERT.yaml", d / "problem.yaml", d / "arch.yaml"]
    assert main(["cost", "model", *map(str, files), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ref = _summary("r18_l3")["model"]
    assert doc["cycles"] == ref["cycles"] and doc["computes"] == ref["computes"]
    assert doc["energy_pJ"] == pytest.approx(ref["energy_pJ"], rel=1e-5)
    assert doc["utilization"] == pytest.approx(ref["utilization"])
    # worked example in TIMELOOP-MODEL.md section 7
    assert doc["levels"]["psum_spad"]["Outputs"] == pytest.approx(
        {"reads": 684544, "fills": 53760, "updates": 688128, "energy_pJ": doc["levels"]["psum_spad"]["Outputs"]["energy_pJ"]})
    assert doc["levels"]["shared_glb"]["Inputs"]["reads"] == 5505024
    assert "mapping" not in doc


def test_model_out_writes_stats(tmp_path, capsys):
    d = GOLDEN / "r20_s3_r16_in"
    out = tmp_path / "model"
    assert main(["cost", "model", str(d / "arch.yaml"), str(d / "problem.yaml"), str(d / "map.yaml"),
                 str(d / "ERT.yaml"), "--out", str(out)]) == 0
    assert "1024" in capsys.readouterr().out
    text = (out / "stats.txt").read_text()
    assert "psum_spad" in text
    assert text.startswith("haloc-hw cost model") and "Word bits" in text  # titled, with each level's specs
    assert json.loads((out / "stats.json").read_text())["cycles"] == 1024


def test_map_writes_a_mapping_the_model_reproduces(tmp_path, capsys):
    d = GOLDEN / "r18_l3_r64_core"
    out = tmp_path / "map"
    rc = main(["cost", "map", str(d / "constraints.yaml"), str(d / "arch.yaml"), str(d / "mapper.yaml"),
               str(d / "problem.yaml"), str(d / "ERT.yaml"), "--json", "--out", str(out)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    ref = _summary("r18_l3_r64_core")["mapper"]
    assert doc["cycles"] <= ref["cycles"] and doc["energy_pJ"] <= ref["energy_pJ"] * 1.0001
    assert {e["target"] for e in doc["mapping"]} == {"DRAM", "shared_glb", "DummyBuffer", "ifmap_spad", "weights_spad", "psum_spad"}
    assert doc["mapper"]["evaluated"] >= doc["mapper"]["valid"] > 0
    # map.yaml is in Timeloop's form and evaluates to the same numbers
    written = yaml.safe_load((out / "map.yaml").read_text())
    assert written["mapping"] == doc["mapping"]
    arch = load_arch(d / "arch.yaml")
    ev = AnalyticalModel(arch, load_energy_table(d / "ERT.yaml", arch)).evaluate(
        load_problem(d / "problem.yaml"), load_mapping(out / "map.yaml", arch))
    assert ev.cycles == doc["cycles"] and ev.energy_pJ == pytest.approx(doc["energy_pJ"])
    assert (out / "stats.txt").read_text().strip()
    # and `cost model` on the written mapping prints the same numbers
    assert main(["cost", "model", str(d / "arch.yaml"), str(d / "problem.yaml"), str(out / "map.yaml"),
                 str(d / "ERT.yaml"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cycles"] == doc["cycles"] and again["energy_pJ"] == pytest.approx(doc["energy_pJ"])


def test_map_metric_option(capsys):
    d = GOLDEN / "r18_l2_ds"
    base = [str(d / "arch.yaml"), str(d / "problem.yaml"), str(d / "constraints.yaml"), str(d / "ERT.yaml"), "--json"]
    assert main(["cost", "map", *base, "--metric", "energy"]) == 0
    energy_first = json.loads(capsys.readouterr().out)
    assert main(["cost", "map", *base]) == 0
    delay_first = json.loads(capsys.readouterr().out)
    assert energy_first["mapper"]["metric"] == "energy"
    assert energy_first["energy_pJ"] <= delay_first["energy_pJ"]
    assert delay_first["cycles"] <= energy_first["cycles"]


def test_map_with_shipped_v04_arch_and_default_ert_and_constraints(capsys):
    arch = REPO / "arch" / "eyeriss.yaml"
    if not arch.is_file() or not (REPO / "mappings" / "row_stationary.yaml").is_file():
        pytest.skip("shipped arch/eyeriss.yaml or mappings/row_stationary.yaml not present")
    d = GOLDEN / "r20_s3_r16_in"
    assert main(["cost", "map", str(arch), str(d / "problem.yaml"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cycles"] == _summary("r20_s3_r16_in")["mapper"]["cycles"]


@pytest.mark.parametrize("drop", ["problem.yaml", "arch.yaml"])
def test_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, drop):
    d = GOLDEN / "r18_l3"
    files = [str(d / f) for f in ("arch.yaml", "problem.yaml", "constraints.yaml", "ERT.yaml") if f != drop]
    out = tmp_path / "out"
    assert main(["cost", "map", *files, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("haloc-hw: error:") and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize("action", ["model", "map"])
def test_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys, action):
    d = GOLDEN / "r20_s3_r16_in"
    out = tmp_path / "taken"
    out.write_text("keep me\n")
    files = [str(d / f) for f in ("arch.yaml", "problem.yaml", "map.yaml" if action == "model" else "constraints.yaml", "ERT.yaml")]
    assert main(["cost", action, *files, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out" in err and "not a folder" in err and "\n" not in err
    assert out.read_text() == "keep me\n"


def test_unknown_file_and_infeasible_layer(tmp_path, capsys):
    d = GOLDEN / "r18_l3"
    junk = tmp_path / "junk.yaml"
    junk.write_text("hello: 1\n")
    assert main(["cost", "model", str(d / "arch.yaml"), str(junk)]) == 2
    assert "junk.yaml" in capsys.readouterr().err
    prob = yaml.safe_load((d / "problem.yaml").read_text())
    prob["problem"]["instance"]["R"] = 13  # R=0 at weights_spad: the ifmap window no longer fits
    bad = tmp_path / "problem.yaml"
    bad.write_text(yaml.safe_dump(prob))
    out = tmp_path / "out"
    assert main(["cost", "map", str(d / "arch.yaml"), str(bad), str(d / "constraints.yaml"), str(d / "ERT.yaml"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ifmap_spad" in err and not out.exists()
