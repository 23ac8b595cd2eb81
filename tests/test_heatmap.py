"""Heat map of a layer's cost over (r1, r2): from plain grids and from a real (CPU-measured) table."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from haloc_hw.cli import main
from haloc_hw.cost.gpu import GpuCostModel
from haloc_hw.cost.table import build_table
from haloc_hw.decompose import rank_candidates
from haloc_hw.errors import HalocError
from haloc_hw.models import build_model
from haloc_hw.report.heatmap import layer_grid, plot_rank_costs
from haloc_hw.workload import extract_shapes
from conftest import PNG_MAGIC



def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def test_unequal_ranks_give_a_heatmap(tmp_path: Path) -> None:
    grid = {(r1, r2): 1e-4 + 1e-6 * (r1 + r2) for r1 in (16, 32, 48) for r2 in (16, 32, 48, 64)}
    del grid[(48, 64)]  # a missing candidate stays blank
    result = plot_rank_costs(grid, 1.5e-4, tmp_path / "hm.png", layer="layer3.0.conv2")
    assert result.kind == "heatmap" and result.cells == 11
    assert result.best == (16, 16) and result.best_value == pytest.approx(1.32e-4)
    width, height = png_size(result.path)
    assert width > 400 and height > 300


def test_equal_ranks_only_give_a_line_chart(tmp_path: Path) -> None:
    grid = {(r, r): v for r, v in ((32, 3e-4), (64, 1e-4), (96, 2e-4))}
    result = plot_rank_costs(grid, 1.5e-4, tmp_path / "diag.svg", layer="l", metric="latency_s")
    assert result.kind == "diagonal" and result.best == (64, 64)
    text = result.path.read_text()
    assert "<svg" in text and "diagonal" in text


def test_nan_cells_are_skipped_and_an_all_bad_grid_is_an_error(tmp_path: Path) -> None:
    result = plot_rank_costs({(8, 8): float("nan"), (16, 16): 2.0}, None, tmp_path / "a.png", layer="l", metric="cycles")
    assert result.cells == 1 and result.best == (16, 16)
    with pytest.raises(HalocError, match="no candidate"):
        plot_rank_costs({(8, 8): float("inf")}, 1.0, tmp_path / "b.png", layer="l")
    with pytest.raises(HalocError, match="image format"):
        plot_rank_costs({(8, 8): 1.0}, 1.0, tmp_path / "c.jpg", layer="l")
    assert not (tmp_path / "c.jpg").exists()


@pytest.fixture(scope="module")
def unequal_table(tmp_path_factory) -> Path:
    """A CPU-measured gpu-backend table of two ResNet-20 layers with unequal ranks."""
    layers = [
        info
        for info in extract_shapes(build_model("resnet20"), (3, 32, 32), 2)
        if info.name in ("conv1", "layer1.0.conv1", "layer3.0.conv2")
    ]
    backend = GpuCostModel(device="cpu", dtype="fp32", batch=2, warmup=0, repeats=2, threads=1, progress=False)
    path = tmp_path_factory.mktemp("heat") / "t.sqlite"
    build_table(
        layers,
        backend,
        path,
        candidates_fn=lambda info: rank_candidates(info.shape, step=16 if info.shape.C > 16 else 8, equal=False),
        progress=False,
        metadata={"model": "resnet20"},
    )
    return path


def test_layer_grid_reads_every_candidate_and_the_original(unequal_table: Path) -> None:
    from haloc_hw.cost.table import CostTable

    table = CostTable.open(unequal_table)
    grid, original = layer_grid(table, "layer3.0.conv2", "latency_s")
    assert set(grid) == {(16, 16), (16, 32), (16, 48), (16, 64), (32, 16), (32, 32), (32, 48), (32, 64),
                         (48, 16), (48, 32), (48, 48), (48, 64), (64, 16), (64, 32), (64, 48)}  # fmt: skip
    assert grid[(32, 16)] == table.cost("layer3.0.conv2", 32, 16, "latency_s")
    assert original == table.original_cost("layer3.0.conv2", "latency_s") > 0


def test_report_heatmap_command_writes_the_png(unequal_table: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fig" / "layer3.png"
    assert main(["report", "heatmap", "--table", str(unequal_table), "--layer", "layer3.0.conv2", "--out", str(out)]) == 0
    assert png_size(out)[0] > 400
    printed = capsys.readouterr().out
    assert "heat map, 15 candidates" in printed and "the original layer" in printed


def test_report_heatmap_errors_are_one_line(unequal_table: Path, tmp_path: Path, capsys) -> None:
    args = ["report", "heatmap", "--table", str(unequal_table), "--out", str(tmp_path / "x.png")]
    assert main([*args, "--layer", "conv1"]) == 2
    err = capsys.readouterr().err
    assert "no rank candidates" in err and "layer3.0.conv2" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--layer", "nope"]) == 2
    assert "not in this cost table" in capsys.readouterr().err
    assert main([*args, "--layer", "layer3.0.conv2", "--metric", "cycles"]) == 2
    assert "cycles" in capsys.readouterr().err
    missing = ["report", "heatmap", "--table", str(tmp_path / "none.sqlite"), "--layer", "a", "--out", str(tmp_path / "y.png")]
    assert main(missing) == 2
    assert "cost table not found" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
