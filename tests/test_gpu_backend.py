"""The measured-latency (``gpu``) backend, exercised on the CPU path; real-GPU checks are marked."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from haloc_hw.cost import gpu as gpu_mod
from haloc_hw.cost.gpu import GpuCostModel, build_conv, check_triple, input_size, same_output_padding
from haloc_hw.cost.timing import choose_inner, percentile, time_cpu
from haloc_hw.errors import HalocError
from haloc_hw.workload import ConvShape, tucker2_triple

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny_model(**kw) -> GpuCostModel:
    args = dict(device="cpu", dtype="fp32", batch=2, warmup=1, repeats=3, threads=1, progress=False)
    args.update(kw)
    return GpuCostModel(**args)


SHAPES = [
    ConvShape(C=16, M=16, R=3, S=3, P=8, Q=8, W=8, H=8),  # "same" padding
    ConvShape(C=16, M=32, R=3, S=3, P=4, Q=4, Wstride=2, Hstride=2, W=8, H=8),  # strided
    ConvShape(C=8, M=8, R=3, S=1, P=6, Q=5, W=6, H=5),  # 1x3 kernel, non-square input
    ConvShape(C=8, M=8, R=3, S=3, P=5, Q=5, Wdilation=2, Hdilation=2),  # no W/H, dilated
    ConvShape(C=1, M=1, R=3, S=3, P=6, Q=6, G=8, W=6, H=6),  # depthwise
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.key)
def test_built_conv_reproduces_the_shape(shape: ConvShape) -> None:
    conv = build_conv(shape)
    h, w, _, _ = input_size(shape)
    out = conv(torch.zeros(2, shape.C * shape.G, h, w))
    assert tuple(out.shape) == (2, shape.M * shape.G, shape.Q, shape.P)
    assert conv.groups == shape.G and conv.bias is None


def test_input_size_without_w_h_is_the_unpadded_extent() -> None:
    shape = ConvShape(C=4, M=4, R=3, S=5, P=7, Q=6, Wstride=2, Hdilation=2)
    assert input_size(shape) == ((6 - 1) * 1 + (5 - 1) * 2 + 1, (7 - 1) * 2 + (3 - 1) + 1, 0, 0)


def test_padding_that_cannot_give_the_output_is_an_error() -> None:
    assert same_output_padding(14, 14, 3, 1, 1) == 1
    assert same_output_padding(14, 7, 3, 2, 1) == 1
    with pytest.raises(HalocError, match="no padding"):
        same_output_padding(4, 20, 3, 1, 1)


def test_evaluate_returns_positive_finite_medians_with_percentiles() -> None:
    model = tiny_model()
    costs = model.evaluate(SHAPES)
    assert len(costs) == len(SHAPES)
    for cost in costs:
        assert cost.cycles is None and cost.energy_pJ is None
        assert math.isfinite(cost.latency_s) and cost.latency_s > 0
        b = cost.breakdown
        assert b["p10_s"] <= cost.latency_s <= b["p90_s"]
        assert b["repeats"] == 3 and b["batch"] == 2 and b["dtype"] == "fp32"
        assert b["timer"] == "perf_counter_ns"
        assert cost.metric("latency_s") == cost.latency_s


def test_evaluate_triples_times_the_chained_block() -> None:
    shape = ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8, W=8, H=8)
    strided = ConvShape(C=16, M=32, R=3, S=3, P=4, Q=4, Wstride=2, Hstride=2, W=8, H=8)
    triples = [tucker2_triple(shape, 8, 8), tucker2_triple(shape, 16, 4), tucker2_triple(strided, 8, 8)]
    costs = tiny_model(dtype="bf16").evaluate_triples(triples)
    assert len(costs) == 3
    assert all(c.latency_s > 0 and math.isfinite(c.latency_s) for c in costs)
    assert costs[0].breakdown["dtype"] == "bf16"


def test_triples_that_do_not_chain_are_rejected() -> None:
    shape = ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8, W=8, H=8)
    first, core, last = tucker2_triple(shape, 8, 8)
    with pytest.raises(HalocError, match="does not feed"):
        check_triple((first, core, tucker2_triple(shape, 16, 16)[2]))
    with pytest.raises(HalocError, match="3 convolutions"):
        tiny_model().evaluate_triples([(first, core)])


def test_batch_none_times_each_workload_at_its_own_n() -> None:
    shape = ConvShape(C=8, M=8, R=3, S=3, P=4, Q=4, N=3, W=4, H=4)
    (cost,) = tiny_model(batch=None).evaluate([shape])
    assert cost.breakdown["batch"] == 3


def test_out_of_memory_halves_the_batch_and_scales_the_latency(monkeypatch, caplog) -> None:
    model = tiny_model(batch=8)
    real = GpuCostModel._measure
    seen: list[int] = []

    def fake(self, job, batch):
        seen.append(batch)
        if batch > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real(self, job, batch)

    monkeypatch.setattr(GpuCostModel, "_measure", fake)
    with caplog.at_level("WARNING"):
        (cost,) = model.evaluate([SHAPES[0]])
    assert seen == [8, 4, 2]
    b = cost.breakdown
    assert b["batch"] == 2 and b["batch_requested"] == 8 and b["scaled"] is True
    assert cost.latency_s == pytest.approx(b["latency_s_measured"] * 4)
    assert "out of memory at batch 8" in caplog.text


def test_out_of_memory_at_batch_one_is_a_user_error(monkeypatch) -> None:
    def always_oom(self, job, batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(GpuCostModel, "_measure", always_oom)
    with pytest.raises(HalocError, match="even at batch 1"):
        tiny_model(batch=2).evaluate([SHAPES[0]])


def test_other_runtime_errors_are_not_swallowed(monkeypatch) -> None:
    def broken(self, job, batch):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")

    monkeypatch.setattr(GpuCostModel, "_measure", broken)
    with pytest.raises(RuntimeError, match="INTERNAL_ERROR"):
        tiny_model().evaluate([SHAPES[0]])


def test_cuda_without_a_gpu_is_a_user_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HalocError, match="no CUDA device") as info:
        GpuCostModel(device="cuda")
    assert info.value.key == "device" and "--device cpu" in info.value.fix


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"dtype": "int8"}, "dtype"),
        ({"dtype": "float32"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"memory_format": "nhwc"}, "memory_format"),
        ({"batch": 0}, "batch"),
        ({"repeats": 0}, "repeats"),
        ({"warmup": -1}, "warmup"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_settings_are_user_errors(kwargs, key) -> None:
    with pytest.raises(HalocError) as info:
        tiny_model(**kwargs)
    assert info.value.key == key


def test_settings_are_restored_after_measuring() -> None:
    threads = torch.get_num_threads()
    benchmark = torch.backends.cudnn.benchmark
    model = tiny_model(threads=1)
    with model.settings():
        assert torch.get_num_threads() == 1
        assert torch.backends.cudnn.benchmark is True
    model.evaluate([SHAPES[0]])
    assert torch.get_num_threads() == threads
    assert torch.backends.cudnn.benchmark == benchmark


def test_fingerprint_names_device_versions_and_settings() -> None:
    fp = tiny_model().fingerprint()
    for key in ("backend", "device", "device_name", "torch", "dtype", "batch", "memory_format", "threads"):
        assert key in fp
    assert fp["backend"] == "gpu" and fp["device"] == "cpu" and fp["threads"] == 1
    assert tiny_model(dtype="bf16").fingerprint() != fp
    assert tiny_model(memory_format="contiguous").fingerprint() != fp
    assert tiny_model().version() == gpu_mod.BACKEND_VERSION
    assert GpuCostModel.name == "gpu"


def test_percentiles_and_inner_loop_choice() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 10) == pytest.approx(1.4)
    assert choose_inner(1e-4, 1e-3) == 10
    assert choose_inner(2e-3, 1e-3) == 1
    assert choose_inner(1e-4, 0.0) == 1
    calls = []
    stats = time_cpu(lambda: calls.append(1), warmup=2, repeats=5, min_sample_s=0.0)
    assert len(calls) == 2 + 1 + 5 and stats.repeats == 5 and stats.inner == 1
    with pytest.raises(HalocError):
        time_cpu(lambda: None, warmup=0, repeats=0)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("graphs", "timer"), [(True, "cuda_graph"), (False, "cuda_events")])
def test_real_gpu_measures_bf16_conv_and_triple(graphs: bool, timer: str) -> None:
    model = GpuCostModel(device="cuda", dtype="bf16", batch=8, warmup=3, repeats=5, progress=False, cuda_graphs=graphs)
    shape = ConvShape(C=64, M=64, R=3, S=3, P=14, Q=14, W=14, H=14)
    (orig,) = model.evaluate([shape])
    (fused,) = model.evaluate_triples([tucker2_triple(shape, 16, 16)])
    for cost in (orig, fused):
        assert cost.latency_s > 0 and math.isfinite(cost.latency_s) and cost.breakdown["timer"] == timer
    fp = model.fingerprint()
    assert fp["cuda"] and fp["cudnn"] and fp["device_name"] and fp["timer"] == timer


@pytest.mark.gpu
@needs_cuda
def test_real_gpu_time_module_runs_a_whole_network() -> None:
    from haloc_hw.models import build_model

    model = GpuCostModel(device="cuda", dtype="bf16", batch=4, warmup=2, repeats=3, progress=False)
    net, x = model.prepare(build_model("resnet20"), (4, 3, 32, 32))
    stats = model.time_module(net, x)
    assert stats.median_s > 0 and stats.timer == "cuda_graph"


def test_tables_command_builds_a_cpu_measured_table(tmp_path, capsys) -> None:
    from haloc_hw.cli import main
    from haloc_hw.cost.table import CostTable

    out = tmp_path / "r20"
    args = ["tables", "--backend", "gpu", "--device", "cpu", "--dtype", "fp32", "--model", "resnet20",
            "--input-size", "3,16,16", "--step", "16", "--batch", "2", "--warmup", "0", "--repeats", "2",
            "--threads", "1", "--jobs", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "per-layer latency_s" in capsys.readouterr().out
    table = CostTable.open(out / "r20.sqlite")
    assert table.complete and table.metadata["backend"] == "gpu" and table.metadata["fused"] is True
    assert table.metadata["key_fields"]["dtype"] == "fp32" and table.metadata["key_fields"]["batch"] == 2
    rows = table.rows()
    assert {r["role"] for r in rows} == {"original", "in", "core", "out", "fused"}
    for row in rows:
        assert row["latency_s"] is not None and math.isfinite(row["latency_s"]) and row["latency_s"] > 0, row
        assert row["cycles"] is None and row["energy_pJ"] is None
    assert table.candidates("layer3.0.conv2") == [(16, 16), (32, 32), (48, 48)]
    assert table.candidates("layer2.1.conv1") == [(16, 16)]
    # a fused backend: a candidate costs its fused measurement, not the sum of its parts
    fused = table.entry("layer3.0.conv2", "fused", 32, 32).latency_s
    assert table.cost("layer3.0.conv2", 32, 32, "latency_s") == fused
    entry = table.entry("layer3.0.conv2", "original")
    assert entry.breakdown["batch"] == 2 and entry.breakdown["repeats"] == 2
    assert (out / "r20.csv").read_text().startswith("layer,role")


SHIPPED = Path(__file__).resolve().parents[1] / "tables"


@pytest.mark.parametrize(
    ("name", "dtype", "layers"),
    [("resnet18_bf16", "bf16", 21), ("resnet18_fp32", "fp32", 21), ("resnet20_bf16", "bf16", 22),
     ("resnet18_layer3_unequal_bf16", "bf16", 1)],  # fmt: skip
)
def test_shipped_tables_are_complete_measured_tables(name: str, dtype: str, layers: int) -> None:
    from haloc_hw.cost.table import CostTable

    path = SHIPPED / name / f"{name}.sqlite"
    if not path.exists():
        pytest.skip(f"{path} not shipped in this checkout")
    table = CostTable.open(path)
    assert table.complete and table.metadata["backend"] == "gpu" and table.metadata["fused"] is True
    fields = table.metadata["key_fields"]
    assert fields["dtype"] == dtype and fields["batch"] == 128 and fields["memory_format"] == "channels_last"
    assert "H100" in fields["device"]
    assert len(table.layers()) == layers
    for row in table.rows():
        assert row["latency_s"] is not None and 0 < row["latency_s"] < 0.1 and math.isfinite(row["latency_s"]), row
    for layer in table.decomposable_layers():
        for r1, r2 in table.candidates(layer):
            assert table.entry(layer, "fused", r1, r2).breakdown["timer"] == "cuda_graph"


def test_backend_and_cli_import_without_dask() -> None:
    """The device image has no Dask: the gpu path must not import it at module level."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None\n"
        "from haloc_hw.cli import build_parser; build_parser()\n"
        "import haloc_hw.cost.gpu, haloc_hw.cost.table, haloc_hw.cli.bench, haloc_hw.report.heatmap\n"
        "from haloc_hw.cost.backends import available_backends; assert 'gpu' in available_backends()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_factory_reads_cli_arguments_and_warns_about_parallel_jobs(caplog) -> None:
    from haloc_hw.cost.backends import BackendContext, create_backend
    from haloc_hw.settings import GpuSettings

    args = GpuSettings(device="cpu", dtype="fp16", batch=4, memory_format="contiguous", warmup=2, repeats=5,
                       threads=1, cuda_graphs=True)  # fmt: skip
    with caplog.at_level("WARNING"):
        model = create_backend("gpu", args, BackendContext(arch_path=None, out_dir=Path("."), jobs=4))
    assert isinstance(model, GpuCostModel)
    assert (model.device, model.dtype, model.batch, model.memory_format, model.warmup, model.repeats, model.threads) == (
        "cpu", "fp16", 4, "contiguous", 2, 5, 1)  # fmt: skip
    assert model.cuda_graphs is False  # graphs are a CUDA feature
    assert "take turns" in caplog.text
