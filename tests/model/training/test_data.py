"""Training data: every source loads, and bad data is named before training starts."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from model.training.data import DataError, load_split
from model.training.train import main as train_main


def write_png(path, size=32, mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value if mode == "L" else (value, value, value)).save(path)


@pytest.fixture
def digits(tmp_path):
    """A class-per-subfolder dataset of 32x32 grey images: 3 classes x 4 images."""
    for c in range(3):
        for i in range(4):
            write_png(tmp_path / "data" / f"class{c}" / f"{i}.png", value=40 * c + i)
    return tmp_path / "data"


def test_mnist_demo_split():
    train, test = load_split("mnist", "train", 32, 1), load_split("mnist", "test", 32, 1)
    assert train.images.shape == (4500, 32, 32, 1) and test.images.shape == (500, 32, 32, 1)
    assert np.bincount(test.labels).tolist() == [50] * 10
    assert (test.images[:, :2].max(), test.images[:, :, :2].max()) == (0, 0)  # the zero padding
    assert test.images.max() == 255


def test_folder_with_class_subfolders(digits):
    data = load_split(str(digits), "train", 32, 1, holdout=3)
    test = load_split(str(digits), "test", 32, 1, holdout=3)
    assert len(data) + len(test) == 12 and data.class_names == ["class0", "class1", "class2"]
    assert set(data.labels.tolist()) | set(test.labels.tolist()) == {0, 1, 2}


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    train = load_split(str(tmp_path), "train", 32, 3)
    assert train.images.shape == (50, 32, 32, 3) and train.num_classes == 10
    raw = pickle.loads((tmp_path / "data_batch_1").read_bytes())[b"data"][0]
    assert np.array_equal(train.images[0], raw.reshape(3, 32, 32).transpose(1, 2, 0))


def test_npy_array_with_holdout(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((40, 32, 32, 3), dtype=np.uint8))
    assert len(load_split(str(tmp_path / "x.npy"), "train", 32, 3)) == 36
    assert len(load_split(str(tmp_path / "x.npy"), "test", 32, 3)) == 4


def test_unreadable_image_is_named(digits):
    (digits / "class1" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"class1/broken\.png: unreadable image"):
        load_split(str(digits), "train", 32, 1)


def test_truncated_image_is_named(digits):
    buf = io.BytesIO()
    Image.new("L", (32, 32), 7).save(buf, format="PNG")
    (digits / "class0" / "cut.png").write_bytes(buf.getvalue()[:40])
    with pytest.raises(DataError, match=r"class0/cut\.png: unreadable image"):
        load_split(str(digits), "train", 32, 1)


def test_wrong_size_is_named(digits):
    write_png(digits / "class2" / "big.png", size=64)
    with pytest.raises(DataError, match=r"class2/big\.png: wrong size 64x64; expected 32x32"):
        load_split(str(digits), "train", 32, 1)


def test_wrong_channels_is_named(digits):
    write_png(digits / "class0" / "colour.png", mode="RGB")
    with pytest.raises(DataError, match=r"class0/colour\.png: wrong channels: 3 \(RGB\); expected 1 \(L\)"):
        load_split(str(digits), "train", 32, 1)


def test_corrupt_cifar_batch_is_named(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_1: unreadable CIFAR-10 batch"):
        load_split(str(tmp_path), "train", 32, 3)


def test_cifar_batch_that_wants_to_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        load_split(str(tmp_path), "train", 32, 3)


def test_npy_of_the_wrong_shape_is_named(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"x\.npy: images are 64x64x3; the model expects 32x32x3"):
        load_split(str(tmp_path / "x.npy"), "train", 32, 3)


def test_training_stops_before_it_starts_on_bad_data(digits, tmp_path, capsys):
    write_png(digits / "class1" / "odd.png", size=28)
    out = tmp_path / "run"
    code = train_main(["--data", str(digits), "--preset", "mnist", "--steps", "2", "--out", str(out)])
    assert code == 2
    assert "odd.png: wrong size 28x28; expected 32x32" in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()


def test_pooling_makes_16x16_digits_and_is_only_done_when_asked():
    full = load_split("mnist", "test", 32, 1)
    small = load_split("mnist", "test", 16, 1, pool=True)
    assert small.images.shape == (500, 16, 16, 1) and np.array_equal(small.labels, full.labels)
    assert abs(small.images.mean() - full.images.mean()) < 0.5  # pooling keeps the mean
    with pytest.raises(DataError, match="images are 32x32x1; the model expects 16x16x1"):
        load_split("mnist", "test", 16, 1)
    with pytest.raises(DataError, match="cannot average-pool 32x32 images to 12x12"):
        load_split("mnist", "test", 12, 1, pool=True)
