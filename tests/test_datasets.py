"""Data sets: loading, validation of local copies, downloads (with a fake network), splits."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import sys
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from nasp.data import (
    DATASET_SHAPES,
    DATASETS,
    DataShape,
    ImageDataset,
    default_data_dir,
    known_shape,
    load_dataset,
)
from nasp.data import cifar as cifar_module
from nasp.data import download as download_module
from nasp.data import idx as idx_module
from nasp.errors import DatasetError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def make_dataset(labels: list[int], classes: int = 3) -> ImageDataset:
    """A small data set whose image i is filled with the value i."""
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageDataset("toy", images, torch.tensor(labels), tuple("abc"[:classes]), (0.5,),
                        (0.25,), flip=False, crop_padding=1)


# --- registry, ImageDataset, default_data_dir --------------------------------------------------


def test_registry_names_and_unknown_name_lists_them():
    assert {"digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "folder"} <= set(DATASETS)
    with pytest.raises(DatasetError, match="known data sets: .*cifar10.*digits"):
        load_dataset("imagenet")


def test_unknown_split_is_refused():
    with pytest.raises(DatasetError, match="split 'valid'"):
        load_dataset("digits", split="valid")


def test_default_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NASP_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("NASP_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "nasp" / "data"


def test_image_dataset_properties_and_take():
    ds = make_dataset([0, 1, 2, 0, 1])
    assert (len(ds), ds.in_channels, ds.image_size, ds.num_classes) == (5, 1, (2, 2), 3)
    part = ds.take(torch.tensor([4, 0]))
    assert part.labels.tolist() == [1, 0]
    assert part.images[:, 0, 0, 0].tolist() == [4, 0]
    assert part.images.is_contiguous()
    assert (part.classes, part.mean, part.std, part.crop_padding) == (
        ds.classes, ds.mean, ds.std, ds.crop_padding)
    assert "5 images" in repr(ds)


def test_image_dataset_rejects_inconsistent_fields():
    ds = make_dataset([0, 1])
    with pytest.raises(ValueError, match="uint8"):
        dataclasses.replace(ds, images=ds.images.float())
    with pytest.raises(ValueError, match="labels"):
        dataclasses.replace(ds, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        dataclasses.replace(ds, labels=torch.tensor([0, 3]))


# --- digits ------------------------------------------------------------------------------------


def test_digits_splits_partition_the_data_deterministically():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.num_classes == 10 and set(test.labels.tolist()) == set(range(10))
    assert int(train.images.max()) == 255 and (train.flip, train.crop_padding) == (False, 1)
    # together the two splits are exactly the scikit-learn set, each image once
    full = np.rint(load_digits().images * 255 / 16).astype(np.uint8).reshape(1797, 64)
    both = torch.cat([train.images, test.images]).reshape(1797, 64).numpy()
    assert sorted(map(bytes, both)) == sorted(map(bytes, full))
    again = load_dataset("digits", root="/nonexistent")
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    pixels = train.images.double() / 255
    assert train.mean[0] == pytest.approx(pixels.mean().item())
    assert train.std[0] == pytest.approx(pixels.std(correction=0).item())
    assert test.mean == train.mean and 0.2 < train.mean[0] < 0.4


# --- CIFAR ------------------------------------------------------------------------------------


def write_pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar(folder: Path, kind: str = "cifar10", n: int = 20) -> dict[str, np.ndarray]:
    """Write a tiny CIFAR folder of the official structure; return the data of each file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if kind == "cifar10":
        files, label_key, classes = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"], \
            b"labels", 10
        write_pickle(folder / "batches.meta", {
            b"label_names": [f"class{i}".encode() for i in range(10)],
            b"num_cases_per_batch": n, b"num_vis": 3072})
    else:
        files, label_key, classes = ["train", "test"], b"fine_labels", 100
        write_pickle(folder / "meta", {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    data = {}
    for i, name in enumerate(files):
        data[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(i + j) % classes for j in range(n)]
        write_pickle(folder / name, {b"data": data[name], label_key: labels,
                                     b"batch_label": name.encode()})
    return data


def test_cifar10_fake_folder_loads_from_parent_or_folder_itself(tmp_path):
    data = make_cifar(tmp_path / "cifar-10-batches-py")
    train = load_dataset("cifar10", tmp_path, download=False)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous()
    expected = np.concatenate([data[f"data_batch_{i}"] for i in range(1, 6)])
    assert np.array_equal(train.images.numpy().reshape(100, 3072), expected)
    assert train.labels[:3].tolist() == [0, 1, 2] and train.labels[20].item() == 1
    assert train.classes[3] == "class3" and train.num_classes == 10
    assert (train.flip, train.crop_padding) == (True, 4)
    assert train.mean == (0.4914, 0.4822, 0.4465) and train.std == (0.2470, 0.2435, 0.2616)
    test = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", "test", download=False)
    assert np.array_equal(test.images.numpy().reshape(20, 3072), data["test_batch"])


def test_cifar100_fake_folder_loads(tmp_path):
    data = make_cifar(tmp_path / "cifar-100-python", "cifar100", n=30)
    train = load_dataset("cifar100", tmp_path, download=False)
    assert len(train) == 30 and train.num_classes == 100 and train.classes[99] == "fine99"
    assert np.array_equal(train.images.numpy().reshape(30, 3072), data["train"])
    assert train.mean == (0.5071, 0.4865, 0.4409)
    test = load_dataset("cifar100", tmp_path, "test", download=False)
    assert test.labels.tolist() == [(1 + j) % 100 for j in range(30)]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rewrite(path: Path, **changes) -> None:
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch.update({key.encode(): value for key, value in changes.items()})
    write_pickle(path, batch)


@pytest.mark.parametrize("damage", [
    _truncate,
    lambda p: _rewrite(p, data=np.zeros((20, 3000), np.uint8)),
    lambda p: _rewrite(p, data=np.zeros((20, 3072), np.float32)),
    lambda p: _rewrite(p, data=np.zeros((19, 3072), np.uint8), labels=[0] * 19),
    lambda p: _rewrite(p, labels=[0] * 19 + [10]),
    lambda p: _rewrite(p, labels=[0] * 10),
    lambda p: write_pickle(p, [1, 2, 3]),
    Path.unlink,
], ids=["truncated", "shape", "dtype", "count", "label-range", "label-count", "not-dict",
        "missing"])
def test_cifar_damaged_batch_is_named(tmp_path, damage):
    make_cifar(tmp_path / "cifar-10-batches-py")
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    damage(bad)
    with pytest.raises(DatasetError, match=re.escape(str(bad))) as info:
        load_dataset("cifar10", tmp_path, download=False)
    assert "--data-dir" in str(info.value) and "\n" not in str(info.value)


def test_cifar_bad_meta_is_named(tmp_path):
    make_cifar(tmp_path / "cifar-10-batches-py")
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    write_pickle(meta, {b"label_names": [b"a", b"b"]})
    with pytest.raises(DatasetError, match=f"{re.escape(str(meta))}.*10 class names"):
        load_dataset("cifar10", tmp_path, download=False)


class _MakesFolder:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_cifar_pickle_with_foreign_objects_is_refused_unexecuted(tmp_path):
    make_cifar(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "executed"
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    write_pickle(bad, {b"data": _MakesFolder(str(marker)), b"labels": [0]})
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        load_dataset("cifar10", tmp_path, download=False)
    assert not marker.exists()


def test_cifar_missing_without_download_names_where_it_looked(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root, download=False)
    message = str(info.value)
    assert str(root / "cifar-10-batches-py") in message and CIFAR10_URL in message
    assert not root.exists()


@pytest.fixture(scope="module")
def real_cifar10():
    folder = SHARED_DATA / "cifar-10-batches-py"
    if not (folder / "data_batch_1").is_file():
        pytest.skip(f"the real CIFAR-10 copy is not at {folder}")
    return (load_dataset("cifar10", SHARED_DATA, download=False),
            load_dataset("cifar10", folder, "test", download=False))


def test_real_cifar10_copy(real_cifar10):
    train, test = real_cifar10
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.labels.bincount().tolist() == [5000] * 10
    assert test.labels.bincount().tolist() == [1000] * 10
    assert train.classes[0] == "airplane" and train.classes[9] == "truck"
    channel_sums = train.images.numpy().reshape(50000, 3, 1024).sum(axis=(0, 2))
    assert (channel_sums / (50000 * 1024 * 255)).tolist() == pytest.approx(train.mean, abs=1e-3)


# --- downloads (the network is always faked) ---------------------------------------------------


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def cifar_archive(tmp_path: Path) -> bytes:
    folder = tmp_path / "source" / "cifar-10-batches-py"
    make_cifar(folder)
    return tar_gz({f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in folder.iterdir()})


@pytest.fixture
def fake_network(monkeypatch):
    """Serve ``served[url]`` instead of the network; record the URLs asked for."""
    served: dict[str, bytes | Exception] = {}
    asked: list[str] = []

    def fetch(url, out):
        asked.append(url)
        payload = served.get(url, urllib.error.URLError("no network in tests"))
        if isinstance(payload, Exception):
            out.write(b"partial")
            raise payload
        out.write(payload)

    monkeypatch.setattr(download_module, "_fetch", fetch)
    return served, asked


def with_md5(monkeypatch, key: str, md5: str) -> None:
    spec = cifar_module._CIFAR[key]
    monkeypatch.setitem(cifar_module._CIFAR, key, dataclasses.replace(spec, md5=md5))


def test_download_with_wrong_md5_leaves_nothing(tmp_path, fake_network):
    served, asked = fake_network
    served[CIFAR10_URL] = cifar_archive(tmp_path)  # its md5 is not the official one
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="md5") as info:
        load_dataset("cifar10", root)
    assert asked == [CIFAR10_URL] and CIFAR10_URL in str(info.value)
    assert list(root.iterdir()) == []


def test_download_failure_says_how_to_get_the_data(tmp_path, fake_network):
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="failed") as info:
        load_dataset("cifar10", root)
    message = str(info.value)
    assert "no network in tests" in message and "by hand" in message and str(root) in message
    assert list(root.iterdir()) == []


def test_download_with_right_md5_extracts_and_loads_once(tmp_path, monkeypatch, fake_network):
    served, asked = fake_network
    served[CIFAR10_URL] = payload = cifar_archive(tmp_path)
    with_md5(monkeypatch, "cifar10", hashlib.md5(payload).hexdigest())
    root = tmp_path / "data"
    assert len(load_dataset("cifar10", root)) == 100
    assert [p.name for p in root.iterdir()] == ["cifar-10-batches-py"]
    assert len(load_dataset("cifar10", root, "test")) == 20
    assert asked == [CIFAR10_URL]


def test_download_refuses_path_traversal(tmp_path, monkeypatch, fake_network):
    served, _ = fake_network
    served[CIFAR10_URL] = payload = tar_gz({"cifar-10-batches-py/../../escaped": b"x"})
    with_md5(monkeypatch, "cifar10", hashlib.md5(payload).hexdigest())
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="unsafe"):
        load_dataset("cifar10", root)
    assert list(root.iterdir()) == [] and not (tmp_path / "escaped").exists()


