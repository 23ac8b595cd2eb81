"""Datasets for training, fine-tuning, the HALOC search and evaluation.

:func:`build_data` returns a :class:`DataBundle` with three batch iterables:

* ``train`` — the part of the training set the weights are trained on;
* ``val`` — a *fixed*, seeded split of the training set held out from weight training.
  HALOC updates the architecture parameters (alpha) on held-out data, so this split must
  never overlap ``train`` and must be the same every time the same seed is used;
* ``test`` — the official test split, used only to report accuracy.

Small datasets (Fashion-MNIST, CIFAR-10, synthetic) are decoded once into ``uint8`` (or
``float32``) tensors and iterated by :class:`TensorBatches`; with ``device="cuda"`` the whole
set lives on the GPU and augmentation (random crop with zero padding, horizontal flip) runs
on the device, which removes the data loader from the training loop entirely (a GPU epoch
of ResNet-20 on Fashion-MNIST then costs about as much as its arithmetic). ImageNet, or
any dataset with ``keep_on_device=False``, goes through a :class:`torch.utils.data.DataLoader`.

Shuffling and augmentation draw from a generator seeded by ``(seed, epoch)`` rather than
from the global RNG, so an interrupted run that resumes at epoch *k* sees exactly the
batches an uninterrupted run would have seen.

Every batch iterable yields ``(images, labels)`` already on ``bundle.device``, images
normalized ``float32`` of shape ``(B, C, H, W)``, and has ``set_epoch(epoch)``,
``len()`` (batches per epoch) and ``num_samples``.
"""

from __future__ import annotations

import gzip
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import torch

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)

DATASET_NAMES: tuple[str, ...] = ("fashion-mnist", "cifar10", "imagenet", "synthetic")

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Where torchvision's downloader puts Fashion-MNIST when no ``root`` is given.
DEFAULT_DOWNLOAD_ROOT = Path.home() / ".cache" / "haloc-hw" / "datasets"

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# Default zero padding of the random crop used for training augmentation.
_CROP_PADDING = {"fashion-mnist": 2, "cifar10": 4, "synthetic": 2}


class Batches(Protocol):
    """What every batch iterable in a :class:`DataBundle` offers."""

    batch_size: int
    num_samples: int

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class DataBundle:
    """Train / arch-val / test batch iterables plus the facts a model needs to be built."""

    name: str
    train: Batches
    val: Batches | None  # None when val_fraction == 0
    test: Batches
    num_classes: int
    in_channels: int
    input_size: tuple[int, int, int]  # per-sample (C, H, W), as count_flops_params takes it
    device: torch.device
    classes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- batch transforms


