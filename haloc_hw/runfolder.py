"""The run folder of ``search`` and ``baseline`` (and each run of a sweep or co-design): its layout, in one place.

::

    config.yaml          the run's settings (RunConfig.to_dict) and what it found (table hash, base model)
    ranks.json           the chosen ranks (RankPlan)
    metrics.json         top-1, MACs, table totals, per-layer costs
    search.log / baseline.log   the run's log
    table.sqlite         the cost table, when no --table was given
    base/                the base model trained here (when no --base was given)
    finetune/            fine-tuning checkpoint and history
    baseline.json        what a baseline allocator found
    model.pt, model.onnx the compressed model

A folder is finished when ``config.yaml``, ``ranks.json`` and ``metrics.json`` are all there.
:meth:`RunFolder.staged` keeps a user error during a run's set-up from leaving anything
behind: what the set-up created is removed again, and a folder it created goes away whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
RANKS_FILE = "ranks.json"
METRICS_FILE = "metrics.json"
TABLE_FILE = "table.sqlite"
BASE_DIR = "base"
FINETUNE_DIR = "finetune"
BASELINE_FILE = "baseline.json"
SEARCH_HISTORY_FILE = "search_history.json"
REQUIRED_FILES: tuple[str, ...] = (CONFIG_FILE, RANKS_FILE, METRICS_FILE)
HISTORY_PLACES: tuple[str, ...] = (f"{FINETUNE_DIR}/history.json", "history.json")


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder, whether it is finished, and reading it back."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def ranks(self) -> Path:
        return self.path / RANKS_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def table(self) -> Path:
        return self.path / TABLE_FILE

    @property
    def base(self) -> Path:
        return self.path / BASE_DIR

    @property
    def finetune(self) -> Path:
        return self.path / FINETUNE_DIR

    @property
    def baseline(self) -> Path:
        return self.path / BASELINE_FILE

    @property
    def search_history(self) -> Path:
        return self.path / SEARCH_HISTORY_FILE

    def log_file(self, command: str, rank: int | None = None) -> Path:
        """``search.log`` / ``baseline.log``; a non-zero distributed rank writes ``search.rankN.log``."""
        return self.path / (f"{command}.log" if not rank else f"{command}.rank{rank}.log")

    def is_finished(self) -> bool:
        return all((self.path / f).is_file() for f in REQUIRED_FILES)

    def missing(self) -> list[str]:
        return [f for f in REQUIRED_FILES if not (self.path / f).is_file()]

    def read_config(self) -> dict[str, Any] | None:
        """``config.yaml`` as a mapping, ``None`` when absent; a broken file is a :class:`HalocError`."""
        from haloc_hw.fileio import read_yaml

        if not self.config.is_file():
            return None
        doc = read_yaml(self.config)
        if not isinstance(doc, dict):
            raise HalocError("config.yaml is not a mapping", file=self.config, fix="re-run the command")
        return doc

    def load(self, name: str | None = None) -> Any:
        """The finished run as a :class:`~haloc_hw.report.runs.RunRecord` (every missing file named)."""
        from haloc_hw.report.runs import load_run

        return load_run(self.path, name)

    def check_writable(self, key: str = "--out") -> None:
        """Refuse an ``--out`` that is a file, or under a file, or in a folder this user cannot write."""
        if self.path.exists() and not self.path.is_dir():
            raise HalocError("is a file, not a folder", file=self.path, key=key, fix="choose a folder for --out")
        parent = self.path
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise HalocError(f"cannot create the folder: {parent} is a file", file=self.path, key=key,
                             fix="choose an --out whose parent is a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise HalocError(f"cannot create the folder: {parent} is not writable", file=self.path, key=key,
                             fix="choose an --out you can write to")

    @contextlib.contextmanager
    def staged(self) -> Iterator["Stage"]:
        """Set up a run inside this block; a :class:`HalocError` before ``stage.commit()`` undoes the set-up.

        Undo removes every top-level entry created inside the block (the whole folder, and
        any parents, when the block created it); what was there before is kept. After
        :meth:`Stage.commit` the run is real and an error keeps its files (a resume needs them).
        """
        self.check_writable()
        top = self.path
        while not top.parent.exists():
            top = top.parent
        existed = self.path.exists()
        before = set(os.listdir(self.path)) if existed else set()
        stage = Stage()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            yield stage
        except HalocError:
            if not stage.committed:
                if not existed:
                    shutil.rmtree(top if top.exists() else self.path, ignore_errors=True)
                elif self.path.is_dir():
                    for name in set(os.listdir(self.path)) - before:
                        target = self.path / name
                        if target.is_dir() and not target.is_symlink():
                            shutil.rmtree(target, ignore_errors=True)
                        else:
                            target.unlink(missing_ok=True)
                log.info("set-up of %s failed: removed what it had written", self.path)
            raise


class Stage:
    """Handle of :meth:`RunFolder.staged`: ``commit()`` once the run starts for real."""

    committed = False

    def commit(self) -> None:
        self.committed = True
