"""Bad input at the command line: every file a user hands us, damaged in the ways files get damaged.

Each case runs the command in-process and checks what the user sees: exit code 2, one line on
stderr (``nasp COMMAND: error: ...``) naming the file or option, no traceback, and that a run
directory already there (with ``--overwrite``, the strongest case) and the data folder are left
exactly as they were, byte for byte, with nothing added.
"""

from __future__ import annotations

import gzip
import importlib
import json
import struct
import urllib.error
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_datasets import idx_bytes, make_cifar, make_folder, write_idx, write_pickle, write_png

from nasp.apps.cli import main
from nasp.config import TrainConfig, load_config
from nasp.data import download as download_module
from nasp.errors import ConfigError
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES

SEARCH = ["search", "--preset", "tiny", "--epochs", "1", "--no-progress", "--no-plots"]
TRAIN = ["--preset", "tiny", "--epochs", "1", "--no-progress", "--no-plots"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test here may download: a missing data set must fail as if offline."""
    def fetch(url, out):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(download_module, "_fetch", fetch)


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``roots``."""
    return {str(p): (p.read_bytes() if p.is_file() else None)
            for root in roots for p in sorted(root.rglob("*"))}


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A run directory holding an earlier run's files."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("strategy: nasp\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "genotype.json").write_text(BUILTIN_GENOTYPES["NASP"].to_json() + "\n")
    for name in ("checkpoint.pt", "last.pt", "best.pt"):
        (run / name).write_bytes(b"earlier checkpoint " + name.encode())
    return run


def fails_cleanly(capsys, argv: list[str], *fragments: str, keep: tuple[Path, ...] = ()) -> str:
    """Run ``nasp argv``; check the one-paragraph exit-2 error holding ``fragments`` and that
    the folders ``keep`` are untouched. Returns the message."""
    before = snapshot(*keep)
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nasp {argv[0]}: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert snapshot(*keep) == before
    return err


def search_fails(capsys, old_run: Path, dataset: str, data_dir: Path, *fragments: str) -> str:
    return fails_cleanly(capsys, [*SEARCH, "--dataset", dataset, "--data-dir", str(data_dir),
                                  "--out", str(old_run), "--overwrite"],
                         *fragments, keep=(old_run, data_dir))


def train_fails(capsys, old_run: Path, genotype: str, extra: list[str], *fragments: str,
                keep: tuple[Path, ...] = ()) -> str:
    return fails_cleanly(capsys, ["train", genotype, *TRAIN, *extra, "--out", str(old_run),
                                  "--overwrite"], *fragments, keep=(old_run, *keep))


# --- CIFAR-10 / CIFAR-100 python pickles ------------------------------------------------------

CIFAR10 = "cifar-10-batches-py"


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _batch(path: Path, data: object, labels: object) -> None:
    write_pickle(path, {b"data": data, b"labels": labels, b"batch_label": b"x"})


# (what is done to the folder, the file the message must name)
CIFAR_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda f: _truncated(f / "data_batch_2"), "data_batch_2"),
    "garbage": (lambda f: (f / "data_batch_2").write_bytes(bytes(range(256)) * 3), "data_batch_2"),
    "empty-file": (lambda f: (f / "data_batch_2").write_bytes(b""), "data_batch_2"),
    "missing": (lambda f: (f / "data_batch_2").unlink(), "data_batch_2"),
    "a-list": (lambda f: write_pickle(f / "data_batch_2", [1, 2, 3]), "data_batch_2"),
    "huge-length": (lambda f: (f / "data_batch_2").write_bytes(
        b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b"abc"), "data_batch_2"),
    "empty-batch": (lambda f: _batch(f / "data_batch_2", np.zeros((0, 3072), np.uint8), []),
                    "data_batch_2"),
    "image-shape": (lambda f: _batch(f / "data_batch_2", np.zeros((20, 32, 32, 3), np.uint8),
                                     [0] * 20), "data_batch_2"),
    "labels-text": (lambda f: _batch(f / "data_batch_2", np.zeros((20, 3072), np.uint8),
                                     "0" * 20), "data_batch_2"),
    "meta-names": (lambda f: write_pickle(f / "batches.meta", {
        b"label_names": [b"\xff\xfe"] * 10, b"num_cases_per_batch": 20}), "batches.meta"),
    "meta-truncated": (lambda f: _truncated(f / "batches.meta"), "batches.meta"),
}