@dataclass(frozen=True)
class BatchTransform:
    """Turns raw stored images into normalized float batches, augmenting on the batch's device.

    ``scale`` maps the stored values to [0, 1] (1/255 for ``uint8``). The random crop pads
    with zeros *before* normalization, as torchvision's ``RandomCrop(padding=p)`` does on
    the raw image, then cuts a window of the original size at a random offset per sample.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1.0
    crop_padding: int = 0
    flip: bool = False

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.flip

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        if gen is not None and self.augments:
            x = _augment(x, gen, self.crop_padding, self.flip)
        mean, std = _stats_on(self.mean, self.std, x.device)
        return (x - mean) / std


_STATS_CACHE: dict[tuple[tuple[float, ...], tuple[float, ...], torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _stats_on(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean/std as (1, C, 1, 1) tensors on ``device``, built once: a per-batch host-to-device copy
    from pageable memory would stall the CPU until the GPU catches up, every batch."""
    key = (mean, std, device)
    if key not in _STATS_CACHE:
        _STATS_CACHE[key] = (torch.tensor(mean, device=device).view(1, -1, 1, 1),
                             torch.tensor(std, device=device).view(1, -1, 1, 1))
    return _STATS_CACHE[key]


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int, flip: bool) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip, vectorized."""
    b, _, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev)
        rows = (oy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]  # B,1,H,1
        cols = (ox[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]  # B,1,1,W
        bidx = torch.arange(b, device=dev)[:, None, None, None]
        cidx = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = padded[bidx, cidx, rows, cols]
    if flip:
        do_flip = torch.rand(b, generator=gen, device=dev) < 0.5
        x = torch.where(do_flip[:, None, None, None], x.flip(3), x)
    return x


def _epoch_generator(device: torch.device, seed: int, epoch: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1))
    return gen


# --------------------------------------------------------------------------- batch iterables


class TensorBatches:
    """Batches cut from tensors that already sit on the target device.

    No worker processes, no per-sample Python: one ``randperm`` per epoch, then index,
    transform and yield. Shuffle order and augmentation depend only on ``(seed, epoch)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        transform: BatchTransform,
        shuffle: bool,
        augment: bool,
        seed: int = 0,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.transform = transform
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.num_samples = int(images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = _epoch_generator(self.device, self.seed, self.epoch)
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=gen, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        aug_gen = gen if self.augment else None
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.transform(self.images[idx], aug_gen), self.labels[idx]


class LoaderBatches:
    """Batches from a :class:`torch.utils.data.DataLoader`, moved to ``device``.

    For in-memory datasets kept on the CPU the dataset yields raw tensors and the same
    :class:`BatchTransform` as the tensor path runs on the target device; for ImageNet the
    dataset applies torchvision transforms itself and ``transform`` is ``None``.
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        *,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        transform: BatchTransform | None = None,
        augment: bool = False,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.transform = transform
        self.augment = augment
        self.seed = seed
        self.num_workers = num_workers
        self.epoch = 0
        self.num_samples = len(dataset)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        shuffle_gen = _epoch_generator(torch.device("cpu"), self.seed, self.epoch)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            generator=shuffle_gen if self.shuffle else None,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        aug_gen = _epoch_generator(self.device, self.seed + 1, self.epoch) if self.augment else None
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.transform is not None:
                x = self.transform(x, aug_gen)
            yield x, y


# --------------------------------------------------------------------------- IDX files (Fashion-MNIST)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path, *, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    The header is validated: two zero bytes, a known type code and the number of
    dimensions; the payload must hold exactly ``prod(dims)`` items. A truncated or
    corrupt file raises :class:`HalocError` naming it.
    """
    path = Path(path)
    fix = "delete the file and download it again (or reinstall dataset-fashion-mnist)"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise HalocError(f"cannot read IDX file ({err.__class__.__name__}: {err}); it is truncated or corrupt",
                         file=path, fix=fix) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise HalocError(f"not an IDX file (bad magic number {raw[:4].hex() or 'empty'})", file=path, fix=fix)
    ndim = raw[3]
    if expect_ndim is not None and ndim != expect_ndim:
        raise HalocError(f"IDX file has {ndim} dimensions, expected {expect_ndim} "
                         f"(magic {raw[:4].hex()})", file=path, fix="check that images and labels files are not swapped")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise HalocError("IDX header is truncated", file=path, fix=fix)
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    payload = len(raw) - header
    if payload != expected:
        raise HalocError(f"IDX payload has {payload} bytes but the header {dims} needs {expected}; "
                         "the file is truncated or corrupt", file=path, fix=fix)
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_mnist_dirs(root: Path | None) -> list[Path]:
    """Candidate folders, most specific first (plain, named sub-folder, torchvision layout)."""
    dirs: list[Path] = []
    if root is not None:
        dirs += [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    else:
        dirs += [SYSTEM_FASHION_MNIST, DEFAULT_DOWNLOAD_ROOT / "FashionMNIST" / "raw"]
    return dirs


def _locate_fashion_mnist(root: Path | None) -> dict[str, Path] | None:
    for folder in _fashion_mnist_dirs(root):
        found = {key: _find_idx(folder, stem) for key, stem in FASHION_MNIST_FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def load_fashion_mnist(root: str | Path | None = None, *, download: bool = True) -> dict[str, np.ndarray]:
    """Return ``{"train_images", "train_labels", "test_images", "test_labels"}`` as numpy arrays.

    Looks in ``root`` (and ``root/fashion-mnist``, ``root/FashionMNIST/raw``), else in
    Debian's ``/usr/share/datasets/fashion-mnist``, else asks torchvision to download
    into ``root`` (or ``~/.cache/haloc-hw/datasets``).
    """
    root_path = None if root is None else Path(root).expanduser()
    files = _locate_fashion_mnist(root_path)
    download_error = "download disabled"
    if files is None and download:
        target = root_path if root_path is not None else DEFAULT_DOWNLOAD_ROOT
        try:
            from torchvision.datasets import FashionMNIST

            log.info("downloading Fashion-MNIST into %s", target)
            FashionMNIST(str(target), train=True, download=True)
            FashionMNIST(str(target), train=False, download=True)
        except Exception as err:  # noqa: BLE001 - any downloader failure means "not available offline"
            log.debug("torchvision download failed: %s", err)
            download_error = f"torchvision download into {target} failed: {str(err).splitlines()[0][:120] if str(err) else type(err).__name__}"
        files = _locate_fashion_mnist(root_path) or _locate_fashion_mnist(target)
    if files is None:
        tried = ", ".join(str(d) for d in _fashion_mnist_dirs(root_path))
        names = ", ".join(f"{s}[.gz]" for s in FASHION_MNIST_FILES.values())
        raise HalocError(
            f"Fashion-MNIST IDX files not found (looked in {tried}; {download_error})",
            key="--data-root",
            fix=f"put {names} into a folder and pass it as --data-root, or `apt install dataset-fashion-mnist`, "
            "or run once with network access so torchvision can download them",
        )
    arrays = {
        "train_images": read_idx(files["train_images"], expect_ndim=3),
        "train_labels": read_idx(files["train_labels"], expect_ndim=1),
        "test_images": read_idx(files["test_images"], expect_ndim=3),
        "test_labels": read_idx(files["test_labels"], expect_ndim=1),
    }
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise HalocError(f"{n_img} images but {n_lab} labels", file=files[f"{split}_labels"],
                             fix="the images and labels files come from different releases; download both again")
    return arrays


# --------------------------------------------------------------------------- CIFAR-10 (python pickles)

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays: a CIFAR batch needs nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("__builtin__", "object"),
        ("builtins", "object"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = "extract cifar-10-python.tar.gz again"
    try:
        with path.open("rb") as fh:
            obj = _CifarUnpickler(fh, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise HalocError(f"cannot read CIFAR-10 batch ({err})", file=path, fix=fix) from None
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise HalocError("not a CIFAR-10 python batch (no 'data'/'labels')", file=path, fix=fix)
    data = np.asarray(obj[b"data"], dtype=np.uint8)
    labels = np.asarray(obj[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise HalocError(f"unexpected CIFAR-10 batch shape {data.shape}", file=path, fix=fix)
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | Path | None) -> dict[str, np.ndarray]:
    """Read the CIFAR-10 "python version" batches from ``root`` or ``root/cifar-10-batches-py``."""
    layout = ("ROOT/cifar-10-batches-py/{data_batch_1..data_batch_5,test_batch} "
              "(the 'CIFAR-10 python version' from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)")
    if root is None:
        raise HalocError("CIFAR-10 is only read from a local folder", key="--data-root",
                         fix=f"pass --data-root ROOT with {layout}")
    root = Path(root).expanduser()
    folder = next((d for d in (root / "cifar-10-batches-py", root)
                   if all((d / n).is_file() for n in (*_CIFAR_TRAIN, _CIFAR_TEST))), None)
    if folder is None:
        raise HalocError(f"CIFAR-10 batches not found under {root}", key="--data-root", fix=f"provide {layout}")
    train = [_read_cifar_batch(folder / n) for n in _CIFAR_TRAIN]
    test_x, test_y = _read_cifar_batch(folder / _CIFAR_TEST)
    return {
        "train_images": np.concatenate([t[0] for t in train]),
        "train_labels": np.concatenate([t[1] for t in train]),
        "test_images": test_x,
        "test_labels": test_y,
    }


# --------------------------------------------------------------------------- synthetic


def make_synthetic(
    num_train: int,
    num_test: int,
    *,
    input_size: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    seed: int = 0,
    signal: float = 1.0,
) -> dict[str, np.ndarray]:
    """Seeded Gaussian noise plus a per-class pattern (spatial + per-channel offset).

    The class signal is strong enough that a tiny CNN learns it in a few epochs, so tests can
    assert that training lowers the loss; the noise keeps it from being trivial.
    """
    c, h, w = (int(v) for v in input_size)
    rng = np.random.default_rng(seed)
    pattern = rng.standard_normal((num_classes, c, h, w)).astype(np.float32)
    offset = rng.standard_normal((num_classes, c, 1, 1)).astype(np.float32)
    protos = signal * (0.5 * pattern + offset)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, size=n).astype(np.int64)
        x = rng.standard_normal((n, c, h, w)).astype(np.float32) + protos[y]
        return x, y

    tx, ty = draw(num_train)
    vx, vy = draw(num_test)
    return {"train_images": tx, "train_labels": ty, "test_images": vx, "test_labels": vy}


# --------------------------------------------------------------------------- ImageNet (ImageFolder)


def _build_imagenet(root: str | Path | None, *, batch_size: int, val_fraction: float, seed: int,
                    subset: int | None, device: torch.device, num_workers: int, augment: bool) -> DataBundle:
    layout = "ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG (torchvision ImageFolder layout)"
    if root is None:
        raise HalocError("ImageNet is only read from a local folder", key="--data-root",
                         fix=f"pass --data-root ROOT with {layout}")
    root = Path(root).expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise HalocError(f"missing folder {root / split}", key="--data-root", fix=f"provide {layout}")
    from torchvision import datasets, transforms

    mean, std = _STATS["imagenet"]
    norm = transforms.Normalize(mean, std)
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm,
    ]) if augment else None
    eval_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm])
    try:
        train_full = datasets.ImageFolder(str(root / "train"), transform=train_tf or eval_tf)
        train_eval = datasets.ImageFolder(str(root / "train"), transform=eval_tf)
        test_full = datasets.ImageFolder(str(root / "val"), transform=eval_tf)
    except (FileNotFoundError, RuntimeError) as err:
        raise HalocError(f"cannot read ImageNet folders ({err})", file=root, fix=f"provide {layout}") from None
    if train_full.classes != test_full.classes:
        raise HalocError("train/ and val/ have different class folders", file=root,
                         fix="make both hold the same class sub-folders")
    pool = _seeded_subset(len(train_full), subset, seed)
    train_idx, val_idx = _split(pool, val_fraction, seed)
    test_idx = _seeded_subset(len(test_full), subset, seed + 1)
    sub = torch.utils.data.Subset
    common = dict(batch_size=batch_size, device=device, seed=seed, num_workers=num_workers)
    return DataBundle(
        name="imagenet",
        train=LoaderBatches(sub(train_full, train_idx.tolist()), shuffle=True, **common),
        val=LoaderBatches(sub(train_eval, val_idx.tolist()), shuffle=True, **common) if len(val_idx) else None,
        test=LoaderBatches(sub(test_full, test_idx.tolist()), shuffle=False, **common),
        num_classes=len(train_full.classes),
        in_channels=3,
        input_size=(3, 224, 224),
        device=device,
        classes=tuple(train_full.classes),
    )


# --------------------------------------------------------------------------- splits and the entry point


def _seeded_subset(n: int, subset: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded random subset of size ``min(subset, n)``, or all of ``0..n-1``."""
    if subset is None or subset >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, 0x5B5E7])
    return np.sort(rng.choice(n, size=subset, replace=False))


def _split(pool: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed seeded split of ``pool`` into (weight-train, arch-val) indices; they never overlap."""
    n_val = int(round(len(pool) * val_fraction))
    if val_fraction > 0:
        n_val = max(1, min(n_val, len(pool) - 1))
    rng = np.random.default_rng([seed, 0xA1FA])
    perm = rng.permutation(len(pool))
    return np.sort(pool[perm[n_val:]]), np.sort(pool[perm[:n_val]])


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU; asking for CUDA without one is a user error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HalocError("CUDA was requested but no CUDA device is available", key="--device",
                         fix="use --device cpu")
    return dev


def build_data(
    name: str,
    root: str | Path | None = None,
    *,
    batch_size: int,
    val_fraction: float = 0.1,
    seed: int = 0,
    subset: int | None = None,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    augment: bool = True,
    crop_padding: int | None = None,
    flip: bool | None = None,
    keep_on_device: bool = True,
    eval_batch_size: int | None = None,
    download: bool = True,
    input_size: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> DataBundle:
    """Build train / arch-val / test batches for dataset ``name`` (one of :data:`DATASET_NAMES`).

    ``subset=N`` keeps a seeded random ``N`` images of the training set (before the val split)
    and ``min(N, len(test))`` of the test set. ``augment`` turns on random crop
    (``crop_padding``, default 2 for Fashion-MNIST, 4 for CIFAR-10) and horizontal flip for
    the ``train`` part only. ``keep_on_device`` keeps in-memory datasets as tensors on
    ``device`` (the fast path); ``False`` streams them through a DataLoader. ``input_size``
    ``(C, H, W)`` and ``num_classes`` apply to ``synthetic`` only.
    """
    name = name.lower()
    if name not in DATASET_NAMES:
        raise HalocError(f"unknown dataset '{name}'", key="--data", fix=f"use one of {', '.join(DATASET_NAMES)}")
    if batch_size < 1:
        raise HalocError(f"batch size must be >= 1, got {batch_size}", key="--batch", fix="use a positive batch size")
    if not 0.0 <= val_fraction < 1.0:
        raise HalocError(f"val_fraction must be in [0, 1), got {val_fraction}", key="val_fraction",
                         fix="use e.g. 0.1")
    if subset is not None and subset < 2:
        raise HalocError(f"subset must be >= 2, got {subset}", key="--subset", fix="use a larger subset")
    if name != "synthetic" and (input_size is not None or num_classes is not None):
        raise HalocError(f"input_size/num_classes are fixed by dataset '{name}'", key="input_size",
                         fix="only pass them for the synthetic dataset")
    dev = resolve_device(device)
    if name == "imagenet":
        return _build_imagenet(root, batch_size=batch_size, val_fraction=val_fraction, seed=seed, subset=subset,
                               device=dev, num_workers=num_workers, augment=augment)

    classes: tuple[str, ...]
    if name == "fashion-mnist":
        arrays = load_fashion_mnist(root, download=download)
        arrays["train_images"] = arrays["train_images"][:, None]
        arrays["test_images"] = arrays["test_images"][:, None]
        classes, scale = FASHION_MNIST_CLASSES, 1 / 255
        mean, std = _STATS[name]
    elif name == "cifar10":
        arrays = load_cifar10(root)
        classes, scale = CIFAR10_CLASSES, 1 / 255
        mean, std = _STATS[name]
    else:  # synthetic
        k = int(num_classes) if num_classes is not None else 10
        size = tuple(input_size) if input_size is not None else (3, 32, 32)
        if len(size) != 3 or k < 2:
            raise HalocError(f"synthetic needs input_size (C, H, W) and num_classes >= 2, got {size}, {k}",
                             key="input_size", fix="pass input_size=(3, 32, 32), num_classes=10")
        n = subset if subset is not None else 1024
        arrays = make_synthetic(n, max(2, n // 4), input_size=size, num_classes=k, seed=seed)
        classes, scale = tuple(str(i) for i in range(k)), 1.0
        c = size[0]
        mean, std = (0.0,) * c, (1.0,) * c

    pad = _CROP_PADDING.get(name, 0) if crop_padding is None else int(crop_padding)
    do_flip = (name != "synthetic") if flip is None else bool(flip)
    plain = BatchTransform(mean=mean, std=std, scale=scale)
    train_tf = BatchTransform(mean=mean, std=std, scale=scale, crop_padding=pad if augment else 0,
                              flip=do_flip and augment)

    pool = _seeded_subset(len(arrays["train_labels"]), subset, seed)
    train_idx, val_idx = _split(pool, val_fraction, seed)
    test_idx = _seeded_subset(len(arrays["test_labels"]), subset, seed + 1)
    eval_bs = eval_batch_size or max(batch_size, 512)

    def tensors(split: str, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(arrays[f"{split}_images"][idx]))
        y = torch.from_numpy(np.ascontiguousarray(arrays[f"{split}_labels"][idx]).astype(np.int64))
        return x, y

    def batches(split: str, idx: np.ndarray, tf: BatchTransform, shuffle: bool, bs: int) -> Batches:
        x, y = tensors(split, idx)
        if keep_on_device:
            return TensorBatches(x.to(dev), y.to(dev), batch_size=bs, transform=tf, shuffle=shuffle,
                                 augment=tf.augments, seed=seed)
        return LoaderBatches(torch.utils.data.TensorDataset(x, y), batch_size=bs, device=dev, shuffle=shuffle,
                             transform=tf, augment=tf.augments, seed=seed, num_workers=num_workers)

    bundle = DataBundle(
        name=name,
        train=batches("train", train_idx, train_tf, True, batch_size),
        val=batches("train", val_idx, plain, True, batch_size) if len(val_idx) else None,
        test=batches("test", test_idx, plain, False, eval_bs),
        num_classes=len(classes),
        in_channels=int(arrays["train_images"].shape[1]),
        input_size=tuple(int(v) for v in arrays["train_images"].shape[1:]),  # type: ignore[arg-type]
        device=dev,
        classes=classes,
    )
    log.info("%s: %d train, %d arch-val, %d test samples on %s", name, len(train_idx), len(val_idx),
             len(test_idx), dev)
    return bundle
