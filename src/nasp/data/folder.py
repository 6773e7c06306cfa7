"""``folder``: a folder of images, one sub-folder per class (needs Pillow).

If ``root`` has ``train/`` and ``test/`` (or ``val/``) sub-folders, those are the splits;
otherwise a fixed seeded 10% of the images (at least one) is the ``test`` split and the rest the
``train`` split. All images must share one size and colour type (grey or RGB); an undecodable
image, or one of another size, is named. Its shape is known only by reading it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from nasp.data.base import DataShape, ImageDataset, _channel_stats, _check_classes, _one_line
from nasp.errors import DatasetError

_FOLDER_SEED = 0
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F"}


def _pillow_image(root: Path):
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError(f"the folder data set ({root}) needs Pillow to read images: "
                           f'pip install "torch-nasp[images]" (or pip install Pillow)') from None
    return Image


def _class_files(folder: Path, extensions: set[str]) -> tuple[tuple[str, ...],
                                                               list[tuple[Path, int]]]:
    """Class names (sorted sub-folder names) and (image file, label) pairs of ``folder``."""
    hint = "A folder data set needs one sub-folder of images per class, at least two classes."
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist or is not a folder. {hint}")
    try:
        class_dirs = sorted((p for p in folder.iterdir()
                             if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    except OSError as err:
        raise DatasetError(f"image folder {folder} cannot be listed ({_one_line(err)}). "
                           f"{hint}") from err
    if len(class_dirs) < 2:
        raise DatasetError(f"image folder {folder} has {len(class_dirs)} class sub-folder(s). "
                           f"{hint}")
    files = []
    for label, class_dir in enumerate(class_dirs):
        try:
            images = sorted(p for p in class_dir.rglob("*") if p.is_file()
                            and not p.name.startswith(".") and p.suffix.lower() in extensions)
        except OSError as err:
            raise DatasetError(f"class folder {class_dir} cannot be listed "
                               f"({_one_line(err)}). {hint}") from err
        if not images:
            raise DatasetError(f"class folder {class_dir} holds no image files "
                               f"({', '.join(sorted(extensions)[:6])}, ...). {hint}")
        files += [(p, label) for p in images]
    return tuple(p.name for p in class_dirs), files


def _read_images(files: Sequence[tuple[Path, int]], image_module,
                 expected: tuple[tuple[int, ...], Path] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[tuple[int, ...], Path]]:
    """Decode ``files`` into uint8 (N, C, H, W) and labels; all must share one shape, that of
    ``expected`` (shape, file that set it) or else of the first file. Returns it too."""
    arrays = []
    for path, _ in files:
        try:
            with image_module.open(path) as im:
                arr = np.asarray(im.convert("L" if im.mode in _GREY_MODES else "RGB"))
        except Exception as err:  # Pillow raises many types for unreadable files
            raise DatasetError(f"image {path} of the folder data set cannot be read "
                               f"({_one_line(err)}); remove or replace it") from err
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if expected is None:
            expected = (arr.shape, path)
        elif arr.shape != expected[0]:
            (c, h, w), first = expected
            raise DatasetError(f"image {path} of the folder data set is {arr.shape[2]}x"
                               f"{arr.shape[1]} with {arr.shape[0]} channel(s), but {first} set "
                               f"the expected size {w}x{h} with {c} channel(s); all images must "
                               f"have the same size and colour type, so resize or convert them")
        arrays.append(arr)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return torch.from_numpy(np.stack(arrays)), labels, expected


def _load_folder(root: Path | None, split: str, download: bool) -> ImageDataset:
    """One sub-folder per class; ``train/`` + ``test/`` or ``val/`` splits, else a 10% hold-out.

    mean/std come from the train split, so both splits are normalised alike.
    """
    if root is None:
        raise DatasetError("the folder data set needs the folder of images: pass it with "
                           "--data-dir (one sub-folder of images per class)")
    root = Path(root).expanduser()
    image_module = _pillow_image(root)
    extensions = {ext for ext, fmt in image_module.registered_extensions().items()
                  if fmt in image_module.OPEN}
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes, train_files = _class_files(root / "train", extensions)
        test_classes, test_files = _class_files(test_dir, extensions)
        if test_classes != classes:
            raise DatasetError(f"image folders {root / 'train'} and {test_dir} have different "
                               f"class sub-folders ({', '.join(classes)} vs "
                               f"{', '.join(test_classes)}); they must match")
    else:
        classes, files = _class_files(root, extensions)
        order = np.random.RandomState(_FOLDER_SEED).permutation(len(files))
        held = set(order[:max(1, len(files) // 10)].tolist())
        train_files = [f for i, f in enumerate(files) if i not in held]
        test_files = [f for i, f in enumerate(files) if i in held]
    images, labels, expected = _read_images(train_files, image_module)
    mean, std = _channel_stats(images)
    if split == "test":
        images, labels, _ = _read_images(test_files, image_module, expected)
    _check_classes(labels, classes, split, str(root),
                   "Give every class images in the train split (without train/ and test/ "
                   "sub-folders, a seeded 10% of the images, at least one, is held out for "
                   "testing).")
    size = min(images.shape[2:])
    return ImageDataset("folder", images, labels, classes, mean, std, flip=True,
                        crop_padding=max(1, size // 8))


LOADERS: dict[str, Callable[..., ImageDataset]] = {"folder": _load_folder}
"""Data set name -> loader ``(root, split, download)``, for :data:`nasp.data.DATASETS`."""

SHAPES: dict[str, DataShape] = {}
"""None: a folder data set's shape is known only by reading its images."""
