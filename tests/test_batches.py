"""Device-resident batches: coverage, determinism, normalisation and on-device augmentation."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from nasp.data import Batches, ImageDataset, augment_batch


def index_dataset(n: int = 50, channels: int = 1, size: int = 4, **kwargs) -> ImageDataset:
    """Image i is filled with the value i and has label i; mean 0 and std 1 keep x = value/255."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    images = images.expand(n, channels, size, size).contiguous()
    fields = {"mean": (0.0,) * channels, "std": (1.0,) * channels, "flip": False,
              "crop_padding": 1, **kwargs}
    return ImageDataset("index", images, torch.arange(n), tuple(map(str, range(n))), **fields)


def image_ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_each_epoch_covers_every_image_once():
    batches = Batches(index_dataset(50), 8, generator=gen(0))
    assert len(batches) == 7
    epoch = list(batches)
    assert [len(y) for _, y in epoch] == [8] * 6 + [2]
    labels = torch.cat([y for _, y in epoch])
    assert sorted(labels.tolist()) == list(range(50)) and labels.tolist() != list(range(50))
    for x, y in epoch:  # images travel with their labels
        assert image_ids(x) == y.tolist()
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 4, 4)


def test_drop_last_and_oversized_batches():
    dropped = Batches(index_dataset(50), 8, drop_last=True, generator=gen(0))
    epoch = [y for _, y in dropped]
    assert len(dropped) == len(epoch) == 6 and all(len(y) == 8 for y in epoch)
    assert len(set(torch.cat(epoch).tolist())) == 48
    whole = Batches(index_dataset(5), 64, shuffle=False)
    assert len(whole) == 1 and [y.tolist() for _, y in whole] == [[0, 1, 2, 3, 4]]
    none = Batches(index_dataset(5), 64, drop_last=True)
    assert len(none) == 0 and list(none) == []
    with pytest.raises(ValueError, match="no batches"):
        none.forever()


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 4, "cutout": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        Batches(index_dataset(5), **kwargs)


def test_unshuffled_order_and_seeds():
    assert [y.tolist() for _, y in Batches(index_dataset(6), 4, shuffle=False)] == [
        [0, 1, 2, 3], [4, 5]]

    def order(seed):
        return torch.cat([y for _, y in Batches(index_dataset(50), 8, generator=gen(seed))])
    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    torch.manual_seed(3)
    first = torch.cat([y for _, y in Batches(index_dataset(50), 8)])
    torch.manual_seed(3)
    assert torch.equal(first, torch.cat([y for _, y in Batches(index_dataset(50), 8)]))


