"""Atomic writes: whole files or nothing, with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat

import pytest

from haloc_hw.errors import HalocError
from haloc_hw.fileio import atomic_path, read_yaml, write_json_atomic, write_text_atomic


def test_written_file_has_umask_permissions_not_mkstemps_0600(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_failed_write_leaves_neither_target_nor_temporary(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_replace_keeps_old_content_until_the_new_one_is_complete(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("new")
            raise RuntimeError("killed")
    assert path.read_text() == "old"


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(HalocError) as err:
        read_yaml(bad)
    assert str(bad) in str(err.value) and "line" in str(err.value)
