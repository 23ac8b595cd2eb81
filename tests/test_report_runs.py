"""``haloc-hw report runs``: report.md / report.html and PNGs from run folders, refusals, Pareto sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from haloc_hw.cli import build_parser, main
from haloc_hw.errors import HalocError
from haloc_hw.report.markdown import comparison_rows, write_report
from haloc_hw.report.runs import load_run, load_runs, pareto_indices
from conftest import PNG_MAGIC

LAYERS = ["conv1", "layer1.conv", "layer2.conv"]


def make_run(folder: Path, *, method: str = "haloc", model: str = "resnet20", data: str = "synthetic",
             ranks: dict | None = None, top1: float = 80.0, macs: float = 25.0, energy: float = 400.0,
             cycles: float = 300.0, search: bool = False, epochs: int = 3) -> Path:
    """A run folder as 'haloc-hw search' / 'baseline' writes it (only the keys reports read)."""
    ranks = ranks or {"layer1.conv": (8, 8), "layer2.conv": (16, 16)}
    folder.mkdir(parents=True)
    config = {"command": "search" if method == "haloc" else "baseline", "model": model, "data": data,
              "arch": "arch/eyeriss.yaml", "backend": "analytical"}
    if method != "haloc":
        config["method"] = method
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    layer_rows = {n: {"r1": r[0], "r2": r[1], "cost": 1.0, "original_cost": 2.0, "probability": 1.0, "searched_r1": r[0],
                      "searched_r2": r[1], "repaired": False, "num_candidates": 3} for n, r in ranks.items()}
    (folder / "ranks.json").write_text(json.dumps({"metric": "energy_pJ", "budget": 500.0, "budget_text": "0.5",
                                                   "budget_met": True, "layers": layer_rows}))
    per_layer = {}
    for i, n in enumerate(LAYERS):
        orig = 100.0 * (i + 1)
        comp = orig if n not in ranks else orig * ranks[n][0] / 32
        per_layer[n] = {"rank": list(ranks[n]) if n in ranks else None, "original_energy_pJ": orig,
                        "compressed_energy_pJ": comp, "original_cycles": orig / 2, "compressed_cycles": comp / 2}
    metrics = {"model": model, "data": data, "top1": {"original": 90.0, "compressed": top1},
               "macs": {"original": 100.0, "compressed": macs}, "params": {"original": 1000.0, "compressed": 400.0},
               "table_cost": {"energy_pJ": {"original": 1000.0, "compressed": energy},
                              "cycles": {"original": 600.0, "compressed": cycles}},
               "budget": {"metric": "energy_pJ", "value": 500.0, "text": "0.5", "met": True, "note": "ok"},
               "layers": per_layer}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "finetune").mkdir()
    history = [{"epoch": e + 1, "loss": 2.0 / (e + 1), "train_acc": 50.0 + e, "test_acc": top1 - epochs + e + 1}
               for e in range(epochs)]
    (folder / "finetune" / "history.json").write_text(json.dumps(history))
    if search:
        cands = {"layer1.conv": [[8, 8], [16, 16]], "layer2.conv": [[8, 8], [16, 16], [24, 24]]}
        eps = [{"epoch": e, "p": {"layer1.conv": [0.5 + 0.1 * e, 0.5 - 0.1 * e], "layer2.conv": [0.2, 0.5, 0.3]}}
               for e in range(3)]
        (folder / "search_history.json").write_text(json.dumps({"candidates": cands, "epochs": eps}))
    return folder


def test_report_on_two_runs_writes_markdown_html_and_pngs(tmp_path):
    a = make_run(tmp_path / "haloc_run", search=True, top1=85.0, macs=25.0, energy=400.0, cycles=300.0)
    b = make_run(tmp_path / "uniform_run", method="uniform", ranks={"layer1.conv": (16, 16), "layer2.conv": (8, 8)},
                 top1=82.0, macs=30.0, energy=450.0, cycles=330.0)
    result = write_report([a, b], tmp_path / "out", html_page=True)
    text = result.markdown.read_text()
    assert "haloc_run" in text and "uniform_run" in text
    # FLOPs 100 -> 25 is 75 % less; energy 1000 -> 450 is 55 % less; 82 - 90 = -8 points
    assert "| 75.0% |" in text and "55.0%" in text and "-8.00" in text
    assert "Pareto set (top-1 up, energy and cycles down): haloc_run." in text  # a dominates b
    names = {p.name for p in result.images}
    assert {"accuracy_vs_cost.png", "ranks.png", "training.png", "p_haloc_run.png",
            "layer_energy_pJ.png", "layer_cycles.png"} <= names
    for image in result.images:
        assert image.read_bytes()[:8] == PNG_MAGIC and image.stat().st_size > 5000
        assert f"]({image.name})" in text
    page = result.html.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'src="ranks.png"' in page and "<table>" in page


def test_comparison_table_reports_each_runs_reductions(tmp_path):
    runs = load_runs([make_run(tmp_path / "a", macs=40.0, energy=250.0), make_run(tmp_path / "b", method="vbmf")])
    rows = comparison_rows(runs)
    header = rows[0]
    a = dict(zip(header, rows[1]))
    assert a["FLOPs ↓"] == "60.0%" and a["energy ↓"] == "75.0%" and a["params ↓"] == "60.0%"
    assert a["cycles ↓"] == "50.0%" and a["method"] == "haloc"
    assert dict(zip(header, rows[2]))["method"] == "vbmf"
    assert "latency" not in header  # no run has a latency: the column is left out


def test_mixed_models_are_refused_naming_them_and_grouped_on_request(tmp_path):
    a = make_run(tmp_path / "r20", model="resnet20")
    b = make_run(tmp_path / "v16", model="vgg16", data="cifar10")
    with pytest.raises(HalocError) as err:
        write_report([a, b], tmp_path / "out")
    message = str(err.value)
    assert "resnet20 on synthetic: r20" in message and "vgg16 on cifar10: v16" in message and "--group" in message
    assert not (tmp_path / "out" / "report.md").exists()
    result = write_report([a, b], tmp_path / "grouped", group=True)
    text = result.markdown.read_text()
    assert "## resnet20 on synthetic" in text and "## vgg16 on cifar10" in text
    assert (tmp_path / "grouped" / "resnet20_synthetic_ranks.png").is_file()
    assert (tmp_path / "grouped" / "vgg16_cifar10_ranks.png").is_file()


def test_a_run_folder_missing_files_is_named(tmp_path):
    run = make_run(tmp_path / "broken")
    (run / "metrics.json").unlink()
    (run / "ranks.json").unlink()
    with pytest.raises(HalocError) as err:
        load_run(run)
    assert "ranks.json, metrics.json" in str(err.value) and "broken" in str(err.value)
    with pytest.raises(HalocError, match="run folder not found"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(HalocError, match="no run folders given"):
        write_report([], tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_pareto_indices():
    # (cost down, accuracy up)
    points = [(10, 80), (12, 85), (11, 79), (10, 80), (20, 84), (None, 99)]
    assert pareto_indices(points, maximise=(False, True)) == [0, 1, 3]
    assert pareto_indices([(1, 1, 1), (2, 0, 2), (2, 2, 0)], maximise=(False, False, True)) == [0, 1]


def test_cli_report_runs_and_heatmap_both_parse(tmp_path, capsys):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", method="greedy", top1=70.0)
    assert main(["report", "runs", str(a), str(b), "--out", str(tmp_path / "rep"), "--html"]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    assert "report.md" in capsys.readouterr().out
    args = build_parser().parse_args(["report", "heatmap", "--table", "t.sqlite", "--layer", "l", "--out", "x.png"])
    assert args.func.__name__ == "_run_heatmap"
    c = make_run(tmp_path / "c", model="vgg16")
    assert main(["report", "runs", str(a), str(c), "--out", str(tmp_path / "rep2")]) == 2
    assert "different models" in capsys.readouterr().err


def test_a_run_on_a_gpu_latency_table_names_the_gpu_not_the_default_arch(tmp_path):
    folder = make_run(tmp_path / "latency", search=True)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["table"] = {"metadata": {"backend": "gpu", "arch_path": None,
                                    "key_fields": {"device": "NVIDIA H100 80GB HBM3", "dtype": "fp32"}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))  # an older run: 'arch' still says eyeriss
    run = load_run(folder)
    assert run.arch == "gpu (NVIDIA H100 80GB HBM3, fp32)" and run.backend == "gpu"
    assert load_run(make_run(tmp_path / "energy")).arch == "eyeriss"


def test_p_plot_names_the_chosen_and_the_most_probable_candidates_only(tmp_path, monkeypatch):
    from haloc_hw.report import plots

    folder = make_run(tmp_path / "wide", search=True, ranks={"layer1.conv": (8, 8), "layer2.conv": (200, 200)})
    cands = [[8 * (j + 1), 8 * (j + 1)] for j in range(40)]
    last = [1.0 / (j + 2) for j in range(40)]  # falls with the rank; the chosen 200 is improbable
    history = {"candidates": {"layer1.conv": [[8, 8], [16, 16]], "layer2.conv": cands},
               "epochs": [{"epoch": e, "p": {"layer1.conv": [0.6, 0.4], "layer2.conv": [v / sum(last) for v in last]}}
                          for e in range(2)]}
    (folder / "search_history.json").write_text(json.dumps(history))
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_p_evolution(load_run(folder), tmp_path / "p.png")
    wide = [ax for ax in figures[0].axes if ax.get_title().startswith("layer2.conv")][0]
    labels = [t.get_text() for t in wide.get_legend().get_texts()]
    assert labels == ["8", "16", "24", "32", "40", "200 (chosen)"]
    assert "34 more in grey" in wide.get_title()
    assert wide.get_ylim()[1] < 0.2  # its own p scale: every p here is below 0.16