def test_normalisation_matches_definition():
    g = gen(0)
    images = torch.randint(0, 256, (10, 3, 5, 5), dtype=torch.uint8, generator=g)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    ds = ImageDataset("rgb", images, torch.zeros(10, dtype=torch.int64), ("a",), mean, std,
                      flip=True, crop_padding=1)
    (x, _), = Batches(ds, 10, shuffle=False)
    expected = (images / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    torch.testing.assert_close(x, expected)


def distinct_images(b: int = 400, c: int = 2, h: int = 5, w: int = 6) -> torch.Tensor:
    return torch.arange(1, c * h * w + 1, dtype=torch.float32).view(1, c, h, w).repeat(b, 1, 1, 1)


def test_random_crop_is_a_shift_with_padding():
    x, p = distinct_images(), 2
    out = augment_batch(x, padding=p, flip=False, cutout=0, generator=gen(0), pad_value=-7.0)
    assert out.shape == x.shape
    padded = F.pad(x[:1], (p, p, p, p), value=-7.0)[0]
    windows = {(dy, dx): padded[:, dy:dy + 5, dx:dx + 6] for dy in range(2 * p + 1)
               for dx in range(2 * p + 1)}
    seen = set()
    for image in out:
        matches = [k for k, window in windows.items() if torch.equal(image, window)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(windows)  # every offset occurs


def test_flip_flips_about_half():
    x = distinct_images()
    out = augment_batch(x, padding=0, flip=True, cutout=0, generator=gen(0))
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((flipped ^ kept).all()) and 150 < int(flipped.sum()) < 250


@pytest.mark.parametrize("size", [3, 4])
def test_cutout_zeroes_a_clipped_square(size):
    h, w = 7, 9
    x = torch.ones(300, 2, h, w)
    out = augment_batch(x, padding=0, flip=False, cutout=size, generator=gen(0))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1])  # all channels alike
    assert bool(((out == 0) | (out == 1)).all())
    clipped_top = clipped_bottom = 0
    for mask in zero[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert len(rows) > 0
        top, left = int(rows[0]), int(cols[0])
        assert mask.sum() == len(rows) * len(cols)  # a rectangle...
        assert torch.equal(rows, torch.arange(top, top + len(rows)))
        assert torch.equal(cols, torch.arange(left, left + len(cols)))
        # ... the size x size square, cut only by the borders
        assert len(rows) == size or top == 0 or top + len(rows) == h
        assert len(cols) == size or left == 0 or left + len(cols) == w
        clipped_top += len(rows) < size and top == 0
        clipped_bottom += len(rows) < size and top + len(rows) == h
    full = (zero[:, 0].flatten(1).sum(1) == size * size).sum()
    assert full > 50 and clipped_top > 0 and clipped_bottom > 0  # centres reach the borders


def test_augmented_batches_pad_black_and_cut_out_zero():
    ds = ImageDataset("white", torch.full((200, 3, 8, 8), 255, dtype=torch.uint8),
                      torch.zeros(200, dtype=torch.int64), ("a",), (0.5,) * 3, (0.25,) * 3,
                      flip=True, crop_padding=2)
    (x, _), = Batches(ds, 200, augment=True, cutout=3, generator=gen(0))
    # white is (1 - 0.5) / 0.25 = 2, the black padding (0 - 0.5) / 0.25 = -2, cutout writes 0
    values = set(x.unique().tolist())
    assert values == {2.0, -2.0, 0.0}
    (plain, _), = Batches(ds, 200, cutout=3, generator=gen(0))  # cutout needs augment
    assert set(plain.unique().tolist()) == {2.0}


def test_augmentation_is_reproducible_and_advances_the_generator():
    ds = index_dataset(40, channels=3, size=8, flip=True, crop_padding=2)

    def epoch(seed):
        return [x for x, _ in Batches(ds, 16, augment=True, cutout=4, generator=gen(seed))]

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    batches = Batches(ds, 16, augment=True, cutout=4, generator=gen(0))
    state = batches.generator.get_state()
    list(batches)
    assert not torch.equal(state, batches.generator.get_state())


def test_forever_cycles_and_reshuffles():
    batches = Batches(index_dataset(10), 4, generator=gen(0))
    stream = batches.forever()
    labels = [y for _, y in itertools.islice(stream, 3 * len(batches) + 1)]
    epochs = [torch.cat(labels[i:i + 3]).tolist() for i in (0, 3, 6)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert len(labels[-1]) == 4  # the fourth epoch has started


def test_channels_last():
    ds = index_dataset(6, channels=3, size=4)
    (x, _), = Batches(ds, 6, channels_last=True, augment=True, generator=gen(0))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    (y, _), = Batches(ds, 6, augment=True, generator=gen(0))
    assert y.is_contiguous()
    assert torch.equal(x, y)  # the same values, only laid out differently


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_batches_on_cuda_and_cpu():
    ds = index_dataset(40, channels=3, size=8, flip=True, crop_padding=2)
    cpu = list(Batches(ds, 16, augment=True, cutout=4, generator=gen(5)))
    cuda = list(Batches(ds, 16, device="cuda", augment=True, cutout=4, generator=gen(5)))
    for (xc, yc), (xg, yg) in zip(cpu, cuda, strict=True):
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        torch.testing.assert_close(xg.cpu(), xc)
        assert torch.equal(yg.cpu(), yc)
    with pytest.raises(ValueError, match="CPU generator"):
        Batches(ds, 4, generator=torch.Generator(device="cuda"))
