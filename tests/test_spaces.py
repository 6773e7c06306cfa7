"""Spaces as plugins: the registry, the SearchSpace protocol, genotype files that name their
space (and older ones that do not), and the config's checks asked of the space."""

import json

import pytest
import torch

from nasp import preset, search
from nasp.config import PRESETS, SearchConfig, describe_preset, train_preset
from nasp.engine.checkpoints import LAST, load_trained, model_info
from nasp.engine.train import train
from nasp.errors import ConfigError, GenotypeError
from nasp.spaces import (
    GENOTYPE_FILE,
    PRIMITIVE_SETS,
    SPACES,
    NB201Space,
    SearchSpace,
    build_space,
    builtin_genotypes,
    genotype_from_dict,
    load_genotype,
    resolve_genotype,
    space_of,
)

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = dict(progress=False, plots=False, log=lambda line: None)
NB201_BEST = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
              "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")


def a_genotype(name: str):
    """A random genotype of the space ``name``."""
    space = build_space(name)
    return space.genotype_of(space.random_selection(torch.Generator().manual_seed(3)))


# ------------------------------------------------------------------------ registry, protocol


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_fits_the_protocol(name):
    cls = SPACES[name]
    space = build_space(name)
    assert isinstance(space, SearchSpace)
    assert cls.name == name == cls.genotype_type.space
    assert space.primitive_set == cls.default_primitives in cls.primitive_sets
    assert set(cls.presets) <= set(PRESETS)
    assert {"layers", "channels"} == set(cls.evaluation_sizes)
    cls.check_sizes(**cls.evaluation_sizes)
    assert set(space.arch_shapes()) == set(space.cell_types) == set(space.primitives)
    for t, (edges, ops) in space.arch_shapes().items():
        assert len(space.edge_labels(t)) == edges and ops == len(space.primitives[t])
        assert len(space.budget_rules()[t].edge_node) == edges
    assert set(cls.budget_metrics) <= {"params", "flops", "latency"}
    assert bool(cls.budget_note) == (set(cls.budget_metrics) != {"params", "flops", "latency"})
    if "params" in cls.budget_metrics:
        table = space.cost_table("params", (1, 8, 8), 10, layers=3, channels=4)
        assert {t: tuple(a.shape) for t, a in table.tables.items()} == space.arch_shapes()
    genotype = a_genotype(name)
    assert space_of(genotype).name == name
    assert set(cls.picture_cells(genotype)) <= set(space.cell_types)
    for cell in cls.picture_cells(genotype):
        assert cls.cell_dot(genotype, cell).startswith(f'digraph "{cell}"')
    for t, (labels, kept) in cls.genotype_edges(genotype).items():
        assert len(labels) == space.arch_shapes()[t][0] and set(kept) <= set(range(len(labels)))


def test_op_set_and_built_in_names_are_unique_over_the_spaces():
    sets = [n for cls in SPACES.values() for n in cls.primitive_sets]
    assert len(sets) == len(set(sets)) and set(sets) == set(PRIMITIVE_SETS)
    names = [n.lower() for cls in SPACES.values() for n in cls.builtin_genotypes]
    assert len(names) == len(set(names)) and len(builtin_genotypes()) == len(names)


def test_a_space_refuses_the_op_set_of_another():
    with pytest.raises(ValueError, match="--primitives must be one of them, got 'nb201'"):
        build_space("darts", "nb201")
    with pytest.raises(ValueError, match="fixed op set"):
        build_space("nb201", "darts-7")
    with pytest.raises(ValueError, match="unknown search space 'bogus'"):
        build_space("bogus")


# ------------------------------------------------------------------------------ genotype files


@pytest.mark.parametrize("name", sorted(SPACES))
def test_genotype_files_name_their_space_and_old_ones_still_load(name, tmp_path):
    genotype = a_genotype(name)
    genotype.save(tmp_path / GENOTYPE_FILE)
    data = json.loads((tmp_path / GENOTYPE_FILE).read_text())
    assert data["space"] == name == genotype.to_dict()["space"]
    assert load_genotype(tmp_path / GENOTYPE_FILE) == genotype
    assert resolve_genotype(tmp_path) == genotype
    assert genotype_from_dict(data) == genotype
    # as files were written before they named their space: recognised by their layout
    del data["space"]
    (tmp_path / GENOTYPE_FILE).write_text(json.dumps(data) + "\n")
    assert load_genotype(tmp_path / GENOTYPE_FILE) == genotype
    assert resolve_genotype(tmp_path / GENOTYPE_FILE) == genotype
    assert genotype_from_dict(data) == genotype
    assert type(genotype).load(tmp_path / GENOTYPE_FILE) == genotype


