"""Cost table: content-addressed SQLite cache, queries for the search, CSV export, resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from fake_cost_backend import FakeBackend, FakeFusedBackend, fake_cycles, fake_energy
from haloc_hw.cost.executors import LocalExecutor, SerialExecutor
from haloc_hw.cost.table import CSV_COLUMNS, CostTable, build_table, entry_key
from haloc_hw.errors import HalocError
from haloc_hw.workload import ConvShape, LayerInfo, tucker2_triple

TESTS = Path(__file__).resolve().parent


def _layers() -> list[LayerInfo]:
    return [
        LayerInfo("stem", ConvShape(C=3, M=16, R=3, S=3, P=8, Q=8), "conv", False),
        LayerInfo("b1", ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8), "conv", True),
        LayerInfo("b2", ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8), "conv", True),  # same shape as b1
        LayerInfo("b3", ConvShape(C=32, M=64, R=3, S=3, P=4, Q=4, Wstride=2, Hstride=2), "conv", True),
        LayerInfo("fc", ConvShape(C=64, M=10, R=1, S=1, P=1, Q=1), "linear", False),
    ]


def _cands(info: LayerInfo) -> list[tuple[int, int]]:
    return [(r, r) for r in (8, 16, 32) if r <= min(info.shape.C, info.shape.M)]


def _count(folder: Path) -> int:
    return len(list(folder.iterdir()))


def test_build_and_query(tmp_path: Path) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    layers = _layers()
    table = build_table(layers, FakeBackend(count_dir=str(counts)), tmp_path / "t.sqlite", candidates_fn=_cands,
                        executor=SerialExecutor(), progress=False, metadata={"model": "toy"})  # fmt: skip
    # unique shapes: 5 originals (b1 == b2) -> 4, plus triples of b1 and b3 (3 ranks x 3 roles each, minus repeats)
    unique = {s for info in layers for s in [info.shape]}
    for info in layers:
        if info.decomposable:
            for r1, r2 in _cands(info):
                unique.update(tucker2_triple(info.shape, r1, r2))
    assert _count(counts) == len(unique) == table.build_report.evaluated
    assert table.layers() == ["stem", "b1", "b2", "b3", "fc"]
    assert table.candidates("b1") == [(8, 8), (16, 16), (32, 32)]
    assert table.candidates("stem") == []
    b3 = layers[3].shape
    triple = tucker2_triple(b3, 16, 16)
    assert table.cost("b3", 16, 16, "cycles") == pytest.approx(sum(fake_cycles(s) for s in triple))
    assert table.cost("b3", 16, 16, "energy_pJ") == pytest.approx(sum(fake_energy(s) for s in triple))
    assert table.cost("b3", 16, 16, "edp") == pytest.approx(
        sum(fake_cycles(s) for s in triple) * sum(fake_energy(s) for s in triple)
    )
    assert table.original_cost("b3", "cycles") == fake_cycles(b3)
    assert table.entry("b3", "core", 16, 16).cycles == fake_cycles(triple[1])
    # whole model: b1 decomposed, others original
    expected = sum(fake_cycles(i.shape) for i in layers if i.name != "b1") + sum(
        fake_cycles(s) for s in tucker2_triple(layers[1].shape, 8, 8)
    )
    assert table.model_cost({"b1": (8, 8), "b2": None}, "cycles") == pytest.approx(expected)
    assert table.model_cost({}, "cycles") == pytest.approx(sum(fake_cycles(i.shape) for i in layers))
    assert table.metadata["model"] == "toy" and table.metadata["backend"] == "fake" and table.metadata["complete"] is True
    assert table.complete


def test_errors_name_layer_and_candidate(tmp_path: Path) -> None:
    table = build_table(_layers(), FakeBackend(), tmp_path / "t.sqlite", candidates_fn=_cands, progress=False)
    with pytest.raises(HalocError, match="layer 'nope' is not in this cost table"):
        table.cost("nope", 8, 8)
    with pytest.raises(HalocError, match=r"'b1' has no candidate \(r1=12, r2=12\).*\(8,8\)"):
        table.cost("b1", 12, 12)
    with pytest.raises(HalocError, match="'stem' is not decomposable"):
        table.cost("stem", 8, 8)
    with pytest.raises(HalocError, match="ranks given for layer 'fc'"):
        table.model_cost({"fc": (8, 8)})
    with pytest.raises(HalocError, match="unknown metric 'watts'"):
        table.cost("b1", 8, 8, "watts")
    with pytest.raises(HalocError, match="latency_s"):
        table.original_cost("b1", "latency_s")  # the fake backend gives no latency


def test_second_build_is_all_cache_hits_and_csv_identical(tmp_path: Path) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    path = tmp_path / "t.sqlite"
    first = build_table(_layers(), FakeBackend(count_dir=str(counts)), path, candidates_fn=_cands, progress=False)
    first.to_csv(tmp_path / "a.csv")
    n = _count(counts)
    second = build_table(_layers(), FakeBackend(count_dir=str(counts)), path, candidates_fn=_cands, progress=False)
    assert _count(counts) == n, "a cached entry was evaluated again"
    assert second.build_report.cache_hits == second.build_report.entries and second.build_report.evaluated == 0
    second.to_csv(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert rows[0] == ",".join(CSV_COLUMNS)
    assert rows[1].startswith("stem,original,,,")
    assert rows[2].startswith("b1,original,,,")
    assert rows[3].startswith("b1,in,8,8,") and rows[4].startswith("b1,core,8,8,") and rows[5].startswith("b1,out,8,8,")
    # only one file, no WAL left behind after a finished build
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t.sqlite")) == ["t.sqlite"]


def test_pool_gives_same_table_as_serial(tmp_path: Path) -> None:
    serial = build_table(_layers(), FakeBackend(), tmp_path / "s.sqlite", candidates_fn=_cands, progress=False)
    with LocalExecutor(2) as pool:
        pooled = build_table(_layers(), FakeBackend(), tmp_path / "p.sqlite", candidates_fn=_cands, executor=pool, progress=False)
    serial.to_csv(tmp_path / "s.csv")
    pooled.to_csv(tmp_path / "p.csv")
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()


def test_fingerprint_change_means_new_entries(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    build_table(_layers(), FakeBackend(tag="a"), path, candidates_fn=_cands, progress=False)
    again = build_table(_layers(), FakeBackend(tag="b"), path, candidates_fn=_cands, progress=False)
    assert again.build_report.cache_hits == 0
    shape = _layers()[1].shape
    assert entry_key(FakeBackend(tag="a"), shape) != entry_key(FakeBackend(tag="b"), shape)
    assert entry_key(FakeBackend(tag="a"), shape) == entry_key(FakeBackend(tag="a", delay_s=1.0), shape)
    # padding that differs from "same" is part of the key, "same" padding is not
    assert entry_key(FakeBackend(), shape) == entry_key(FakeBackend(), ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8, W=8, H=8))
    assert entry_key(FakeBackend(), shape) != entry_key(FakeBackend(), ConvShape(C=32, M=32, R=3, S=3, P=8, Q=8, W=10, H=10))


def test_failures_are_never_stored_and_rerun_completes(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    counts = tmp_path / "counts"
    counts.mkdir()
    with pytest.raises(HalocError, match=r"evaluations failed.*fake failure for M=16.*rerun the same command"):
        build_table(_layers(), FakeBackend(fail_when=(16,)), path, candidates_fn=_cands, progress=False)
    with closing(sqlite3.connect(path)) as conn:
        stored = {r[0] for r in conn.execute("SELECT M FROM entries WHERE kind = 'conv'")}
    assert 16 not in stored and 32 in stored
    partial = CostTable.open(path)
    assert not partial.complete
    assert (16, 16) not in partial.candidates("b1") and (8, 8) in partial.candidates("b1")
    with pytest.raises(HalocError, match="never evaluated.*rerun"):
        partial.cost("b1", 16, 16)
    with pytest.raises(HalocError, match="never evaluated"):
        partial.original_cost("stem")  # stem has M=16
    table = build_table(_layers(), FakeBackend(count_dir=str(counts)), path, candidates_fn=_cands, progress=False)
    assert table.complete and table.candidates("b1") == [(8, 8), (16, 16), (32, 32)]
    assert _count(counts) == table.build_report.evaluated > 0
    assert table.build_report.cache_hits > 0


def test_non_strict_build_drops_failed_candidates(tmp_path: Path) -> None:
    table = build_table(_layers(), FakeBackend(fail_when=(8,)), tmp_path / "t.sqlite", candidates_fn=_cands,
                        progress=False, strict=False)  # fmt: skip
    assert table.candidates("b1") == [(16, 16), (32, 32)]
    assert table.dropped_candidates("b1") == [(8, 8)] and table.dropped_candidates("stem") == []
    assert table.build_report.failed > 0 and not table.complete
    # "originals": failed candidates are dropped, but a failed original layer is an error
    ok = build_table(_layers(), FakeBackend(fail_when=(8,)), tmp_path / "o.sqlite", candidates_fn=_cands,
                     progress=False, strict="originals")  # fmt: skip
    assert ok.candidates("b3") == [(16, 16), (32, 32)]
    with pytest.raises(HalocError, match=r"original layer\(s\) fc among them.*first: conv g1_c64_m10"):
        build_table(_layers(), FakeBackend(fail_when=(10,)), tmp_path / "f.sqlite", candidates_fn=_cands,
                    progress=False, strict="originals")  # fmt: skip


def test_fused_backend_uses_fused_cost_and_key_fields(tmp_path: Path) -> None:
    layers = _layers()
    table = build_table(layers, FakeFusedBackend(batch=4), tmp_path / "f.sqlite", candidates_fn=_cands, progress=False)
    triple = tucker2_triple(layers[1].shape, 16, 16)
    assert table.cost("b1", 16, 16, "latency_s") == pytest.approx(0.75 * sum(fake_cycles(s) for s in triple) * 4e-9)
    assert table.entry("b1", "core", 16, 16).latency_s == pytest.approx(fake_cycles(triple[1]) * 4e-9)
    assert table.metadata["key_fields"] == {"batch": 4, "dtype": "bf16"} and table.metadata["fused"] is True
    with pytest.raises(HalocError, match="cycles"):
        table.cost("b1", 16, 16, "cycles")
    other = build_table(layers, FakeFusedBackend(batch=8), tmp_path / "f.sqlite", candidates_fn=_cands, progress=False)
    assert other.build_report.cache_hits == 0  # batch is part of every key
    table.to_csv(tmp_path / "f.csv")
    assert "b1,fused,16,16," in (tmp_path / "f.csv").read_text()


def test_bad_layer_list_leaves_the_existing_table_alone(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    build_table(_layers(), FakeBackend(), path, candidates_fn=_cands, progress=False)
    before = path.read_bytes()
    twice = [*_layers(), _layers()[1]]
    with pytest.raises(HalocError, match="'b1' appears twice"):
        build_table(twice, FakeBackend(), path, candidates_fn=_cands, progress=False, rebuild=True)
    assert path.read_bytes() == before and CostTable.open(path).complete
    with pytest.raises(HalocError, match="appears twice"):
        build_table(twice, FakeBackend(), tmp_path / "new" / "n.sqlite", candidates_fn=_cands, progress=False)
    assert not (tmp_path / "new").exists()


def test_corrupt_foreign_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HalocError, match=r"garbage.sqlite: not a usable haloc-hw cost table.*--rebuild"):
        CostTable.open(garbage)
    with pytest.raises(HalocError, match="garbage.sqlite"):
        build_table(_layers(), FakeBackend(), garbage, candidates_fn=_cands, progress=False)
    # --rebuild replaces it
    table = build_table(_layers(), FakeBackend(), garbage, candidates_fn=_cands, progress=False, rebuild=True)
    assert table.complete
    foreign = tmp_path / "foreign.sqlite"
    with closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    with pytest.raises(HalocError, match="foreign.sqlite.*written by something else"):
        CostTable.open(foreign)
    with pytest.raises(HalocError, match="missing.sqlite: cost table not found"):
        CostTable.open(tmp_path / "missing.sqlite")
    # a real table truncated half-way
    good = tmp_path / "t.sqlite"
    build_table(_layers(), FakeBackend(), good, candidates_fn=_cands, progress=False)
    data = good.read_bytes()
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(HalocError, match="cut.sqlite: not a usable haloc-hw cost table"):
        CostTable.open(cut)


def test_table_readable_with_plain_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    build_table(_layers(), FakeBackend(), path, candidates_fn=_cands, progress=False, metadata={"input_size": [3, 8, 8]})
    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute(
            "SELECT e.cycles, e.C, e.M FROM slots s JOIN entries e ON e.key = s.key WHERE s.layer='b3' AND s.role='original'"
        ).fetchone()
        meta = dict(conn.execute("SELECT name, value FROM metadata"))
    assert row == (fake_cycles(_layers()[3].shape), 32, 64)
    assert json.loads(meta["input_size"]) == [3, 8, 8]


# ---------------------------------------------------------------------------------------
# kill -9 during a CLI build, then resume
# ---------------------------------------------------------------------------------------

_RUNNER = """
import sys
sys.path.insert(0, {tests!r})
import fake_cost_backend
fake_cost_backend.register()
from haloc_hw.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _args(out: Path, delay: float) -> list[str]:
    return ["tables", "--model", "resnet20", "--dataset", "cifar10", "--arch", "arch/eyeriss.yaml", "--backend", "fake",
            "--fake-delay", str(delay), "--step", "16", "--jobs", "1", "--no-progress", "--out", str(out)]  # fmt: skip


