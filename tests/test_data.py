"""Datasets: IDX reading, Fashion-MNIST / CIFAR-10 / ImageNet folders, splits, augmentation."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from haloc_hw.data import (
    DATASET_NAMES,
    SYSTEM_FASHION_MNIST,
    BatchTransform,
    LoaderBatches,
    TensorBatches,
    build_data,
    read_idx,
)
from haloc_hw.errors import HalocError


def _write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def _fake_fashion(root: Path, n_train: int = 60, n_test: int = 20, *, gz: bool = True) -> Path:
    """Tiny IDX set; image i of the training set is filled with value i so samples are identifiable."""
    root.mkdir(parents=True, exist_ok=True)
    train = np.broadcast_to(np.arange(n_train, dtype=np.uint8)[:, None, None], (n_train, 28, 28)).copy()
    test = np.full((n_test, 28, 28), 200, dtype=np.uint8)
    _write_idx(root / "train-images-idx3-ubyte", train, gz=gz)
    _write_idx(root / "train-labels-idx1-ubyte", np.arange(n_train) % 10, gz=gz)
    _write_idx(root / "t10k-images-idx3-ubyte", test, gz=gz)
    _write_idx(root / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, gz=gz)
    return root


def _ids(batches) -> list[int]:
    """Recover the fake training-image ids (pixel value) from normalized, unaugmented batches."""
    out = []
    for x, _ in batches:
        raw = x[:, 0, 14, 14] * 0.3530 + 0.2860
        out += [round(v) for v in (raw * 255).tolist()]
    return out


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.random.default_rng(0).integers(0, 256, size=(3, 5, 4)).astype(np.uint8)
    path = _write_idx(tmp_path / "x-idx3-ubyte", arr, gz=gz)
    got = read_idx(path, expect_ndim=3)
    assert got.dtype == np.uint8 and np.array_equal(got, arr)


def test_read_idx_rejects_bad_magic_truncation_and_wrong_rank(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(HalocError, match="bad magic") as err:
        read_idx(bad)
    assert str(bad) in str(err.value)

    arr = np.zeros((4, 6, 6), dtype=np.uint8)
    full = _write_idx(tmp_path / "t-idx3-ubyte", arr, gz=False)
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(full.read_bytes()[:-5])
    with pytest.raises(HalocError, match="truncated") as err:
        read_idx(short)
    assert str(short) in str(err.value)

    gz = _write_idx(tmp_path / "g-idx3-ubyte", arr, gz=True)
    cut = tmp_path / "cut-idx3-ubyte.gz"
    cut.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])
    with pytest.raises(HalocError, match="truncated or corrupt") as err:
        read_idx(cut)
    assert str(cut) in str(err.value)

    with pytest.raises(HalocError, match="expected 1"):
        read_idx(full, expect_ndim=1)


# ----------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_root_shapes_and_normalization(tmp_path):
    root = _fake_fashion(tmp_path / "fm", gz=False)
    data = build_data("fashion-mnist", root, batch_size=16, val_fraction=0.25, device="cpu", augment=False)
    assert (data.num_classes, data.in_channels, data.input_size) == (10, 1, (1, 28, 28))
    assert data.train.num_samples == 45 and data.val.num_samples == 15 and data.test.num_samples == 20
    assert len(data.train) == 3  # ceil(45 / 16)
    x, y = next(iter(data.test))  # evaluation batches default to max(batch, 512)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.allclose(x, torch.full_like(x, (200 / 255 - 0.2860) / 0.3530))


def test_fashion_mnist_torchvision_layout_is_found(tmp_path):
    _fake_fashion(tmp_path / "FashionMNIST" / "raw")
    data = build_data("fashion-mnist", tmp_path, batch_size=8, device="cpu", download=False)
    assert data.train.num_samples + data.val.num_samples == 60


def test_fashion_mnist_missing_names_the_places_looked(tmp_path):
    with pytest.raises(HalocError) as err:
        build_data("fashion-mnist", tmp_path / "nowhere", batch_size=8, download=False)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "train-images-idx3-ubyte" in msg and "--data-root" in msg


def test_val_split_is_fixed_disjoint_and_seeded(tmp_path):
    root = _fake_fashion(tmp_path / "fm")

    def split(seed):
        d = build_data("fashion-mnist", root, batch_size=7, val_fraction=0.2, seed=seed, device="cpu", augment=False)
        return set(_ids(d.train)), set(_ids(d.val))

    train_a, val_a = split(0)
    assert len(val_a) == 12 and not train_a & val_a and train_a | val_a == set(range(60))
    assert split(0) == (train_a, val_a)
    assert split(1)[1] != val_a


def test_subset_is_seeded_and_bounds_both_splits(tmp_path):
    root = _fake_fashion(tmp_path / "fm")
    a = build_data("fashion-mnist", root, batch_size=8, subset=30, val_fraction=0.1, device="cpu", augment=False)
    b = build_data("fashion-mnist", root, batch_size=8, subset=30, val_fraction=0.1, device="cpu", augment=False)
    assert a.train.num_samples + a.val.num_samples == 30 and a.test.num_samples == 20
    assert sorted(_ids(a.train)) == sorted(_ids(b.train))
    assert len(set(_ids(a.train)) | set(_ids(a.val))) == 30


def test_shuffle_changes_with_epoch_but_is_reproducible(tmp_path):
    root = _fake_fashion(tmp_path / "fm")
    d = build_data("fashion-mnist", root, batch_size=60, val_fraction=0.0, device="cpu", augment=False)
    d.train.set_epoch(0)
    e0 = _ids(d.train)
    d.train.set_epoch(1)
    e1 = _ids(d.train)
    d.train.set_epoch(0)
    assert _ids(d.train) == e0 and e0 != e1 and sorted(e0) == sorted(e1) == list(range(60))


@pytest.mark.skipif(not SYSTEM_FASHION_MNIST.is_dir(), reason=f"{SYSTEM_FASHION_MNIST} absent (dataset-fashion-mnist)")
def test_real_fashion_mnist_subset():
    d = build_data("fashion-mnist", batch_size=128, subset=600, device="cpu", download=False)
    assert d.input_size == (1, 28, 28) and d.classes[9] == "Ankle boot"
    assert d.train.num_samples == 540 and d.val.num_samples == 60 and d.test.num_samples == 600
    labels = torch.cat([y for _, y in d.test])
    assert labels.min() == 0 and labels.max() == 9 and len(labels.unique()) == 10
    x = torch.cat([x for x, _ in d.test])
    assert abs(float(x.mean())) < 0.15 and 0.85 < float(x.std()) < 1.15  # normalized with the dataset stats


# ----------------------------------------------------------------------------- augmentation


def test_random_crop_and_flip_are_shifted_windows():
    x = torch.arange(4 * 2 * 6 * 6, dtype=torch.float32).view(4, 2, 6, 6)
    tf = BatchTransform(mean=(0.0, 0.0), std=(1.0, 1.0), crop_padding=2, flip=True)
    gen = torch.Generator().manual_seed(3)
    out = tf(x, gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen_flip, seen_shift = set(), set()
    for i in range(4):
        windows = {(dy, dx): padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)}
        matches = [(dy, dx, f) for (dy, dx), w in windows.items() for f in (False, True)
                   if torch.equal(out[i], w.flip(2) if f else w)]
        assert matches, f"sample {i} is not a (flipped) window of its padded input"
        seen_flip.add(matches[0][2])
        seen_shift.add(matches[0][:2])
    assert tf(x, None).equal(x)  # no generator -> no augmentation
    gen2 = torch.Generator().manual_seed(3)
    assert torch.equal(tf(x, gen2), out)
    assert len(seen_shift) > 1 or len(seen_flip) > 1


def test_augmentation_only_on_train_part(tmp_path):
    root = _fake_fashion(tmp_path / "fm")
    d = build_data("fashion-mnist", root, batch_size=64, val_fraction=0.2, device="cpu", augment=True)
    assert d.train.augment and not d.val.augment and not d.test.augment
    # Crops pad with zeros, so some augmented images contain a border of the "zero" pixel value.
    x, _ = next(iter(d.train))
    zero = torch.tensor((0 - 0.2860) / 0.3530)
    border = torch.cat([x[:, 0, 0, :], x[:, 0, -1, :], x[:, 0, :, 0], x[:, 0, :, -1]], dim=1)
    assert torch.isclose(border, zero, atol=1e-5).any()
    plain, _ = next(iter(d.test))
    assert not torch.isclose(plain, zero, atol=1e-5).any()  # test images are constant 200: never cropped


def test_dataloader_path_matches_tensor_path(tmp_path):
    root = _fake_fashion(tmp_path / "fm")
    common = dict(batch_size=16, val_fraction=0.2, device="cpu", augment=True)
    fast = build_data("fashion-mnist", root, **common)
    slow = build_data("fashion-mnist", root, keep_on_device=False, **common)
    assert isinstance(fast.train, TensorBatches) and isinstance(slow.train, LoaderBatches)
    assert len(fast.train) == len(slow.train)
    assert sorted(_ids(fast.val)) == sorted(_ids(slow.val))
    xs = [x for x, _ in slow.train]
    slow.train.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(xs, (x for x, _ in slow.train)))  # reproducible per epoch
    assert xs[0].shape == (16, 1, 28, 28)


# ----------------------------------------------------------------------------- other datasets


def test_unknown_dataset_lists_names():
    with pytest.raises(HalocError) as err:
        build_data("mnist-ish", batch_size=8)
    assert all(n in str(err.value) for n in DATASET_NAMES)


def test_synthetic_any_size_and_seeded():
    a = build_data("synthetic", batch_size=10, subset=40, input_size=(2, 5, 7), num_classes=3, device="cpu")
    b = build_data("synthetic", batch_size=10, subset=40, input_size=(2, 5, 7), num_classes=3, device="cpu")
    assert a.input_size == (2, 5, 7) and a.num_classes == 3 and a.in_channels == 2
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    assert xa.shape[1:] == (2, 5, 7) and torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(HalocError, match="synthetic"):
        build_data("fashion-mnist", batch_size=8, input_size=(1, 8, 8))


def _fake_cifar(root: Path, n: int = 10) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        with (folder / name).open("wb") as fh:
            pickle.dump(obj, fh)
    return folder


def test_cifar10_from_python_batches(tmp_path):
    _fake_cifar(tmp_path)
    d = build_data("cifar10", tmp_path, batch_size=16, device="cpu", val_fraction=0.1)
    assert (d.num_classes, d.in_channels, d.input_size) == (10, 3, (3, 32, 32))
    assert d.train.num_samples + d.val.num_samples == 50 and d.test.num_samples == 10
    x, _ = next(iter(d.test))
    assert x.shape == (10, 3, 32, 32)


def test_cifar10_missing_and_malicious(tmp_path):
    with pytest.raises(HalocError, match="cifar-10-batches-py"):
        build_data("cifar10", tmp_path, batch_size=8)
    with pytest.raises(HalocError, match="--data-root"):
        build_data("cifar10", None, batch_size=8)
    folder = _fake_cifar(tmp_path / "evil")

    class Boom:
        def __reduce__(self):
            return (print, ("should never run",))

    with (folder / "test_batch").open("wb") as fh:
        pickle.dump({b"data": Boom(), b"labels": []}, fh)
    with pytest.raises(HalocError, match="refusing") as err:
        build_data("cifar10", tmp_path / "evil", batch_size=8)
    assert "test_batch" in str(err.value)


def test_imagenet_folder_layout(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    with pytest.raises(HalocError, match="train/<class>"):
        build_data("imagenet", tmp_path, batch_size=2)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                pil.new("RGB", (40, 30), (i * 40, 80, 160)).save(tmp_path / split / cls / f"{i}.png")
    d = build_data("imagenet", tmp_path, batch_size=4, device="cpu", val_fraction=0.34)
    assert d.num_classes == 2 and d.classes == ("cat", "dog") and d.input_size == (3, 224, 224)
    assert d.train.num_samples == 4 and d.val.num_samples == 2 and d.test.num_samples == 6
    x, y = next(iter(d.test))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 0, 1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensors_stay_on_gpu(tmp_path):
    root = _fake_fashion(tmp_path / "fm")
    d = build_data("fashion-mnist", root, batch_size=16, device="cuda", augment=True)
    assert d.train.images.is_cuda
    x, y = next(iter(d.train))
    assert x.is_cuda and y.is_cuda and x.shape == (16, 1, 28, 28)
