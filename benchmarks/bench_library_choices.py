"""Hand-written code against the well-kept library that does the same job: time and agreement.

Three pairs, each timed as the median of several runs on the same inputs, printed with the
ratio ``library / ours`` (above 1: ours is faster) and how far the results agree:

* MACs of a model: :func:`haloc_hw.workload.extract_shapes` (per-layer Timeloop shapes, summed
  MACs) against ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2 of one forward pass);
* Fashion-MNIST IDX files: :func:`haloc_hw.data.read_idx` against torchvision's
  ``datasets.mnist.read_image_file`` / ``read_label_file``, on generated files of the real sizes
  (60,000 x 28 x 28 images, raw and gzip);
* Tucker-2 of conv weights: :func:`haloc_hw.decompose.tucker2` (HOSVD + 2 HOOI rounds) against
  ``tensorly.decomposition.partial_tucker`` (torch backend, modes 0 and 1, same rounds),
  comparing the relative reconstruction error. tensorly is optional: without it the row says so
  (``pip install tensorly==0.10.0``, or put a copy on ``PYTHONPATH``).

Run: ``python benchmarks/bench_library_choices.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from haloc_hw.data import read_idx  # noqa: E402
from haloc_hw.decompose import tucker2  # noqa: E402
from haloc_hw.decompose.tucker import tucker2_reconstruct  # noqa: E402
from haloc_hw.models import build_model  # noqa: E402
from haloc_hw.workload import extract_shapes  # noqa: E402


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up (imports, caches)
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def row(what: str, ours_s: float, lib_s: float, agreement: str) -> None:
    print(f"{what:<34} ours {ours_s * 1e3:9.2f} ms   library {lib_s * 1e3:9.2f} ms   "
          f"library/ours {lib_s / ours_s:6.2f}x   {agreement}")


def bench_macs(repeats: int) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    for name, size in (("resnet20", (3, 32, 32)), ("resnet18", (3, 224, 224)), ("mobilenet_v2", (3, 224, 224))):
        model = build_model(name).eval()

        def ours() -> int:
            return sum(layer.shape.macs for layer in extract_shapes(model, size))

        def library() -> int:
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                model(torch.zeros(1, *size))
            return counter.get_total_flops() // 2

        t_ours, macs_ours = median_seconds(ours, repeats)
        t_lib, macs_lib = median_seconds(library, repeats)
        row(f"MACs {name}", t_ours, t_lib,
            f"MACs ours {macs_ours:,} vs {macs_lib:,} ({macs_ours / macs_lib - 1:+.3%})")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=6) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def bench_idx(repeats: int) -> None:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(60000,), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", ".gz"):
            img, lab = Path(tmp) / f"train-images-idx3-ubyte{suffix}", Path(tmp) / f"train-labels-idx1-ubyte{suffix}"
            write_idx(img, images)
            write_idx(lab, labels)

            def ours() -> tuple[np.ndarray, np.ndarray]:
                return read_idx(img, expect_ndim=3), read_idx(lab, expect_ndim=1)

            def library() -> tuple[torch.Tensor, torch.Tensor]:
                if suffix:  # torchvision's readers take uncompressed files only; its dataset class unpacks first
                    with gzip.open(img, "rb") as a, gzip.open(lab, "rb") as b:
                        raw_img, raw_lab = Path(tmp) / "u_img", Path(tmp) / "u_lab"
                        raw_img.write_bytes(a.read())
                        raw_lab.write_bytes(b.read())
                    return read_image_file(str(raw_img)), read_label_file(str(raw_lab))
                return read_image_file(str(img)), read_label_file(str(lab))

            t_ours, (oi, ol) = median_seconds(ours, repeats)
            t_lib, (li, ll) = median_seconds(library, repeats)
            same = np.array_equal(oi, li.numpy()) and np.array_equal(ol, ll.numpy())
            row(f"Fashion-MNIST IDX{' (gzip)' if suffix else ''}", t_ours, t_lib,
                f"identical arrays: {same}")


def bench_tucker(repeats: int) -> None:
    try:
        import tensorly as tl
        from tensorly.decomposition import partial_tucker
    except ImportError:
        print(f"{'Tucker-2':<34} tensorly is not installed: skipped (pip install tensorly==0.10.0)")
        return
    tl.set_backend("pytorch")
    gen = torch.Generator().manual_seed(0)
    for shape, (r1, r2) in (((64, 64, 3, 3), (32, 32)), ((256, 256, 3, 3), (64, 64)), ((512, 512, 3, 3), (128, 128))):
        w = torch.randn(*shape, generator=gen, dtype=torch.float64)
        norm = float(torch.linalg.vector_norm(w))

        def ours() -> float:
            from haloc_hw.decompose.tucker import _BASIS_CACHE

            _BASIS_CACHE.clear()  # time the decomposition, not the cache of HOSVD bases
            return float(torch.linalg.vector_norm(w - tucker2_reconstruct(*tucker2(w, r1, r2)))) / norm

        def library() -> float:
            (core, factors), _ = partial_tucker(w, rank=[r1, r2], modes=[0, 1], n_iter_max=2, init="svd", tol=0)
            approx = tl.tenalg.multi_mode_dot(core, factors, modes=[0, 1])
            return float(torch.linalg.vector_norm(w - approx)) / norm

        t_ours, e_ours = median_seconds(ours, repeats)
        t_lib, e_lib = median_seconds(library, repeats)
        row(f"Tucker-2 {shape} @ {r1}x{r2}", t_ours, t_lib, f"relative error ours {e_ours:.6f} vs {e_lib:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one intra-op thread, median of {args.repeats} runs")
    bench_macs(args.repeats)
    bench_idx(args.repeats)
    bench_tucker(args.repeats)


if __name__ == "__main__":
    main()
