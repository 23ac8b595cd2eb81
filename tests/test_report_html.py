"""``haloc-hw report html``: one self-contained page of a run or sweep folder, its numbers, its refusals."""

from __future__ import annotations

import base64
import html as html_lib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fake_cost_backend import FakeBackend
from haloc_hw.cli import main
from haloc_hw.cost.executors import SerialExecutor
from haloc_hw.cost.table import CostTable, build_table
from haloc_hw.errors import HalocError
from haloc_hw.report import plots
from haloc_hw.report.run_page import write_html_report
from haloc_hw.workload import ConvShape, LayerInfo

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RANKS = {"b1": (16, 16), "b2": (8, 8), "b3": (8, 16)}


def _layers() -> list[LayerInfo]:
    return [
        LayerInfo("stem", ConvShape(C=3, M=16, R=3, S=3, P=8, Q=8), "conv", False),
        LayerInfo("b1", ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8), "conv", True),
        LayerInfo("b2", ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8), "conv", True),
        LayerInfo("b3", ConvShape(C=32, M=64, R=3, S=3, P=4, Q=4, Wstride=2, Hstride=2), "conv", True),
    ]


def _cands(info: LayerInfo) -> list[tuple[int, int]]:
    return [(r1, r2) for r1 in (8, 16, 32) for r2 in (8, 16, 32) if r1 <= info.shape.M and r2 <= info.shape.C]


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "table.sqlite"
    build_table(_layers(), FakeBackend(), path, candidates_fn=_cands, executor=SerialExecutor(), progress=False,
                metadata={"model": "toy"})
    return path


