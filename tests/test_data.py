import gzip
import pickle
import struct

import numpy as np
import pytest

from course_utils import data


def test_digits_fixed_split_shapes_and_range():
    d = data.digits(8)
    assert [a.shape for a in d] == [(1257, 8, 8), (1257,), (180, 8, 8), (180,), (360, 8, 8), (360,)]
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    for y in (d.y_train, d.y_val, d.y_test):  # stratified: every class in every part
        assert set(y.tolist()) == set(range(10))


def test_digits_parts_are_disjoint_and_repeatable():
    d, again = data.digits(8, seed=0), data.digits.__wrapped__(8, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(d, again))
    rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
    assert not rows(d.x_train) & rows(d.x_test) and not rows(d.x_val) & rows(d.x_test)
    other = data.digits(8, seed=1)
    assert not np.array_equal(d.y_test, other.y_test)


def test_digits_are_read_only_so_the_cache_cannot_be_corrupted():
    with pytest.raises(ValueError):
        data.digits(8).x_train[0, 0, 0] = 5


def test_mnist_shaped_digits_have_a_margin_like_mnist():
    d = data.digits(28)
    assert d.x_train.shape == (1257, 28, 28)
    assert d.x_train[:, :4].max() == 0 and d.x_train[:, :, -4:].max() == 0  # 4-pixel frame
    assert 0.9 < d.x_train.max() <= 1.0
    small = data.digits(8)
    assert np.array_equal(d.y_test, small.y_test)  # same split, only resized


def test_digits_rejects_other_sizes():
    with pytest.raises(ValueError, match="8 or 28"):
        data.digits(16)


def test_torch_loaders_shapes_and_seeded_shuffling():
    split = data.digits(8)
    train, val, test = data.torch_loaders(split, batch_size=32, seed=5)
    x, y = next(iter(train))
    assert tuple(x.shape) == (32, 1, 8, 8) and tuple(y.shape) == (32,)
    again, _, _ = data.torch_loaders(split, batch_size=32, seed=5)
    assert (next(iter(again))[1] == y).all()
    assert len(test.dataset) == 360 and len(val.dataset) == 180
    flat, _, _ = data.torch_loaders(split, batch_size=8, channels=False)
    assert tuple(next(iter(flat))[0].shape) == (8, 8, 8)


def test_tf_datasets_shapes():
    train, val, test = data.tf_datasets(data.digits(8), batch_size=16)
    x, y = next(iter(train))
    assert tuple(x.shape) == (16, 8, 8, 1) and tuple(y.shape) == (16,)
    assert sum(int(b[1].shape[0]) for b in test) == 360


# --- the real-dataset parsers, on small files written here ---

def write_idx(path, array, gz=False):
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


def fake_mnist_folder(folder, n_train=24, n_test=6, gz=True):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, a in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), a, gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    a = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 7
    write_idx(tmp_path / "a.idx", a, gz=gz)
    name = "a.idx"
    if gz:
        (tmp_path / "a.idx").rename(tmp_path / "a.idx.gz")
        name = "a.idx.gz"
    assert np.array_equal(data.read_idx(tmp_path / name), a)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 4), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="header says"):
        data.read_idx(tmp_path / "short")


def test_real_dataset_reads_torchvision_layout_and_splits_validation(tmp_path, capsys):
    arrays = fake_mnist_folder(tmp_path / "FashionMNIST" / "raw", n_train=24)
    split = data.real_dataset("fashion_mnist", root=tmp_path)
    assert split.x_train.shape == (22, 28, 28) and split.x_val.shape == (2, 28, 28)
    assert split.x_test.shape == (6, 28, 28) and split.x_test.max() <= 1.0
    assert np.array_equal(split.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert capsys.readouterr().out == ""


def test_real_dataset_reads_keras_npz(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".keras" / "datasets").mkdir(parents=True)
    x = np.full((12, 28, 28), 255, np.uint8)
    np.savez(tmp_path / ".keras" / "datasets" / "mnist.npz", x_train=x, y_train=np.arange(12) % 10,
             x_test=x[:3], y_test=np.arange(3))
    split = data.real_dataset("mnist", root=tmp_path / "empty")
    assert len(split.x_train) + len(split.x_val) == 12 and split.x_test.max() == 1.0


def test_real_dataset_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    x_train, y_train, x_test, y_test = data.load_cifar10_folder(folder)
    assert x_train.shape == (20, 32, 32, 3) and x_test.shape == (4, 32, 32, 3) and y_train.dtype == np.int64
    raw = pickle.loads((folder / "test_batch").read_bytes())[b"data"][0]
    assert x_test[0, 0, 0, 0] == raw[0] and x_test[0, 0, 0, 1] == raw[1024]  # R then G plane


def test_offline_fallback_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    split = data.real_dataset("mnist", root=tmp_path)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "using the offline digits" in out
    assert split.x_train.shape == (1257, 28, 28)


def test_failed_download_falls_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))

    def offline(name, root):
        raise OSError("no network")

    monkeypatch.setattr(data, "_download", offline)
    split = data.real_dataset("cifar10", root=tmp_path, download=True)
    assert "could not download cifar10 (OSError)" in capsys.readouterr().out
    assert split.x_test.shape == (360, 28, 28)


def test_real_dataset_rejects_unknown_names():
    with pytest.raises(ValueError, match="must be one of"):
        data.real_dataset("imagenet")