@pytest.mark.slow
def test_kill_9_during_build_then_resume_gives_identical_csv(tmp_path: Path) -> None:
    pytest.importorskip("haloc_hw.models")
    reference = tmp_path / "ref"
    assert _main(_args(reference, 0.0)) == 0
    ref_csv = reference / "ref.csv"
    assert ref_csv.is_file()

    runner = tmp_path / "runner.py"
    runner.write_text(_RUNNER.format(tests=str(TESTS)))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(runner), *_args(out, 0.05)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    db = out / "killed.sqlite"
    deadline = time.monotonic() + 120
    stored = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
                        stored = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
                except sqlite3.Error:
                    stored = 0
                if stored >= 5:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be killed; raise --fake-delay"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert stored >= 5
    assert not (out / "killed.csv").exists()
    partial = CostTable.open(db)
    assert not partial.complete

    assert _main(_args(out, 0.0)) == 0
    assert (out / "killed.csv").read_bytes() == ref_csv.read_bytes()
    resumed = CostTable.open(db)
    assert resumed.complete and resumed.metadata["last_build"]["cache_hits"] >= stored


# ---------------------------------------------------------------------------------------
# the CLI, in-process
# ---------------------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    import fake_cost_backend
    from haloc_hw.cli import main

    fake_cost_backend.register()
    return main(argv)


