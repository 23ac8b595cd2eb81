"""End to end co-design runs on a 4-point Eyeriss space (synthetic data, an untrained ResNet-20)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from haloc_hw.codesign import OBJECTIVES, CodesignConfig, run
from haloc_hw.codesign.space import space_from_dict
from haloc_hw.errors import HalocError
from conftest import REPO as ROOT



def _space(tmp: Path, variables=None, **extra):
    doc = {"design": [str(ROOT / "arch" / "eyeriss_space" / "top.yaml.jinja2")],
           "constraint_files": [str(ROOT / "mappings" / "row_stationary.yaml")],
           "variables": variables or {"meshX": [12, 14], "glb_depth": [8192, 16384]},
           "reference": {"meshX": 14, "glb_depth": 16384}, **extra}
    return space_from_dict({"codesign_space": doc}, file=tmp / "space.yaml")


def _cfg(out: Path, **kw):
    base = dict(out=out, data="synthetic", subset=64, epochs_base=0, batch=32, jobs=1, haloc_candidates=0,
                epochs_search=1, warmup_epochs=0, epochs_finetune=0, html=False)
    base.update(kw)
    return CodesignConfig(**base)


def _key(row):
    return (row["id"], row["method"], row["energy_pJ"], row["cycles"], row["area_mm2"], row["proxy_error"],
            json.dumps(row["ranks"], sort_keys=True))


def _dominates(a, b):
    return all(a[k] <= b[k] for k in OBJECTIVES) and any(a[k] < b[k] for k in OBJECTIVES)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("codesign")
    space = _space(tmp)
    result = run(space, _cfg(tmp / "run", haloc_candidates=1, html=True))
    return tmp, space, result


def test_every_point_priced_allocated_and_written(first):
    tmp, space, result = first
    out = result.out
    assert len(result.points) == 4 and all(p["status"] == "ok" for p in result.points)
    assert all((out / "points" / p["id"] / "result.json").is_file() for p in result.points)
    cheap = [r for r in result.rows if r["method"] != "haloc"]
    assert len(cheap) == 8 and {r["method"] for r in cheap} == {"uniform", "greedy"}
    for r in cheap:  # ranks meet the budget: 0.7 of the original model on the same point
        assert r["budget_met"] and r["energy_pJ"] <= 0.7 * r["original_energy_pJ"] * (1 + 1e-9)
    by = {(r["values"]["meshX"], r["values"]["glb_depth"], r["method"]): r for r in cheap}
    # a larger global buffer is larger and costs more per access
    assert by[(14, 16384, "greedy")]["area_mm2"] > by[(14, 8192, "greedy")]["area_mm2"]
    assert by[(14, 16384, "greedy")]["original_energy_pJ"] > by[(14, 8192, "greedy")]["original_energy_pJ"]
    with open(out / "points.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows) and {"meshX", "glb_depth", "energy_pJ", "cycles", "edp", "area_mm2",
                                                "proxy_error", "ranks", "top1_haloc"} <= set(rows[0])
    with open(out / "pareto.csv") as f:
        front = list(csv.DictReader(f))
    assert len(front) == len(result.pareto) > 0
    html = (out / "report.html").read_text()
    assert "Pareto front" in html and "sensitivity" in html and html.count("data:image/png;base64,") == 2


def test_front_is_exactly_the_non_dominated_rows(first):
    rows = first[2].rows
    for r in rows:
        dominated = any(_dominates(o, r) for o in rows if o is not r)
        assert r["pareto"] == (not dominated), r["id"]


def test_haloc_runs_on_a_front_point_with_measured_accuracy(first):
    result = first[2]
    [hrow] = [r for r in result.rows if r["method"] == "haloc"]
    metrics = json.loads((result.out / "haloc" / hrow["id"] / "metrics.json").read_text())
    assert hrow["top1"] == metrics["top1"]["compressed"]
    assert hrow["energy_pJ"] == metrics["table_cost"]["energy_pJ"]["compressed"]
    assert (result.out / "haloc" / hrow["id"] / "ranks.json").is_file()


def test_reference_point_is_reported(first):
    ref = first[2].reference
    assert ref["values"] == {"meshX": 14, "glb_depth": 16384}
    assert ref["status"] in ("on the front", "dominated")
    for entry in ref["rows"]:
        if not entry["pareto"]:
            assert entry["dominated_by"] >= 1 and all(v <= 1 for k, v in entry["best"].items() if k.endswith("_ratio"))


def test_rerun_reuses_every_point_and_a_lost_point_reuses_its_table(first):
    tmp, space, result = first
    again = run(space, _cfg(result.out, haloc_candidates=1))
    assert again.stats["evaluated_now"] == 0
    assert sorted(map(_key, again.rows)) == sorted(map(_key, result.rows))
    lost = result.points[1]["id"]
    (result.out / "points" / lost / "result.json").unlink()  # as if killed before this point finished
    third = run(space, _cfg(result.out, haloc_candidates=1))
    assert third.stats["evaluated_now"] == 1
    redone = next(p for p in third.points if p["id"] == lost)
    assert redone["cache"]["cache_hits"] == redone["cache"]["entries"]  # every table entry was committed
    assert sorted(map(_key, third.rows)) == sorted(map(_key, result.rows))


def test_dask_local_cluster_gives_the_same_result(first, tmp_path):
    distributed = pytest.importorskip("distributed")
    tmp, space, result = first
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = run(space, _cfg(tmp_path / "dask"), client=client)
    cheap = [r for r in result.rows if r["method"] != "haloc"]
    assert sorted(map(_key, dask.rows)) == sorted(map(_key, cheap))  # from fresh tables, same seed
    assert [r["pareto"] for r in sorted(dask.rows, key=_key)] == \
        [r["pareto"] for r in sorted(run(space, _cfg(tmp_path / "local")).rows, key=_key)]


def test_area_limit_below_every_point_keeps_the_points(tmp_path):
    space = _space(tmp_path, variables={"meshX": [12, 14], "glb_depth": [8192]}, area_limit_mm2=0.01)
    with pytest.raises(HalocError, match=r"area limit 0.01 mm\^2 is below every point") as err:
        run(space, _cfg(tmp_path / "run"))
    assert "area_limit_mm2" in str(err.value) and "\n" not in str(err.value)
    assert len(list((tmp_path / "run" / "points").glob("*/result.json"))) == 2


def test_a_point_that_does_not_render_is_named_and_the_others_kept(tmp_path):
    space = _space(tmp_path, variables={"meshX": [14], "glb_depth": [8192, "oops"]})
    with pytest.raises(HalocError, match=r"point p\w+ \(meshX=14, glb_depth=oops\) does not render"):
        run(space, _cfg(tmp_path / "run"))
    done = [json.loads(p.read_text()) for p in (tmp_path / "run" / "points").glob("*/result.json")]
    assert sorted(d["status"] for d in done) == ["ok", "render_failed"]
    again_out = tmp_path / "run"
    with pytest.raises(HalocError, match="does not render"):
        run(space, _cfg(again_out))
    ok = next(d for d in done if d["status"] == "ok")
    assert json.loads((again_out / "points" / ok["id"] / "result.json").read_text()) == ok  # reused, not redone


def test_unreachable_scheduler_fails_before_writing(tmp_path):
    space = _space(tmp_path)
    with pytest.raises(HalocError, match="cannot reach the Dask scheduler") as err:
        run(space, _cfg(tmp_path / "run", scheduler="tcp://127.0.0.1:9", scheduler_timeout_s=1))
    assert "--scheduler" in str(err.value) or "scheduler" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from haloc_hw.cli import main

    space = tmp_path / "s.yaml"
    space.write_text("codesign_space:\n  design: [%s]\n  variables: {meshX: []}\n"
                     % (ROOT / "arch" / "eyeriss_space" / "top.yaml.jinja2"))
    assert main(["codesign", "--space", str(space), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "variable 'meshX' has no values" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_kill_9_mid_run_keeps_finished_points(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"codesign_space": {
        "design": [str(ROOT / "arch" / "eyeriss_space" / "top.yaml.jinja2")],
        "constraint_files": [str(ROOT / "mappings" / "row_stationary.yaml")],
        "variables": {"meshX": [8, 12, 14, 16], "glb_depth": [8192]}}}))
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "haloc_hw.cli", "codesign", "--space", str(space), "--out", str(out),
            "--data", "synthetic", "--subset", "64", "--epochs-base", "0", "--batch", "32", "--jobs", "1",
            "--haloc-candidates", "0", "--no-html"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.glob("points/*/result.json")) and proc.poll() is None:
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = {p.parent.name: p.read_text() for p in out.glob("points/*/result.json")}
    assert 1 <= len(done) < 4
    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} point(s) reused" in rerun.stdout
    assert all((out / "points" / pid / "result.json").read_text() == text for pid, text in done.items())
    with open(out / "points.csv") as f:
        assert len(list(csv.DictReader(f))) == 8


def test_points_that_render_alike_share_one_table(tmp_path):
    space = _space(tmp_path, variables={"meshX": [14], "label": ["a", "b"]}, reference=None)  # label is unused
    result = run(space, _cfg(tmp_path / "run"))
    a, b = result.points
    assert a["table"] == b["table"] and len(list((tmp_path / "run" / "tables").glob("*.sqlite"))) == 1
    assert a["cache"]["cache_hits"] == 0 and b["cache"]["cache_hits"] == b["cache"]["entries"] > 0
    assert result.stats["evaluated_entries"] == a["cache"]["entries"]
