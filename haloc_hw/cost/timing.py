"""Timing a callable on a GPU (CUDA events) or a CPU (monotonic wall clock).

Both timers share one procedure so CPU numbers in CI exercise the same code path as GPU
numbers on a real device:

1. ``warmup`` untimed calls (cuDNN's algorithm search with ``cudnn.benchmark`` happens
   in the first one, allocator caches fill up);
2. one synchronised call to estimate the cost of a call, from which ``inner`` -- how many
   back-to-back calls make one sample -- is chosen so a sample lasts at least
   ``min_sample_s``. A single sub-0.1 ms kernel timed alone is dominated by launch gaps
   and event resolution; a run of them keeps the GPU queue full, which is how the layer
   runs inside a network;
3. ``repeats`` samples, each ``inner`` calls, reported as median and 10th/90th
   percentiles of the per-call time.

On CUDA every sample is bracketed by a pair of events recorded on the current stream and
the host synchronises only once at the end, so host overhead does not leak into samples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from haloc_hw.errors import HalocError

# Cap on calls per sample: keeps a pathological estimate from running for minutes.
MAX_INNER = 1000


@dataclass(frozen=True)
class TimingStats:
    """Per-call seconds over ``repeats`` samples of ``inner`` calls each."""

    median_s: float
    p10_s: float
    p90_s: float
    min_s: float
    max_s: float
    repeats: int
    inner: int
    timer: str

    def as_breakdown(self) -> dict[str, Any]:
        """The fields a :class:`~haloc_hw.cost.base.Cost` keeps in ``breakdown``."""
        return {
            "p10_s": self.p10_s,
            "p90_s": self.p90_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "repeats": self.repeats,
            "inner": self.inner,
            "timer": self.timer,
        }


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of a non-empty list, ``q`` in [0, 100]."""
    if not values:
        raise ValueError("percentile of an empty list")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def stats_from_samples(per_call_s: list[float], inner: int, timer: str) -> TimingStats:
    return TimingStats(
        median_s=percentile(per_call_s, 50),
        p10_s=percentile(per_call_s, 10),
        p90_s=percentile(per_call_s, 90),
        min_s=min(per_call_s),
        max_s=max(per_call_s),
        repeats=len(per_call_s),
        inner=inner,
        timer=timer,
    )


def choose_inner(estimate_s: float, min_sample_s: float) -> int:
    """Calls per sample so a sample lasts at least ``min_sample_s`` (1 when no minimum)."""
    if min_sample_s <= 0 or estimate_s >= min_sample_s:
        return 1
    if estimate_s <= 0:
        return MAX_INNER
    return max(1, min(MAX_INNER, math.ceil(min_sample_s / estimate_s)))


def check_count(value: Any, key: str, minimum: int) -> int:
    """``value`` when it is an integer >= ``minimum`` (a bool is not), else :class:`HalocError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HalocError(f"{key} must be an integer >= {minimum}, got {value!r}", key=key, fix=f"pass --{key} {minimum} or more")
    return value


def _check_counts(warmup: int, repeats: int) -> None:
    check_count(warmup, "warmup", 0)
    check_count(repeats, "repeats", 1)


def _event_samples(sample: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` runs of ``sample``, bracketed by CUDA events on the current stream.

    The host waits only once, after the last run, so its own overhead stays out of the samples.
    """
    import torch

    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        sample()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) * 1e-3 for start, end in events]


def time_cpu(fn: Callable[[], Any], warmup: int, repeats: int, min_sample_s: float = 0.0) -> TimingStats:
    """Time ``fn`` with :func:`time.perf_counter_ns` (thread count is the caller's business)."""
    _check_counts(warmup, repeats)
    for _ in range(warmup):
        fn()
    start = time.perf_counter_ns()
    fn()
    estimate = (time.perf_counter_ns() - start) * 1e-9
    inner = choose_inner(estimate, min_sample_s)
    samples: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter_ns() - start) * 1e-9 / inner)
    return stats_from_samples(samples, inner, "perf_counter_ns")


def time_cuda(fn: Callable[[], Any], warmup: int, repeats: int, min_sample_s: float = 1e-3) -> TimingStats:
    """Time ``fn`` on the current CUDA device and stream with CUDA events."""
    import torch

    _check_counts(warmup, repeats)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    (estimate,) = _event_samples(fn, 1)
    inner = choose_inner(estimate, min_sample_s)

    def sample() -> None:
        for _ in range(inner):
            fn()

    samples = [seconds / inner for seconds in _event_samples(sample, repeats)]
    return stats_from_samples(samples, inner, "cuda_events")


def time_cuda_graph(fn: Callable[[], Any], warmup: int, repeats: int, min_sample_s: float = 1e-3) -> TimingStats:
    """Time ``fn`` on the GPU alone: ``inner`` calls captured in one CUDA graph, replayed per sample.

    Launching a small convolution from Python costs tens of microseconds of host time, more
    than the kernel itself for most Tucker-2 sub-convolutions at moderate sizes; timed
    eagerly, a triple would measure three launches rather than three kernels. Inside a
    network at a useful batch size the GPU, not the host, is the bottleneck, so the table
    wants GPU time: a graph replay issues all captured kernels with one launch.

    Warm-up runs eagerly on a side stream (as graph capture requires), which is also when
    ``cudnn.benchmark`` picks its algorithms; the capture then reuses them.
    """
    import torch

    _check_counts(warmup, repeats)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(warmup, 1)):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    def capture(calls: int) -> "torch.cuda.CUDAGraph":
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        return graph

    single = capture(1)
    single.replay()  # a graph's first replay uploads it: kept out of the estimate
    (estimate,) = _event_samples(single.replay, 1)
    del single
    inner = choose_inner(estimate, min_sample_s)
    graph = capture(inner)
    graph.replay()  # upload, kept out of the samples
    samples = [seconds / inner for seconds in _event_samples(graph.replay, repeats)]
    del graph
    return stats_from_samples(samples, inner, "cuda_graph")
