"""``haloc-hw bench`` on the CPU with tiny settings, and its ranks.json reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from haloc_hw.cli import main
from haloc_hw.cli.bench import BenchResult, Measured, load_ranks
from haloc_hw.cost.gpu import GpuCostModel
from haloc_hw.cost.table import CostTable, build_table
from haloc_hw.errors import HalocError
from haloc_hw.models import build_model
from haloc_hw.workload import extract_shapes

INPUT = (3, 16, 16)
TINY = ["--device", "cpu", "--dtype", "fp32", "--batch", "2", "--warmup", "1", "--repeats", "2", "--threads", "1"]


def write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_load_ranks_accepts_search_output_and_plain_mappings(tmp_path: Path) -> None:
    search = {"metric": "latency_s", "layers": {"a": {"r1": 8, "r2": 16, "cost": 1.0, "probability": 0.5}, "b": {"r1": 4, "r2": 4}}}
    assert load_ranks(write(tmp_path / "s.json", search)) == {"a": (8, 16), "b": (4, 4)}
    assert load_ranks(write(tmp_path / "p.json", {"a": [8, 8], "b": None})) == {"a": (8, 8)}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "malformed JSON"),
        ('["a"]', "expected an object"),
        ('{"layers": {"a": 8}}', "ranks for 'a'"),
        ('{"layers": {"a": {"r1": 0, "r2": 8}}}', "positive integers"),
        ('{"layers": {"a": [8.5, 8]}}', "positive integers"),
    ],
)
def test_bad_ranks_files_are_user_errors(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(HalocError, match=match) as info:
        load_ranks(path)
    assert info.value.file == str(path)
    with pytest.raises(HalocError, match="not found"):
        load_ranks(tmp_path / "missing.json")


def test_gap_is_relative_to_the_measurement() -> None:
    m = Measured(latency_s=2e-3, p10_s=1.9e-3, p90_s=2.1e-3, throughput=1000.0)
    assert BenchResult.gap_pct(1.5e-3, m) == pytest.approx(-25.0)
    assert BenchResult.gap_pct(None, m) is None


@pytest.fixture(scope="module")
def small_table(tmp_path_factory) -> Path:
    """resnet20 at 16x16, batch 2, measured on the CPU; one candidate for two layers."""
    layers = extract_shapes(build_model("resnet20"), INPUT, 2)
    wanted = {"layer1.0.conv1": [(8, 8)], "layer3.0.conv2": [(16, 16)]}
    backend = GpuCostModel(device="cpu", dtype="fp32", batch=2, warmup=0, repeats=2, threads=1, progress=False)
    path = tmp_path_factory.mktemp("bench") / "r20.sqlite"
    build_table(layers, backend, path, candidates_fn=lambda info: wanted.get(info.name, []), progress=False,
                metadata={"model": "resnet20", "input_size": list(INPUT), "batch": 2, "num_classes": 10})  # fmt: skip
    return path


def test_bench_measures_both_models_and_compares_with_the_table(small_table: Path, tmp_path: Path, capsys) -> None:
    ranks = write(tmp_path / "ranks.json", {"layers": {"layer1.0.conv1": {"r1": 8, "r2": 8}, "layer3.0.conv2": {"r1": 16, "r2": 16}}})
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "resnet20", "--ranks", str(ranks), "--table", str(small_table), "--json", str(out), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    for word in ("original", "compressed", "speed-up", "images/s", "gap", "3x16x16"):  # input size taken from the table
        assert word in printed
    doc = json.loads(out.read_text())
    table = CostTable.open(small_table)
    assert doc["predicted_original_s"] == pytest.approx(table.model_cost({}, "latency_s"))
    assert doc["predicted_compressed_s"] == pytest.approx(
        table.model_cost({"layer1.0.conv1": (8, 8), "layer3.0.conv2": (16, 16)}, "latency_s")
    )
    for key in ("original", "compressed"):
        m = doc[key]
        assert m["latency_s"] > 0 and math.isfinite(m["latency_s"])
        assert m["throughput"] == pytest.approx(2 / m["latency_s"])
    assert doc["gap_original_pct"] == pytest.approx(
        100 * (doc["predicted_original_s"] - doc["original"]["latency_s"]) / doc["original"]["latency_s"]
    )
    assert doc["ranks"] == {"layer1.0.conv1": [8, 8], "layer3.0.conv2": [16, 16]}
    assert doc["backend"]["device"] == "cpu" and doc["batch"] == 2


def test_bench_without_ranks_or_table_times_the_original_only(capsys) -> None:
    assert main(["bench", "--model", "resnet20", "--input-size", "3,8,8", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "original" in printed and "compressed" not in printed and "gap" not in printed


def test_bench_rejects_ranks_for_unknown_layers(tmp_path: Path, capsys) -> None:
    ranks = write(tmp_path / "ranks.json", {"layers": {"layer9.conv": [8, 8]}})
    assert main(["bench", "--model", "resnet20", "--ranks", str(ranks), "--input-size", "3,8,8", *TINY]) == 2
    err = capsys.readouterr().err
    assert "layer9.conv" in err and len(err.strip().splitlines()) == 1


def test_bench_on_cuda_without_a_gpu_is_a_user_error(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--model", "resnet20", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_bench_with_a_missing_table_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert main(["bench", "--model", "resnet20", "--table", str(tmp_path / "none.sqlite"), *TINY]) == 2
    assert "cost table not found" in capsys.readouterr().err


def test_binary_ranks_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(HalocError, match="not a text file") as info:
        load_ranks(path)
    assert info.value.file == str(path)


def test_a_table_without_latency_fails_before_any_timing(tmp_path: Path, monkeypatch) -> None:
    from fake_cost_backend import FakeBackend

    from haloc_hw.cli.bench import run_bench

    layers = extract_shapes(build_model("resnet20"), INPUT, 1)
    path = tmp_path / "cycles.sqlite"
    build_table(layers, FakeBackend(), path, candidates_fn=lambda info: [], progress=False)  # cycles and energy only

    def no_timing(*args, **kwargs):
        raise AssertionError("timed a model before reading the table")

    monkeypatch.setattr(GpuCostModel, "time_module", no_timing)
    backend = GpuCostModel(device="cpu", dtype="fp32", batch=1, warmup=0, repeats=1, threads=1, progress=False)
    with pytest.raises(HalocError, match="latency_s"):
        run_bench("resnet20", backend, table_path=path, input_size=INPUT)
