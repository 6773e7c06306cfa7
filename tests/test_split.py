"""The search split and --subset: seeded, class-stratified samples, whatever the order of the data.

A folder data set is read class by class; a split that took the first images for the weights and
the rest for the architecture gave each half different classes (0% child accuracy).
"""

from __future__ import annotations

import importlib
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from nasp import preset, search
from nasp.config import TrainConfig, train_preset
from nasp.data import ImageDataset, load_dataset, search_split, subset_of
from nasp.engine.train import _load_data
from nasp.errors import DatasetError

search_loop = importlib.import_module("nasp.engine.search")  # nasp.engine.search is the function

CLASS_SIZES = (30, 20, 10, 7)  # 67 images, sorted by class
SIZES = [None, 67, 66, 20, 13, 9, 4, 2]


def make_dataset(labels: list[int], classes: int | None = None) -> ImageDataset:
    """A data set whose image i holds the value i, with the given labels."""
    n = len(labels)
    assert n < 256
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    classes = classes or max(labels) + 1
    return ImageDataset("toy", images, torch.tensor(labels), tuple(f"c{k}" for k in range(classes)),
                        (0.5,), (0.25,), flip=False, crop_padding=1)


def sorted_dataset(sizes=CLASS_SIZES) -> ImageDataset:
    return make_dataset([k for k, size in enumerate(sizes) for _ in range(size)])


def shuffled_dataset() -> ImageDataset:
    ds = sorted_dataset()
    return ds.take(torch.randperm(len(ds), generator=torch.Generator().manual_seed(42)))


def ids(ds: ImageDataset) -> list[tuple[int, ...]]:
    """The first pixel of every image (its id here)."""
    return [tuple(pixel) for pixel in ds.images[:, :, 0, 0].tolist()]


def counts(ds: ImageDataset, classes: int = len(CLASS_SIZES)) -> list[int]:
    return torch.bincount(ds.labels, minlength=classes).tolist()


def check_proportional(got: list[int], whole: list[int], n: int) -> None:
    """``got`` sums to ``n`` and each class count is the floor or ceiling of its share of n."""
    assert sum(got) == n
    for g, w in zip(got, whole):
        quota = w * n / sum(whole)
        assert math.floor(quota) <= g <= math.ceil(quota), (got, whole, n)


