"""VBMF ranks: the analytical empirical variational Bayesian matrix factorisation rank estimate.

For each decomposable layer the weight ``W[M, C, kh, kw]`` is unfolded along mode 0
(``M x C*kh*kw``) and mode 1 (``C x M*kh*kw``), and the rank of each unfolding is estimated
with the global analytic solution of empirical VBMF (Nakajima, Sugiyama, Babacan and Tomioka,
"Global analytic solution of fully-observed variational Bayesian matrix factorization",
JMLR 2013), as Kim et al. (ICLR 2016) did for Tucker-2 compression:

* the noise variance ``sigma2`` is the minimiser of the EVB free energy, which, given the
  singular values ``gamma_h`` of the ``L x M`` matrix (``L <= M``, ``alpha = L / M``), is a
  one-dimensional function of ``sigma2``:
  ``sum_h psi(gamma_h^2 / (M sigma2))`` with ``psi(x) = x - log x`` below the threshold
  ``x_bar = (1 + tau_bar)(1 + alpha / tau_bar)`` and, above it, plus
  ``log(tau + 1) + alpha log(tau / alpha + 1) - tau`` where
  ``tau = (x - 1 - alpha + sqrt((x - 1 - alpha)^2 - 4 alpha)) / 2``;
  ``tau_bar ~= 2.5129 sqrt(alpha)`` (the root of the paper's Psi function);
* the rank is the number of singular values above ``sqrt(M sigma2 x_bar)``.

The free energy is minimised over ``sigma2`` in the paper's bounds by a log-spaced scan
and a golden-section refinement (no SciPy needed).

Guards for rank selection: an estimate is never 0 (a layer with no signal above the noise
keeps rank 1 before snapping) and never above the channel count; it is then snapped to the
nearest option of the layer: its candidates, or the layer itself at rank ``(M, C)`` (ties go to
the larger rank). When the snapped ranks
exceed the budget, all estimates are scaled by a common factor ``s < 1`` (in steps of 0.01)
and snapped again until the model total fits; ranks under the budget are kept as VBMF
estimated them (VBMF is a rank estimator, not a budget filler).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from haloc_hw.baselines.common import BaselineResult, Problem
from haloc_hw.errors import HalocError
from haloc_hw.rankspace import Budget, CostLookup, Rank

log = logging.getLogger(__name__)

TAU_BAR_FACTOR = 2.5129  # tau_bar / sqrt(alpha), from the root of the paper's Psi function
SCALE_STEP = 0.01


@dataclass(frozen=True)
class EVBMFResult:
    """The estimate for one matrix: ``rank`` (may be 0), noise variance and the threshold used."""

    rank: int
    sigma2: float
    threshold: float
    singular_values: tuple[float, ...]


def _tau(x: torch.Tensor, alpha: float) -> torch.Tensor:
    b = x - (1.0 + alpha)
    return 0.5 * (b + torch.sqrt(torch.clamp(b * b - 4.0 * alpha, min=0.0)))


def _free_energy(sigma2: float, sq: torch.Tensor, m: int, alpha: float, x_bar: float) -> float:
    """EVB free energy (up to constants) of noise variance ``sigma2`` for squared singular values ``sq``."""
    x = sq / (m * sigma2)
    above = x > x_bar
    # x - log x = x - log(sq) + log(m sigma2); log(sq) does not depend on sigma2, so an exact zero
    # singular value (noise-free low rank) keeps its log(m sigma2) term and drops the infinite constant
    log_sq = torch.where(sq > 0, torch.log(torch.where(sq > 0, sq, torch.ones_like(sq))), torch.zeros_like(sq))
    value = torch.sum(x - log_sq) + sq.numel() * math.log(m * sigma2)
    if bool(above.any()):
        xa = x[above]
        t = _tau(xa, alpha)
        value = value + torch.sum(torch.log(t + 1.0) + alpha * torch.log(t / alpha + 1.0) - t)
    return float(value)


def _minimise(fn, lo: float, hi: float, points: int = 200, rounds: int = 60) -> float:
    """Minimise ``fn`` over ``[lo, hi]`` on a log scale: scan, then golden-section around the best point."""
    if hi <= lo:
        return hi
    a, b = math.log(lo), math.log(hi)
    grid = [a + (b - a) * i / (points - 1) for i in range(points)]
    values = [fn(math.exp(g)) for g in grid]
    k = min(range(points), key=lambda i: values[i])
    left, right = grid[max(k - 1, 0)], grid[min(k + 1, points - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = right - ratio * (right - left), left + ratio * (right - left)
    fc, fd = fn(math.exp(c)), fn(math.exp(d))
    for _ in range(rounds):
        if fc < fd:
            right, d, fd = d, c, fc
            c = right - ratio * (right - left)
            fc = fn(math.exp(c))
        else:
            left, c, fc = c, d, fd
            d = left + ratio * (right - left)
            fd = fn(math.exp(d))
    best = min(((values[k], grid[k]), (fc, c), (fd, d)))
    return math.exp(best[1])


def evbmf(matrix: torch.Tensor) -> EVBMFResult:
    """Rank of ``matrix`` (2-D) by analytical empirical VBMF with unknown noise variance."""
    if matrix.dim() != 2:
        raise HalocError(f"EVBMF needs a matrix, got shape {tuple(matrix.shape)}", key="matrix")
    y = matrix.detach().to(torch.float64).cpu()
    if y.shape[0] > y.shape[1]:
        y = y.T
    l_dim, m_dim = int(y.shape[0]), int(y.shape[1])
    s = torch.linalg.svdvals(y)
    sq = s * s
    total = float(sq.sum())
    if total <= 0.0 or not math.isfinite(total):
        return EVBMFResult(0, 0.0, 0.0, tuple(float(v) for v in s))
    alpha = l_dim / m_dim
    tau_bar = TAU_BAR_FACTOR * math.sqrt(alpha)
    x_bar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar)
    upper = total / (l_dim * m_dim)  # everything is noise
    # at most about L / (1 + alpha) components can be signal: the rest bound the noise from below
    k = max(0, min(math.ceil(l_dim / (1.0 + alpha)) - 1, l_dim - 1))
    lower = max(float(sq[k]) / (m_dim * x_bar), float(sq[k:].mean()) / m_dim)
    lower = max(lower, upper * 1e-12)
    if lower >= upper:
        lower = upper * 1e-3
    sigma2 = _minimise(lambda v: _free_energy(v, sq, m_dim, alpha, x_bar), lower, upper)
    threshold = math.sqrt(m_dim * sigma2 * x_bar)
    rank = int((s > threshold).sum())
    return EVBMFResult(rank, sigma2, threshold, tuple(float(v) for v in s))


def estimate_layer_ranks(weight: torch.Tensor) -> tuple[int, int]:
    """Guarded EVBMF ranks ``(r1, r2)`` of a conv weight's mode-0 and mode-1 unfoldings: in ``1..M``, ``1..C``."""
    if weight.dim() != 4:
        raise HalocError(f"expected a conv weight [M, C, kh, kw], got shape {tuple(weight.shape)}", key="weight")
    m, c = int(weight.shape[0]), int(weight.shape[1])
    r1 = evbmf(weight.reshape(m, -1)).rank
    r2 = evbmf(weight.transpose(0, 1).reshape(c, -1)).rank
    return min(max(r1, 1), m), min(max(r2, 1), c)