# --- MNIST / Fashion-MNIST idx files -----------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes((0, 0, 8, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, split: str, n: int = 12, gz: bool = False) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    images = np.random.default_rng(1).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images),
                        (f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)):
        payload = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return images


def test_mnist_raw_idx_files_load(tmp_path):
    images = write_idx(tmp_path / "mnist", "train")
    ds = load_dataset("mnist", tmp_path, download=False)
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.is_contiguous()
    assert np.array_equal(ds.images[:, 0].numpy(), images)
    assert ds.labels.tolist() == [i % 10 for i in range(12)]
    assert (ds.flip, ds.crop_padding, ds.mean, ds.std) == (False, 2, (0.1307,), (0.3081,))


def test_fashion_mnist_gz_files_load_from_raw_subfolder(tmp_path):
    images = write_idx(tmp_path / "fashion-mnist" / "raw", "test", n=7, gz=True)
    ds = load_dataset("fashion_mnist", tmp_path, "test", download=False)
    assert np.array_equal(ds.images[:, 0].numpy(), images)
    assert ds.classes[0] == "T-shirt/top" and (ds.flip, ds.mean) == (True, (0.2860,))


@pytest.mark.parametrize("damage", [
    lambda raw: b"\x00\x00\x08\x01" + raw[4:],  # idx1 magic on an image file
    lambda raw: raw[:-5],
    lambda raw: raw[:10],
    lambda raw: raw + b"\x00",
], ids=["magic", "truncated-data", "truncated-header", "trailing"])
def test_damaged_idx_file_is_named(tmp_path, damage):
    write_idx(tmp_path, "train")
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        load_dataset("mnist", tmp_path, download=False)


