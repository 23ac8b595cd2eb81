"""Commands that need no torch must not import it (start-up speed; see benchmarks/bench_startup.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO as ROOT



def _imports_torch(argv: list[str]) -> tuple[bool, int]:
    code = ("import sys\nfrom haloc_hw.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code or 0\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=True).stdout.split()
    return out[-2] == "TORCH", int(out[-1])


@pytest.mark.parametrize("argv", [["--help"], ["cost", "--help"], ["cost", "map", "--help"], ["tables", "--help"]])
def test_light_commands_import_no_torch(argv: list[str]) -> None:
    torch_loaded, rc = _imports_torch(argv)
    assert rc == 0
    assert not torch_loaded


def test_unknown_command_still_refused() -> None:
    assert _imports_torch(["no-such-command"])[1] == 2


def test_command_added_beside_a_module_still_parses() -> None:
    assert _imports_torch(["evaluate", "--help"])[1] == 0