@pytest.mark.parametrize("make", [sorted_dataset, shuffled_dataset])
@pytest.mark.parametrize("subset", SIZES)
def test_search_halves_hold_every_class_in_proportion(make, subset):
    ds = make()
    n = len(ds) if subset is None else subset
    weights, arch = search_split(ds, subset, seed=5)
    assert (len(weights), len(arch)) == (n // 2, n - n // 2)
    assert not set(ids(weights)) & set(ids(arch))  # disjoint
    union = [a + b for a, b in zip(counts(weights), counts(arch))]
    check_proportional(union, list(CLASS_SIZES), n)
    for w, a in zip(counts(weights), counts(arch)):  # every class cut as evenly as possible
        assert abs(w - a) <= 1
    # the halves cover exactly the subset that `nasp train --subset` draws with the same seed
    assert sorted(ids(weights) + ids(arch)) == sorted(ids(subset_of(ds, subset, seed=5)))
    # every image keeps its label
    labels = dict(zip(ids(ds), ds.labels.tolist()))
    for half in (weights, arch):
        assert half.labels.tolist() == [labels[i] for i in ids(half)]
        assert half.classes == ds.classes


def test_known_counts_of_a_class_sorted_set():
    # 20 of (30, 20, 10, 7): quotas 8.96, 5.97, 2.99, 2.09 -> 8, 5, 2, 2 and the 3 images left to
    # the largest remainders -> 9, 6, 3, 2; halves of 10: 4.5, 3, 1.5, 1 -> ties to class 0
    ds = sorted_dataset()
    assert counts(subset_of(ds, 20, seed=0)) == [9, 6, 3, 2]
    weights, arch = search_split(ds, 20, seed=0)
    assert (counts(weights), counts(arch)) == ([5, 3, 1, 1], [4, 3, 2, 1])
    weights, arch = search_split(ds, None, seed=0)
    assert (counts(weights), counts(arch)) == ([15, 10, 5, 3], [15, 10, 5, 4])


@pytest.mark.parametrize("subset", [None, 2, 13, 40])
def test_subset_draws_every_class_in_proportion(subset):
    ds = sorted_dataset()
    drawn = subset_of(ds, subset, seed=1)
    n = len(ds) if subset is None else subset
    check_proportional(counts(drawn), list(CLASS_SIZES), n)
    assert len(set(ids(drawn))) == n
    if subset is None:
        assert drawn is ds


def test_same_seed_same_split_other_seed_other_split():
    ds = sorted_dataset()
    first = [ids(half) for half in search_split(ds, 40, seed=7)]
    assert [ids(half) for half in search_split(ds, 40, seed=7)] == first  # order included
    other = [ids(half) for half in search_split(ds, 40, seed=8)]
    assert set(other[0]) != set(first[0]) and set(other[1]) != set(first[1])
    assert ids(subset_of(ds, 40, seed=7)) == ids(subset_of(ds, 40, seed=7))
    assert set(ids(subset_of(ds, 40, seed=7))) != set(ids(subset_of(ds, 40, seed=8)))


def test_split_ignores_and_keeps_the_global_random_state():
    ds = sorted_dataset()
    torch.manual_seed(0)
    first = [ids(half) for half in search_split(ds, 30, seed=3)]
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    assert [ids(half) for half in search_split(ds, 30, seed=3)] == first
    assert ids(subset_of(ds, 30, seed=3)) == ids(subset_of(ds, 30, seed=3))
    assert torch.equal(torch.get_rng_state(), state)  # untouched


def test_halves_are_shuffled_not_class_sorted():
    # the search's diagnostics use the first batch of the architecture half: it must not be one
    # class
    weights, arch = search_split(sorted_dataset(), None, seed=0)
    for half in (weights, arch):
        assert len(set(half.labels[:8].tolist())) > 1


@pytest.mark.parametrize(("labels", "subset", "match"), [
    ([0, 1, 2], 4, "--subset 4 is larger than the toy data set"),
    ([0, 1, 2], 1, "at least 2 images.*--subset"),
    ([0, 1, 2], 0, "at least 2 images.*--subset"),
    ([0] * 9 + [1], 2, "one class.*larger --subset"),  # 1.8 and 0.2 images: both of class 0
    ([1, 1], None, "one class"),
    ([1], None, "at least 2"),
])
def test_search_split_refuses_unusable_subsets(labels, subset, match):
    with pytest.raises(DatasetError, match=match):
        search_split(make_dataset(labels, classes=3), subset, seed=0)


def test_subset_larger_than_the_data_is_refused():
    with pytest.raises(DatasetError, match="--subset 5 is larger.*use a smaller --subset"):
        subset_of(make_dataset([0, 1, 0, 1]), 5, seed=0)


# --- end to end: a folder data set read class by class ----------------------------------------


def make_class_sorted_folder(root: Path, per_class: int = 8, classes: int = 3) -> None:
    """train/ and test/ folders of 8x8 images, one sub-folder per class, each image's first pixel
    different; the train split is read class by class."""
    image_module = pytest.importorskip("PIL.Image")
    for split, count in (("train", per_class), ("test", 2)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                image_module.new("RGB", (8, 8), (80 * c, 10 * i, 0)).save(folder / f"{i}.png")


def test_folder_search_split_gives_both_halves_every_class(tmp_path):
    make_class_sorted_folder(tmp_path)
    ds = load_dataset("folder", tmp_path)
    assert ds.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8  # read class by class
    for subset in (None, 12):
        weights, arch = search_split(ds, subset, seed=0)
        assert set(weights.labels.tolist()) == set(arch.labels.tolist()) == {0, 1, 2}


def test_train_subset_of_a_class_sorted_folder_holds_every_class(tmp_path):
    make_class_sorted_folder(tmp_path)
    config = train_preset("tiny", dataset="folder", data_dir=str(tmp_path), subset=9, seed=4,
                          val_fraction=0)
    train_set, _, _ = _load_data(config)
    assert counts(train_set, 3) == [3, 3, 3]
    assert ids(train_set) == ids(subset_of(load_dataset("folder", tmp_path), 9, seed=4))
    again, _, _ = _load_data(config.replace(seed=5))
    assert counts(again, 3) == [3, 3, 3] and set(ids(again)) != set(ids(train_set))


def test_validation_split_of_a_class_sorted_folder_holds_every_class(tmp_path):
    make_class_sorted_folder(tmp_path)
    config = TrainConfig(dataset="folder", data_dir=str(tmp_path), val_fraction=0.25)
    train_set, val_set, _ = _load_data(config)
    assert counts(val_set, 3) == [2, 2, 2] and counts(train_set, 3) == [6, 6, 6]
    assert not set(ids(val_set)) & set(ids(train_set))


def test_search_on_a_class_sorted_folder_uses_the_seeded_split(tmp_path, monkeypatch):
    make_class_sorted_folder(tmp_path / "data")
    drawn = []

    def spy(ds, subset, seed):
        halves = search_split(ds, subset, seed)
        drawn.append((ds, subset, seed, halves))
        return halves

    monkeypatch.setattr(search_loop, "search_split", spy)
    config = preset("tiny", dataset="folder", data_dir=str(tmp_path / "data"), subset=24,
                    epochs=1, batch_size=8, seed=6, device="cpu", out=str(tmp_path / "run"))
    search(config, progress=False, plots=False, log=lambda line: None)
    [(ds, subset, seed, (weights, arch))] = drawn
    assert (len(ds), subset, seed) == (24, 24, 6)
    assert Counter(weights.labels.tolist()) == Counter(arch.labels.tolist()) == {0: 4, 1: 4, 2: 4}
