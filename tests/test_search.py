"""The HALOC search loop: determinism, budget, outputs, repair, NaN handling, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from haloc_hw.errors import HalocError
from haloc_hw.search import RankPlan, make_plan
from haloc_hw.search.search import CHECKPOINT_NAME
from conftest import CANDIDATES, HERE, DictCosts, run_tiny_search, tiny_data


def _alphas(supernet):
    return [a.detach().clone() for a in supernet.arch_parameters()]


def test_same_seed_same_ranks_and_alpha(tmp_path):
    plan_a, net_a = run_tiny_search(tmp_path / "a")
    plan_b, net_b = run_tiny_search(tmp_path / "b")
    assert plan_a.ranks == plan_b.ranks
    for a, b in zip(_alphas(net_a), _alphas(net_b)):
        assert torch.equal(a, b)
    plan_c, net_c = run_tiny_search(tmp_path / "c", seed=5)
    assert any(not torch.equal(a, c) for a, c in zip(_alphas(net_a), _alphas(net_c)))


def test_outputs_budget_and_history(tmp_path):
    plan, net = run_tiny_search(tmp_path, budget=0.45, epochs=3)
    costs = DictCosts()
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert ranks["budget_met"] is True and plan.met
    assert ranks["total_cost"] <= ranks["budget"] * (1 + 1e-9)
    total = costs.original_cost("dw", "energy_pJ") + sum(costs.cost(n, *r, "energy_pJ") for n, r in plan.ranks.items())
    assert ranks["total_cost"] == pytest.approx(total)
    assert ranks["budget"] == pytest.approx(0.45 * sum(costs.original_cost(n, "energy_pJ") for n in costs.layers()))
    for name, entry in ranks["layers"].items():
        assert (entry["r1"], entry["r2"]) in CANDIDATES[name]
        assert entry["original_cost"] == costs.original_cost(name, "energy_pJ")
    history = json.loads((tmp_path / "search_history.json").read_text())
    assert len(history["epochs"]) == 3 and history["epochs"][0]["arch_steps"] == 0  # warm-up epoch
    assert history["epochs"][-1]["arch_steps"] > 0
    assert set(history["epochs"][-1]["p"]) == set(CANDIDATES)
    assert RankPlan.load(tmp_path / "ranks.json").ranks == plan.ranks
    assert "no rank candidates" in ranks["skipped"]["dw"]
    # the exported model runs with the chosen ranks
    model = net.export_compressed(plan.ranks)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_edp_budget_is_on_total_energy_times_total_cycles(tmp_path):
    plan, _ = run_tiny_search(tmp_path, metric="edp", budget=0.3, epochs=2)
    costs = DictCosts()
    energy = costs.original_cost("dw", "energy_pJ") + sum(costs.cost(n, *r, "energy_pJ") for n, r in plan.ranks.items())
    cycles = costs.original_cost("dw", "cycles") + sum(costs.cost(n, *r, "cycles") for n, r in plan.ranks.items())
    assert plan.total_cost == pytest.approx(energy * cycles)
    assert plan.met and plan.total_cost <= plan.budget
    history = json.loads((tmp_path / "search_history.json").read_text())
    assert history["cost_components"] == ["energy_pJ", "cycles"]


def test_tight_budget_moves_probability_to_cheap_candidates(tmp_path):
    _, net = run_tiny_search(tmp_path / "tight", budget=0.3, epochs=4, warmup_epochs=0, lr_alpha=0.1)
    history = json.loads((tmp_path / "tight" / "search_history.json").read_text())
    uniform = history["original_total"] and sum(
        sum(c) / len(c) for c in history["costs"].values()) + history["fixed_cost"]
    assert history["epochs"][-1]["expected_cost"] < uniform
    # the cheapest candidate of the largest layer gains probability over uniform
    p = history["epochs"][-1]["p"]["conv3"]
    assert p[0] > 1 / 3


def test_make_plan_repairs_an_over_budget_argmax():
    candidates = {"a": [(1, 1), (2, 2), (4, 4)], "b": [(1, 1), (2, 2)]}
    costs = {"a": [1.0, 4.0, 16.0], "b": [2.0, 3.0]}
    probs = {"a": [0.1, 0.3, 0.6], "b": [0.4, 0.6]}
    plan = make_plan(probs, candidates, costs, {"a": 20.0, "b": 5.0}, metric="cycles", budget=9.0,
                     budget_text="9", fixed_cost=1.0)
    # argmax = a@4x4 (16) + b@2x2 (3) + fixed 1 = 20 > 9 -> move a to its most probable cheaper candidate (2x2)
    assert plan.searched_total == 20.0 and plan.repaired and plan.met
    assert plan.repair_steps[0] == {"layer": "a", "from": [4, 4], "to": [2, 2], "cost_from": 16.0, "cost_to": 4.0}
    assert plan.ranks == {"a": (2, 2), "b": (2, 2)} and plan.total_cost == 8.0
    entry = plan.to_dict()["layers"]["a"]
    assert entry["repaired"] and (entry["searched_r1"], entry["searched_r2"]) == (4, 4)
    off = make_plan(probs, candidates, costs, {"a": 20.0, "b": 5.0}, metric="cycles", budget=9.0, budget_text="9",
                    fixed_cost=1.0, repair=False)
    assert not off.met and "repair was off" in off.note


def test_budget_below_reachable_fails_before_searching(tmp_path):
    with pytest.raises(HalocError, match="below the cheapest reachable"):
        run_tiny_search(tmp_path, budget=0.01)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(HalocError, match="non-finite loss"):
        run_tiny_search(tmp_path, epochs=3, data=tiny_data(nan_from_epoch=1))
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["supernet"].values() if v.is_floating_point())


def test_resume_with_more_epochs_extends_the_search(tmp_path):
    run_tiny_search(tmp_path / "short", epochs=2)
    plan_ext, net_ext = run_tiny_search(tmp_path / "short", epochs=3, resume=True)
    plan_full, net_full = run_tiny_search(tmp_path / "full", epochs=3)
    assert plan_ext.ranks == plan_full.ranks
    for a, b in zip(_alphas(net_ext), _alphas(net_full)):
        assert torch.equal(a, b)


def test_resume_with_other_settings_is_refused(tmp_path):
    run_tiny_search(tmp_path, epochs=1, warmup_epochs=0)
    with pytest.raises(HalocError, match="lr_alpha"):
        run_tiny_search(tmp_path, epochs=1, warmup_epochs=0, lr_alpha=0.5, resume=True)


def test_unreadable_or_foreign_checkpoint_is_a_user_error(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a torch file")
    with pytest.raises(HalocError, match="cannot read search checkpoint"):
        run_tiny_search(tmp_path, epochs=1, resume=True)
    # the checkpoint is read with weights_only: a pickled object other than plain data is refused, not run
    torch.save({"version": 1, "epoch": 0, "hook": HalocError("x")}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(HalocError, match="cannot read search checkpoint"):
        run_tiny_search(tmp_path, epochs=1, resume=True)


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_same_ranks(tmp_path):
    script = HERE / "test_search_support.py"
    # the tests' helpers and the package itself, whether or not it is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(HERE.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "--slow"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and torch.load(ckpt, weights_only=False)["epoch"] >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"search ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        time.sleep(0.7)  # inside epoch 3 (slow batches)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (killed / "ranks.json").exists()
    subprocess.run([sys.executable, str(script), str(killed), "--resume"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, str(script), str(straight)], env=env, check=True, stdout=subprocess.DEVNULL)
    resumed = json.loads((killed / "ranks.json").read_text())
    reference = json.loads((straight / "ranks.json").read_text())
    assert {n: (v["r1"], v["r2"]) for n, v in resumed["layers"].items()} == \
        {n: (v["r1"], v["r2"]) for n, v in reference["layers"].items()}
    assert [v["probability"] for v in resumed["layers"].values()] == \
        [v["probability"] for v in reference["layers"].values()]
    a = torch.load(killed / CHECKPOINT_NAME, weights_only=False)["supernet"]
    b = torch.load(straight / CHECKPOINT_NAME, weights_only=False)["supernet"]
    assert all(torch.equal(a[k], b[k]) for k in a)