def test_damaged_gz_and_label_problems(tmp_path):
    write_idx(tmp_path, "train", gz=True)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(idx_bytes(np.full(12, 10)))  # not gzip at all
    with pytest.raises(DatasetError, match=re.escape(str(labels))):
        load_dataset("mnist", tmp_path, download=False)
    labels.write_bytes(gzip.compress(idx_bytes(np.full(12, 10))))
    with pytest.raises(DatasetError, match="reach 10"):
        load_dataset("mnist", tmp_path, download=False)
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(11))))
    with pytest.raises(DatasetError, match="12 images .* but 11 labels"):
        load_dataset("mnist", tmp_path, download=False)


def test_fashion_mnist_missing_mentions_the_debian_package(tmp_path, monkeypatch):
    spec = idx_module._IDX["fashion-mnist"]
    monkeypatch.setitem(idx_module._IDX, "fashion-mnist",
                        dataclasses.replace(spec, system_dirs=(tmp_path / "system",)))
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion-mnist", tmp_path / "data", download=False)
    assert str(tmp_path / "data" / "fashion-mnist") in str(info.value)


def test_mnist_download_tries_mirrors_and_checks_md5(tmp_path, monkeypatch, fake_network):
    served, asked = fake_network
    source = tmp_path / "source"
    write_idx(source, "test", n=5)
    spec = idx_module._IDX["mnist"]
    md5 = dict(spec.md5)
    for path in source.iterdir():
        payload = gzip.compress(path.read_bytes())
        served[f"{spec.mirrors[1]}{path.name}.gz"] = payload
        md5[path.name] = hashlib.md5(payload).hexdigest()
    monkeypatch.setitem(idx_module._IDX, "mnist", dataclasses.replace(spec, md5=md5))
    root = tmp_path / "data"
    assert len(load_dataset("mnist", root, "test")) == 5
    assert sorted(p.name for p in (root / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert len(asked) == 4 and asked[0].startswith(spec.mirrors[0])


def test_real_fashion_mnist_if_installed():
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {folder}")
    ds = load_dataset("fashion-mnist", Path("/nonexistent"), "test", download=False)
    assert ds.images.shape == (10000, 1, 28, 28)
    assert ds.labels.bincount().tolist() == [1000] * 10


# --- image folders -----------------------------------------------------------------------------


def write_png(path: Path, value: int, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> None:
    image_module = pytest.importorskip("PIL.Image")
    path.parent.mkdir(parents=True, exist_ok=True)
    image_module.new(mode, size, (value,) * len(mode) if mode != "P" else value).save(path)


def make_folder(root: Path, counts: dict[str, int], **kwargs) -> None:
    for c, (name, count) in enumerate(counts.items()):
        for i in range(count):
            write_png(root / name / f"{i:02d}.png", 10 * c + i, **kwargs)


def test_folder_without_splits_holds_out_a_fixed_tenth(tmp_path):
    make_folder(tmp_path, {"cat": 12, "dog": 8})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    train = load_dataset("folder", tmp_path)
    test = load_dataset("folder", tmp_path, "test")
    assert (len(train), len(test)) == (18, 2) and train.classes == ("cat", "dog")
    assert train.images.shape[1:] == (3, 5, 6) and train.crop_padding == 1 and train.flip
    values = sorted(torch.cat([train.images, test.images])[:, 0, 0, 0].tolist())
    assert values == sorted([*range(12), *range(10, 18)])  # every image exactly once
    assert torch.equal(load_dataset("folder", tmp_path, "test").images, test.images)
    assert train.mean == test.mean
    assert train.mean[0] == pytest.approx(train.images.double().mean().item() / 255)


def test_folder_with_train_and_val_subfolders_and_grey_images(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 3}, size=(16, 16), mode="L")
    make_folder(tmp_path / "val", {"a": 1, "b": 1}, size=(16, 16), mode="L")
    train = load_dataset("folder", tmp_path)
    test = load_dataset("folder", tmp_path, "test")
    assert train.images.shape == (5, 1, 16, 16) and train.crop_padding == 2
    assert train.labels.tolist() == [0, 0, 1, 1, 1] and test.labels.tolist() == [0, 1]
    assert test.images[:, 0, 0, 0].tolist() == [0, 10]


def test_folder_palette_images_become_rgb(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2}, mode="P")
    assert load_dataset("folder", tmp_path).in_channels == 3


def test_folder_mixed_sizes_name_the_file(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    odd = tmp_path / "b" / "odd.png"
    write_png(odd, 0, size=(7, 5))
    with pytest.raises(DatasetError, match=f"{re.escape(str(odd))} .* expected size 6x5"):
        load_dataset("folder", tmp_path, "test")


def test_folder_mixed_channels_name_the_file(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    grey = tmp_path / "b" / "grey.png"
    write_png(grey, 0, mode="L")
    with pytest.raises(DatasetError, match=f"{re.escape(str(grey))} .*1 channel"):
        load_dataset("folder", tmp_path, "test")


def test_folder_unreadable_image_is_named(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    broken = tmp_path / "a" / "zz.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=f"{re.escape(str(broken))} .*cannot be read"):
        load_dataset("folder", tmp_path, "test")  # reads both splits


def test_folder_needs_two_non_empty_classes(tmp_path):
    make_folder(tmp_path, {"only": 3})
    with pytest.raises(DatasetError, match="1 class sub-folder"):
        load_dataset("folder", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=f"{re.escape(str(tmp_path / 'empty'))} holds no image"):
        load_dataset("folder", tmp_path)
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "missing"))):
        load_dataset("folder", tmp_path / "missing")
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("folder")


def test_folder_without_pillow_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DatasetError, match=r"torch-nasp\[images\]"):
        load_dataset("folder", tmp_path)


# --- known shapes ------------------------------------------------------------------------------


def test_known_shapes_are_declared_beside_the_loaders_and_match_the_data(tmp_path):
    assert DATASET_SHAPES == {
        "digits": (1, (8, 8), 10),
        "mnist": (1, (28, 28), 10),
        "fashion-mnist": (1, (28, 28), 10),
        "cifar10": (3, (32, 32), 10),
        "cifar100": (3, (32, 32), 100),
    }
    assert set(DATASET_SHAPES) == set(DATASETS) - {"folder"}
    assert known_shape(" Fashion_MNIST ") == DATASET_SHAPES["fashion-mnist"]
    assert known_shape("folder") is None and known_shape("imagenet") is None
    make_cifar(tmp_path / "cifar-10-batches-py")
    make_cifar(tmp_path / "cifar-100-python", "cifar100", n=30)
    write_idx(tmp_path / "mnist", "train")
    write_idx(tmp_path / "fashion-mnist", "train")
    for name, shape in DATASET_SHAPES.items():
        assert DataShape.of(load_dataset(name, tmp_path, download=False)) == shape, name
