"""``haloc-hw search`` end to end on CPU: table, base training, search, fine-tune, export, reload."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

from haloc_hw.cli import main

TINY = ["--model", "resnet20", "--data", "synthetic", "--subset", "48", "--batch", "16", "--device", "cpu",
        "--epochs-base", "1", "--epochs-search", "2", "--warmup-epochs", "1", "--epochs-finetune", "1",
        "--jobs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    code = main(["search", "--arch", "arch/eyeriss.yaml", "--budget-energy", "0.6", "--out", str(out), *TINY])
    assert code == 0
    return out


@pytest.mark.slow
def test_search_writes_a_complete_run_folder(tiny_run):
    out = tiny_run
    for name in ("config.yaml", "ranks.json", "model.pt", "model.onnx", "metrics.json", "search_history.json",
                 "search.log", "table.sqlite", "base/model.pt"):
        assert (out / name).exists(), name
    assert "search done:" in (out / "search.log").read_text()  # INFO records reach the run log
    ranks = json.loads((out / "ranks.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert ranks["metric"] == "energy_pJ"
    assert ranks["budget_met"] is True and ranks["total_cost"] <= ranks["budget"] * (1 + 1e-9)
    energy = metrics["table_cost"]["energy_pJ"]
    assert energy["compressed"] == pytest.approx(ranks["total_cost"])
    assert ranks["budget"] == pytest.approx(0.6 * energy["original"])
    assert metrics["macs"]["compressed"] < metrics["macs"]["original"]
    assert metrics["reload_matches"] is True
    per_layer = metrics["layers"]
    assert sum(v["compressed_energy_pJ"] for v in per_layer.values()) == pytest.approx(energy["compressed"], rel=1e-9)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["table"]["sha256"] == hashlib.sha256((out / "table.sqlite").read_bytes()).hexdigest()
    assert config["base"]["trained_here"] is True


@pytest.mark.slow
def test_exported_model_reloads_with_the_searched_ranks(tiny_run):
    from haloc_hw.export import load_compressed

    model = load_compressed(tiny_run)
    ranks = json.loads((tiny_run / "ranks.json").read_text())["layers"]
    assert {k: tuple(v) for k, v in model.haloc_info["ranks"].items()} == {k: (v["r1"], v["r2"]) for k, v in ranks.items()}
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
def test_rerun_needs_resume_and_resume_keeps_the_ranks(tiny_run, capsys):
    args = ["search", "--arch", "arch/eyeriss.yaml", "--budget-energy", "0.6", "--out", str(tiny_run), *TINY]
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    before = json.loads((tiny_run / "ranks.json").read_text())
    assert main([*args, "--resume", "--no-cuda-graphs"]) == 0  # how the steps run may change on resume
    after = json.loads((tiny_run / "ranks.json").read_text())
    assert after["layers"] == before["layers"]
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["search"]["cuda_graphs"] is False


@pytest.mark.slow
def test_unreachable_budget_and_conflicting_flags_fail_in_one_line(tiny_run, tmp_path, capsys):
    base = ["--base", str(tiny_run / "base"), "--table", str(tiny_run / "table.sqlite")]
    code = main(["search", "--budget-energy", "0.05", "--out", str(tmp_path / "low"), *base, *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "below the cheapest reachable" in err and len(err.strip().splitlines()) == 1
    code = main(["search", "--budget-energy", "0.5", "--budget-cycles", "0.5", "--out", str(tmp_path / "two"), *TINY])
    assert code == 2 and "more than one budget" in capsys.readouterr().err
    code = main(["search", "--budget-energy", "0.5", "--metric", "cycles", "--out", str(tmp_path / "m"), *TINY])
    assert code == 2 and "contradicts" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--arch", "no/such/arch.yaml"], "no/such/arch.yaml"),
        (["--budget-energy", "lots"], "budget-energy"),
        (["--base", "no/such/model.pt"], "--base"),
        (["--model", "resnet99"], "--model"),
        (["--distill", "4,0.9"], "--distill"),  # no --base to distil from
        (["--distill", "4"], "--distill"),
        (["--distill", "0,0.5"], "distill_temperature"),
        (["--distill", "4,1.5"], "distill_alpha"),
    ],
)
def test_bad_inputs_fail_before_any_training_and_write_nothing(tmp_path, capsys, extra, named):
    out = tmp_path / "run"
    args = ["search", "--out", str(out), *TINY]
    code = main([*args, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and named in err
    assert not out.exists()


@pytest.mark.slow
def test_search_on_a_measured_latency_table_built_on_the_cpu(tmp_path):
    out = tmp_path / "gpu"
    code = main(["search", "--backend", "gpu", "--device", "cpu", "--threads", "1", "--warmup", "1", "--repeats", "2",
                 "--dtype", "fp32", "--budget-latency", "1.5", "--out", str(out), *TINY])
    assert code == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["backend"] == "gpu" and config["budget"]["metric"] == "latency_s"
    assert config["arch"] is None  # a latency table is priced on no arch file
    assert config["table"]["metadata"]["batch"] == 16  # timed at the run's batch, and the table says so
    metrics = json.loads((out / "metrics.json").read_text())
    latency = metrics["table_cost"]["latency_s"]
    assert 0 < latency["compressed"] <= metrics["budget"]["value"] * (1 + 1e-9)


def test_search_option_choices_follow_the_search_config():
    """The parser spells the choices out (building it must not import torch); they must stay the config's."""
    import argparse

    from haloc_hw.cli.options import add_search_options as add_search_arguments
    from haloc_hw.rankspace import DECODES
    from haloc_hw.search.search import ARCH_STEPS, PENALTIES

    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    choices = {a.dest: tuple(a.choices) for a in parser._actions if a.choices}
    assert choices == {"arch_steps": ARCH_STEPS, "decode": DECODES, "penalty": PENALTIES}
