"""The ``gpu`` cost backend: measured latency of convolutions with PyTorch.

Why measure rather than count FLOPs: on a GPU the latency of a Tucker-2 triple is not
monotone in its ranks and a decomposition does not always pay off (cuDNN picks a different
algorithm per shape, tensor cores want channel multiples of 8/16, small 1x1 convolutions
are memory bound). So a table is only valid for the device, dtype, batch and memory format
it was measured with, and all of them are in :meth:`GpuCostModel.fingerprint`.

Each workload becomes an ``nn.Conv2d`` (bias-free, like the convolutions of the networks we
compress) fed a random input of the table's batch, dtype and memory format, with
``cudnn.benchmark`` on; :mod:`haloc_hw.cost.timing` does warm-up and timing. A Tucker-2
triple is also timed *as a whole* (:meth:`GpuCostModel.evaluate_triples`): the three
convolutions run back to back in one ``nn.Sequential``, which is what the compressed network
executes and is not the sum of the parts.

On ``device="cpu"`` the same path runs with a wall clock and a pinned thread count, so CI
exercises it without a GPU.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from haloc_hw.cost.base import Cost, make_breakdown
from haloc_hw.cost.timing import TimingStats, check_count, time_cpu, time_cuda, time_cuda_graph
from haloc_hw.errors import HalocError
from haloc_hw.workload import ConvShape

if TYPE_CHECKING:  # torch is imported lazily so table readers do not need it
    import torch
    from torch import nn

log = logging.getLogger(__name__)

BACKEND_NAME = "gpu"
# Bump when the measuring procedure changes in a way that makes old tables incomparable.
BACKEND_VERSION = "1"
DTYPES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
MEMORY_FORMATS: tuple[str, ...] = ("channels_last", "contiguous")
DEFAULT_WARMUP = 10
DEFAULT_REPEATS = 30
# A CUDA sample runs back-to-back calls for at least this long (see haloc_hw.cost.timing).
CUDA_MIN_SAMPLE_S = 1e-3
SEED = 0

Triple = tuple[ConvShape, ConvShape, ConvShape]


def torch_dtype(name: str) -> "torch.dtype":
    """The tensor dtype of a table dtype name (``tf32`` computes on float32 tensors)."""
    import torch

    table = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise HalocError(f"unknown dtype '{name}'", key="dtype", fix=f"use one of {', '.join(DTYPES)}")
    return table[name]


def same_output_padding(size: int, out: int, kernel: int, stride: int, dilation: int) -> int:
    """Smallest symmetric padding giving ``out`` outputs from ``size`` inputs (torch's formula).

    Raises :class:`HalocError` when no symmetric padding reproduces ``out`` (then the shape's
    ``W``/``H`` do not belong to its ``P``/``Q``).
    """
    span = dilation * (kernel - 1)
    for pad in range(0, span + stride + 1):
        if (size + 2 * pad - span - 1) // stride + 1 == out:
            return pad
    raise HalocError(
        f"no padding turns a {size}-wide input into {out} outputs with kernel {kernel}, stride {stride}, dilation {dilation}",
        key="W/H",
        fix="give the layer's real input size in the workload's W/H, or leave them unset",
    )


def input_size(shape: ConvShape) -> tuple[int, int, int, int]:
    """``(height, width, pad_h, pad_w)`` of the input the convolution is timed on.

    With ``W``/``H`` set (layers taken from a model, Tucker-2 triples) that is the real
    input, padded to give ``P x Q``; without them, the unpadded extent
    ``(P-1)*stride + (R-1)*dilation + 1`` that Timeloop models.
    """
    if shape.W is not None:
        w = shape.W
        pad_w = same_output_padding(w, shape.P, shape.R, shape.Wstride, shape.Wdilation)
    else:
        w, pad_w = (shape.P - 1) * shape.Wstride + (shape.R - 1) * shape.Wdilation + 1, 0
    if shape.H is not None:
        h = shape.H
        pad_h = same_output_padding(h, shape.Q, shape.S, shape.Hstride, shape.Hdilation)
    else:
        h, pad_h = (shape.Q - 1) * shape.Hstride + (shape.S - 1) * shape.Hdilation + 1, 0
    return h, w, pad_h, pad_w


def build_conv(shape: ConvShape) -> "nn.Conv2d":
    """A bias-free ``nn.Conv2d`` computing ``shape`` (on the CPU, float32, default init)."""
    from torch import nn

    _, _, pad_h, pad_w = input_size(shape)
    return nn.Conv2d(
        shape.C * shape.G,
        shape.M * shape.G,
        kernel_size=(shape.S, shape.R),
        stride=(shape.Hstride, shape.Wstride),
        padding=(pad_h, pad_w),
        dilation=(shape.Hdilation, shape.Wdilation),
        groups=shape.G,
        bias=False,
    )


def check_triple(triple: Sequence[ConvShape]) -> None:
    """Raise :class:`HalocError` unless the three shapes chain (channels and spatial sizes)."""
    if len(triple) != 3:
        raise HalocError(f"a Tucker-2 triple has 3 convolutions, got {len(triple)}", key="triples", fix="pass (in, core, out)")
    for a, b in zip(triple, triple[1:]):
        h, w, _, _ = input_size(b)
        if a.M * a.G != b.C * b.G or (a.Q, a.P) != (h, w):
            raise HalocError(
                f"{a.key} does not feed {b.key} (output {a.M * a.G}x{a.Q}x{a.P}, next input {b.C * b.G}x{h}x{w})",
                key="triples",
                fix="build triples with haloc_hw.workload.tucker2_triple",
            )


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is PyTorch running out of device (or, on the CPU, host) memory."""
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str:
    """NVIDIA driver version from ``nvidia-smi`` (``"unknown"`` when it cannot be asked)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "unknown"
    try:
        done = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else "unknown"


@dataclass(frozen=True)
class _Job:
    """One timing job: a module builder, its input channels and spatial size, a label."""

    label: str
    build: Callable[[], "nn.Module"]
    channels: int
    height: int
    width: int
    batch: int


class GpuCostModel:
    """Measured latency of convolutions on a CUDA device or the CPU.

    ``latency_s`` of every :class:`Cost` is the median per-call time; ``breakdown`` holds
    ``p10_s``/``p90_s``/``repeats``/``inner`` and the ``batch`` actually used. ``cycles`` and
    ``energy_pJ`` are ``None``. ``batch=None`` times each workload at its own ``N``.

    On CUDA, ``cuda_graphs`` (default) times GPU work only: calls are captured in a CUDA
    graph and replayed, so host launch overhead (tens of microseconds per convolution from
    Python, more than many small kernels take) does not swamp the table; with
    ``cuda_graphs=False`` calls are launched eagerly and timed with events.

    ``dtype``: ``fp32`` is strict IEEE float32 (TF32 off), ``tf32`` float32 tensors with
    TF32 tensor cores allowed, ``bf16``/``fp16`` half-precision tensors and weights.
    """

    name = BACKEND_NAME
    # The cost table keeps a "fused" entry per candidate and uses it as the candidate's cost.
    fused = True

    def __init__(
        self,
        device: str = "cuda",
        dtype: str = "bf16",
        batch: int | None = 128,
        memory_format: str = "channels_last",
        warmup: int = DEFAULT_WARMUP,
        repeats: int = DEFAULT_REPEATS,
        threads: int | None = None,
        min_sample_s: float | None = None,
        progress: bool = True,
        cuda_graphs: bool = True,
    ) -> None:
        import torch

        kind = str(device).split(":", 1)[0]
        if kind not in ("cuda", "cpu"):
            raise HalocError(f"unknown device '{device}'", key="device", fix="use cuda, cuda:N or cpu")
        if kind == "cuda" and not torch.cuda.is_available():
            raise HalocError(
                "device 'cuda' asked for, but PyTorch sees no CUDA device",
                key="device",
                fix="run on a machine with an NVIDIA GPU and a CUDA build of torch, or use --device cpu",
            )
        torch_dtype(dtype)  # validates
        if memory_format not in MEMORY_FORMATS:
            raise HalocError(
                f"unknown memory format '{memory_format}'", key="memory_format", fix=f"use one of {', '.join(MEMORY_FORMATS)}"
            )
        if batch is not None:
            check_count(batch, "batch", 1)
        if threads is not None:
            check_count(threads, "threads", 1)
        check_count(warmup, "warmup", 0)
        check_count(repeats, "repeats", 1)
        self.device = str(device)
        self.is_cuda = kind == "cuda"
        self.dtype = dtype
        self.batch = batch
        self.memory_format = memory_format
        self.warmup = warmup
        self.repeats = repeats
        self.threads = threads if threads is not None or self.is_cuda else torch.get_num_threads()
        self.min_sample_s = (CUDA_MIN_SAMPLE_S if self.is_cuda else 0.0) if min_sample_s is None else float(min_sample_s)
        self.progress = progress
        self.cuda_graphs = bool(cuda_graphs) and self.is_cuda
        self._fingerprint: dict[str, Any] | None = None

    # -- identity ---------------------------------------------------------------------------

    def version(self) -> str:
        return BACKEND_VERSION

    def fingerprint(self) -> dict[str, Any]:
        """Device, software versions and measuring settings: what makes two tables comparable."""
        if self._fingerprint is None:
            import torch

            info: dict[str, Any] = {"backend": BACKEND_NAME, "device": "cuda" if self.is_cuda else "cpu"}
            if self.is_cuda:
                index = torch.device(self.device).index or 0
                props = torch.cuda.get_device_properties(index)
                info.update(
                    device_name=props.name,
                    capability=f"{props.major}.{props.minor}",
                    driver=_nvidia_driver(),
                    cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    timer="cuda_graph" if self.cuda_graphs else "cuda_events",
                )
            else:
                info.update(device_name=_cpu_name(), threads=self.threads)
            info.update(
                torch=torch.__version__,
                dtype=self.dtype,
                batch=self.batch,
                memory_format=self.memory_format,
            )
            self._fingerprint = info
        return dict(self._fingerprint)

    def key_fields(self) -> dict[str, Any]:
        """Measuring settings stored with (and hashed into) every cost-table entry."""
        fp = self.fingerprint()
        return {
            "device": fp["device_name"],
            "dtype": self.dtype,
            "batch": self.batch,
            "memory_format": self.memory_format,
        }

    # -- measuring --------------------------------------------------------------------------

    def evaluate(self, workloads: Sequence[ConvShape]) -> list[Cost]:
        """Median latency of each convolution, timed on its own."""
        jobs = [self._job(shape.key, lambda s=shape: build_conv(s), shape) for shape in workloads]
        return self._run(jobs, "gpu: convs")

    def evaluate_triples(self, triples: Sequence[Triple]) -> list[Cost]:
        """Median latency of each Tucker-2 triple run as one block (in -> core -> out)."""
        from torch import nn

        jobs = []
        for triple in triples:
            triple = tuple(triple)
            check_triple(triple)
            label = "+".join(s.key for s in triple)
            jobs.append(self._job(label, lambda t=triple: nn.Sequential(*(build_conv(s) for s in t)), triple[0]))
        return self._run(jobs, "gpu: fused triples")

    def evaluate_fused(self, triples: Sequence[Triple]) -> list[Cost]:
        """The cost table's name for :meth:`evaluate_triples`."""
        return self.evaluate_triples(triples)

    def time_module(self, module: "nn.Module", inputs: "torch.Tensor") -> TimingStats:
        """Time an arbitrary module on a ready input (used by ``haloc-hw bench``).

        ``module`` and ``inputs`` must already be on this backend's device, dtype and memory
        format (see :meth:`prepare`).
        """
        import torch

        with self.settings(), torch.inference_mode():
            return self._timer(lambda: module(inputs))

    def prepare(self, module: "nn.Module", shape: tuple[int, ...]) -> tuple["nn.Module", "torch.Tensor"]:
        """``module`` in eval mode on this backend's device/dtype/format, and a seeded random input."""
        import torch

        dev = torch.device(self.device)
        dt = torch_dtype(self.dtype)
        fmt = torch.channels_last if self.memory_format == "channels_last" else torch.contiguous_format
        module = module.to(device=dev, dtype=dt).eval()
        if len(shape) == 4:
            module = module.to(memory_format=fmt)
        gen = torch.Generator(device=dev)
        gen.manual_seed(SEED)
        x = torch.randn(shape, generator=gen, device=dev, dtype=dt)
        if x.dim() == 4:
            x = x.contiguous(memory_format=fmt)
        return module, x

    @contextmanager
    def settings(self) -> Iterator[None]:
        """Global torch settings for measuring (cuDNN autotuning, TF32, CPU threads), restored after."""
        import torch

        cudnn = torch.backends.cudnn
        saved_benchmark = cudnn.benchmark
        saved_threads = torch.get_num_threads()
        new_api = hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision")
        saved_precision = cudnn.conv.fp32_precision if new_api else cudnn.allow_tf32
        try:
            cudnn.benchmark = True
            allow = self.dtype == "tf32"
            if new_api:
                cudnn.conv.fp32_precision = "tf32" if allow else "ieee"
            else:
                cudnn.allow_tf32 = allow
            if not self.is_cuda and self.threads is not None:
                torch.set_num_threads(self.threads)
            yield
        finally:
            cudnn.benchmark = saved_benchmark
            if new_api:
                cudnn.conv.fp32_precision = saved_precision
            else:
                cudnn.allow_tf32 = saved_precision
            torch.set_num_threads(saved_threads)

    def _job(self, label: str, build: Callable[[], "nn.Module"], first: ConvShape) -> _Job:
        """A timing job whose input is that of ``first`` at this backend's batch (else ``first.N``)."""
        h, w, _, _ = input_size(first)
        return _Job(label, build, first.C * first.G, h, w, self.batch if self.batch is not None else first.N)

    def _timer(self, fn: Callable[[], Any]) -> TimingStats:
        if self.is_cuda and self.cuda_graphs:
            import torch

            try:
                return time_cuda_graph(fn, self.warmup, self.repeats, self.min_sample_s)
            except RuntimeError as err:
                if is_oom(err):
                    raise
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                log.warning("CUDA graph capture failed (%s); timing eager launches instead", first)
                torch.cuda.synchronize()
        if self.is_cuda:
            return time_cuda(fn, self.warmup, self.repeats, self.min_sample_s)
        return time_cpu(fn, self.warmup, self.repeats, self.min_sample_s)

    def _measure(self, job: _Job, batch: int) -> TimingStats:
        """Time one job at one batch size (may raise an out-of-memory error)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            module = job.build()
        module, x = self.prepare(module, (batch, job.channels, job.height, job.width))
        try:
            with torch.inference_mode():
                return self._timer(lambda: module(x))
        finally:
            del module, x

    def _measure_with_backoff(self, job: _Job) -> Cost:
        import torch

        batch = job.batch
        while True:
            try:
                stats = self._measure(job, batch)
                break
            except RuntimeError as err:  # torch.OutOfMemoryError is one
                if not is_oom(err):
                    raise
                if self.is_cuda:
                    torch.cuda.empty_cache()
                if batch == 1:
                    raise HalocError(
                        f"{job.label} runs out of memory even at batch 1 on {self.device}",
                        key="batch",
                        fix="free device memory or use a smaller workload",
                    ) from None
                log.warning("%s: out of memory at batch %d, retrying at batch %d", job.label, batch, batch // 2)
                batch //= 2
        scale = job.batch / batch
        breakdown = make_breakdown(**stats.as_breakdown(), batch=batch, dtype=self.dtype,
                                   memory_format=self.memory_format, device=self.device)
        if batch != job.batch:
            # Latency at the requested batch is estimated linearly from the smaller one,
            # so a table does not make an out-of-memory layer look cheap.
            breakdown.update(batch_requested=job.batch, latency_s_measured=stats.median_s, scaled=True)
            breakdown["p10_s"] = stats.p10_s * scale
            breakdown["p90_s"] = stats.p90_s * scale
        return Cost(cycles=None, energy_pJ=None, latency_s=stats.median_s * scale, breakdown=breakdown)

    @contextmanager
    def _device_lock(self) -> Iterator[None]:
        """Hold an exclusive per-device file lock while measuring.

        The cost table may run jobs in several worker processes; two timings on one device
        at once would spoil both, so workers take turns here (building the next workload
        is all they can do in parallel).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX: no cross-process lock
            yield
            return
        name = f"haloc-hw-{BACKEND_NAME}-{self.device.replace(':', '_')}.lock"
        with open(Path(tempfile.gettempdir()) / name, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(self, jobs: list[_Job], desc: str) -> list[Cost]:
        from tqdm import tqdm

        results: list[Cost] = []
        with self._device_lock(), self.settings():
            show = self.progress and len(jobs) > 1  # the table builder has its own bar for one-job calls
            for job in tqdm(jobs, desc=desc, unit="shape", disable=not show or None, leave=False):
                results.append(self._measure_with_backoff(job))
        return results
