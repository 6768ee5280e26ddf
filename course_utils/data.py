"""Datasets that work offline, as NumPy arrays, PyTorch DataLoaders and tf.data pipelines.

The default is scikit-learn's handwritten digits (1,797 real 8×8 scans, shipped with the package),
split once into fixed train/val/test parts and optionally resized to MNIST's 28×28 frame.
The real MNIST-family loaders read the standard files from a local cache; when the files are
missing they fall back to the digits with a one-line notice (downloading only when asked).
"""
from __future__ import annotations

import gzip
import pickle
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

SPLIT = (0.7, 0.1, 0.2)  # train, val, test fractions of the digits


class Split(NamedTuple):
    """Images as float32 in [0, 1] with shape (N, H, W) (or (N, H, W, 3)), labels as int64."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def to_mnist_frame(images: np.ndarray) -> np.ndarray:
    """Resize (N, 8, 8) digits to (N, 28, 28) the way MNIST is framed: a 20×20 digit, 4-pixel margin."""
    from scipy.ndimage import zoom
    body = zoom(images, (1, 20 / images.shape[1], 20 / images.shape[2]), order=1)
    return np.pad(np.clip(body, 0, 1), ((0, 0), (4, 4), (4, 4))).astype(np.float32)


@lru_cache(maxsize=4)
def digits(size: int = 8, seed: int = 0) -> Split:
    """The handwritten digits with a fixed, stratified 70/10/20 train/val/test split.

    size=8 gives the original 8×8 images, size=28 the MNIST-shaped version. The split depends
    only on ``seed``, so both frameworks see exactly the same examples. Do not modify the arrays
    in place: they are cached.
    """
    if size not in (8, 28):
        raise ValueError(f"digits(size=...) must be 8 or 28, got {size}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    raw = load_digits()
    x = (raw.images / 16.0).astype(np.float32)
    y = raw.target.astype(np.int64)
    if size == 28:
        x = to_mnist_frame(x)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=SPLIT[2], stratify=y,
                                                      random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=SPLIT[1] / (SPLIT[0] + SPLIT[1]), stratify=y_rest, random_state=seed)
    split = Split(x_train, y_train, x_val, y_val, x_test, y_test)
    for a in split:
        a.flags.writeable = False
    return split


def torch_loaders(split: Split, batch_size: int = 64, seed: int = 0, channels: bool = True):
    """(train, val, test) DataLoaders; images get a channel axis (N, 1, H, W) unless channels=False.

    Only the training loader shuffles, with its own seeded generator, so runs repeat exactly.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    def dataset(x, y):
        x = torch.tensor(np.asarray(x))
        return TensorDataset(x.unsqueeze(1) if channels and x.ndim == 3 else x, torch.tensor(np.asarray(y)))

    g = torch.Generator().manual_seed(seed)
    return (DataLoader(dataset(split.x_train, split.y_train), batch_size, shuffle=True, generator=g),
            DataLoader(dataset(split.x_val, split.y_val), batch_size),
            DataLoader(dataset(split.x_test, split.y_test), batch_size))


def tf_datasets(split: Split, batch_size: int = 64, seed: int = 0, channels: bool = True):
    """(train, val, test) batched ``tf.data.Dataset``s; images as (N, H, W, 1) unless channels=False.

    Only the training set shuffles (seeded, reshuffled each epoch).
    """
    from course_utils.env import quiet_frameworks
    quiet_frameworks()
    import tensorflow as tf

    def dataset(x, y):
        x = np.asarray(x)
        return tf.data.Dataset.from_tensor_slices((x[..., None] if channels and x.ndim == 3 else x, np.asarray(y)))

    train = dataset(split.x_train, split.y_train).shuffle(len(split.x_train), seed=seed)
    return (train.batch(batch_size), dataset(split.x_val, split.y_val).batch(batch_size),
            dataset(split.x_test, split.y_test).batch(batch_size))


# --- the real datasets, from local files -------------------------------------------------------

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (the MNIST / Fashion-MNIST format), gzipped or not."""
    path = Path(path)
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {array.size} values")
    return array.reshape(shape)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def load_idx_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from a folder with the four standard IDX files."""
    folder = Path(folder)
    arrays = []
    for part in ("train", "test"):
        for name in IDX_FILES[part]:
            path = _find(folder, name)
            if path is None:
                raise FileNotFoundError(f"{folder}: missing {name}[.gz]")
            arrays.append(read_idx(path))
    return tuple(arrays)


def load_mnist_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from Keras' ``mnist.npz`` cache file."""
    with np.load(path) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def load_cifar10_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from ``cifar-10-batches-py``; images (N, 32, 32, 3) uint8."""
    folder = Path(folder)

    def batch(name):
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], dtype=np.int64)

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    return np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]), x_test, y_test


CACHES = {  # where torchvision and Keras keep these files, relative to a root folder
    "mnist": ["MNIST/raw", "mnist"], "fashion_mnist": ["FashionMNIST/raw", "fashion-mnist"],
    "cifar10": ["cifar-10-batches-py"],
}


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd
    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    cls(str(root), download=True)


def real_dataset(name: str = "mnist", root: str | Path = "~/.cache/course-data", download: bool = False,
                 seed: int = 0) -> Split:
    """MNIST, Fashion-MNIST or CIFAR-10 from local files, with a seeded validation split.

    Looks in ``root`` (torchvision's layout, e.g. ``root/MNIST/raw``) and, for MNIST, in Keras'
    ``~/.keras/datasets/mnist.npz``. Missing files are downloaded only if ``download=True``;
    otherwise (or if the download fails) it prints one line and returns ``digits(28)`` instead.
    """
    if name not in CACHES:
        raise ValueError(f"real_dataset(name=...) must be one of {sorted(CACHES)}, got {name!r}")
    root = Path(root).expanduser()
    arrays = _load_local(name, root)
    if arrays is None and download:
        try:
            _download(name, root)
            arrays = _load_local(name, root)
        except Exception as err:  # offline, blocked, disk full: fall back, but say why
            print(f"[data] could not download {name} ({type(err).__name__}); using the offline digits instead")
            return digits(28, seed)
    if arrays is None:
        print(f"[data] {name} not found under {root}; using the offline digits (28×28) instead")
        return digits(28, seed)
    x_train, y_train, x_test, y_test = arrays
    scale = lambda x: (np.asarray(x, dtype=np.float32) / 255.0)  # noqa: E731
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val = len(x_train) // 12
    val, train = order[:n_val], order[n_val:]
    return Split(scale(x_train[train]), y_train[train].astype(np.int64), scale(x_train[val]),
                 y_train[val].astype(np.int64), scale(x_test), np.asarray(y_test, dtype=np.int64))


def _load_local(name: str, root: Path):
    for sub in CACHES[name]:
        folder = root / sub
        try:
            return load_cifar10_folder(folder) if name == "cifar10" else load_idx_folder(folder)
        except FileNotFoundError:
            continue
    keras_npz = Path("~/.keras/datasets/mnist.npz").expanduser()
    if name == "mnist" and keras_npz.exists():
        return load_mnist_npz(keras_npz)
    return None