@pytest.mark.parametrize("damage", CIFAR_DAMAGE.values(), ids=CIFAR_DAMAGE.keys())
def test_search_on_damaged_cifar10(capsys, tmp_path, old_run, damage):
    make_cifar(tmp_path / "data" / CIFAR10, n=20)
    change, name = damage
    change(tmp_path / "data" / CIFAR10)
    search_fails(capsys, old_run, "cifar10", tmp_path / "data",
                 str(tmp_path / "data" / CIFAR10 / name), "--data-dir")


def test_search_on_cifar10_of_one_class(capsys, tmp_path, old_run):
    folder = tmp_path / "data" / CIFAR10
    make_cifar(folder, n=20)
    for i in range(1, 6):
        _batch(folder / f"data_batch_{i}", np.zeros((20, 3072), np.uint8), [3] * 20)
    search_fails(capsys, old_run, "cifar10", tmp_path / "data", "one class", str(folder))


def test_search_on_missing_cifar10_offline(capsys, tmp_path, old_run):
    data = tmp_path / "data"
    data.mkdir()
    search_fails(capsys, old_run, "cifar10", data, str(data / CIFAR10), "by hand")


def test_train_on_damaged_cifar100_test_split(capsys, tmp_path, old_run):
    folder = tmp_path / "data" / "cifar-100-python"
    make_cifar(folder, "cifar100", n=20)
    (folder / "test").write_bytes(gzip.compress(b"not a pickle"))
    train_fails(capsys, old_run, "DARTS_V2",
                ["--dataset", "cifar100", "--data-dir", str(tmp_path / "data")],
                str(folder / "test"), keep=(tmp_path / "data",))


# --- MNIST / Fashion-MNIST idx files ----------------------------------------------------------

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


def _header(dims: tuple[int, ...]) -> bytes:
    return bytes((0, 0, 8, len(dims))) + struct.pack(f">{len(dims)}I", *dims)


def _flip_middle(raw: bytes) -> bytes:
    middle = len(raw) // 2
    return raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 8]) + raw[middle + 8:]


# (damage of the raw idx bytes of the images file, gz or not, fragment of the message)
IDX_DAMAGE: dict[str, tuple[Callable[[bytes], bytes], bool, str]] = {
    "truncated": (lambda raw: raw[:-100], False, "truncated"),
    "truncated-gz": (lambda raw: gzip.compress(raw)[:-30], True, "cannot be read"),
    "corrupt-gz": (lambda raw: _flip_middle(gzip.compress(raw)), True, "cannot be read"),
    "not-gz": (lambda raw: raw, True, "cannot be read"),
    "absurd-header": (lambda raw: _header((2**32 - 1,) * 3) + raw[16:], False, "header"),
    "absurd-header-gz": (lambda raw: gzip.compress(_header((2**32 - 1,) * 3) + raw[16:]), True,
                         "header"),
    "empty": (lambda raw: _header((0, 28, 28)), False, "0 images"),
    "zero-width": (lambda raw: _header((12, 28, 0)), False, "28x28"),
    "wrong-size": (lambda raw: _header((12, 14, 56)) + raw[16:], False, "28x28"),
    "labels-magic": (lambda raw: idx_bytes(np.zeros(12)), False, "magic number"),
    "empty-file": (lambda raw: b"", False, "magic number"),
}


@pytest.mark.parametrize("damage", IDX_DAMAGE.values(), ids=IDX_DAMAGE.keys())
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_search_on_damaged_idx_files(capsys, tmp_path, old_run, dataset, damage):
    change, gz, fragment = damage
    folder = tmp_path / "data" / dataset
    write_idx(folder, "train", n=12)
    raw = (folder / IMAGES).read_bytes()
    (folder / IMAGES).unlink()
    bad = folder / (f"{IMAGES}.gz" if gz else IMAGES)
    bad.write_bytes(change(raw))
    search_fails(capsys, old_run, dataset, tmp_path / "data", str(bad), fragment)


@pytest.mark.parametrize(("labels", "fragment"), [
    (idx_bytes(np.full(12, 10)), "reach 10"),
    (idx_bytes(np.zeros(11)), "12 images"),
    (idx_bytes(np.zeros(12)), "one class"),
])
def test_search_on_idx_labels_that_do_not_fit(capsys, tmp_path, old_run, labels, fragment):
    folder = tmp_path / "data" / "mnist"
    write_idx(folder, "train", n=12)
    (folder / LABELS).write_bytes(labels)
    search_fails(capsys, old_run, "mnist", tmp_path / "data", fragment, str(folder))


