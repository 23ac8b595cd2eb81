"""Executors: same results whatever runs the jobs; failures reported per job; Dask."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from fake_cost_backend import FakeBackend
from haloc_hw.cost.executors import DaskExecutor, LocalExecutor, SerialExecutor, make_executor
from haloc_hw.cost.table import build_table
from haloc_hw.errors import HalocError
from haloc_hw.workload import ConvShape, LayerInfo


def square_or_fail(x: int) -> int:
    if x == 3:
        raise HalocError("three is unlucky", key="x", fix="skip it")
    if x == 5:
        raise ValueError("five is bad too")
    time.sleep(0.01 * (x % 3))  # finish out of order in pools
    return x * x


def _collect(executor, items):
    results = {r.index: r for r in executor.run(square_or_fail, items)}
    assert sorted(results) == list(range(len(items)))
    return results


@pytest.mark.parametrize("make", [SerialExecutor, lambda: LocalExecutor(2)], ids=["serial", "local2"])
def test_results_and_failures(make) -> None:
    items = list(range(8))
    ex = make()
    try:
        results = _collect(ex, items)
    finally:
        ex.close()
    for i in items:
        if i == 3:
            assert not results[i].ok and "three is unlucky" in results[i].error
        elif i == 5:
            assert results[i].error == "ValueError: five is bad too"
        else:
            assert results[i].ok and results[i].value == i * i


def test_make_executor_choices() -> None:
    assert isinstance(make_executor(1), SerialExecutor)
    ex = make_executor(3)
    assert isinstance(ex, LocalExecutor) and ex.workers == 3
    with pytest.raises(HalocError, match="--jobs must be at least 1"):
        make_executor(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_line_error() -> None:
    start = time.monotonic()
    with pytest.raises(HalocError) as info:
        make_executor(2, f"tcp://127.0.0.1:{_free_port()}", timeout_s=1.0)
    assert time.monotonic() - start < 30
    text = str(info.value)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in text and "\n" not in text
    assert "--scheduler" in text


def test_dask_local_cluster_matches_serial(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    layers = [
        LayerInfo("a", ConvShape(C=16, M=32, R=3, S=3, P=8, Q=8), "conv", True),
        LayerInfo("b", ConvShape(C=32, M=32, R=3, S=3, P=4, Q=4), "conv", True),
    ]

    def cands(info):
        return [(8, 8), (16, 16)]

    serial = build_table(layers, FakeBackend(), tmp_path / "s.sqlite", candidates_fn=cands, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        # connect by address, the way --scheduler does
        with DaskExecutor(cluster.scheduler_address, timeout_s=10) as ex:
            assert ex.workers == 2
            results = _collect(ex, list(range(6)))
            assert results[4].value == 16 and "unlucky" in results[3].error
            dask_table = build_table(layers, FakeBackend(), tmp_path / "d.sqlite", candidates_fn=cands, executor=ex, progress=False)
    serial.to_csv(tmp_path / "s.csv")
    dask_table.to_csv(tmp_path / "d.csv")
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "d.csv").read_bytes()
