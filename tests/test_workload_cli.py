"""``haloc-hw workloads``: files, index, atomic output, errors, and the shipped folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from haloc_hw.cli import main
from haloc_hw.cli.workloads import INDEX_COLUMNS, parse_input_size
from haloc_hw.decompose import rank_candidates
from haloc_hw.errors import HalocError
from haloc_hw.models import build_model
from haloc_hw.workload import ConvShape, extract_shapes, load_problem, tucker2_triple
from conftest import REPO

SHIPPED = {
    "resnet18": ["--model", "resnet18", "--input-size", "3,224,224", "--batch", "1", "--dialect", "v3"],
    "resnet20": ["--model", "resnet20", "--input-size", "3,32,32", "--batch", "1", "--dialect", "v3"],
}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["workloads", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _index(folder: Path) -> list[dict[str, str]]:
    with (folder / "index.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_resnet20_folder_is_complete_and_consistent(tmp_path, capsys):
    out = tmp_path / "r20"
    rc, stdout, _ = _run(capsys, "--model", "resnet20", "--input-size", "3,32,32", "--out", str(out))
    assert rc == 0 and "problem files" in stdout
    rows = _index(out)
    assert list(rows[0]) == list(INDEX_COLUMNS)
    layers = extract_shapes(build_model("resnet20"), (3, 32, 32))
    assert [r["layer"] for r in rows if r["role"] == "original"] == [layer.name for layer in layers]
    by_name = {layer.name: layer for layer in layers}
    expected_rows = 0
    for layer in layers:
        expected_rows += 1
        if layer.decomposable:
            expected_rows += 3 * len(rank_candidates(layer.shape))
    assert len(rows) == expected_rows
    for row in rows:
        shape = load_problem(out / row["file"])
        assert [shape.C, shape.M, shape.R, shape.S, shape.P, shape.Q, shape.N, shape.G] == [
            int(row[k]) for k in ("C", "M", "R", "S", "P", "Q", "N", "G")
        ]
        assert shape.macs == int(row["macs"]) and str(shape.Wstride) == row["stride"]
        if row["role"] == "original":
            assert shape == by_name[row["layer"]].shape and row["r1"] == row["r2"] == ""
        else:
            r1, r2 = int(row["r1"]), int(row["r2"])
            triple = tucker2_triple(by_name[row["layer"]].shape, r1, r2)
            assert shape == triple[("in", "core", "out").index(row["role"])]
    # one file per distinct shape, and only those files
    files = {p.relative_to(out).as_posix() for p in (out / "problems").iterdir()}
    assert files == {row["file"] for row in rows}
    assert len(files) == len({row["file"] for row in rows})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "resnet20" and manifest["rows"] == len(rows)
    assert _leftovers(tmp_path) == []


def test_step_equal_and_dialect_options(tmp_path, capsys):
    out = tmp_path / "w"
    rc, _, _ = _run(capsys, "--model", "resnet20", "--step", "16", "--no-equal", "--dialect", "v4", "--batch", "2", "--out", str(out))
    assert rc == 0
    rows = _index(out)
    core = [(int(r["r1"]), int(r["r2"])) for r in rows if r["layer"] == "layer3.0.conv1" and r["role"] == "core"]
    # C=32, M=64: r1 <= 64, r2 <= 32, and (64, 32) is the full rank, left out
    assert core == [(r1, r2) for r1 in (16, 32, 48, 64) for r2 in (16, 32) if (r1, r2) != (64, 32)]
    assert {r["N"] for r in rows} == {"2"}
    doc = yaml.safe_load((out / rows[0]["file"]).read_text())
    assert "data_spaces" in doc["problem"]["shape"] and doc["problem"]["version"] == 0.4


def test_existing_folder_needs_force(tmp_path, capsys):
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, stdout, err = _run(capsys, "--model", "resnet20", "--out", str(out))
    assert rc == 2 and "--force" in err and err.count("\n") == 1 and stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    rc, _, _ = _run(capsys, "--model", "resnet20", "--out", str(out), "--force")
    assert rc == 0 and not (out / "keep.txt").exists() and (out / "index.csv").is_file()
    assert _leftovers(tmp_path) == []


def test_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "w"
    out.write_text("a file")
    for extra in ([], ["--force"]):
        rc, _, err = _run(capsys, "--model", "resnet20", "--out", str(out), *extra)
        assert rc == 2 and "not a folder" in err and err.count("\n") == 1
        assert out.read_text() == "a file"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "alexnet"], "unknown model 'alexnet'"),
        (["--model", "resnet20", "--dialect", "v5"], "dialect"),
        (["--model", "resnet20", "--input-size", "3,32"], "input size"),
        (["--model", "resnet20", "--max-macs-ratio", "-1"], "max_macs_ratio"),
        (["--model", "resnet20", "--step", "0"], "step"),
        (["--model", "resnet20", "--batch", "0"], "batch"),
        (["--model", "resnet20", "--dataset", "coco"], "dataset"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, argv, match):
    out = tmp_path / "w"
    rc, _, err = _run(capsys, *argv, "--out", str(out))
    assert rc == 2 and match in err and err.startswith("haloc-hw: error:") and err.count("\n") == 1
    assert not out.exists() and _leftovers(tmp_path) == []


def test_failure_midway_leaves_nothing(tmp_path, capsys, monkeypatch):
    import haloc_hw.workload as workload

    calls = {"n": 0}
    real = workload.problem_yaml

    def flaky(shape: ConvShape, dialect: str = "v3") -> str:
        calls["n"] += 1
        if calls["n"] == 20:
            raise HalocError("simulated failure", key="test")
        return real(shape, dialect)

    monkeypatch.setattr(workload, "problem_yaml", flaky)
    out = tmp_path / "w"
    rc, _, err = _run(capsys, "--model", "resnet20", "--out", str(out))
    assert rc == 2 and "simulated failure" in err
    assert not out.exists() and _leftovers(tmp_path) == []
    # and an existing folder survives a failed --force run untouched
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    calls["n"] = 0
    rc, _, _ = _run(capsys, "--model", "resnet20", "--out", str(out), "--force")
    assert rc == 2 and (out / "keep.txt").read_text() == "mine" and _leftovers(tmp_path) == []


def test_parse_input_size():
    assert parse_input_size("3,224,224") == (3, 224, 224)
    assert parse_input_size("1x28x28") == (1, 28, 28)
    for bad in ("3,224", "a,b,c", "0,3,3", ""):
        with pytest.raises(HalocError):
            parse_input_size(bad)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_folder_is_what_the_cli_writes(tmp_path, capsys, name):
    shipped = REPO / "workloads" / name
    if not shipped.is_dir():
        pytest.skip(f"{shipped} not present")
    out = tmp_path / name
    rc, _, _ = _run(capsys, *SHIPPED[name], "--out", str(out))
    assert rc == 0
    ours = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*") if p.is_file())
    assert ours == theirs
    for rel in ours:
        assert (out / rel).read_bytes() == (shipped / rel).read_bytes(), rel


def test_classifier_width_follows_the_dataset(tmp_path, capsys):
    def fc_row(out):
        with (out / "index.csv").open() as fh:
            return next(r for r in csv.DictReader(fh) if r["layer"] == "fc")

    assert main(["workloads", "--model", "resnet18", "--input-size", "3,64,64", "--step", "256", "--out", str(tmp_path / "a")]) == 0
    assert fc_row(tmp_path / "a")["M"] == "1000"  # ResNet-18 is sized for ImageNet by default
    assert main(["workloads", "--model", "resnet18", "--input-size", "3,64,64", "--step", "256", "--dataset", "cifar10",
                 "--out", str(tmp_path / "b")]) == 0
    assert fc_row(tmp_path / "b")["M"] == "10"
    assert main(["workloads", "--model", "resnet20", "--num-classes", "7", "--step", "64", "--out", str(tmp_path / "c")]) == 0
    assert fc_row(tmp_path / "c")["M"] == "7"