def test_train_on_missing_mnist_test_files_offline(capsys, tmp_path, old_run):
    folder = tmp_path / "data" / "mnist"
    write_idx(folder, "train", n=12)
    train_fails(capsys, old_run, "DARTS_V2",
                ["--dataset", "mnist", "--data-dir", str(tmp_path / "data")],
                "t10k-images-idx3-ubyte", str(folder), keep=(tmp_path / "data",))


# --- image folders ----------------------------------------------------------------------------


def _odd_image(root: Path, **kwargs) -> Path:
    path = root / "b" / "odd.png"
    write_png(path, 0, **kwargs)
    return path


def _written(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def _truncated_png(root: Path) -> Path:
    path = root / "b" / "cut.png"
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pytest.importorskip("PIL.Image").fromarray(noisy).save(path)
    path.write_bytes(path.read_bytes()[:200])
    return path


# (change to a folder of classes a, b with 6x5 RGB images -> the path the message must name,
#  a fragment of the message)
FOLDER_DAMAGE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "mixed-size": (lambda r: _odd_image(r, size=(7, 5)), "same size"),
    "mixed-channels": (lambda r: _odd_image(r, mode="L"), "1 channel"),
    "unreadable": (lambda r: _written(r / "a" / "zz.png", b"\x89PNG not really"), "cannot be read"),
    "text-as-jpeg": (lambda r: _written(r / "a" / "zz.jpg", b"hello"), "cannot be read"),
    "truncated": (_truncated_png, "cannot be read"),
    "empty-class": (lambda r: _written(r / "c" / "notes.txt", b"x").parent, "no image files"),
}


@pytest.mark.parametrize("damage", FOLDER_DAMAGE.values(), ids=FOLDER_DAMAGE.keys())
def test_train_on_damaged_image_folder(capsys, tmp_path, old_run, damage):
    """nasp train reads both splits, so the damage is found wherever the hold-out puts it."""
    pytest.importorskip("PIL")
    root = tmp_path / "images"
    make_folder(root, {"a": 3, "b": 3})
    change, fragment = damage
    bad = change(root)
    train_fails(capsys, old_run, "DARTS_V2", ["--dataset", "folder", "--data-dir", str(root)],
                str(bad), fragment, keep=(root,))


def test_search_on_folder_of_one_class(capsys, tmp_path, old_run):
    pytest.importorskip("PIL")
    root = tmp_path / "images"
    make_folder(root, {"only": 4})
    search_fails(capsys, old_run, "folder", root, str(root), "1 class sub-folder")


def test_search_on_empty_or_missing_folder(capsys, tmp_path, old_run):
    pytest.importorskip("PIL")
    root = tmp_path / "images"
    root.mkdir()
    search_fails(capsys, old_run, "folder", root, str(root), "0 class sub-folder")
    fails_cleanly(capsys, [*SEARCH, "--dataset", "folder", "--data-dir", str(root / "nope"),
                           "--out", str(old_run), "--overwrite"], str(root / "nope"),
                  keep=(old_run,))


def test_search_on_folder_whose_train_split_has_one_class(capsys, tmp_path, old_run):
    pytest.importorskip("PIL")
    root = tmp_path / "images"
    make_folder(root, {"a": 1, "b": 1})  # one image held out for test, one left to train on
    search_fails(capsys, old_run, "folder", root, str(root), "one class")


def test_train_on_folder_with_an_empty_test_class(capsys, tmp_path, old_run):
    pytest.importorskip("PIL")
    root = tmp_path / "images"
    make_folder(root / "train", {"a": 2, "b": 2})
    make_folder(root / "test", {"a": 1})
    (root / "test" / "b").mkdir()
    train_fails(capsys, old_run, "DARTS_V2", ["--dataset", "folder", "--data-dir", str(root)],
                str(root / "test" / "b"), "no image files", keep=(root,))


def test_train_on_folder_with_odd_test_image(capsys, tmp_path, old_run):
    pytest.importorskip("PIL")
    root = tmp_path / "images"
    make_folder(root / "train", {"a": 2, "b": 2})
    make_folder(root / "val", {"a": 1, "b": 1}, size=(5, 5))
    train_fails(capsys, old_run, "DARTS_V2", ["--dataset", "folder", "--data-dir", str(root)],
                str(root / "val" / "a" / "00.png"), "same size", keep=(root,))


