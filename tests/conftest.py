"""Shared by the test files: repository and golden-data paths, the one-thread fixture, and the
tiny search world (a small CNN, an in-memory cost table priced by MACs, seeded batches).

The golden data are real Timeloop 3.0.3 runs in ``../shared/timeloop-golden`` (one folder per
case); tests that need them skip with a reason when the folder is absent. The cost table
prices a candidate by the MACs of its Tucker-2 triple (and a layer by its own MACs), which is
enough to give the search a real trade-off. Names used at collection time (parametrize lists)
are imported from here as ``from conftest import ...``; the rest are fixtures.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import torch
from torch import nn

from haloc_hw.errors import HalocError
from haloc_hw.search import SearchConfig

HERE = Path(__file__).resolve().parent
#: The repository root (the shipped ``arch/``, ``mappings/``, ``examples/``).
REPO = HERE.parent
#: Real Timeloop runs to test against, one folder per case.
GOLDEN = REPO.parent / "shared" / "timeloop-golden"
#: The first bytes of every PNG file.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def golden_cases(marker: str | None = None) -> list[str]:
    """Names of the golden case folders (those holding ``marker`` when given); empty without the data."""
    if not GOLDEN.is_dir():
        return []
    return sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and (marker is None or (p / marker).exists()))


needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden Timeloop runs not found at {GOLDEN}")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors on a shared 2-core machine run much faster on one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def dict_costs() -> DictCosts:
    """The tiny world's in-memory cost table."""
    return DictCosts()


# -- the tiny search world ------------------------------------------------------------------

class TinyNet(nn.Module):
    """conv(3->8) - conv(8->16, stride 2) - depthwise(16) - conv(16->16) - linear."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.conv3(torch.relu(self.dw(x))))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


# Spatial output size per layer at 8x8 inputs: conv1 8x8, conv2/dw/conv3 4x4.
LAYER_GEOMETRY = {"conv1": (3, 8, 9, 64), "conv2": (8, 16, 9, 16), "dw": (1, 16, 9, 16), "conv3": (16, 16, 9, 16)}
CANDIDATES = {"conv1": [(2, 2), (4, 2), (8, 3)], "conv2": [(4, 4), (8, 8), (16, 8)], "conv3": [(4, 4), (8, 8), (16, 16)]}


class DictCosts:
    """In-memory CostLookup priced from MAC counts: energy_pJ = 2 x MACs, cycles = MACs / 4 + 10 per conv."""

    def __init__(self, geometry: dict[str, tuple[int, int, int, int]] | None = None,
                 candidates: dict[str, list[tuple[int, int]]] | None = None) -> None:
        self.geometry = dict(geometry or LAYER_GEOMETRY)
        self.cands = {k: list(v) for k, v in (candidates or CANDIDATES).items()}

    def layers(self) -> list[str]:
        return list(self.geometry)

    def candidates(self, layer: str) -> list[tuple[int, int]]:
        return list(self.cands.get(layer, []))

    def cost(self, layer: str, r1: int, r2: int, metric: str) -> float:
        if (r1, r2) not in self.cands.get(layer, []):
            raise HalocError(f"no candidate {r1}x{r2} for {layer}")
        c, m, k, hw = self.geometry[layer]
        return self._price([c * r2 * hw, r2 * r1 * k * hw, r1 * m * hw], metric)

    def original_cost(self, layer: str, metric: str) -> float:
        c, m, k, hw = self.geometry[layer]
        return self._price([c * m * k * hw], metric)

    @staticmethod
    def _price(macs: list[int], metric: str) -> float:
        energy = 2.0 * sum(macs)
        cycles = sum(v / 4 + 10 for v in macs)
        return {"energy_pJ": energy, "cycles": cycles, "latency_s": cycles * 1e-9, "edp": energy * cycles}[metric]


class TinyBatches:
    """Seeded batches that depend only on (seed, epoch), like DataBundle's."""

    def __init__(self, n: int, batch: int, seed: int, num_classes: int = 4, nan_from_epoch: int | None = None,
                 sleep_from_epoch: int | None = None, sleep_s: float = 0.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, num_classes, (n,), generator=gen)
        # class-dependent mean so there is something to learn
        self.x = torch.randn(n, 3, 8, 8, generator=gen) + self.y.float()[:, None, None, None] * 0.5
        self.batch, self.seed, self.epoch = batch, seed, 0
        self.nan_from_epoch, self.sleep_from_epoch, self.sleep_s = nan_from_epoch, sleep_from_epoch, sleep_s

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        for i in range(0, len(order), self.batch):
            idx = order[i:i + self.batch]
            x = self.x[idx]
            if self.nan_from_epoch is not None and self.epoch >= self.nan_from_epoch:
                x = x * float("nan")
            if self.sleep_from_epoch is not None and self.epoch >= self.sleep_from_epoch:
                import time

                time.sleep(self.sleep_s)
            yield x, self.y[idx]


def tiny_data(n_train: int = 64, n_val: int = 32, batch: int = 16, **kw) -> SimpleNamespace:
    return SimpleNamespace(train=TinyBatches(n_train, batch, seed=1, **kw), val=TinyBatches(n_val, batch, seed=2))


def tiny_config(**overrides) -> SearchConfig:
    base = dict(epochs=3, warmup_epochs=1, budget=0.5, metric="energy_pJ", seed=0, lr_alpha=0.05, progress=False)
    base.update(overrides)
    return SearchConfig(**base)


def run_tiny_search(out_dir: str | Path, *, resume: bool = False, data: SimpleNamespace | None = None, **cfg):
    """Build the supernet from the seeded tiny model and run the search; returns (plan, supernet)."""
    from haloc_hw.search import HalocSearch, Supernet

    supernet = Supernet(tiny_model(), CANDIDATES)
    plan = HalocSearch(tiny_config(**cfg)).run(supernet, data or tiny_data(), DictCosts(), out_dir, resume=resume)
    return plan, supernet
