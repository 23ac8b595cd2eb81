"""Timeloop backend process handling, with fake timeloop executables (never the real tool).

The fakes are small Python scripts put in a temporary bin folder: one copies a golden
stats file (a real Timeloop 3.0.3 report), one crashes, one hangs (with a child process),
one exits 0 writing nothing (Timeloop's "no valid mapping" behaviour).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from haloc_hw.cost.table import build_table
from haloc_hw.errors import HalocError
from haloc_hw.workload import ConvShape, LayerInfo

from conftest import GOLDEN

CASE = GOLDEN / "r20_s1"
pytestmark = pytest.mark.skipif(not CASE.is_dir(), reason=f"golden Timeloop runs not found at {GOLDEN}")

_COMMON = r'''#!{python}
import json, os, shutil, sys, time, subprocess
from pathlib import Path
argv = sys.argv[1:]
out = Path(argv[argv.index("-o") + 1]) if "-o" in argv else Path(".")
inputs = [a for a in argv if a.endswith(".yaml")]
log = Path({record!r})
with log.open("a") as fh:
    fh.write(json.dumps({{"exe": Path(sys.argv[0]).name, "argv": argv, "cwd": os.getcwd(),
                          "out_exists": out.is_dir(), "inputs_exist": all(Path(a).is_file() for a in inputs)}}) + "\n")
'''

_BEHAVIOURS = {
    "good-mapper": 'shutil.copy({stats!r}, out / "timeloop-mapper.stats.txt"); shutil.copy({mapfile!r}, out / "timeloop-mapper.map.yaml")',
    "good-model": 'shutil.copy({model_stats!r}, out / "timeloop-model.stats.txt")',
    "crash": 'print("terminate called after throwing an instance of std::out_of_range", file=sys.stderr); sys.exit(134)',
    "hang": 'child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]); '
            'Path({pidfile!r}).write_text(str(child.pid)); time.sleep(600)',
    "nothing": 'print("Mapper: no valid mappings found within search criteria")',
    "truncated": 'Path(out / "timeloop-mapper.stats.txt").write_text(open({stats!r}).read()[:3000]); '
                 'shutil.copy({mapfile!r}, out / "timeloop-mapper.map.yaml")',
}


def _make_exe(path: Path, behaviour: str, tmp: Path) -> None:
    fields = {
        "python": sys.executable,
        "record": str(tmp / "calls.jsonl"),
        "stats": str(CASE / "mapper" / "timeloop-mapper.stats.txt"),
        "model_stats": str(CASE / "model" / "timeloop-model.stats.txt"),
        "mapfile": str(CASE / "map.yaml"),
        "pidfile": str(tmp / "child.pid"),
    }
    path.write_text(_COMMON.format(**fields) + _BEHAVIOURS[behaviour].format(**fields) + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _bin(tmp: Path, mapper: str = "good-mapper", model: str = "good-model") -> Path:
    folder = tmp / f"bin-{mapper}-{model}"
    folder.mkdir(exist_ok=True)
    _make_exe(folder / "timeloop-mapper", mapper, tmp)
    _make_exe(folder / "timeloop-model", model, tmp)
    return folder


def _calls(tmp: Path) -> list[dict]:
    path = tmp / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _backend(tmp: Path, bin_dir: Path | None, **kw):
    from haloc_hw.cost.timeloop import TimeloopCostModel

    kw.setdefault("jobs_dir", tmp / "tables" / "jobs")
    return TimeloopCostModel.from_files(
        CASE / "arch.yaml", CASE / "constraints.yaml", CASE / "ERT.yaml", CASE / "mapper.yaml", bin_dir=bin_dir, **kw
    )


SHAPE = ConvShape(C=16, M=16, R=3, S=3, P=32, Q=32)


@pytest.fixture(autouse=True)
def _no_accelergy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a machine with Accelergy installed would otherwise change which ERT the tests use
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}{os.pathsep}{Path(sys.executable).parent}")


def test_missing_binaries_say_what_and_suggest_analytical(tmp_path: Path) -> None:
    from haloc_hw.cost.timeloop import find_timeloop

    with pytest.raises(HalocError, match=r"timeloop-mapper and timeloop-model not found on PATH.*--backend analytical"):
        find_timeloop()
    half = tmp_path / "half"
    half.mkdir()
    _make_exe(half / "timeloop-mapper", "good-mapper", tmp_path)
    with pytest.raises(HalocError, match=r"timeloop-model not found in .*half.*--timeloop-bin"):
        _backend(tmp_path, half)


def test_successful_run_parses_stats_and_keeps_files(tmp_path: Path) -> None:
    backend = _backend(tmp_path, _bin(tmp_path), threads=1)
    (cost,) = backend.evaluate([SHAPE])
    summary = json.loads((CASE / "summary.json").read_text())["model"]
    assert cost.cycles == summary["cycles"]
    assert cost.energy_pJ == pytest.approx(summary["energy_pJ"])
    assert cost.utilization == pytest.approx(summary["utilization"])
    assert cost.breakdown["ert_source"] == "shipped:ERT.yaml"
    job = Path(cost.breakdown["job_dir"])
    assert job.parent == tmp_path / "tables" / "jobs"
    for name in ("map.yaml", "mapper/timeloop-mapper.stats.txt", "model/timeloop-model.stats.txt", "arch.yaml", "problem.yaml"):
        assert (job / name).is_file(), name
    mapper_call, model_call = _calls(tmp_path)
    assert mapper_call["exe"] == "timeloop-mapper" and model_call["exe"] == "timeloop-model"
    assert Path(mapper_call["cwd"]).name.startswith(".tmp-")  # ran in its own work dir, renamed after success
    assert mapper_call["out_exists"] and mapper_call["inputs_exist"]
    assert "constraints.yaml" in mapper_call["argv"] and "constraints.yaml" not in model_call["argv"]
    assert "map.yaml" in model_call["argv"]
    # inputs: mapper threads pinned, hyphenated keys, each top-level key in exactly one file
    mapper_doc = yaml.safe_load((job / "mapper.yaml").read_text())
    assert mapper_doc["mapper"]["num-threads"] == 1 and "num_threads" not in mapper_doc["mapper"]
    keys = [k for name in ("arch.yaml", "problem.yaml", "constraints.yaml", "mapper.yaml", "ERT.yaml")
            for k in yaml.safe_load((job / name).read_text())]  # fmt: skip
    assert len(keys) == len(set(keys))
    problem = yaml.safe_load((job / "problem.yaml").read_text())["problem"]["instance"]
    assert (problem["C"], problem["M"], problem["P"]) == (16, 16, 32)
    assert not list((tmp_path / "tables" / "jobs").glob(".tmp-*"))


def test_threads_are_part_of_the_fingerprint(tmp_path: Path) -> None:
    one = _backend(tmp_path, _bin(tmp_path), threads=1)
    four = _backend(tmp_path, _bin(tmp_path), threads=4)
    assert one.fingerprint()["mapper"]["num-threads"] == 1 and four.fingerprint()["mapper"]["num-threads"] == 4
    assert one.fingerprint() != four.fingerprint()
    assert one.version() == four.version() and one.version().startswith("1+mapper.")


@pytest.mark.parametrize(
    ("mapper", "model", "message"),
    [
        ("crash", "good-model", r"timeloop-mapper crashed \(exit 134\).*std::out_of_range"),
        ("nothing", "good-model", r"timeloop-mapper found no valid mapping.*no valid mappings found"),
        ("good-mapper", "crash", r"timeloop-model crashed \(exit 134\)"),
        ("good-mapper", "nothing", r"timeloop-model wrote no stats"),
        ("truncated", "good-model", None),  # run_model=False below: the truncated mapper stats are parsed
    ],
)
def test_failures_are_reported_and_not_kept(tmp_path: Path, mapper: str, model: str, message: str | None) -> None:
    backend = _backend(tmp_path, _bin(tmp_path, mapper, model), run_model=message is not None)
    with pytest.raises(HalocError, match=message or "not a complete Timeloop stats report"):
        backend.evaluate([SHAPE])
    jobs = tmp_path / "tables" / "jobs"
    assert [p.name for p in jobs.iterdir()] == ["failed"]  # nothing that looks like a result
    assert len(list((jobs / "failed").iterdir())) == 1


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    backend = _backend(tmp_path, _bin(tmp_path, "hang"), timeout_s=1.5)
    start = time.monotonic()
    with pytest.raises(HalocError, match=r"timeloop-mapper timed out after 1.5 s"):
        backend.evaluate([SHAPE])
    assert time.monotonic() - start < 20
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the mapper's child process survived the timeout")


def test_accelergy_generates_the_ert_once_per_arch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    ert = yaml.safe_load((CASE / "ERT.yaml").read_text())
    ert["ERT"]["tables"][0]["actions"][0]["energy"] = 9.9
    (tmp_path / "accelergy-ert.yaml").write_text(yaml.safe_dump(ert))
    script = tools / "accelergy"
    script.write_text(
        f"#!{sys.executable}\nimport shutil, sys\nfrom pathlib import Path\n"
        f"open({str(tmp_path / 'accelergy.calls')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "out = Path(sys.argv[sys.argv.index('-o') + 1]); out.mkdir(exist_ok=True)\n"
        f"shutil.copy({str(tmp_path / 'accelergy-ert.yaml')!r}, out / 'ERT.yaml')\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    first = _backend(tmp_path, _bin(tmp_path))
    second = _backend(tmp_path, _bin(tmp_path))
    assert first.ert_source == "accelergy" and first.fingerprint()["ert"] == {"ERT": ert["ERT"]}
    assert second.fingerprint() == first.fingerprint()
    calls = (tmp_path / "accelergy.calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("arch.yaml") and "-o" in calls[0]
    (cost,) = first.evaluate([SHAPE])
    assert cost.breakdown["ert_source"] == "accelergy"
    written = yaml.safe_load((Path(cost.breakdown["job_dir"]) / "ERT.yaml").read_text())
    assert written["ERT"]["tables"][0]["actions"][0]["energy"] == 9.9


def test_table_build_with_timeloop_caches_and_keeps_job_dirs(tmp_path: Path) -> None:
    backend = _backend(tmp_path, _bin(tmp_path))
    layers = [LayerInfo("l", SHAPE, "conv", True)]
    table = build_table(layers, backend, tmp_path / "tables" / "t.sqlite", candidates_fn=lambda i: [(8, 8)], progress=False)
    assert table.build_report.evaluated == 4
    n_calls = len(_calls(tmp_path))
    again = build_table(layers, backend, tmp_path / "tables" / "t.sqlite", candidates_fn=lambda i: [(8, 8)], progress=False)
    assert again.build_report.cache_hits == 4 and len(_calls(tmp_path)) == n_calls
    kept = sorted(p.name for p in (tmp_path / "tables" / "jobs").iterdir())
    with closing(sqlite3.connect(tmp_path / "tables" / "t.sqlite")) as conn:
        keys = sorted(r[0] for r in conn.execute("SELECT key FROM entries"))
    assert kept == keys


def test_cli_timeloop_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("haloc_hw.models")
    from haloc_hw.cli import main

    out = tmp_path / "tables" / "r20tl"
    base = ["tables", "--model", "resnet20", "--arch", "arch/eyeriss.yaml", "--backend", "timeloop", "--step", "64",
            "--jobs", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "timeloop-mapper and timeloop-model not found on PATH" in err and "--backend analytical" in err
    assert main([*base, "--timeloop-bin", str(_bin(tmp_path)), "--timeloop-threads", "3"]) == 0
    assert "r20tl.sqlite" in capsys.readouterr().out
    from haloc_hw.cost.table import CostTable

    table = CostTable.open(out / "r20tl.sqlite")
    cycles = json.loads((CASE / "summary.json").read_text())["model"]["cycles"]
    assert table.original_cost("layer1.0.conv1") == cycles  # every fake run reports the golden stats
    jobs = [p for p in (out / "jobs").iterdir() if p.name != "failed"]
    assert len(jobs) == table.metadata["last_build"]["entries"] == table.metadata["last_build"]["evaluated"]
    assert yaml.safe_load((jobs[0] / "mapper.yaml").read_text())["mapper"]["num-threads"] == 3


def test_factory_threads_timeout_and_a_missing_mapper_file(tmp_path: Path) -> None:
    from haloc_hw.cost.backends import BackendContext, create_backend
    from haloc_hw.settings import TimeloopSettings
    from haloc_hw.spec.shipped import resolve_spec_path

    mapper = tmp_path / "mapper.yaml"
    mapper.write_text("mapper:\n  num-threads: 3\n")

    def make(jobs: int = 1, **kw):
        fields = {"bin_dir": str(_bin(tmp_path)), "mapper": str(mapper), **kw}
        ctx = BackendContext(arch_path=resolve_spec_path("arch/eyeriss.yaml"), out_dir=tmp_path / "t", jobs=jobs)
        return create_backend("timeloop", TimeloopSettings(**fields), ctx)

    one = make()
    assert one.threads == 3 and one.mapper_settings["num-threads"] == 3  # the mapper file's count
    assert one.timeout_s == 600.0
    assert make(jobs=2).threads == 1  # mappers side by side: one thread each
    assert make(jobs=2, threads=4).threads == 4
    with pytest.raises(HalocError, match="typo.yaml: file not found"):
        make(mapper=str(tmp_path / "typo.yaml"))
    with pytest.raises(HalocError, match="timeout must be > 0") as info:
        make(timeout_s=0.0)
    assert info.value.key == "timeloop-timeout"


def test_an_arch_without_an_energy_table_is_a_user_error(tmp_path: Path) -> None:
    from haloc_hw.cost.timeloop import TimeloopCostModel
    from haloc_hw.spec.shipped import resolve_spec_path

    arch = tmp_path / "lonely.yaml"
    arch.write_text(resolve_spec_path("arch/eyeriss.yaml").read_text())
    with pytest.raises(HalocError, match="lonely.yaml.*no energy table") as info:
        TimeloopCostModel.from_files(arch, bin_dir=_bin(tmp_path), jobs_dir=tmp_path / "jobs")
    assert "lonely.ert.yaml" in info.value.fix
    # a Timeloop run folder's ERT.yaml is found beside its arch.yaml
    (tmp_path / "ERT.yaml").write_text((CASE / "ERT.yaml").read_text())
    found = TimeloopCostModel.from_files(arch, bin_dir=_bin(tmp_path), jobs_dir=tmp_path / "jobs")
    assert found.ert_source == "shipped:ERT.yaml"
