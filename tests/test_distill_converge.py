"""Distillation in the fine-tuning loop and the search's convergence diagnostics (entropy, tau, early stop)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from haloc_hw.errors import HalocError
from haloc_hw.search.search import SearchConfig, converged, normalised_entropy, tau_at
from haloc_hw.train import TrainConfig, distill_loss, parse_distill, train
from conftest import run_tiny_search


def _data(classes: int = 3, n: int = 32) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, 4, 4, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]
    return SimpleNamespace(train=batches, test=batches, device=torch.device("cpu"))


def _net(classes: int = 3) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(32, classes))


def test_distill_loss_is_ce_at_alpha_0_and_zero_kl_against_itself():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    ce = nn.CrossEntropyLoss()
    assert torch.allclose(distill_loss(logits, torch.randn(5, 4), y, 4.0, 0.0, ce), ce(logits, y))
    assert distill_loss(logits, logits, y, 4.0, 1.0, ce).abs() < 1e-6
    # the KL term by its definition: T^2 sum_k q_k (log q_k - log p_k), batch mean
    t, teacher = 2.0, torch.randn(5, 4)
    q, logp = torch.softmax(teacher / t, 1), torch.log_softmax(logits / t, 1)
    expected = t * t * (q * (torch.log(q) - logp)).sum(1).mean()
    assert torch.allclose(distill_loss(logits, teacher, y, t, 1.0, ce), expected, atol=1e-6)


def test_training_with_distillation_pulls_the_student_towards_the_teacher():
    data = _data()
    teacher = _net()
    with torch.no_grad():
        teacher[1].weight.mul_(5)
    cfg = dict(epochs=15, lr=0.05, schedule="constant", amp=False, nesterov=False, momentum=0.0, weight_decay=0.0)

    def gap(model):
        x = torch.cat([b[0] for b in data.train])
        with torch.no_grad():
            return float((torch.softmax(model(x), 1) - torch.softmax(teacher(x), 1)).abs().mean())

    plain = train(_net(), data, TrainConfig(**cfg), progress=False).model
    taught = train(_net(), data, TrainConfig(**cfg, distill_temperature=1.0, distill_alpha=1.0), progress=False,
                   teacher=teacher).model
    assert gap(taught) < gap(plain)


def test_distillation_refuses_a_missing_or_mismatched_teacher():
    cfg = TrainConfig(epochs=1, amp=False, distill_temperature=4.0, distill_alpha=0.5)
    with pytest.raises(HalocError, match="needs a teacher"):
        train(_net(), _data(), cfg, progress=False)
    with pytest.raises(HalocError, match="do not match"):
        train(_net(3), _data(), cfg, progress=False, teacher=_net(10))
    with pytest.raises(HalocError, match="does not take this data"):
        train(_net(3), _data(), cfg, progress=False, teacher=nn.Sequential(nn.Flatten(), nn.Linear(50, 3)))


@pytest.mark.parametrize("text", ["4", "a,b", "4,0.5,1", "-1,0.5", "4,2"])
def test_parse_distill_refuses_bad_text(text):
    with pytest.raises(HalocError):
        parse_distill(text)


def test_parse_distill_reads_t_and_alpha():
    assert parse_distill("4,0.9") == (4.0, 0.9) and parse_distill(None) is None


def test_tau_anneals_geometrically_after_the_warmup():
    cfg = SearchConfig(epochs=5, warmup_epochs=1, tau=1.0, tau_final=0.25)
    taus = [tau_at(cfg, e) for e in range(5)]
    assert taus[0] == taus[1] == 1.0 and taus[-1] == pytest.approx(0.25)
    assert all(b < a for a, b in zip(taus[1:], taus[2:]))
    assert taus[3] == pytest.approx(math.sqrt(taus[2] * taus[4]))  # geometric
    assert tau_at(SearchConfig(epochs=5, tau=0.7), 3) == 0.7


def test_normalised_entropy_and_convergence_rule():
    assert normalised_entropy([0.25] * 4) == pytest.approx(1.0) and normalised_entropy([1.0, 0.0]) == 0.0
    cfg = SearchConfig(epochs=10, warmup_epochs=1, stop_entropy=0.3)
    stats = {"entropy": {"a": 0.2, "b": 0.31}, "p_change": 0.5}
    assert converged(cfg, 3, stats) == ""
    assert "entropy" in converged(cfg, 3, {**stats, "entropy": {"a": 0.2, "b": 0.29}})
    assert converged(cfg, 0, {**stats, "entropy": {"a": 0.0}}) == ""  # not during the warm-up


def test_search_records_entropy_and_stops_when_p_stops_moving(tmp_path):
    plan, _ = run_tiny_search(tmp_path, epochs=6, warmup_epochs=1, stop_delta=10.0, tau_final=0.5)
    history = json.loads((tmp_path / "search_history.json").read_text())
    epochs = history["epochs"]
    # the change is measured between architecture epochs: stop_delta=10 stops after the second one
    assert len(epochs) == 3 and history["stopped"]["epoch"] == 3 and "changed" in history["stopped"]["reason"]
    assert epochs[1]["tau"] == 1.0 and epochs[2]["tau"] < 1.0
    for rec in epochs:
        assert set(rec["entropy"]) == set(rec["p"])
        for name, p in rec["p"].items():
            assert rec["entropy"][name] == pytest.approx(normalised_entropy(p))
    assert epochs[0]["p_change"] is None and epochs[1]["p_change"] > 0
    assert (tmp_path / "ranks.json").exists() and plan.met
