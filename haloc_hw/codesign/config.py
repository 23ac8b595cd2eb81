"""The settings of one co-design run (what ``haloc-hw codesign`` parses into; the library reads only this)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError
from haloc_hw.settings import DEFAULT_BUDGET


@dataclass(frozen=True)
class CodesignConfig:
    """Everything :func:`haloc_hw.codesign.run` needs besides the space.

    ``budget`` is the rank budget on every point, as ``--budget-energy`` takes it (a fraction
    of the original model's cost *on that point*, or an absolute value with units);
    ``metric`` the table metric it applies to. ``methods`` are the cheap allocators run on
    every point; ``haloc_candidates`` how many Pareto points get the full HALOC search and
    fine-tuning (0: none). ``jobs`` local worker processes, or ``scheduler`` a Dask address.
    """

    out: Path
    model: str = "resnet20"
    data: str | None = None
    data_root: Path | None = None
    subset: int | None = None
    base: Path | None = None
    budget: str = DEFAULT_BUDGET
    metric: str = "energy_pJ"
    methods: tuple[str, ...] = ("uniform", "greedy")
    step: int | None = None
    jobs: int | None = None
    scheduler: str | None = None
    scheduler_timeout_s: float = 10.0
    haloc_candidates: int = 2
    epochs_base: int = 3
    epochs_search: int = 3
    warmup_epochs: int = 1
    epochs_finetune: int = 2
    lr_finetune: float = 0.01
    batch: int = 64
    val_fraction: float = 0.2
    device: str | None = None
    seed: int = 0
    html: bool = True
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from haloc_hw.codesign.evaluate import CHEAP_METHODS
        from haloc_hw.cost.metric import METRICS
        from haloc_hw.models.registry import check_model_name
        from haloc_hw.rankspace import parse_budget

        check_model_name(self.model)
        bad = [m for m in self.methods if m not in CHEAP_METHODS]
        if bad or not self.methods:
            raise HalocError(f"unknown allocator(s) {', '.join(bad) or '(none)'}", key="--methods",
                             fix=f"use a comma-separated subset of {','.join(CHEAP_METHODS)}")
        if self.metric not in METRICS:
            raise HalocError(f"unknown metric '{self.metric}'", key="--metric", fix=f"use one of {', '.join(METRICS)}")
        parse_budget(self.budget, self.metric)
        for name in ("haloc_candidates", "epochs_base", "epochs_search", "epochs_finetune"):
            if getattr(self, name) < 0:
                raise HalocError(f"{name} must not be negative", key=f"--{name.replace('_', '-')}", fix="give 0 or more")
        if self.batch < 1:
            raise HalocError("--batch must be at least 1", key="--batch", fix="use a positive batch")
        if self.jobs is not None and self.jobs < 1:
            raise HalocError("--jobs must be at least 1", key="--jobs", fix="pass --jobs 1 or more")
        if self.base is not None and not Path(self.base).exists():
            raise HalocError("base model not found", file=self.base, key="--base",
                             fix="pass a run folder or model.pt written by 'haloc-hw train', or leave --base out")

    def settings_key(self) -> dict[str, Any]:
        """What a point's cheap result depends on besides its values (a change means: evaluate again)."""
        return {"model": self.model, "budget": self.budget, "metric": self.metric, "methods": list(self.methods),
                "step": self.step, "data": self.data, "subset": self.subset, "seed": self.seed,
                "base": None if self.base is None else str(self.base)}

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}
