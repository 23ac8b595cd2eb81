"""The catalogue of bad inputs a new user tried (issue 14): one case per row.

Each case is a command line, the exit code it must give (2: a user error, one line on
stderr, no traceback), a fragment of the message, and what must not be left on disk: a
user error never leaves a run folder or partial files behind. Tables are priced by the
fake backend and data are synthetic, so every case runs in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

import fake_cost_backend
from haloc_hw.cli import main

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--model", "resnet20", "--data", "synthetic", "--subset", "24", "--batch", "12", "--device", "cpu",
       "--epochs-base", "1", "--epochs-search", "1", "--warmup-epochs", "0", "--epochs-finetune", "1", "--jobs", "1",
       "--no-progress", "--no-onnx", "--backend", "fake", "--arch", "arch/eyeriss.yaml"]
BASELINE = ["--model", "resnet20", "--data", "synthetic", "--subset", "24", "--batch", "12", "--device", "cpu",
            "--epochs-base", "1", "--epochs-finetune", "1", "--jobs", "1", "--no-progress", "--no-onnx",
            "--backend", "fake", "--arch", "arch/eyeriss.yaml"]
TABLES = ["tables", "--model", "resnet20", "--arch", "arch/eyeriss.yaml", "--backend", "fake", "--jobs", "1",
          "--no-progress"]


@pytest.fixture(autouse=True)
def _fake_backend() -> None:
    fake_cost_backend.register()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs the cases point at: a plain file, a corrupt table, a CIFAR-sized and an ImageNet-sized table, a VGG base."""
    fake_cost_backend.register()
    from haloc_hw.export import save_run_model
    from haloc_hw.models import build_model

    root = tmp_path_factory.mktemp("inputs")
    plain = root / "SOME_FILE"
    plain.write_text("not a folder\n")
    corrupt = root / "corrupt.sqlite"
    corrupt.write_bytes(b"this is no sqlite file" * 20)
    assert main([*TABLES, "--out", str(root / "cifar")]) == 0
    assert main([*TABLES, "--dataset", "imagenet", "--out", str(root / "imagenet")]) == 0
    assert main([*TABLES, "--dataset", "fashion-mnist", "--out", str(root / "fmnist")]) == 0
    vgg = root / "vgg_base"
    save_run_model(vgg, build_model("vgg16"), model_name="vgg16", num_classes=10, in_channels=3,
                   input_size=(3, 32, 32), ranks={}, onnx=False)
    return {"file": plain, "corrupt": corrupt, "cifar": root / "cifar" / "cifar.sqlite",
            "imagenet": root / "imagenet" / "imagenet.sqlite", "fmnist": root / "fmnist" / "fmnist.sqlite",
            "vgg": vgg, "root": root}


Case = tuple[str, Callable[[dict[str, Path], Path], list[str]], str]

CASES: list[Case] = [
    ("tables --out is an existing file", lambda f, out: [*TABLES, "--out", str(f["file"])], "is a file"),
    ("tables --out under a file", lambda f, out: [*TABLES, "--out", str(f["file"] / "sub")], "cannot create the folder"),
    ("search --out is an existing file", lambda f, out: ["search", *RUN, "--out", str(f["file"])], "is a file"),
    ("search --out under a file", lambda f, out: ["search", *RUN, "--out", str(f["file"] / "run")],
     "cannot create the folder"),
    ("search budget below the minimum", lambda f, out: ["search", *RUN, "--budget-energy", "0.01", "--out", str(out)],
     "below the cheapest"),
    ("search corrupt table", lambda f, out: ["search", *RUN, "--table", str(f["corrupt"]), "--out", str(out)],
     "not a usable haloc-hw cost table"),
    ("search foreign table", lambda f, out: ["search", *RUN, "--table", str(f["imagenet"]), "--out", str(out)],
     "another shape in the table"),
    ("search missing data root", lambda f, out: ["search", *RUN, "--data-root", str(f["root"] / "nope"),
                                                 "--out", str(out)], "dataset folder not found"),
    ("search --subset 0", lambda f, out: ["search", *RUN, "--subset", "0", "--out", str(out)],
     "--subset must be at least 1"),
    ("search wrong --model for --base", lambda f, out: ["search", *RUN, "--base", str(f["vgg"]), "--out", str(out)],
     "base model is a vgg16, not a resnet20"),
    ("search --jobs 0", lambda f, out: ["search", *RUN, "--jobs", "0", "--out", str(out)], "--jobs must be at least 1"),
    ("search --step 0", lambda f, out: ["search", *RUN, "--step", "0", "--out", str(out)], "--step must be at least 1"),
    ("baseline budget below the minimum", lambda f, out: ["baseline", "--method", "uniform", *BASELINE,
                                                          "--budget-energy", "0.01", "--out", str(out)],
     "below the cheapest"),
    ("tables --step 1000", lambda f, out: [*TABLES, "--step", "1000", "--out", str(out)],
     "the widest, layer3.0.conv2 (C=64, M=64), has only 64 channels"),
    ("tables --compare of other layer shapes", lambda f, out: ["tables", "--compare", str(f["cifar"]),
                                                               str(f["imagenet"])], "another shape in B"),
    ("a CIFAR-sized table read by a Fashion-MNIST search",
     lambda f, out: ["search", *RUN, "--data", "fashion-mnist", "--table", str(f["cifar"]), "--out", str(out)],
     "--dataset"),
    ("--set with a backend that has no template variables",
     lambda f, out: ["search", *RUN, "--set", "meshX=24", "--out", str(out)], "works with the analytical backend"),
]


