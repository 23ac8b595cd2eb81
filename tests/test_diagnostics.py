"""Study summaries and the entropy curves of a search history."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from haloc_hw.search.diagnostics import collect_study, entropy_curves, plot_entropy, study_markdown


def _metrics(top1: float, base: float, macs: float, energy: float) -> dict:
    return {"top1": {"original": base, "compressed": top1}, "macs": {"original": 100.0, "compressed": macs},
            "table_cost": {"energy_pJ": {"original": 10.0, "compressed": energy}}, "distill": None}


def test_study_summary_means_and_per_seed_rows(tmp_path):
    values = {0: (93.0, 94.0), 1: (92.0, 93.5), 2: (92.5, 94.5)}
    for seed, (top1, base) in values.items():
        for method, shift in (("haloc", 0.0), ("alds", -0.5)):
            d = tmp_path / f"s{seed}" / method
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps(_metrics(top1 + shift, base, 25.0, 5.5)))
        (tmp_path / f"s{seed}" / "base").mkdir()
        (tmp_path / f"s{seed}" / "base" / "metrics.json").write_text("{}")  # the base's own: ignored
    runs = collect_study(tmp_path)
    assert len(runs) == 6
    text = study_markdown(runs)
    deltas = [t - b for t, b in values.values()]
    assert f"{statistics.mean(deltas):.2f} ± {statistics.stdev(deltas):.2f}" in text
    assert "| haloc | 3 |" in text.splitlines()[2] and "75.00" in text
    assert "| 1 | 93.50 | 92.00 (-1.50) | 91.50 (-2.00) |" in text


def test_entropy_curves_recompute_missing_entropy_and_plot(tmp_path):
    history = {"epochs": [{"p": {"a": [0.5, 0.5], "b": [1.0]}}, {"p": {"a": [0.9, 0.1], "b": [1.0]},
                                                                   "entropy": {"a": 0.4, "b": 0.0}}]}
    curves = entropy_curves(history)
    assert curves["a"][0] == pytest.approx(1.0) and curves["a"][1] == 0.4 and curves["b"] == [0.0, 0.0]
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert entropy_curves({"epochs": [{"p": {"a": [0.9, 0.1]}}]})["a"][0] == pytest.approx(h)
    assert plot_entropy(history, tmp_path / "e.png").stat().st_size > 0


def test_budget_curve_is_expected_cost_over_budget_and_plots(tmp_path):
    from haloc_hw.errors import HalocError
    from haloc_hw.search.diagnostics import budget_curve, plot_budget_tracking

    hinge = {"budget": 200.0, "epochs": [{"expected_cost": 260.0}, {"expected_cost": 200.0}, {"expected_cost": 198.0}]}
    paper = {"budget": 200.0, "epochs": [{"expected_cost": 260.0}, {"expected_cost": 150.0}, {"expected_cost": 120.0}]}
    assert budget_curve(hinge) == [1.3, 1.0, 0.99] and budget_curve(paper) == [1.3, 0.75, 0.6]
    assert plot_budget_tracking({"hinge": hinge, "paper": paper}, tmp_path / "b.png").stat().st_size > 0
    with pytest.raises(HalocError, match="no positive budget"):
        budget_curve({"epochs": [{"expected_cost": 1.0}]})
    with pytest.raises(HalocError, match="no search history with epochs"):
        plot_budget_tracking({"empty": {"budget": 1.0, "epochs": []}}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