# --- genotype files given to nasp train -------------------------------------------------------


def _genotype_with(**changes: object) -> str:
    data = BUILTIN_GENOTYPES["DARTS_V2"].to_dict()
    data.update(changes)
    return json.dumps(data)


def _pair_at(k: int, pair: object) -> str:
    data = BUILTIN_GENOTYPES["DARTS_V2"].to_dict()
    data["normal"][k] = pair
    return json.dumps(data)


# (file content, fragment of the message)
GENOTYPE_FILES: dict[str, tuple[bytes | str, str]] = {
    "invalid-json": ('{"normal": [["sep_conv_3x3", 0],', "invalid genotype JSON"),
    "empty": ("", "invalid genotype JSON"),
    "not-utf8": (b"\xff\xfe{}", "cannot read"),
    "a-list": ("[1, 2, 3]", "must be an object"),
    "unknown-op": (_pair_at(3, ["sep_conv_9x9", 1]), "unknown op 'sep_conv_9x9'"),
    "impossible-index": (_pair_at(2, ["sep_conv_3x3", 3]), "node 3 can read states 0..2"),
    "negative-index": (_pair_at(0, ["sep_conv_3x3", -1]), "out of range"),
    "bool-index": (_pair_at(0, ["sep_conv_3x3", True]), "must be an int"),
    "float-index": (_pair_at(0, ["sep_conv_3x3", 1.0]), "must be an int"),
    "huge-index": (_pair_at(0, ["sep_conv_3x3", 10**400]), "out of range"),
    "nan-index": (_pair_at(0, ["sep_conv_3x3", float("nan")]), "must be an int"),
    "flat-pairs": (_genotype_with(normal=["sep_conv_3x3", 0] * 8), "pair"),
    "too-deep": (_genotype_with(normal=[[["sep_conv_3x3", 0]]] * 8), "pair"),
    "triple": (_pair_at(0, ["sep_conv_3x3", 0, 1]), "pair"),
    "odd-count": (_genotype_with(normal=[["skip_connect", 0]] * 7), "even"),
    "concat-out-of-range": (_genotype_with(reduce_concat=[2, 3, 9]), "reduce_concat[2]"),
    "missing-key": ('{"normal": []}', "missing"),
    "extra-key": (_genotype_with(steps=4), "unexpected"),
}


@pytest.mark.parametrize("content", GENOTYPE_FILES.values(), ids=GENOTYPE_FILES.keys())
def test_train_with_bad_genotype_file(capsys, tmp_path, old_run, content):
    text, fragment = content
    path = tmp_path / "cell.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    train_fails(capsys, old_run, str(path), [], str(path), fragment, keep=(path.parent,))


def test_train_with_missing_genotype_file_or_bad_run_directory(capsys, tmp_path, old_run):
    missing = tmp_path / "absent.json"
    train_fails(capsys, old_run, str(missing), [], str(missing))
    (tmp_path / "empty-run").mkdir()
    train_fails(capsys, old_run, str(tmp_path / "empty-run"), [], str(tmp_path / "empty-run"),
                "genotype.json")


def test_train_with_bad_genotype_text(capsys, old_run):
    train_fails(capsys, old_run, "Genotype(normal=[('sep_conv_3x3', 0)", [], "cannot parse")
    train_fails(capsys, old_run, "Genotype(normal=__import__('os'))", [], "not allowed")


# --- config files given to nasp search --config -----------------------------------------------