def make_run(folder: Path, table: Path | None, *, search: bool = True, method: str = "haloc",
             top1: float = 81.25) -> Path:
    """A finished run folder as 'haloc-hw search' writes it, on the tiny table (costs from the fake backend)."""
    folder.mkdir(parents=True)
    config = {"command": "search" if method == "haloc" else "baseline", "model": "toy", "data": "synthetic",
              "arch": "arch/eyeriss.yaml", "backend": "fake", "seed": 0, "budget": {"metric": "energy_pJ", "value": "0.5"}}
    if method != "haloc":
        config["method"] = method
    if table is not None:
        config["table"] = {"path": str(table), "metadata": {"backend": "fake"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    layer_rows = {n: {"r1": r[0], "r2": r[1], "probability": 0.5 + 0.1 * i, "num_candidates": 9, "repaired": False}
                  for i, (n, r) in enumerate(RANKS.items())}
    (folder / "ranks.json").write_text(json.dumps({"metric": "energy_pJ", "layers": layer_rows}))
    # deliberately not the table's numbers: the page must read the table when it is there
    per_layer = {n: {"rank": list(RANKS[n]) if n in RANKS else None, "original_energy_pJ": 1.0,
                     "compressed_energy_pJ": 0.5, "original_cycles": 2.0, "compressed_cycles": 1.0}
                 for n in ("stem", "b1", "b2", "b3")}
    metrics = {"model": "toy", "data": "synthetic", "top1": {"original": 90.5, "compressed": top1},
               "macs": {"original": 1e6, "compressed": 4e5}, "params": {"original": 5e4, "compressed": 2e4},
               "table_cost": {"energy_pJ": {"original": 4.0, "compressed": 2.0}, "cycles": {"original": 8.0, "compressed": 4.0}},
               "budget": {"metric": "energy_pJ", "value": 2.0, "text": "0.5", "met": True, "note": "argmax ranks meet the budget"},
               "layers": per_layer}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "finetune").mkdir()
    (folder / "finetune" / "history.json").write_text(json.dumps(
        [{"epoch": e, "loss": 1.0 / e, "train_acc": 60.0 + e, "test_acc": 70.0 + e} for e in (1, 2, 3)]))
    if search:
        cands = {n: [list(c) for c in _cands(info)] for info in _layers() if info.decomposable for n in [info.name]}
        epochs = []
        for e in range(3):
            p = {}
            for n, cs in cands.items():
                k = len(cs)
                chosen = cs.index(list(RANKS[n]))
                raw = [1.0 + (e if j == chosen else 0) for j in range(k)]
                p[n] = [v / sum(raw) for v in raw]
            epochs.append({"epoch": e, "p": p})
        (folder / "search_history.json").write_text(json.dumps({"candidates": cands, "epochs": epochs}))
    return folder


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _table_after(page: str, heading: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header and rows (by first cell) of the first table after ``heading``."""
    part = page.split(f"<h2>{heading}</h2>", 1)[1]
    table = part[part.index("<table>"):part.index("</table>")]
    header = [html_lib.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)]
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1]):
        cells = [html_lib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        rows[cells[0]] = cells
    return header, rows


def _factor(metric: str, header_cell: str) -> float:
    unit = header_cell.rsplit("[", 1)[1].rstrip("]")
    return dict((u, f) for f, u in plots.UNITS[metric][1])[unit]


def test_run_page_shows_ranks_plots_and_the_tables_per_layer_costs(tmp_path: Path, table_path: Path) -> None:
    run = make_run(tmp_path / "run", table_path)
    result = write_html_report(run)
    assert result.path == run / "report.html" and result.kind == "run"
    page = result.path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # self-contained: every image is embedded, nothing is fetched from elsewhere
    assert "<link" not in page and "<script" not in page
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    images = _images(page)
    # ranks, per-layer energy, per-layer cycles, p over the search, fine-tuning
    assert len(images) == result.images == 5
    assert all(img[:8] == PNG_MAGIC and len(img) > 5000 for img in images)

    header, rows = _table_after(page, "Per-layer cost before and after compression")
    assert set(rows) == {"stem", "b1", "b2", "b3"}
    assert rows["b1"][1] == "16" and rows["b2"][1] == "8" and rows["b3"][1] == "8x16" and rows["stem"][1] == "kept"
    assert rows["b3"][2] == "0.70"  # p from ranks.json
    table = CostTable.open(table_path)
    for metric, name in (("energy_pJ", "energy"), ("cycles", "cycles")):
        before = header.index(next(h for h in header if h.startswith(f"{name} before")))
        after = header.index(next(h for h in header if h.startswith(f"{name} after [")))
        factor = _factor(metric, header[before])
        assert factor == _factor(metric, header[after])
        for layer, cells in rows.items():
            original = table.original_cost(layer, metric)
            compressed = table.cost(layer, *RANKS[layer], metric) if layer in RANKS else original
            assert float(cells[before]) * factor == pytest.approx(original, rel=1e-3)
            assert float(cells[after]) * factor == pytest.approx(compressed, rel=1e-3)
            assert float(cells[after + 1]) == pytest.approx(compressed / original, abs=1e-3)
    assert f"cost table {table_path}" in page

    _, result_rows = _table_after(page, "Result")
    assert result_rows["top-1 [%]"][1:3] == ["90.50", "81.25"]
    assert "argmax ranks meet the budget" in page


def test_without_its_table_the_page_uses_metrics_json_and_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", tmp_path / "gone.sqlite", search=False)
    page = write_html_report(run, tmp_path / "elsewhere" / "page.html").path.read_text()
    assert "From metrics.json" in page
    header, rows = _table_after(page, "Per-layer cost before and after compression")
    assert rows["b1"][header.index("energy before [pJ]")] == "1"
    assert rows["b1"][header.index("energy after [pJ]")] == "0.5"
    assert "Search: evolution of p" not in page  # a baseline-like run: no p plot
    assert len(_images(page)) == 4


def test_sweep_page_compares_its_runs(tmp_path: Path, table_path: Path) -> None:
    sweep = tmp_path / "sweep"
    a = make_run(sweep / "eyeriss" / "haloc", table_path, top1=82.0)
    b = make_run(sweep / "eyeriss" / "uniform", table_path, method="uniform", search=False, top1=79.0)
    entries = [{"arch": "eyeriss", "method": m, "run_dir": str(d), "status": "ok", "top1": t, "energy_pJ": 2.0,
                "cycles": 4.0, "pareto": m == "haloc", "error": None} for m, d, t in (("haloc", a, 82.0), ("uniform", b, 79.0))]
    entries.append({"arch": "tiny", "method": "haloc", "run_dir": str(sweep / "tiny" / "haloc"), "status": "unmappable",
                    "error": "no mapping for layer b3"})
    (sweep / "sweep.json").write_text(json.dumps({"model": "toy", "methods": ["haloc", "uniform"], "metric": "energy_pJ",
                                                  "budget": "0.5", "archs": [{}, {}], "entries": entries}))
    result = write_html_report(sweep)
    assert result.kind == "sweep" and result.runs == 2
    page = result.path.read_text()
    assert "<h1>haloc-hw sweep: toy</h1>" in page and "no mapping for layer b3" in page
    assert "eyeriss/haloc" in page and "eyeriss/uniform" in page
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    assert len(_images(page)) >= 4


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: None, "folder not found"),
    (lambda d: d.mkdir(), "not a run or sweep folder: it lacks config.yaml, ranks.json, metrics.json"),
    (lambda d: (d.mkdir(), (d / "config.yaml").write_text("model: toy\n"), (d / "search.log").write_text("")),
     "run folder lacks ranks.json, metrics.json"),
    (lambda d: (d.mkdir(), (d / "tables").mkdir()), "sweep folder lacks sweep.json"),
])
def test_bad_folders_are_one_line_errors_naming_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                setup, message: str) -> None:
    folder = tmp_path / "f"
    setup(folder)
    with pytest.raises(HalocError, match=re.escape(message)):
        write_html_report(folder)
    assert main(["report", "html", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("haloc-hw: error:") and message in err and "\n" not in err
    assert not (folder / "report.html").exists()


def test_unfinished_run_names_the_missing_file(tmp_path: Path, table_path: Path) -> None:
    run = make_run(tmp_path / "run", table_path)
    (run / "metrics.json").unlink()
    with pytest.raises(HalocError, match="run folder lacks metrics.json"):
        write_html_report(run)
    assert not (run / "report.html").exists()


def test_out_that_is_a_folder_is_refused(tmp_path: Path, table_path: Path) -> None:
    run = make_run(tmp_path / "run", table_path)
    with pytest.raises(HalocError, match="the output is a folder"):
        write_html_report(run, tmp_path)


def test_cli_prints_the_path_and_imports_no_torch(tmp_path: Path, table_path: Path) -> None:
    run = make_run(tmp_path / "run", table_path)
    out = tmp_path / "r.html"
    code = ("import sys\nfrom haloc_hw.cli import main\n"
            f"rc = main(['report', 'html', {str(run)!r}, '--out', {str(out)!r}])\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}, check=True)
    lines = proc.stdout.split("\n")
    assert f"report: {out}" in lines
    assert proc.stdout.split()[-2:] == ["NOTORCH", "0"]
    assert len(_images(out.read_text())) == 5