@pytest.mark.parametrize("name,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_leaves_nothing(name: str, argv: Callable, fragment: str, files: dict[str, Path],
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "run"
    before = {p: p.stat().st_mtime_ns for p in files["root"].rglob("*")}
    assert main(argv(files, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("haloc-hw: error:") and err.count("\n") == 1, err
    assert fragment in err
    assert not (tmp_path / "out").exists()  # no run folder, not even its parent
    assert {p: p.stat().st_mtime_ns for p in files["root"].rglob("*")} == before  # inputs untouched, nothing added
    assert not list(files["root"].rglob("*.log")) and not list(files["root"].rglob("config.yaml"))


def test_a_user_error_in_an_existing_folder_adds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main(["search", *RUN, "--budget-energy", "0.01", "--out", str(out)]) == 2
    assert "below the cheapest" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # no search.log, config.yaml or table.sqlite


def test_the_readme_table_for_fashion_mnist_is_accepted(files: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``tables --dataset fashion-mnist`` (README order) fits a Fashion-MNIST search: the run gets past the table."""
    out = tmp_path / "run"
    argv = ["search", *RUN, "--data", "fashion-mnist", "--table", str(files["fmnist"]), "--budget-energy", "0.01",
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "below the cheapest" in err and "another shape" not in err  # the table fitted; only the budget is refused
    readme = (ROOT / "README.md").read_text()
    assert "haloc-hw tables --model resnet20 --dataset fashion-mnist" in readme


def test_the_subset_default_is_said_when_data_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--subset`` defaults to 1000 only without ``--data``; with it the run says it uses every image."""
    argv = ["search", *[a for a in RUN if a not in ("--subset", "24")], "--budget-energy", "0.01",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "data: synthetic, all training images (--subset N for fewer)" in capsys.readouterr().out
    from haloc_hw.pipeline import data_note
    from haloc_hw.settings import DataSettings

    assert "1000 training images" in data_note(DataSettings())


@pytest.fixture
def compressed_run(tmp_path: Path) -> Path:
    """A run folder as search writes it: model.pt with one decomposed layer, ranks.json, config.yaml, metrics.json."""
    import yaml

    from haloc_hw.decompose import decompose_model
    from haloc_hw.export import save_run_model
    from haloc_hw.models import build_model

    run = tmp_path / "run"
    ranks = {"layer2.0.conv2": (16, 16)}
    model = decompose_model(build_model("resnet20"), ranks)
    save_run_model(run, model, model_name="resnet20", num_classes=10, in_channels=3, input_size=(3, 32, 32),
                   ranks=ranks, onnx=False)
    (run / "ranks.json").write_text(json.dumps({"metric": "energy_pJ",
                                                "layers": {"layer2.0.conv2": {"r1": 16, "r2": 16}}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"command": "search"}))
    (run / "metrics.json").write_text("{}")
    return run


EVALUATE = ["--data", "synthetic", "--subset", "8", "--batch", "8", "--device", "cpu"]


def test_evaluate_refuses_an_edited_ranks_json(compressed_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--run", str(compressed_run), *EVALUATE]) == 0  # as written: fine
    capsys.readouterr()
    doc = json.loads((compressed_run / "ranks.json").read_text())
    doc["layers"]["layer2.0.conv2"] = {"r1": 24, "r2": 24}
    (compressed_run / "ranks.json").write_text(json.dumps(doc))
    assert main(["evaluate", "--run", str(compressed_run), *EVALUATE]) == 2
    assert "ranks.json does not match model.pt (layer2.0.conv2 (24, 24) vs (16, 16)" in capsys.readouterr().err


def test_evaluate_refuses_a_deleted_ranks_json(compressed_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (compressed_run / "ranks.json").unlink()
    assert main(["evaluate", "--run", str(compressed_run), *EVALUATE]) == 2
    assert "lacks ranks.json" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(compressed_run / "model.pt"), *EVALUATE]) == 0  # the model file alone


def test_report_heatmap_default_metric_works_on_an_eyeriss_table(files: dict[str, Path], tmp_path: Path) -> None:
    assert main(["report", "heatmap", "--table", str(files["cifar"]), "--layer", "layer3.0.conv2",
                 "--out", str(tmp_path / "heat.png")]) == 0


@pytest.mark.slow
def test_the_readme_set_command_runs_on_the_weight_stationary_design(tmp_path: Path) -> None:
    """README: ``search --arch arch/ws_array/top.yaml.jinja2 --set meshX=24 ...`` (here on a tiny synthetic run)."""
    import yaml

    from haloc_hw.cost.table import CostTable

    out = tmp_path / "r20_ws"
    argv = ["search", "--arch", "arch/ws_array/top.yaml.jinja2", "--set", "meshX=24", "--model", "resnet20",
            "--data", "synthetic", "--subset", "24", "--batch", "12", "--device", "cpu", "--epochs-base", "1",
            "--epochs-search", "1", "--warmup-epochs", "0", "--epochs-finetune", "1", "--no-progress", "--no-onnx",
            "--step", "32", "--jobs", "2", "--budget-energy", "0.9", "--out", str(out)]
    assert main(argv) == 0
    table = CostTable.open(out / "table.sqlite")
    assert table.metadata["set_values"] == ["meshX=24"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["cost"]["backend_settings"]["set_values"] == ["meshX=24"]
    wider = tmp_path / "w16"
    assert main(["tables", "--model", "resnet20", "--arch", "arch/ws_array/top.yaml.jinja2", "--step", "32",
                 "--jobs", "2", "--no-progress", "--out", str(wider)]) == 0
    default = CostTable.open(wider / "w16.sqlite")
    # 24 columns instead of the default: the cost model priced another array
    assert default.metadata["backend_fingerprint_sha256"] != table.metadata["backend_fingerprint_sha256"]
    assert default.metadata["set_values"] == []
