"""Deterministic stand-in cost backends for table, executor and CLI tests.

Costs are simple closed forms of the shape, so tests can compute expected values by hand
(and they differ for every role of a triple). ``delay_s`` makes each evaluation slow, for
the kill-and-resume test. ``fail_when`` makes chosen shapes fail, for failure handling.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from haloc_hw.cost.base import Cost
from haloc_hw.errors import HalocError
from haloc_hw.settings import option
from haloc_hw.workload import ConvShape


def fake_cycles(s: ConvShape) -> float:
    return float(s.macs // 8 + s.C + 2 * s.M)


def fake_energy(s: ConvShape) -> float:
    return float(s.macs) * 2.5 + s.weights


class FakeBackend:
    name = "fake"

    def __init__(self, *, delay_s: float = 0.0, fail_when: tuple[int, ...] = (), tag: str = "a",
                 count_dir: str | None = None) -> None:  # fmt: skip
        self.delay_s = delay_s
        self.fail_when = fail_when  # fail shapes whose M is listed here
        self.tag = tag
        self.count_dir = count_dir  # when set, every evaluation drops a file there (counts across processes)

    def version(self) -> str:
        return "1"

    def fingerprint(self) -> dict[str, Any]:
        return {"tag": self.tag}

    def evaluate(self, workloads: Sequence[ConvShape]) -> list[Cost]:
        out = []
        for s in workloads:
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.count_dir:
                Path(self.count_dir, f"{os.getpid()}-{time.perf_counter_ns()}-{s.key}").touch()
            if s.M in self.fail_when:
                raise HalocError(f"fake failure for M={s.M}", key="M", fix="none")
            out.append(Cost(fake_cycles(s), fake_energy(s), None, min(1.0, s.M / 64), {"macs": s.macs}))
        return out


class FakeFusedBackend(FakeBackend):
    """Like a GPU backend: extra key fields and a fused role (triple cost = 0.75 of the sum)."""

    name = "fakefused"
    fused = True

    def __init__(self, batch: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        self.batch = batch

    def key_fields(self) -> dict[str, Any]:
        return {"batch": self.batch, "dtype": "bf16"}

    def evaluate(self, workloads: Sequence[ConvShape]) -> list[Cost]:
        return [Cost(None, None, fake_cycles(s) * 1e-9 * self.batch) for s in workloads]

    def evaluate_fused(self, triples: Sequence[Sequence[ConvShape]]) -> list[Cost]:
        return [Cost(None, None, 0.75 * sum(fake_cycles(s) for s in t) * 1e-9 * self.batch) for t in triples]


def register() -> None:
    """Make ``--backend fake`` available to the CLI (used by subprocess tests)."""
    from haloc_hw.cost.backends import BackendSpec, register_backend

    def factory(s: FakeSettings, ctx: Any) -> FakeBackend:
        return FakeBackend(delay_s=s.fake_delay, tag=Path(ctx.arch_path).name if ctx.arch_path else "a",
                           fail_when=tuple(s.fake_fail_m))  # fmt: skip

    register_backend(BackendSpec("fake", "deterministic fake costs (tests)", factory, FakeSettings), replace=True)


@dataclass(frozen=True)
class FakeSettings:
    """The fake backend's options (``--fake-delay``, ``--fake-fail-m``), offered by the CLI like any backend's."""

    fake_delay: float = field(default=0.0, metadata=option("seconds per fake evaluation", type=float))
    fake_fail_m: tuple[int, ...] = field(default=(), metadata=option("fail shapes with these M", type=int, nargs="*"))