# (file content, fragments of the message besides the file name)
CONFIG_FILES: dict[str, tuple[bytes | str, tuple[str, ...]]] = {
    "unknown-key": ("strategy: nasp\nbogus: 1\n", ("unknown keys bogus",)),
    "non-string-key": ("1: 2\n", ("unknown keys 1",)),
    "a-list": ("- strategy\n- nasp\n", ("mapping", "list")),
    "a-scalar": ("42\n", ("mapping",)),
    "empty": ("", ("mapping",)),
    "invalid-yaml": ("strategy: nasp\nlayers: [3\n", ("not valid YAML", "line")),
    "tab-indent": ("strategy:\n\tnasp\n", ("not valid YAML",)),
    "not-utf8": (b"strategy: \xff\xfe\n", ("UTF-8",)),
    "string-number": ("batch_size: '64'\n", ("--batch-size", "'64'")),
    "float-for-int": ("layers: 4.0\n", ("--layers",)),
    "bool-for-int": ("epochs: true\n", ("--epochs",)),
    "out-of-range": ("channels: 0\n", ("--channels",)),
    "odd-channels": ("channels: 5\n", ("--channels", "even")),
    "negative-lr": ("w_lr: -0.1\n", ("--w-lr",)),
    "nan": ("w_lr: .nan\n", ("--w-lr", "nan")),
    "inf": ("a_lr: .inf\n", ("--a-lr",)),
    "unknown-strategy": ("strategy: bogus\n", ("--strategy", "bogus", "darts")),
    "unknown-space": ("space: bogus\n", ("--space", "bogus")),
    "unknown-primitives": ("primitives: bogus\n", ("--primitives", "darts-7")),
    "unknown-dataset": ("dataset: bogus\n", ("--dataset", "cifar10")),
    "unknown-arch-mode": ("arch_mode: dense\n", ("--arch-mode", "sparse")),
    "unknown-precision": ("precision: fp8\n", ("--precision",)),
    "betas-scalar": ("a_betas: 0.5\n", ("a_betas",)),
    "betas-strings": ("a_betas: ['0.5', '0.9']\n", ("a_betas",)),
    "betas-three": ("a_betas: [0.5, 0.9, 0.1]\n", ("a_betas",)),
    "seed-text": ("seed: abc\n", ("--seed",)),
    "seed-negative": ("seed: -1\n", ("--seed",)),
    "device-list": ("device: [1]\n", ("--device",)),
    "data-dir-number": ("data_dir: 5\n", ("--data-dir",)),
    "cutout-float": ("cutout: 2.5\n", ("--cutout",)),
    "subset-bool": ("subset: true\n", ("--subset",)),
    "subset-one": ("subset: 1\n", ("--subset",)),
}


@pytest.fixture
def no_search(monkeypatch):
    """A config that passes validation fails the test at once instead of running a search."""
    def search(*args, **kwargs):
        raise AssertionError("the config was accepted and a search started")

    monkeypatch.setattr(importlib.import_module("nasp.engine.search"), "search", search)


@pytest.mark.parametrize("content", CONFIG_FILES.values(), ids=CONFIG_FILES.keys())
@pytest.mark.usefixtures("no_search")
def test_search_with_bad_config_file(capsys, tmp_path, old_run, content):
    text, fragments = content
    path = tmp_path / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    fails_cleanly(capsys, ["search", "--config", str(path), "--out", str(old_run), "--overwrite",
                           "--no-progress", "--no-plots"], str(path), *fragments,
                  keep=(old_run, path.parent))


@pytest.mark.usefixtures("no_search")
def test_search_with_missing_config_or_a_folder(capsys, tmp_path, old_run):
    for path in (tmp_path / "absent.yaml", tmp_path):
        fails_cleanly(capsys, ["search", "--config", str(path), "--out", str(old_run),
                               "--no-progress"], str(path), "cannot read", keep=(old_run,))


def test_config_numbers_in_exponent_form_are_numbers(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("w_lr: 1e-3\na_lr: 3E-4\nsize_penalty: 2e0\n")
    config = load_config(path)
    assert (config.w_lr, config.a_lr, config.size_penalty) == (1e-3, 3e-4, 2.0)


def test_train_config_from_a_bad_mapping_names_its_source():
    """The path of a resumed run: the configuration saved in its checkpoint is checked too."""
    data = {**TrainConfig().to_dict(), "lr": float("nan")}
    with pytest.raises(ConfigError, match="the saved configuration: --lr"):
        TrainConfig.from_dict(data, "the saved configuration")
    with pytest.raises(ConfigError, match="must be a mapping.*got a str"):
        TrainConfig.from_dict("lr: 1", "the saved configuration")



def test_python_dash_m_with_a_damaged_data_set(tmp_path, old_run):
    """The real process: exit status 2 and one line on stderr, no traceback."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "data" / CIFAR10
    make_cifar(folder, n=4)
    _truncated(folder / "data_batch_4")
    before = snapshot(old_run, folder)
    result = subprocess.run(
        [sys.executable, "-m", "nasp", *SEARCH, "--dataset", "cifar10", "--data-dir",
         str(tmp_path / "data"), "--out", str(old_run), "--overwrite"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(folder / "data_batch_4") in result.stderr
    assert snapshot(old_run, folder) == before