@pytest.mark.parametrize("space", ["rnn", 1, None, ["darts"]])
def test_a_genotype_of_an_unknown_space_is_a_clear_error(space, tmp_path):
    data = {**a_genotype("darts").to_dict(), "space": space}
    with pytest.raises(GenotypeError, match="does not know"):
        genotype_from_dict(data)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match="g.json.*does not know"):
        load_genotype(path)


def test_a_genotype_read_as_another_space_is_refused():
    darts = a_genotype("darts").to_dict()
    with pytest.raises(GenotypeError, match="not a DARTS cell"):
        type(a_genotype("darts")).from_dict({**darts, "space": "nb201"})
    with pytest.raises(GenotypeError):
        genotype_from_dict({**darts, "space": "nb201"})  # read as NAS-Bench-201: refused


def test_search_and_train_runs_write_the_space_and_old_runs_still_load(tmp_path):
    out = tmp_path / "search"
    result = search(preset("tiny", epochs=1, subset=64, out=str(out)), **QUIET)
    assert json.loads((out / GENOTYPE_FILE).read_text())["space"] == "darts"
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["genotype"]["space"] == "darts"
    config = train_preset("tiny", epochs=1, subset=32, channels=4, device="cpu",
                          out=str(tmp_path / "train"))
    trained = train(out, config, **QUIET)
    assert trained.genotype == result.genotype
    # the train run as the previous version wrote it: no "space" in its files
    run = tmp_path / "train"
    checkpoint = torch.load(run / LAST, weights_only=True)
    assert checkpoint["genotype"].pop("space") == "darts"
    torch.save(checkpoint, run / LAST)
    data = json.loads((run / GENOTYPE_FILE).read_text())
    del data["space"]
    (run / GENOTYPE_FILE).write_text(json.dumps(data) + "\n")
    loaded = load_trained(run / LAST)
    assert loaded.genotype == result.genotype
    assert all(torch.equal(a, b) for a, b in zip(loaded.net.state_dict().values(),
                                                 trained.net.state_dict().values()))
    assert resolve_genotype(run) == result.genotype


def test_info_sizes_a_cell_as_its_space_paper():
    info = model_info(NB201_BEST)
    assert (info["config"].layers, info["config"].channels) == (5, 16)  # the benchmark's N, C
    info = model_info("DARTS_V2")
    assert (info["config"].layers, info["config"].channels) == (20, 36)


# ------------------------------------------------------------ the config asks the space


class FakeSpace(NB201Space):
    """A space known only to these tests: its own op set, sizes and preset values."""

    name = "fake"
    primitive_sets = {"fake-ops": NB201Space.primitive_sets["nb201"]}
    default_primitives = "fake-ops"
    presets = {"tiny": {"layers": 2, "channels": 3}}
    has_benchmark = False

    def __init__(self, primitives: str = "fake-ops"):
        if primitives not in self.primitive_sets:
            raise ValueError(f"--space fake has only fake-ops, got {primitives!r}")
        super().__init__("nb201")

    @classmethod
    def check_sizes(cls, layers: int, channels: int) -> None:
        if layers != 2:
            raise ValueError(f"--layers must be 2 on the fake space, got {layers}")

    @classmethod
    def describe_sizes(cls, layers: int, channels: int) -> str:
        return f"{layers} fake cells, C {channels}"


@pytest.fixture
def fake_space(monkeypatch):
    monkeypatch.setitem(SPACES, "fake", FakeSpace)


@pytest.mark.usefixtures("fake_space")
def test_the_search_config_applies_the_space_own_rules():
    assert SearchConfig(space="fake", layers=2).primitives == "fake-ops"  # its default set
    with pytest.raises(ConfigError, match="--layers must be 2 on the fake space"):
        SearchConfig(space="fake", layers=3)
    with pytest.raises(ConfigError, match="has only fake-ops, got 'darts'"):
        SearchConfig(space="fake", layers=2, primitives="darts")
    with pytest.raises(ConfigError, match="which --space fake has none of: it needs --space "
                                          "nb201"):
        SearchConfig(space="fake", layers=2, benchmark="table.csv")
    config = preset("tiny", space="fake")  # the space's own values of the preset
    assert (config.layers, config.channels, config.epochs) == (2, 3, 2)
    assert describe_preset("tiny", "fake").startswith("digits (256 images), 2 fake cells, C 3")


def test_each_space_checks_its_own_sizes():
    SearchConfig(space="nb201", layers=1, channels=3)  # N 1 cell per stage, odd C: fine there
    with pytest.raises(ConfigError, match="--layers must be at least 3"):
        SearchConfig(layers=2)
    with pytest.raises(ConfigError, match="--channels must be an even number"):
        SearchConfig(channels=3)
