"""The study scripts refuse bad settings in one line, before they create any folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # PY points at a command that fails loudly: none of these cases may get as far as Python
    full = {**os.environ, "PY": "false", **env}
    return subprocess.run(["bash", str(SCRIPTS / name)], env=full, capture_output=True, text=True, timeout=60)


@pytest.fixture
def bases(tmp_path: Path) -> Path:
    """A study folder with a (placeholder) base model for seed 0 only."""
    (tmp_path / "study" / "s0" / "base").mkdir(parents=True)
    (tmp_path / "study" / "s0" / "base" / "model.pt").write_bytes(b"")
    return tmp_path / "study"


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fix: " in lines[0], result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("script", ["study_seeds.sh", "study_custom_arch.sh"])
def test_repeated_seed_is_refused_before_writing(script, tmp_path, bases):
    out = tmp_path / "out"
    result = run_script(script, {"OUT": str(out), "BASES": str(bases), "SEEDS": "0 1 0"})
    assert_refused(result, "repeats seed 0")
    assert not out.exists()


def test_custom_arch_names_the_seed_without_a_base(tmp_path, bases):
    out = tmp_path / "out"
    result = run_script("study_custom_arch.sh", {"OUT": str(out), "BASES": str(bases), "SEEDS": "0 1"})
    assert_refused(result, "seed 1", str(bases))
    assert not out.exists()


def test_custom_arch_refuses_a_missing_table_it_cannot_build(tmp_path, bases):
    out, table = tmp_path / "out", tmp_path / "nowhere" / "costs.sqlite"
    result = run_script("study_custom_arch.sh", {"OUT": str(out), "BASES": str(bases), "SEEDS": "0",
                                                 "TABLE": str(table)})
    assert_refused(result, str(table), "TABLE")
    assert not out.exists() and not table.parent.exists()


def test_custom_arch_finds_bases_in_either_layout(tmp_path):
    """sN/base/model.pt (a study folder) and sN/model.pt (a folder of bases) both count."""
    flat = tmp_path / "flat"
    (flat / "s3").mkdir(parents=True)
    (flat / "s3" / "model.pt").write_bytes(b"")
    out = tmp_path / "out"
    result = run_script("study_custom_arch.sh", {"OUT": str(out), "BASES": str(flat), "SEEDS": "3",
                                                 "TABLE": str(tmp_path / "missing.sqlite")})
    # past the base check: refused at the next one, the table
    assert_refused(result, "cost table not found")