def snap(target: tuple[float, float], candidates: Sequence[Rank]) -> int:
    """Index of the candidate nearest to ``target`` (L1 distance; ties go to the larger candidate)."""
    return min(range(len(candidates)),
               key=lambda j: (abs(candidates[j][0] - target[0]) + abs(candidates[j][1] - target[1]),
                              -candidates[j][0], -candidates[j][1]))


def vbmf_ranks(costs: CostLookup, candidates: Mapping[str, Sequence[Rank]], weights: Mapping[str, torch.Tensor],
               budget: Budget, *, source: str | None = None) -> BaselineResult:
    """EVBMF ranks per layer, snapped to the grid, scaled down uniformly until ``budget`` is met."""
    problem = Problem(costs, candidates, budget, source=source)
    problem.require(weights, what="weights", key="weights", item="the base model's conv weights")
    estimates = {n: estimate_layer_ranks(weights[n]) for n in problem.names}
    # the options: the candidates, then the original layer at full rank (index problem.keep(n))
    options = {n: list(problem.candidates[n]) + [(int(weights[n].shape[0]), int(weights[n].shape[1]))]
               for n in problem.names}
    best_total = float("inf")
    steps = round(1.0 / SCALE_STEP)
    for i in range(steps + 1):
        scale = max(1.0 - i * SCALE_STEP, SCALE_STEP / 10)  # never 0: estimates stay >= 1 before snapping
        choice = {n: snap((max(1.0, e1 * scale), max(1.0, e2 * scale)), options[n])
                  for n, (e1, e2) in estimates.items()}
        total = problem.total(choice)
        best_total = min(best_total, total)
        if problem.meets(choice):
            note = ("EVBMF ranks snapped to the grid" + (f", scaled by {scale:.2f} to meet the budget" if i else "")
                    + f"; total {total:.6g} <= budget {problem.budget:.6g}")
            log.info("vbmf baseline: %s", note)
            plan = problem.plan(choice, "vbmf", note)
            return BaselineResult("vbmf", plan, {"estimates": {n: list(e) for n, e in estimates.items()},
                                                 "scale": scale})
    smallest = {n: 0 for n in problem.names}
    best_total = min(best_total, problem.total(smallest))
    raise problem.unreachable("vbmf", best_total, "scaling the VBMF ranks down")
