"""The HALOC optimisation loop: alternate weight and architecture steps, then pick ranks.

An epoch reads every training image once: a weight step per ``data.train`` batch, and (after
``warmup_epochs`` of weight-only epochs) an architecture step per ``data.val`` batch, spread
evenly between them (``arch_steps="per-train-batch"`` instead follows every weight step with
one, DARTS's alternation).

(a) **weight step** on ``data.train``: sample one candidate per layer from ``p`` (no gradient
    to ``alpha``); loss = CE + lambda * sum_i MSE(candidate output, original conv output on
    the same input). Only the sampled candidates' activations are held.
(b) **architecture step** on a ``data.val`` batch: straight-through Gumbel-softmax per
    layer (the forward pass runs one sampled candidate, scaled by a weight that is 1 in the
    forward pass and carries the soft Gumbel gradient), plus a second candidate's output
    (no gradient) behind a gate that is 0 in the forward pass, so the CE gradient compares two
    candidates despite the BatchNorm after each conv; loss = CE * eta * (E / epsilon)^theta
    with E = fixed + sum_i sum_j p_ij cost_ij, differentiable in alpha directly. ``fixed`` is
    the table cost of every layer that is not searched, so the budget epsilon is on the
    whole model. Only ``alpha`` is differentiated (``torch.autograd.grad``), so no weight
    gradients are computed or touched.

Speed: on a GPU a small network's step is bound by the host issuing kernels (a cuDNN
convolution costs the host 35-60 us forward and about twice that backward, many times its
GPU time for ResNet-20). So each sampled candidate is replayed from CUDA graphs (two launches
per layer and pass instead of about ten cuDNN calls, :mod:`haloc_hw.search.graphs`,
``cuda_graphs``), the bookkeeping of the architecture parameters is batched over layers
(:class:`~haloc_hw.search.alphas.AlphaMatrix`), candidates are drawn on the host from a copy
of p refreshed once per architecture step, the eager feature-map loss enters as gradient
hooks rather than loss nodes, every momentum buffer exists from the start (so SGD's update
stays multi-tensor), and the losses stay on the device between checks (``check_every``).

Memory: each step holds one candidate's activations per layer (plus the original conv's
output difference in the eager weight step, the second candidate's output in the
architecture step; with CUDA graphs, each layer's static input and output instead, and one
pool for the graphs' temporaries), so peak memory stays within a small multiple of a plain
training step; ``tests/test_search_memory.py`` checks the bound of 3x on CPU and, eager and
with graphs, on CUDA.

Checkpoints (``search_checkpoint.pt``, written atomically after every epoch) hold the
supernet, both optimisers, every random generator the loop and the data loaders draw from,
and the history; ``resume=True`` after a kill continues from the last finished epoch and
gives the same ranks as an uninterrupted run on CPU. A non-finite loss stops the search
with :class:`HalocError` at the next check, leaving the last good checkpoint in place.

Distributed: under ``torch.distributed`` (torchrun, NCCL or gloo) the weight step runs
through ``DistributedDataParallel`` (alpha excluded from it); alpha gradients are
all-reduced by hand so every rank keeps identical alpha; candidate sampling uses a generator
seeded identically on every rank, so all ranks run the same paths on different data.
The candidates run eagerly there: the CUDA-graph replay is made and tested for one process.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from haloc_hw.errors import HalocError
from haloc_hw.fileio import atomic_path, write_json_atomic
from haloc_hw.rankspace import (DECODES, Budget, CostLookup, CostRange, Rank, RankPlan, candidate_vectors, check_table,
                                combine, components, make_plan, parse_budget, resolve_budget)
from haloc_hw.runfolder import RANKS_FILE, SEARCH_HISTORY_FILE
from haloc_hw.search.alphas import AlphaMatrix
from haloc_hw.search.graphs import graph_pool_bytes
from haloc_hw.search.penalty import get_penalty, penalty_names
from haloc_hw.search.supernet import Supernet

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "search_checkpoint.pt"
_CHECKPOINT_VERSION = 1
#: Hardware factor of the architecture loss CE * eta * f, by name (:mod:`haloc_hw.search.penalty`).
PENALTIES: tuple[str, ...] = penalty_names()
#: How many architecture steps an epoch makes (see SearchConfig).
ARCH_STEPS: tuple[str, ...] = ("per-val-batch", "per-train-batch")
# Config fields that may differ between a run and its resumption (more epochs extend a search:
# the learning rates are constant, so earlier epochs are unaffected).
_RESUME_FREE = {"device", "progress", "epochs", "check_every", "cuda_graphs", "stop_entropy", "stop_delta"}


@dataclass
class SearchConfig:
    """Search hyper-parameters.

    ``budget`` is a fraction of the original model's cost (``0.5``, ``"50%"``) or an absolute
    value with units (``"150uJ"``, ``"2e6cycles"``, ``"1.5ms"``); see
    :func:`haloc_hw.rankspace.parse_budget`. ``lr_alpha`` drives Adam on alpha; 1e-2 moves
    p visibly within a few epochs, as short searches need. ``theta`` > 1 makes the hardware
    factor grow quickly once the expected cost exceeds the budget. ``penalty`` picks the
    hardware factor (:data:`PENALTIES`): with ``"paper"`` the factor's gradient always points
    to cheaper candidates, and when the straight-through CE signal is weak (short searches,
    a well-trained base) p ends on the cheapest ranks well under the budget; ``"hinge"``
    applies the same factor only above the budget, so the search spends the budget. ``"hinge"``
    is the default: on ResNet-20 / Fashion-MNIST / Eyeriss with a 0.7 energy budget the
    paper's factor ended at 0.48x energy and 63.0 % top-1, the hinge at 0.64x and 71.6 %
    (3000 images, 3 base / 4 search / 1 fine-tune epochs, CPU).
    ``compare_paths``: the architecture step also runs a second candidate (drawn from p
    without the sampled one) without gradient and adds it with a gate that is 0 in the
    forward pass, so the CE gradient compares two candidates (see
    :meth:`RankChoiceConv.set_gumbel`); off, the CE reaches alpha only through the sampled
    candidate's own gate, which BatchNorm after the conv makes nearly zero.
    ``arch_steps`` (:data:`ARCH_STEPS`): ``"per-val-batch"`` spreads one architecture step per
    validation batch evenly over the epoch, so an epoch reads every training image once
    (weight part and arch-val part); ``"per-train-batch"`` follows every weight step with an
    architecture step, cycling the validation part (DARTS's alternation; the same thing when
    the split is 50/50). With a 20 % split, ``"per-val-batch"`` makes a quarter of the alpha
    updates per epoch: give it more epochs (or a larger ``lr_alpha``) for p to converge as far.
    ``decode`` (:data:`~haloc_hw.rankspace.DECODES`): how the final ranks are read from p,
    the paper's argmax per layer, the most probable plan just under the budget, or the plan
    that follows each layer's expected cost (see :mod:`haloc_hw.rankspace`).
    ``check_every``: steps between the checks for a non-finite loss (each check waits for the
    device, so checking every step would serialise host and GPU).
    ``cuda_graphs``: on a CUDA device (not under ``torch.distributed``), replay each sampled
    candidate from CUDA graphs (:mod:`haloc_hw.search.graphs`): the same arithmetic with far
    less host work per step, for some memory. H100, batch 256: ResNet-20's search epoch
    1.57x a plain epoch with them, 2.21x without, at 2.5x and 1.8x a plain step's memory;
    VGG-16 1.87x and 2.51x, at 3.4x and 2.4x (docs/RESULTS.md section 5).
    Convergence: every epoch records each layer's entropy of p, normalised by the log of its
    number of candidates (1 = uniform, 0 = one-hot; ``entropy`` in ``search_history.json``), and
    the largest change of any p since the previous epoch (``p_change``, max abs). ``tau_final``
    anneals the Gumbel temperature geometrically from ``tau`` (first architecture epoch) to
    ``tau_final`` (last epoch of the cap ``epochs``). The search stops early, after an
    architecture epoch, when every layer's normalised entropy is at most ``stop_entropy`` or
    when ``p_change`` is at most ``stop_delta`` (either ``None``: not used); ``epochs`` stays the cap.
    """

    epochs: int = 10
    warmup_epochs: int = 1
    lr_w: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_alpha: float = 1e-2
    alpha_weight_decay: float = 0.0
    lam: float = 1.0
    eta: float = 1.0
    theta: float = 2.0
    tau: float = 1.0
    penalty: str = "hinge"
    compare_paths: bool = True
    arch_steps: str = "per-val-batch"
    budget: str | float = 0.5
    metric: str = "energy_pJ"
    seed: int = 0
    grad_clip: float = 5.0
    max_batches: int | None = None
    repair: bool = True
    decode: str = "argmax"
    device: str = "cpu"
    progress: bool = True
    check_every: int = 25
    cuda_graphs: bool = True
    tau_final: float | None = None
    stop_entropy: float | None = None
    stop_delta: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise HalocError("search needs at least one epoch", key="epochs", fix="set epochs >= 1")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise HalocError("warmup_epochs must be between 0 and epochs", key="warmup_epochs", fix="lower it")
        if self.tau <= 0:
            raise HalocError("tau must be positive", key="tau", fix="use e.g. 1.0")
        get_penalty(self.penalty)  # an unknown name raises, listing the registered ones
        if self.arch_steps not in ARCH_STEPS:
            raise HalocError(f"unknown arch_steps '{self.arch_steps}'", key="arch_steps",
                             fix=f"use one of {', '.join(ARCH_STEPS)}")
        if self.decode not in DECODES:
            raise HalocError(f"unknown decode '{self.decode}'", key="decode", fix=f"use one of {', '.join(DECODES)}")
        if self.tau_final is not None and self.tau_final <= 0:
            raise HalocError("tau_final must be positive", key="tau_final", fix="use e.g. 0.2, or None for a constant tau")
        if self.stop_entropy is not None and not 0 < self.stop_entropy <= 1:
            raise HalocError("stop_entropy is a normalised entropy in (0, 1]", key="stop_entropy", fix="use e.g. 0.3")
        if self.stop_delta is not None and self.stop_delta <= 0:
            raise HalocError("stop_delta must be positive", key="stop_delta", fix="use e.g. 0.01")
        if self.check_every < 1:
            raise HalocError("check_every must be at least 1", key="check_every", fix="use e.g. 25")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _State:
    supernet: Supernet
    opt_w: torch.optim.Optimizer
    opt_a: torch.optim.Optimizer
    sampler: torch.Generator
    history: dict[str, Any]
    alphas: AlphaMatrix
    weights: list[nn.Parameter] = field(default_factory=list)  # the weight optimiser's parameters


@dataclass
class _Run:
    """What :meth:`HalocSearch._set_up` hands to the epoch loop and the decode."""

    out_dir: Path
    device: torch.device
    dist_on: bool
    is_main: bool
    graphs_on: bool
    names: list[str]
    candidates: dict[str, list[Rank]]
    vectors: dict[str, list[list[float]]]
    epsilon: float
    cost_range: CostRange
    state: _State
    loaders: list[Any]
    weight_model: nn.Module
    ckpt_path: Path
    start: int


class HalocSearch:
    """Runs the HALOC search over a :class:`Supernet` with costs from a :class:`CostLookup`."""

    def __init__(self, cfg: SearchConfig) -> None:
        self.cfg = cfg
        self._penalty = get_penalty(cfg.penalty)

    # -- public ---------------------------------------------------------------------------
    def run(self, supernet: Supernet, data: Any, costs: CostLookup, out_dir: str | Path, resume: bool = False,
            table_source: str | None = None) -> RankPlan:
        """Search, write ``ranks.json`` / ``search_history.json`` to ``out_dir``, return the plan.

        ``data`` needs ``.train`` and ``.val`` loaders (``DataBundle``); without ``.val`` the
        architecture steps use the training loader. With ``cuda_graphs`` the supernet keeps
        its captured graphs after the run, for a further one; ``supernet.use_cuda_graphs(False)``
        (or deleting it) frees them.
        """
        run = self._set_up(supernet, data, costs, Path(out_dir), resume, table_source)
        self._epochs(run)
        return self._decode(run, costs)

    # -- the three phases -----------------------------------------------------------------
    def _set_up(self, supernet: Supernet, data: Any, costs: CostLookup, out_dir: Path, resume: bool,
                table_source: str | None) -> _Run:
        """Check the table and budget, build optimisers, history and alpha matrix, resume, wrap for DDP."""
        cfg = self.cfg
        dist_on = _dist_on()
        is_main = not dist_on or torch.distributed.get_rank() == 0
        device = torch.device(cfg.device)
        if device.type == "cuda" and device.index is None:  # "cuda" is the current device, as tensors name it
            device = torch.device("cuda", torch.cuda.current_device())
        candidates = supernet.candidates()
        if not candidates:
            raise HalocError("the model has no decomposable layer to search", key="candidates",
                             fix="pick a model with dense convolutions")
        check_table(costs, candidates, cfg.metric, source=table_source)
        budget = parse_budget(cfg.budget, cfg.metric) if not isinstance(cfg.budget, Budget) else cfg.budget
        epsilon, cost_range = resolve_budget(budget, costs, candidates, source=table_source)
        names = supernet.layer_names
        vectors = candidate_vectors(costs, candidates, cfg.metric)  # [candidate][component]
        cost_lists = {n: [combine(c, cfg.metric) for c in vectors[n]] for n in names}
        log.info("search: %d layers, budget %s = %.6g (original %.6g, reachable %.6g..%.6g), skipped %d convs",
                 len(names), budget.describe(), epsilon, cost_range.original, cost_range.minimum, cost_range.maximum,
                 len(supernet.skipped))

        if any(t.device != device for t in (*supernet.parameters(), *supernet.buffers())):
            supernet.to(device)  # only when needed: moving drops the CUDA graphs of an earlier run
        torch.manual_seed(cfg.seed)
        opt_w = torch.optim.SGD(supernet.weight_parameters(), lr=cfg.lr_w, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
        _create_momentum_buffers(opt_w)
        opt_a = torch.optim.Adam(supernet.arch_parameters(), lr=cfg.lr_alpha, betas=(0.5, 0.999),
                                 weight_decay=cfg.alpha_weight_decay)
        sampler = torch.Generator().manual_seed(cfg.seed + 1)
        history: dict[str, Any] = {
            "metric": cfg.metric, "budget": epsilon, "budget_text": str(cfg.budget),
            "original_total": cost_range.original, "fixed_cost": cost_range.fixed,
            "min_total": cost_range.minimum, "max_total": cost_range.maximum,
            "candidates": {n: [list(c) for c in candidates[n]] for n in names},
            "costs": cost_lists, "cost_components": list(components(cfg.metric)),
            "skipped": dict(supernet.skipped), "epochs": [],
        }
        alphas = AlphaMatrix(supernet.choice_layers(), {n: torch.tensor(vectors[n]) for n in names},
                             torch.tensor(cost_range.fixed_components), cfg.metric)
        state = _State(supernet, opt_w, opt_a, sampler, history, alphas, supernet.weight_parameters())
        train_loader, val_loader = _loaders(data, dist_on)
        loaders = [train_loader, val_loader]
        ckpt_path = out_dir / CHECKPOINT_NAME
        start = 0
        if resume and ckpt_path.exists():
            start = self._load_checkpoint(ckpt_path, state, loaders, candidates)
            log.info("resuming search from %s after epoch %d", ckpt_path, start)
        elif resume:
            log.warning("--resume: no checkpoint at %s, starting the search from the beginning", ckpt_path)

        weight_model: nn.Module = supernet
        if dist_on:
            from torch.nn.parallel import DistributedDataParallel as DDP

            DDP._set_params_and_buffers_to_ignore_for_model(supernet, supernet.arch_parameter_names())
            ids = None
            if device.type == "cuda":
                ids = [device.index if device.index is not None else torch.cuda.current_device()]
            weight_model = DDP(supernet, device_ids=ids, find_unused_parameters=True)

        graphs_on = cfg.cuda_graphs and device.type == "cuda" and not dist_on
        supernet.use_cuda_graphs(graphs_on)  # kept after the run, for the next one (off frees them)
        return _Run(out_dir=out_dir, device=device, dist_on=dist_on, is_main=is_main, graphs_on=graphs_on,
                    names=names, candidates=candidates, vectors=vectors, epsilon=epsilon, cost_range=cost_range,
                    state=state, loaders=loaders, weight_model=weight_model, ckpt_path=ckpt_path, start=start)

    def _epochs(self, run: _Run) -> None:
        """Epochs from ``run.start``: train, record p and costs, checkpoint, stop early when converged."""
        cfg = self.cfg
        state, names, candidates = run.state, run.names, run.candidates
        supernet, alphas, history = state.supernet, state.alphas, state.history
        train_loader, val_loader = run.loaders
        for epoch in range(run.start, cfg.epochs):
            for loader in run.loaders:
                _set_epoch(loader, epoch)
            self._tau = tau_at(cfg, epoch)
            t0 = time.perf_counter()
            stats = self._epoch(epoch, state, run.weight_model, train_loader, val_loader, run.epsilon, run.is_main,
                                run.dist_on)
            stats["seconds"] = time.perf_counter() - t0
            if run.graphs_on:  # reserved for the replays, invisible to torch.cuda.max_memory_allocated
                stats["graph_pool_bytes"] = graph_pool_bytes(run.device)
            probs = supernet.probabilities()
            stats["p"] = {n: [float(v) for v in probs[n]] for n in names}
            stats["tau"] = self._tau
            stats["entropy"] = {n: normalised_entropy(stats["p"][n]) for n in names}
            previous = history["epochs"][-1]["p"] if history["epochs"] else None
            stats["p_change"] = (max(max(abs(a - b) for a, b in zip(stats["p"][n], previous[n])) for n in names)
                                 if previous else None)
            picks = {n: layer.argmax_index() for n, layer in supernet.choice_layers().items()}
            stats["argmax"] = {n: list(candidates[n][j]) for n, j in picks.items()}
            with torch.no_grad():
                soft = torch.softmax(alphas.padded(), dim=1)
                stats["expected_cost"] = float(alphas.expected_cost(soft))
                onehot = F.one_hot(torch.tensor([picks[n] for n in names]), soft.shape[1]).to(soft)
                stats["argmax_cost"] = float(alphas.expected_cost(onehot))
            history["epochs"].append(stats)
            log.info("search epoch %d/%d: ce %.4f mse %.4g val-ce %.4f expected %.4g argmax %.4g (budget %.4g)",
                     epoch + 1, cfg.epochs, stats["train_ce"], stats["feature_mse"], stats["val_ce"],
                     stats["expected_cost"], stats["argmax_cost"], run.epsilon)
            if run.is_main:
                self._save_checkpoint(run.ckpt_path, epoch, state, run.loaders, candidates)
                write_json_atomic(run.out_dir / SEARCH_HISTORY_FILE, history)
            if run.dist_on:
                torch.distributed.barrier()
            why = converged(cfg, epoch, stats)
            if why:
                history["stopped"] = {"epoch": epoch + 1, "reason": why}
                if run.is_main:
                    write_json_atomic(run.out_dir / SEARCH_HISTORY_FILE, history)
                log.info("search converged after epoch %d: %s", epoch + 1, why)
                break

    def _decode(self, run: _Run, costs: CostLookup) -> RankPlan:
        """The final p to a :class:`RankPlan` (``cfg.decode``, repaired to the budget), saved on the main rank."""
        cfg = self.cfg
        names = run.names
        probs = run.state.supernet.probabilities()
        plan = make_plan(
            {n: [float(v) for v in probs[n]] for n in names}, run.candidates, run.vectors,
            {n: [float(costs.original_cost(n, c)) for c in components(cfg.metric)] for n in names},
            metric=cfg.metric, budget=run.epsilon, budget_text=str(cfg.budget),
            fixed_cost=run.cost_range.fixed_components, repair=cfg.repair, decode=cfg.decode,
        )
        plan.skipped = {**run.state.supernet.skipped, **plan.skipped}  # not searched, then kept by the plan
        if run.is_main:
            if not run.state.history["epochs"]:
                write_json_atomic(run.out_dir / SEARCH_HISTORY_FILE, run.state.history)
            plan.save(run.out_dir / RANKS_FILE)
        log.info("search done: %s", plan.note)
        return plan

    # -- one epoch ------------------------------------------------------------------------
    def _epoch(self, epoch: int, state: _State, weight_model: nn.Module, train_loader: Any, val_loader: Any,
               epsilon: float, is_main: bool, dist_on: bool) -> dict[str, Any]:
        cfg = self.cfg
        net = state.supernet
        device = torch.device(cfg.device)
        arch_on = epoch >= cfg.warmup_epochs
        net.train()
        # running sums on the device (train ce, feature mse, val ce, hw factor): read back only
        # every ``check_every`` steps, so the host can queue the next step while the GPU works
        sums = torch.zeros(4, dtype=torch.float64, device=device)
        n_w = n_a = 0
        total = len(train_loader) if cfg.max_batches is None else min(len(train_loader), cfg.max_batches)
        n_val = total
        if cfg.arch_steps == "per-val-batch":  # the val part's share of the batches read (max_batches cuts both)
            n_val = max(1, len(val_loader) * total // max(len(train_loader), 1))
        val_iter = _cycle(val_loader) if arch_on else None
        bar = tqdm(total=total, desc=f"search {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                   disable=not (is_main and cfg.progress))
        try:
            for step, (x, y) in enumerate(train_loader):
                if step >= total:
                    break
                sums[:2] += self._weight_step(state, weight_model, x.to(device), y.to(device))
                n_w += 1
                if val_iter is not None:
                    for _ in range(_arch_steps_after(step, total, n_val)):
                        xv, yv = next(val_iter)
                        sums[2:] += self._arch_step(state, xv.to(device), yv.to(device), epsilon, dist_on)
                        n_a += 1
                bar.update(1)
                if (step + 1) % cfg.check_every == 0 or step + 1 == total:
                    means = self._check(sums, n_w, n_a, step)
                    bar.set_postfix(ce=f"{means[0]:.3f}")
        finally:
            bar.close()
            net.set_paths(None)
            net.track_targets(False)
        means = self._check(sums, n_w, n_a, n_w - 1)
        return {
            "epoch": epoch + 1,
            "arch_steps": n_a,
            "train_ce": means[0],
            "feature_mse": means[1],
            "val_ce": means[2] if n_a else math.nan,
            "hw_factor": means[3] if n_a else math.nan,
        }

    def _check(self, sums: torch.Tensor, n_w: int, n_a: int, step: int) -> list[float]:
        """Mean losses so far; a non-finite one stops the search (the last checkpoint stays)."""
        cfg = self.cfg
        values = sums.tolist()
        for where, pair in (("weight step", values[:2]), ("architecture step", values[2:])):
            if not all(math.isfinite(v) for v in pair):
                raise _nonfinite_loss(where, f"by batch {step + 1}", cfg)
        return [v / max(n_w, 1) for v in values[:2]] + [v / max(n_a, 1) for v in values[2:]]

    def _weight_step(self, state: _State, weight_model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One weight step on a training batch; returns the detached (ce, feature mse)."""
        cfg = self.cfg
        net = state.supernet
        net.set_paths(state.alphas.rows(state.alphas.sample(state.sampler)))
        net.track_targets(True, cfg.lam)
        with net.replay_window():
            out = weight_model(x)
            ce = F.cross_entropy(out, y)
            state.opt_w.zero_grad(set_to_none=True)
            ce.backward()  # adds the gradient of lam * sum_i MSE_i too (see Supernet.track_targets)
        mse = net.feature_loss().to(ce.device)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(state.weights, cfg.grad_clip)
        state.opt_w.step()
        net.track_targets(False)
        return torch.stack([ce.detach(), mse]).to(torch.float64)

    def _arch_step(self, state: _State, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                   dist_on: bool) -> torch.Tensor:
        """One alpha step on a validation batch; returns the detached (ce, hardware factor)."""
        cfg = self.cfg
        net = state.supernet
        alphas = state.alphas
        padded = alphas.padded()
        tau = getattr(self, "_tau", cfg.tau)
        for layer, choice in zip(alphas.layers, alphas.gumbel_gates(padded, state.sampler, tau, cfg.compare_paths)):
            layer.set_gumbel(*choice)
        params = net.arch_parameters()
        with net.replay_window():
            out = net(x)
            ce = F.cross_entropy(out, y)
            probs = torch.softmax(padded, dim=1)
            hw = self._penalty(alphas.expected_cost(probs) / epsilon, cfg.theta)
            loss = ce * cfg.eta * hw.to(ce.dtype)
            grads = torch.autograd.grad(loss, params)
        if dist_on:
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            flat /= torch.distributed.get_world_size()
            grads = tuple(flat[o:o + a.numel()].view_as(a) for o, a in zip(_offsets(params), params))
        for alpha, grad in zip(params, grads):
            alpha.grad = grad
        state.opt_a.step()
        state.opt_a.zero_grad(set_to_none=True)
        net.set_paths(None)
        alphas.refresh()  # the host copy the next samples are drawn from (one transfer)
        if not alphas.finite():
            if not bool(torch.isfinite(loss.detach())):
                raise _nonfinite_loss("architecture step", "", cfg)
            raise HalocError(f"alpha became non-finite at lr_alpha={cfg.lr_alpha}", key="lr_alpha",
                             fix="lower lr_alpha and resume from the last checkpoint with --resume")
        return torch.stack([ce.detach().to(torch.float64), hw.detach().to(torch.float64)])

    # -- checkpoints ----------------------------------------------------------------------
    def _save_checkpoint(self, path: Path, epoch: int, state: _State, loaders: list[Any],
                         candidates: dict[str, list[Rank]]) -> None:
        payload = {
            "version": _CHECKPOINT_VERSION,
            "epoch": epoch,
            "config": _comparable(self.cfg),
            "candidates": {n: [list(c) for c in cs] for n, cs in candidates.items()},
            "supernet": state.supernet.state_dict(),
            "opt_w": state.opt_w.state_dict(),
            "opt_a": state.opt_a.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "sampler": state.sampler.get_state(),
                "loaders": [g.get_state() for g in _loader_generators(loaders)],
            },
            "history": state.history,
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def _load_checkpoint(self, path: Path, state: _State, loaders: list[Any],
                         candidates: dict[str, list[Rank]]) -> int:
        try:
            payload = torch.load(path, map_location=self.cfg.device, weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
            raise HalocError(f"cannot read search checkpoint ({err})", file=path,
                             fix="delete it to start over, or use a new --out") from None
        if payload.get("version") != _CHECKPOINT_VERSION:
            raise HalocError("search checkpoint has an unknown version", file=path, fix="start a new search")
        now = _comparable(self.cfg)
        diff = sorted(k for k in set(now) | set(payload["config"]) if now.get(k) != payload["config"].get(k))
        if diff:
            raise HalocError(f"search settings differ from the checkpoint's: {', '.join(diff)}", file=path,
                             key=diff[0], fix="resume with the same options, or use a new --out")
        if payload["candidates"] != {n: [list(c) for c in cs] for n, cs in candidates.items()}:
            raise HalocError("rank candidates differ from the checkpoint's", file=path, key="candidates",
                             fix="resume with the same model and table, or use a new --out")
        state.supernet.load_state_dict(payload["supernet"])
        state.opt_w.load_state_dict(payload["opt_w"])
        state.opt_a.load_state_dict(payload["opt_a"])
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        state.sampler.set_state(rng["sampler"].cpu())
        for gen, saved in zip(_loader_generators(loaders), rng["loaders"]):
            gen.set_state(saved.cpu())
        state.history.clear()
        state.history.update(payload["history"])
        state.alphas.refresh()
        return int(payload["epoch"]) + 1


# -- helpers --------------------------------------------------------------------------------
def tau_at(cfg: SearchConfig, epoch: int) -> float:
    """The Gumbel temperature of ``epoch`` (0-based): ``tau`` up to the first architecture epoch,
    then geometric to ``tau_final`` at the last epoch of the cap."""
    if cfg.tau_final is None:
        return cfg.tau
    span = cfg.epochs - 1 - cfg.warmup_epochs
    if span <= 0:
        return cfg.tau_final
    t = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
    return float(cfg.tau * (cfg.tau_final / cfg.tau) ** t)


def normalised_entropy(p: list[float]) -> float:
    """Entropy of ``p`` over log(len(p)): 1 for uniform, 0 for one-hot (0 for a single candidate)."""
    if len(p) < 2:
        return 0.0
    h = -sum(v * math.log(v) for v in p if v > 0)
    return float(h / math.log(len(p)))


def converged(cfg: SearchConfig, epoch: int, stats: dict[str, Any]) -> str:
    """Why the search may stop after ``epoch`` (0-based), or ``""`` (see SearchConfig)."""
    if epoch < cfg.warmup_epochs or epoch + 1 >= cfg.epochs:
        return ""
    if cfg.stop_entropy is not None and stats["entropy"]:
        worst = max(stats["entropy"].values())
        if worst <= cfg.stop_entropy:
            return f"every layer's normalised entropy of p <= {cfg.stop_entropy:g} (largest {worst:.3g})"
    change = stats.get("p_change")
    if cfg.stop_delta is not None and change is not None and epoch > cfg.warmup_epochs and change <= cfg.stop_delta:
        return f"p changed by at most {change:.3g} <= {cfg.stop_delta:g} in the last epoch"
    return ""


def _dist_on() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _create_momentum_buffers(opt: torch.optim.Optimizer) -> None:
    """Give every parameter its (zero) momentum buffer now rather than at its first update.

    The result is the same (SGD's first update sets the buffer to the gradient, which is
    what ``0 * momentum + gradient`` gives), but PyTorch's multi-tensor SGD falls back to
    a kernel per parameter whenever one of the step's parameters has no buffer yet, which
    with randomly sampled candidates happens for a long time.
    """
    for group in opt.param_groups:
        if group.get("momentum", 0):
            for param in group["params"]:
                opt.state[param]["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def _comparable(cfg: SearchConfig) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _RESUME_FREE}


def _nonfinite_loss(where: str, when: str, cfg: SearchConfig) -> HalocError:
    return HalocError(
        f"non-finite loss in the {where}{' ' + when if when else ''} (lr_w={cfg.lr_w}, lr_alpha={cfg.lr_alpha}); "
        f"the last good checkpoint is kept", key="lr_w" if where == "weight step" else "lr_alpha",
        fix="lower the learning rate and restart, or --resume from the last checkpoint")


def _cycle(loader: Any) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise HalocError("validation loader is empty", key="val", fix="use a larger val_fraction or subset")


def _arch_steps_after(step: int, n_train: int, n_val: int) -> int:
    """Architecture steps after weight step ``step`` so that ``n_val`` of them spread evenly over ``n_train``."""
    return (step + 1) * n_val // n_train - step * n_val // n_train


def _offsets(params: list[nn.Parameter]) -> list[int]:
    out, pos = [], 0
    for p in params:
        out.append(pos)
        pos += p.numel()
    return out


def _loader_generators(loaders: list[Any]) -> list[torch.Generator]:
    """Every distinct generator the loaders draw from (their own, their samplers')."""
    seen: list[torch.Generator] = []
    for loader in loaders:
        sampler = getattr(loader, "sampler", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        for gen in (getattr(loader, "generator", None), getattr(sampler, "generator", None),
                    getattr(getattr(batch_sampler, "sampler", None), "generator", None)):
            if isinstance(gen, torch.Generator) and all(gen is not g for g in seen):
                seen.append(gen)
    return seen


def _loaders(data: Any, dist_on: bool) -> tuple[Any, Any]:
    train = data.train
    val = getattr(data, "val", None)
    if val is None:
        log.warning("no validation loader: architecture steps use the training data")
        val = train
    if dist_on:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        train, val = _Shard(train, rank, world), _Shard(val, rank, world)
    return train, val


class _Shard:
    """Every ``world``-th batch of a batch iterable, starting at ``rank``.

    Works for ``DataBundle`` batches and plain Anys alike; every rank gets the same
    number of batches (the remainder is dropped) so collective calls stay in step.
    """

    def __init__(self, batches: Any, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world
        if len(batches) < world:
            raise HalocError(f"{len(batches)} batches cannot feed {world} ranks", key="--batch",
                             fix="use a smaller batch or more data")

    def set_epoch(self, epoch: int) -> None:
        _set_epoch(self.batches, epoch)

    def __len__(self) -> int:
        return len(self.batches) // self.world

    def __iter__(self) -> Iterator[Any]:
        limit = len(self) * self.world
        for i, batch in enumerate(self.batches):
            if i >= limit:
                break
            if i % self.world == self.rank:
                yield batch


def _set_epoch(batches: Any, epoch: int) -> None:
    """Tell a batch iterable (or its sampler) the epoch, so shuffling depends on (seed, epoch) only."""
    for obj in (batches, getattr(batches, "sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)

