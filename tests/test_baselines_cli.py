"""``haloc-hw baseline``: ranks.json, metrics.json and model.pt as the search writes them; unreachable budgets."""

from __future__ import annotations

import json

import pytest
import yaml

from haloc_hw.cli import main
from haloc_hw.cost.table import CostTable
from haloc_hw.export import load_compressed
from haloc_hw.search import RankPlan
from conftest import REPO as ROOT

COMMON = ["--model", "resnet20", "--data", "synthetic", "--subset", "24", "--batch", "12", "--epochs-base", "1",
          "--epochs-finetune", "1", "--no-onnx", "--no-progress", "--backend", "fake", "--jobs", "1", "--device", "cpu",
          "--arch", str(ROOT / "arch" / "eyeriss.yaml")]


@pytest.fixture(scope="module")
def fake_backend():
    from fake_cost_backend import register

    register()


@pytest.mark.slow
def test_three_baselines_share_base_and_table_and_write_search_style_run_folders(tmp_path, fake_backend, capsys):
    first = tmp_path / "uniform"
    assert main(["baseline", "--method", "uniform", *COMMON, "--budget-energy", "0.5", "--out", str(first)]) == 0
    base, table_path = first / "base", first / "table.sqlite"
    assert (base / "model.pt").is_file() and table_path.is_file()
    table = CostTable.open(table_path)
    original = table.model_cost({}, "energy_pJ")
    runs = {"uniform": first}
    for method in ("vbmf", "greedy"):
        runs[method] = tmp_path / method
        assert main(["baseline", "--method", method, *COMMON, "--budget-energy", "0.5", "--base", str(base),
                     "--table", str(table_path), "--out", str(runs[method])]) == 0
    for method, run in runs.items():
        plan = RankPlan.load(run / "ranks.json")
        assert plan.met and plan.total_cost <= 0.5 * original * (1 + 1e-9)
        assert plan.total_cost == pytest.approx(table.model_cost(plan.ranks, "energy_pJ"))
        skipped = json.loads((run / "ranks.json").read_text())["skipped"]
        assert "linear is not Tucker-2 decomposable" in skipped["fc"] and "conv1" in skipped
        for name, rank in plan.ranks.items():
            assert rank in table.candidates(name)
        metrics = json.loads((run / "metrics.json").read_text())
        assert {"top1", "loss", "macs", "params", "table_cost", "budget", "layers", "reload_matches"} <= set(metrics)
        assert metrics["method"] == method and metrics["reload_matches"] is True
        assert metrics["table_cost"]["energy_pJ"]["compressed"] == pytest.approx(plan.total_cost)
        assert metrics["macs"]["compressed"] < metrics["macs"]["original"]
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["command"] == "baseline" and config["method"] == method
        model = load_compressed(run)
        assert model.haloc_info["ranks"] == plan.ranks
        assert (run / "finetune" / "history.json").is_file()
        assert json.loads((run / "baseline.json").read_text())["method"] == method
        assert f"{method} baseline:" in (run / "baseline.log").read_text()  # INFO records reach the run log
    # the three runs make a report together
    assert main(["report", "runs", *map(str, runs.values()), "--out", str(tmp_path / "report")]) == 0
    assert "| vbmf |" in (tmp_path / "report" / "report.md").read_text()


def test_unreachable_budget_exits_2_naming_the_minimum(tmp_path, fake_backend, capsys):
    out = tmp_path / "greedy"
    rc = main(["baseline", "--method", "greedy", *COMMON, "--budget-energy", "0.01", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "raise the budget to at least" in err and "budget-energy" in err
    assert not (out / "ranks.json").exists() and not (out / "metrics.json").exists()