def test_cli_builds_one_table_per_arch_and_compares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("haloc_hw.models")
    out = tmp_path / "tbl"
    rc = _main(["tables", "--model", "resnet20", "--arch", "arch/eyeriss.yaml", "--arch", "arch/eyeriss_16x16.yaml",
                "--backend", "fake", "--jobs", "1", "--no-progress", "--out", str(out)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    a, b = out / "tbl-eyeriss.sqlite", out / "tbl-eyeriss_16x16.sqlite"
    assert a.is_file() and b.is_file() and (out / "tbl-eyeriss.csv").is_file()
    assert "per-layer cycles:" in text and "layer3.2.conv2" in text
    table = CostTable.open(a)
    assert table.metadata["model"] == "resnet20" and table.metadata["input_size"] == [3, 32, 32]
    assert table.metadata["arch_path"].endswith("eyeriss.yaml") and len(table.metadata["arch_sha256"]) == 64
    # summary row of a layer: original, number of candidates, best and worst by cycles
    layer = "layer3.0.conv2"
    costs = {c: table.cost(layer, *c) for c in table.candidates(layer)}
    best = min(costs, key=costs.get)
    line = next(l for l in text.splitlines() if l.strip().startswith(layer))
    assert f"({best[0]},{best[1]})" in line and str(len(costs)) in line.split()

    # the fake backend's costs do not depend on the arch, so the comparison shows zero error
    assert _main(["tables", "--compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "cycles: median relative error 0.000%, max 0.000%" in text
    # a table with different numbers: errors are reported
    build_table(_layers(), FakeBackend(), tmp_path / "x.sqlite", candidates_fn=_cands, progress=False)
    with closing(sqlite3.connect(tmp_path / "x.sqlite")) as conn:
        conn.execute("UPDATE entries SET cycles = cycles * 1.5")
        conn.commit()
    build_table(_layers(), FakeBackend(), tmp_path / "y.sqlite", candidates_fn=_cands, progress=False)
    assert _main(["tables", "--compare", str(tmp_path / "y.sqlite"), str(tmp_path / "x.sqlite")]) == 0
    text = capsys.readouterr().out
    assert "cycles: median relative error 50.000%, max 50.000%" in text
    assert "energy: median relative error 0.000%" in text


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_text("nope")
    assert _main(["tables", "--compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.sqlite" in err and "--rebuild" in err
    assert _main(["tables", "--model", "resnet20", "--backend", "fake", "--out", str(tmp_path / "o")]) == 2
    assert "needs an architecture" in capsys.readouterr().err
    assert _main(["tables", "--arch", "arch/eyeriss.yaml", "--backend", "fake", "--out", str(tmp_path / "o")]) == 2
    assert "no model given" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused when parsing, not after a whole build
        _main(["tables", "--model", "resnet20", "--arch", "arch/eyeriss.yaml", "--backend", "fake", "--metric", "watts",
               "--out", str(tmp_path / "o")])  # fmt: skip
    assert "invalid choice: 'watts'" in capsys.readouterr().err and not (tmp_path / "o").exists()
    rc = _main(["tables", "--model", "resnet20", "--arch", "arch/eyeriss.yaml", "--backend", "fake", "--jobs", "2",
                "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "1", "--out", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2 and "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_backend_registry_errors_and_shared_options() -> None:
    import argparse

    from haloc_hw.cli.options import add_backend_options, backend_settings
    from haloc_hw.cost.backends import available_backends, get_backend_spec

    assert {"analytical", "timeloop"} <= set(available_backends())
    with pytest.raises(HalocError, match=r"unknown backend 'nope'.*analytical"):
        get_backend_spec("nope")
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="host")  # the host command already defines it
    add_backend_options(parser, taken={"--device"})  # each flag once: no argparse conflict
    args = parser.parse_args(["--timeloop-threads", "2", "--constraints", "a.yaml", "--device", "cpu"])
    timeloop, gpu = backend_settings(args, "timeloop"), backend_settings(args, "gpu")
    assert timeloop.threads == 2 and timeloop.constraints == ("a.yaml",) and timeloop.bin_dir is None
    assert gpu.device == "cpu" and gpu.threads is None  # --threads is the gpu's, --timeloop-threads the mapper's
    assert backend_settings(args, "analytical").constraints == ("a.yaml",)  # one --constraints for both


def test_cli_drops_failed_candidates_unless_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("haloc_hw.models")
    base = ["tables", "--model", "resnet20", "--arch", "arch/eyeriss.yaml", "--backend", "fake", "--jobs", "1",
            "--no-progress", "--fake-fail-m", "24", "--out", str(tmp_path / "t")]  # fmt: skip
    assert _main(base) == 0
    out = capsys.readouterr().out
    assert "candidate(s) dropped" in out and "layer3.0.conv1 (24,24)" in out
    assert (24, 24) not in CostTable.open(tmp_path / "t" / "t.sqlite").candidates("layer3.0.conv1")
    assert _main([*base, "--strict"]) == 2
    assert "evaluations failed" in capsys.readouterr().err
    fail_originals = [*base[:-4], "--fake-fail-m", "64", "--out", str(tmp_path / "u")]  # layer3 convs have M=64
    assert _main(fail_originals) == 2
    assert "original layer(s) layer3.0.conv1" in capsys.readouterr().err
