"""Fuzzing: random bytes, random structures and random shapes fed to the data loaders, the
genotype readers and the config loader raise only the documented errors.

- :func:`nasp.data.load_dataset` raises :class:`DatasetError` only;
- :meth:`Genotype.load`, :meth:`Genotype.from_json`, :func:`resolve_genotype` and the
  :class:`Genotype` constructor raise :class:`GenotypeError` only;
- :func:`nasp.config.load_config` and ``from_dict`` raise :class:`ConfigError` only.

Every error message must be one non-empty line (the command line prints it as it is). When an
input is accepted, what comes back must be well formed. Example counts are modest so that the file
runs in well under a minute on a busy machine.
"""

from __future__ import annotations

import gzip
import json
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_datasets import idx_bytes, make_cifar, write_idx

from nasp.config import SearchConfig, TrainConfig, load_config
from nasp.core.ops import OPS
from nasp.data import ImageDataset, load_dataset
from nasp.errors import ConfigError, DatasetError, GenotypeError
from nasp.spaces import resolve_genotype
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES, Genotype


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` examples, no deadline (the machine is shared)."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder the examples of one test overwrite in turn."""
    return tmp_path_factory.mktemp("fuzz")


def one_line(err: Exception) -> None:
    message = str(err)
    assert message.strip() and "\n" not in message, message


def load_or_refuse(name: str, root: Path, split: str = "train") -> ImageDataset | None:
    """``load_dataset`` with downloads off: a well-formed data set or a one-line DatasetError."""
    try:
        ds = load_dataset(name, root, split, download=False)
    except DatasetError as err:
        one_line(err)
        return None
    assert len(ds) > 0  # an empty split is refused
    return ds


@st.composite
def mutated(draw: st.DrawFn, good: bytes) -> bytes:
    """``good`` with a few random bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


# --- CIFAR pickles ----------------------------------------------------------------------------

CIFAR = "cifar-10-batches-py"


@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of each file of a valid tiny CIFAR-10 folder (2 images per batch)."""
    folder = tmp_path_factory.mktemp("cifar-source") / CIFAR
    make_cifar(folder, n=2)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def write_cifar(root: Path, files: dict[str, bytes], **replaced: bytes) -> None:
    (root / CIFAR).mkdir(parents=True, exist_ok=True)
    for name, payload in {**files, **replaced}.items():
        (root / CIFAR / name).write_bytes(payload)


@fuzz(100)
@given(data=st.data(), name=st.sampled_from(["data_batch_1", "batches.meta"]),
       random=st.booleans())
def test_cifar_random_or_mutated_bytes(scratch, cifar_files, data, name, random):
    payload = (data.draw(st.binary(max_size=600)) if random
               else data.draw(mutated(cifar_files[name])))
    write_cifar(scratch, cifar_files, **{name: payload})
    load_or_refuse("cifar10", scratch)


arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.int64, np.float32, np.bool_, np.uint16]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    hnp.arrays(np.uint8, st.tuples(st.integers(0, 3), st.sampled_from([3072, 3071, 1024]))),
    hnp.arrays(np.uint8, st.tuples(st.integers(0, 3), st.just(32), st.just(32), st.just(3))),
)
values = st.one_of(
    arrays, st.none(), st.booleans(), st.integers(), st.text(max_size=4), st.binary(max_size=4),
    st.lists(st.one_of(st.integers(-2, 12), st.integers(), st.booleans(), st.none()),
             max_size=4),
)


@fuzz(100)
@given(data=values, labels=values, n=st.integers(0, 3), protocol=st.integers(2, 5))
def test_cifar_random_batch_structures(scratch, cifar_files, data, labels, n, protocol):
    """A batch of random arrays and labels of random shapes and types, pickled as CIFAR is."""
    batch = {b"data": data, b"labels": labels}
    write_cifar(scratch, cifar_files, data_batch_1=pickle.dumps(batch, protocol=protocol))
    ds = load_or_refuse("cifar10", scratch)
    if ds is not None:
        assert ds.images.shape[1:] == (3, 32, 32)


@fuzz(60)
@given(names=st.one_of(values, st.lists(st.one_of(st.binary(max_size=4), st.text(max_size=3),
                                                  st.integers()), min_size=9, max_size=11)),
       per_batch=values)
def test_cifar_random_meta(scratch, cifar_files, names, per_batch):
    meta = {b"label_names": names, b"num_cases_per_batch": per_batch}
    write_cifar(scratch, cifar_files, **{"batches.meta": pickle.dumps(meta, protocol=2)})
    ds = load_or_refuse("cifar10", scratch, "test")
    if ds is not None:
        assert ds.num_classes == 10 and all(isinstance(c, str) for c in ds.classes)


# --- MNIST idx files --------------------------------------------------------------------------

IMAGES = "train-images-idx3-ubyte"


@pytest.fixture(scope="module")
def idx_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("idx-source")
    write_idx(folder, "train", n=4)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def write_mnist(root: Path, files: dict[str, bytes], images: bytes, gz: bool) -> None:
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        path.unlink()
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    (folder / IMAGES).unlink()
    (folder / (f"{IMAGES}.gz" if gz else IMAGES)).write_bytes(images)


@fuzz(100)
@given(data=st.data(), gz=st.booleans(), random=st.booleans())
def test_idx_random_or_mutated_bytes(scratch, idx_files, data, gz, random):
    good = idx_files[IMAGES]
    if random:
        payload = data.draw(st.binary(max_size=300))
    else:
        payload = data.draw(mutated(gzip.compress(good) if gz else good))
    write_mnist(scratch, idx_files, payload, gz)
    load_or_refuse("mnist", scratch)


@fuzz(150)
@given(ndim=st.integers(0, 4), type_code=st.sampled_from([0x08, 0x08, 0x09, 0x0D]),
       dims=st.lists(st.one_of(st.integers(0, 30), st.integers(0, 2**32 - 1)), max_size=4),
       body=st.integers(0, 4 * 28 * 28 + 2), gz=st.booleans())
def test_idx_random_headers_and_shapes(scratch, idx_files, ndim, type_code, dims, body, gz):
    """Headers of any magic, rank and dimensions (absurd ones too) over bodies of any length."""
    header = bytes((0, 0, type_code, ndim)) + struct.pack(f">{len(dims)}I", *dims)
    payload = header + bytes(body)
    write_mnist(scratch, idx_files, gzip.compress(payload) if gz else payload, gz)
    ds = load_or_refuse("mnist", scratch)
    if ds is not None:
        assert ds.images.shape[1:] == (1, 28, 28)


@fuzz(50)
@given(n=st.integers(1, 5), labels=st.lists(st.integers(0, 255), min_size=1, max_size=6))
def test_idx_random_label_files(scratch, idx_files, n, labels):
    images = np.zeros((n, 28, 28), np.uint8)
    files = {**idx_files, "train-labels-idx1-ubyte": idx_bytes(np.array(labels))}
    write_mnist(scratch, files, idx_bytes(images), gz=False)
    ds = load_or_refuse("mnist", scratch)
    if ds is not None:
        assert ds.labels.tolist() == labels and len(set(labels)) > 1


# --- image folders ----------------------------------------------------------------------------

# Pillow image modes -> file types that can store them
MODES = {"1": (".png", ".bmp", ".tif"), "L": (".png", ".bmp", ".tif"), "LA": (".png", ".tif"),
         "P": (".png", ".bmp", ".gif"), "RGB": (".png", ".bmp", ".tif"),
         "RGBA": (".png", ".tif"), "CMYK": (".tif", ".jpg"), "I;16": (".png", ".tif"),
         "I": (".tif",), "F": (".tif",)}


@st.composite
def image_folders(draw: st.DrawFn) -> dict[str, list[tuple[str, tuple[int, int], str]]]:
    """Classes -> images as (mode, size, suffix): mostly one mode and size, some others."""
    modes = st.sampled_from(sorted(MODES))
    sizes = st.tuples(st.integers(1, 4), st.integers(1, 4))
    shared = (draw(modes), draw(sizes))
    classes = draw(st.lists(st.sampled_from("abc"), max_size=3, unique=True))
    layout = {}
    for c in classes:
        layout[c] = []
        for _ in range(draw(st.integers(0, 3))):
            mode, size = draw(st.one_of(st.just(shared), st.tuples(modes, sizes)))
            layout[c].append((mode, size, draw(st.sampled_from(MODES[mode]))))
    return layout


def fresh(root: Path) -> Path:
    import shutil

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return root


@fuzz(40)
@given(layout=image_folders(), split=st.sampled_from(["train", "test"]))
def test_folder_random_modes_sizes_and_class_counts(scratch, layout, split):
    image_module = pytest.importorskip("PIL.Image")
    root = fresh(scratch / "images")
    for label, images in layout.items():
        (root / label).mkdir()
        for i, (mode, size, suffix) in enumerate(images):
            image_module.new(mode, size).save(root / label / f"{i}{suffix}")
    ds = load_or_refuse("folder", root, split)
    if ds is not None:
        assert ds.in_channels in (1, 3) and ds.num_classes == len(layout) >= 2


@fuzz(60)
@given(payload=st.binary(max_size=200), suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp"]))
def test_folder_random_bytes_as_an_image(scratch, payload, suffix):
    image_module = pytest.importorskip("PIL.Image")
    root = fresh(scratch / "images")
    for label in "ab":
        (root / label).mkdir()
        for i in range(3):
            image_module.new("RGB", (3, 2)).save(root / label / f"{i}.png")
    (root / "b" / f"z{suffix}").write_bytes(payload)
    for split in ("train", "test"):
        load_or_refuse("folder", root, split)


# --- genotypes --------------------------------------------------------------------------------

HUGE = 10**5000  # more digits than Python turns into text by default


@fuzz(100)
@given(payload=st.one_of(st.binary(max_size=300),
                         st.binary(max_size=40).map(lambda b: BUILTIN_GENOTYPES["NASP"]
                                                    .to_json().encode()[:200] + b)))
def test_genotype_file_random_bytes(scratch, payload):
    path = scratch / "genotype.json"
    path.write_bytes(payload)
    for read in (Genotype.load, resolve_genotype):
        try:
            assert isinstance(read(path), Genotype)
        except GenotypeError as err:
            one_line(err)


indices = st.one_of(st.integers(-3, 8), st.integers(), st.just(HUGE), st.just(-HUGE),
                    st.booleans(), st.floats(), st.none(), st.text(max_size=3))
ops = st.one_of(st.sampled_from(sorted(OPS)), st.text(max_size=6), st.none(), st.integers())
pairs = st.one_of(st.tuples(ops, indices), st.lists(st.one_of(ops, indices), max_size=3), indices)
cell = st.lists(pairs, max_size=10)
concat = st.one_of(st.lists(indices, max_size=6), st.just(range(2, HUGE)), indices)


@fuzz(200)
@given(normal=cell, normal_concat=concat, reduce=cell, reduce_concat=concat)
def test_genotype_random_fields(normal, normal_concat, reduce, reduce_concat):
    """Any values, huge ints, bools, NaN and wrong nesting included, in the constructor and
    in JSON: a valid genotype or a one-line GenotypeError."""
    fields = dict(normal=normal, normal_concat=normal_concat, reduce=reduce,
                  reduce_concat=reduce_concat)
    try:
        genotype = Genotype(**fields)
    except GenotypeError as err:
        one_line(err)
    else:
        assert Genotype.from_json(genotype.to_json()) == genotype
    if any(isinstance(v, range) for v in fields.values()):
        return
    try:
        text = json.dumps(fields)
    except ValueError:  # an int too long for JSON text
        return
    try:
        assert isinstance(Genotype.from_json(text), Genotype)
    except GenotypeError as err:
        one_line(err)


@fuzz(100)
@given(spec=st.text(max_size=80))
def test_resolve_random_text(spec):
    try:
        assert isinstance(resolve_genotype(spec), Genotype)
    except GenotypeError as err:
        one_line(err)


# --- config files -----------------------------------------------------------------------------

KEYS = sorted(SearchConfig().to_dict())
yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.just(HUGE // 10**4000),
              st.floats(), st.text(max_size=8), st.sampled_from(["nasp", "darts", "digits",
                                                                "auto", "cpu", "sparse"])),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=2),
    max_leaves=6)


def load_or_refuse_config(path: Path) -> SearchConfig | None:
    try:
        config = load_config(path)
    except ConfigError as err:
        one_line(err)
        assert str(path) in str(err)
        return None
    # an accepted config is valid: it survives its own round trip through YAML
    again = path.with_suffix(".again.yaml")
    again.write_text(config.to_yaml())
    assert load_config(again) == config
    return config


@fuzz(150)
@given(data=st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=5),
                                      st.integers()), yaml_values, max_size=4))
def test_config_random_values(scratch, data):
    path = scratch / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_or_refuse_config(path)
    if config is not None:
        for key, value in data.items():
            assert getattr(config, key) == (tuple(value) if key == "a_betas" else value)
            if isinstance(value, float):
                assert math.isfinite(value)


@fuzz(150)
@given(data=st.data(), random=st.booleans())
def test_config_random_or_mutated_bytes(scratch, data, random):
    good = SearchConfig().to_yaml().encode()
    payload = data.draw(st.binary(max_size=300)) if random else data.draw(mutated(good))
    path = scratch / "config.yaml"
    path.write_bytes(payload)
    load_or_refuse_config(path)


@fuzz(100)
@given(data=st.one_of(yaml_values, st.dictionaries(st.sampled_from(sorted(TrainConfig()
                                                                          .to_dict())),
                                                   yaml_values, max_size=4)))
def test_train_config_from_random_mappings(data):
    try:
        config = TrainConfig.from_dict(data, "the saved configuration")
    except ConfigError as err:
        one_line(err)
        assert str(err).startswith("the saved configuration")
    else:
        assert TrainConfig.from_dict(config.to_dict()) == config
