"""Atomic writes and safe YAML reading shared by every module that touches files.

Outputs and caches are written to a temporary file in the same directory and renamed into
place, so a killed process never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from haloc_hw.errors import HalocError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process umask, read once at import (reading it means setting it, which is not thread-safe).
_UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the result the permissions a plain open() would.
        if tmp.is_file():
            tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks: run configs and table metadata record
    which arch / table a result came from, and a cache key changes when the file does."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_yaml_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))


# PyYAML's safe loader, in C where PyYAML was built with libyaml (the wheels are): the same
# constructors as yaml.SafeLoader, about 8x faster on Timeloop's specs, which is most of a
# one-layer 'cost model' run after the imports.
SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def is_safe_loader(loader: type) -> bool:
    """Whether ``loader`` constructs only plain data (a full loader would run constructors named in the file)."""
    return issubclass(loader, yaml.constructor.SafeConstructor) and not issubclass(loader, yaml.constructor.FullConstructor)


def read_yaml(path: str | Path, loader: type = SafeLoader) -> Any:
    """Read a YAML file with a safe loader; bad files raise :class:`HalocError` naming the file."""
    if not is_safe_loader(loader):
        raise TypeError(f"read_yaml needs a safe loader, not {loader.__name__}")
    path = Path(path)
    if not path.is_file():
        raise HalocError("file not found", file=path, fix="check the path")
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=loader)  # noqa: S506 - is_safe_loader(loader) was checked
    except UnicodeDecodeError as err:
        raise HalocError(f"not a text file (byte {err.start} is not UTF-8)", file=path, fix="pass a YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise HalocError(f"malformed YAML{where}: {problem}", file=path, fix="correct the YAML syntax") from None
