"""``haloc-hw sweep``: search and a baseline on two PE arrays plus one that cannot map a layer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from haloc_hw.cost import backends
from haloc_hw.cost.backends import BackendSpec
from haloc_hw.errors import HalocError
from haloc_hw.sweep import SweepEntry, mark_pareto, parse_methods
from fake_cost_backend import FakeBackend
from conftest import REPO as ROOT



@pytest.fixture
def arch_backend(monkeypatch):
    """Fake costs that depend on the arch; an arch whose file name starts with 'bad' cannot map M = 64."""
    backends.available_backends()

    def factory(args: Any, ctx: Any) -> FakeBackend:
        name = Path(ctx.arch_path).name
        return FakeBackend(tag=name, fail_when=(64,) if name.startswith("bad") else ())

    monkeypatch.setitem(backends.BACKENDS, "fakearch", BackendSpec("fakearch", "arch-dependent fake costs", factory))


def test_parse_methods():
    assert parse_methods("haloc, uniform,haloc") == ["haloc", "uniform"]
    with pytest.raises(HalocError, match="pca"):
        parse_methods("uniform,pca")


def test_mark_pareto_uses_accuracy_energy_and_cycles():
    def entry(top1, energy, cycles, status="ok"):
        return SweepEntry("a", "a.yaml", "m", "d", status, top1=top1, energy_pJ=energy, cycles=cycles)

    entries = [entry(80, 10, 10), entry(85, 12, 12), entry(79, 11, 11), entry(70, 9, 20), entry(99, 1, 1, "failed")]
    assert mark_pareto(entries) == ["energy_pJ", "cycles"]
    assert [e.pareto for e in entries] == [True, True, False, True, False]


@pytest.mark.slow
def test_sweep_over_two_archs_skips_one_that_cannot_map_a_layer(tmp_path, arch_backend, capsys):
    from haloc_hw.cli import main
    from haloc_hw.search import RankPlan

    bad = tmp_path / "bad_array.yaml"
    shutil.copy(ROOT / "arch" / "eyeriss.yaml", bad)
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", "resnet20", "--data", "synthetic", "--subset", "24", "--batch", "12",
            "--epochs-base", "1", "--epochs-search", "1", "--warmup-epochs", "0", "--epochs-finetune", "1",
            "--no-onnx", "--no-progress", "--backend", "fakearch", "--jobs", "1", "--device", "cpu",
            "--arch", str(ROOT / "arch" / "eyeriss.yaml"), "--arch", str(ROOT / "arch" / "eyeriss_16x16.yaml"),
            "--arch", str(bad), "--budget-energy", "0.6", "--methods", "haloc,uniform", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "sweep.json").read_text())
    entries = result["entries"]
    assert [(e["arch"], e["method"]) for e in entries] == [
        (a, m) for a in ("eyeriss", "eyeriss_16x16", "bad_array") for m in ("haloc", "uniform")]
    ok = [e for e in entries if e["status"] == "ok"]
    assert len(ok) == 4
    skipped = [e for e in entries if e["arch"] == "bad_array"]
    assert all(e["status"] == "unmappable" and "layer3.0.conv1" in e["error"] for e in skipped)
    bad_status = [a for a in result["archs"] if a["arch"] == "bad_array"][0]
    assert not bad_status["mappable"] and "layer3.2.conv2" in bad_status["unmappable_layers"]
    assert "layer1.0.conv1" not in bad_status["unmappable_layers"]  # 16 channels map fine

    # every finished run met its budget with ranks from its arch's table
    for e in ok:
        plan = RankPlan.load(Path(e["run_dir"]) / "ranks.json")
        assert plan.met and plan.total_cost <= plan.budget * (1 + 1e-9)
        assert e["energy_pJ"] == pytest.approx(plan.total_cost)
    # the Pareto set is exactly the non-dominated runs over (top-1 up, energy down, cycles down)
    def dominates(a, b):
        ge = a["top1"] >= b["top1"] and a["energy_pJ"] <= b["energy_pJ"] and a["cycles"] <= b["cycles"]
        return ge and (a["top1"], -a["energy_pJ"], -a["cycles"]) != (b["top1"], -b["energy_pJ"], -b["cycles"])
    expected = {(e["arch"], e["method"]) for e in ok if not any(dominates(o, e) for o in ok if o is not e)}
    assert {(p["arch"], p["method"]) for p in result["pareto"]} == expected and expected

    text = (out / "sweep.md").read_text()
    assert "★" in text and "## Architectures skipped" in text and "bad_array" in text
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "report" / "report.md").is_file()
    printed = capsys.readouterr().out
    assert "bad_array: skipped, cannot map layer(s)" in printed

    # a second start reuses every finished run
    assert main(argv) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == 4
