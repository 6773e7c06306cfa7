"""Strategies own their options: the options dataclasses, the config that holds them, the file
layout, the generated command line and the registry (nasp.config.options, nasp.registry,
nasp.apps.arguments)."""

import ast
import dataclasses
import importlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from nasp.apps.cli import build_parser, main
from nasp.apps.compare import ComparePlan
from nasp.config import SearchConfig, load_config, preset, train_preset
from nasp.config.options import option
from nasp.errors import ConfigError
from nasp.registry import STRATEGIES, Registry
from nasp.strategies import (
    DARTS,
    NASP,
    ArchOptions,
    DARTS2Options,
    NASPOptions,
    RandomOptions,
    build_strategy,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "nasp"

# config.yaml as nasp 0.1 writes it for `nasp search --preset tiny --strategy darts2`: every
# strategy's options at the top level, those darts2 does not take at their defaults
OLD_DARTS2_FILE = """\
strategy: darts2
space: darts
primitives: darts-7
dataset: digits
data_dir: null
subset: 256
batch_size: 32
cutout: 0
layers: 3
channels: 4
epochs: 2
w_lr: 0.025
w_lr_min: 0.001
w_momentum: 0.9
w_weight_decay: 0.0003
grad_clip: 5.0
a_lr: 0.0003
a_betas:
- 0.5
- 0.999
a_weight_decay: 0.001
a_lr_schedule: constant
hessian_radius: 0.01
size_penalty: 0.0
arch_mode: sparse
init_noise: 0.0
arch_update: lazy
nasp_cell: projection
arch_grad: plain
warmup_epochs: 0
path_mix: 0.0
unselected_weights: decay
benchmark: null
benchmark_column: null
random_samples: null
seed: 3
device: auto
memory_format: auto
precision: auto
sync_bn: false
out: runs/s-darts2
checkpoint_every: 0
deterministic: false
"""


# --- the options each strategy takes -------------------------------------------------------------

def test_each_strategy_holds_its_own_options():
    expected = {"nasp": NASPOptions, "darts": ArchOptions, "darts2": DARTS2Options,
                "random": RandomOptions, "random-ws": RandomOptions}
    for name, cls in expected.items():
        assert STRATEGIES[name].Options is cls
        assert type(SearchConfig(strategy=name).options) is cls
    names = {cls: {f.name for f in fields(cls)} for cls in expected.values()}
    assert names[ArchOptions] == {"a_lr", "a_betas", "a_weight_decay", "a_lr_schedule",
                                  "warmup_epochs"}
    assert names[NASPOptions] - names[ArchOptions] == {
        "size_penalty", "arch_mode", "init_noise", "arch_update", "nasp_cell", "arch_grad",
        "path_mix"}
    assert names[DARTS2Options] - names[ArchOptions] == {"hessian_radius"}
    assert names[RandomOptions] == {"random_samples"}
    # the run's own fields hold none of them
    run = {f.name for f in fields(SearchConfig)} - {"options"}
    assert not run & set().union(*names.values())
    assert "unselected_weights" in run  # every strategy's weight step honours it


def test_keywords_route_to_the_options_and_reads_delegate():
    config = SearchConfig(strategy="nasp", size_penalty=0.1, a_lr=0.01, epochs=3)
    assert config.options.size_penalty == 0.1 and config.size_penalty == 0.1
    assert config.a_lr == config.options.a_lr == 0.01 and config.epochs == 3
    assert config.replace(size_penalty=0.2).options.size_penalty == 0.2
    assert config.options.size_penalty == 0.1  # replace makes a copy
    config.size_penalty = 0.3
    assert config.options.size_penalty == 0.3
    assert preset("tiny", size_penalty=0.4).options.size_penalty == 0.4
    # another strategy's option reads as its default (what config.yaml says)
    assert config.hessian_radius == 0.01 and config.random_samples is None
    with pytest.raises(AttributeError, match="hessian_radius.*darts2.*not of nasp"):
        config.hessian_radius = 0.5
    with pytest.raises(AttributeError):
        config.no_such_option  # noqa: B018
    # SearchConfig(options=...) takes the strategy's class only, and copies it
    options = NASPOptions(init_noise=0.1)
    config = SearchConfig(options=options)
    assert config.options == options and config.options is not options
    with pytest.raises(ConfigError, match="--strategy darts takes ArchOptions"):
        SearchConfig(strategy="darts", options=options)
    with pytest.raises(TypeError, match="bogus"):
        SearchConfig(bogus=1)


def test_a_new_strategy_keeps_the_options_it_shares():
    config = preset("faithful", a_lr=0.01, warmup_epochs=1, size_penalty=0.5)
    darts = config.replace(strategy="darts")
    assert type(darts.options) is ArchOptions
    assert (darts.a_lr, darts.warmup_epochs) == (0.01, 1)
    assert darts.size_penalty == 0.0 and darts.nasp_cell == "projection"  # dropped: defaults
    assert darts.replace(strategy="nasp").options == NASPOptions(a_lr=0.01, warmup_epochs=1)
    assert preset("faithful", strategy="random").options == RandomOptions()
    # options given with the new strategy must be its own
    with pytest.raises(ConfigError, match="size_penalty .*nasp, not of darts"):
        config.replace(strategy="darts", size_penalty=0.5)
    # a strategy handed another strategy's config takes the options it shares
    assert dataclasses.replace(config, out=None).options == config.options


def test_a_strategy_reads_its_options(tiny):
    space, net, _, _ = tiny
    config = SearchConfig(layers=3, channels=4, init_noise=0.1, epochs=3, warmup_epochs=1)
    strategy = NASP(space, net, config)
    assert strategy.options is strategy.config.options is config.options
    darts = build_strategy("darts", space, net, config)
    assert darts.config.strategy == "darts" and type(darts.options) is ArchOptions
    assert darts.options.warmup_epochs == 1
    assert isinstance(darts, DARTS)
    # random search has no architecture options: its Adam (never stepped) takes the defaults
    rand = build_strategy("random", space, net, SearchConfig(strategy="random", layers=3,
                                                             channels=4, epochs=3))
    assert rand.a_optim.param_groups[0]["lr"] == ArchOptions().a_lr


# --- checks --------------------------------------------------------------------------------------

OPTION_ERRORS = [
    ("nasp", {"arch_mode": "dense"}, "--arch-mode must be one of sparse, reference, got 'dense'"),
    ("nasp", {"arch_update": "eager"}, "--arch-update must be one of lazy, plain"),
    ("nasp", {"nasp_cell": "best"}, "--nasp-cell must be one of projection, softmax"),
    ("nasp", {"arch_grad": "mean"}, "--arch-grad must be one of plain, centered"),
    ("nasp", {"size_penalty": -1.0}, "--size-penalty must be a non-negative number, got -1.0"),
    ("nasp", {"init_noise": float("nan")}, "--init-noise must be a non-negative number"),
    ("nasp", {"path_mix": 1.5}, r"--path-mix must be a probability in \[0, 1\], got 1.5"),
    ("darts", {"a_lr": -0.1}, "--a-lr must be a non-negative number, got -0.1"),
    ("darts", {"a_weight_decay": "0.1"}, "--a-weight-decay must be a non-negative number"),
    ("darts", {"a_lr_schedule": "step"}, "--a-lr-schedule must be one of constant, cosine"),
    ("darts", {"a_betas": (0.5, 1.0)}, r"a_betas must be a list of two numbers in \[0, 1\)"),
    ("darts", {"warmup_epochs": 3, "epochs": 3},
     r"--warmup-epochs must be an integer from 0 to --epochs - 1 \(2\) so that some epochs "
     r"search the architecture, got 3"),
    ("nasp", {"warmup_epochs": 1.5}, "--warmup-epochs must be an integer"),
    ("darts2", {"hessian_radius": -0.01}, "--hessian-radius must be a non-negative number"),
    ("random", {"random_samples": 0}, "--random-samples must be a positive integer, got 0"),
    ("random-ws", {"random_samples": 2.0}, "--random-samples must be a positive integer"),
]


@pytest.mark.parametrize("strategy, values, message", OPTION_ERRORS,
                         ids=[f"{s}-{next(iter(v))}" for s, v, _ in OPTION_ERRORS])
def test_options_check_their_values(strategy, values, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(strategy=strategy, **values)
    # the check is the options class's own
    epochs = values.get("epochs", 12)
    options = STRATEGIES[strategy].Options(**{k: v for k, v in values.items() if k != "epochs"})
    with pytest.raises(ConfigError, match=message):
        options.validate(SearchConfig(epochs=epochs))


def test_options_normalise_betas():
    config = SearchConfig(strategy="darts", a_betas=[0.9, 0.99])
    assert config.options.a_betas == (0.9, 0.99) and isinstance(config.a_betas, tuple)


# --- config.yaml ---------------------------------------------------------------------------------

def test_old_flat_file_with_other_strategies_defaults_loads(tmp_path):
    """A config.yaml of nasp 0.1 lists every strategy's options; those of the other strategies
    hold their defaults and are dropped; the file written back holds the same values, without
    the other strategies' options."""
    path = tmp_path / "config.yaml"
    path.write_text(OLD_DARTS2_FILE)
    config = load_config(path)
    assert config.strategy == "darts2" and type(config.options) is DARTS2Options
    assert config.options == DARTS2Options()
    old = yaml.safe_load(OLD_DARTS2_FILE)
    new = yaml.safe_load(config.to_yaml())
    others = {"size_penalty", "arch_mode", "init_noise", "arch_update", "nasp_cell", "arch_grad",
              "path_mix", "random_samples"}  # nasp's and random search's options
    added = {"bptt", "bptt_rule", "max_params", "max_flops", "max_latency",
             "latency_table"}  # run options added since, at their defaults
    assert set(new) == (set(old) - others) | added
    assert {k: v for k, v in new.items() if k not in added} == {
        k: v for k, v in old.items() if k not in others}
    assert all(new[k] is None for k in ("max_params", "max_flops", "max_latency",
                                        "latency_table"))
    # every strategy's file of today loads back to the same config and text
    for name in STRATEGIES:
        config = preset("tiny", strategy=name, seed=3, **({"random_samples": 2}
                                                       if name.startswith("random") else {}))
        path.write_text(config.to_yaml())
        assert load_config(path) == config
        assert load_config(path).to_yaml() == config.to_yaml()
    # a hand-written file may give a default as another number type, or leave keys out
    path.write_text("strategy: random\nsize_penalty: 0\na_betas: [0.5, 0.999]\n")
    assert load_config(path).options == RandomOptions()


@pytest.mark.parametrize("text, fragments", [
    ("strategy: darts\nsize_penalty: 0.5\n",
     ("size_penalty (--size-penalty) is an option of strategy nasp, not of darts", "0.5")),
    ("strategy: random\na_lr: 0.1\n",
     ("a_lr (--a-lr) is an option of strategies darts, darts2, nasp, not of random",
      "default 0.0003", "got 0.1")),
    ("strategy: nasp\nhessian_radius: 0.1\n", ("hessian_radius", "darts2, not of nasp")),
    ("strategy: darts2\nrandom_samples: 4\n", ("random_samples", "random, random-ws")),
    ("strategy: random\nwarmup_epochs: false\n", ("warmup_epochs", "got False")),
])
def test_another_strategys_option_with_a_value_is_refused(tmp_path, text, fragments):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"config file {path}: ")
    for fragment in fragments:
        assert fragment in message


def test_cli_refuses_an_option_the_strategy_does_not_take(capsys, monkeypatch):
    started = []
    monkeypatch.setattr(importlib.import_module("nasp.engine.search"), "search",
                        lambda config, **kwargs: started.append(config))
    assert main(["search", "--preset", "tiny", "--strategy", "random", "--a-lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "a_lr (--a-lr) is an option of strategies darts, darts2, nasp, not of random" in err
    assert not started


# --- the command line ----------------------------------------------------------------------------

def _search_actions():
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices
               and "search" in a.choices)
    return sub.choices["search"]


def test_search_command_has_every_strategys_options(monkeypatch):
    """Each command-line option of each strategy is on `nasp search`, in the group of the
    options class that declares it, with its metavar, choices and help, and reaches the
    config."""
    parser = _search_actions()
    groups = {g.title: {a.dest for a in g._group_actions} for g in parser._action_groups}
    assert groups["architecture step options (darts, darts2, nasp)"] == {
        "a_lr", "a_lr_schedule", "warmup_epochs"}
    assert groups["NASP options (nasp)"] == {
        "size_penalty", "arch_mode", "init_noise", "arch_update", "nasp_cell", "arch_grad",
        "path_mix"}
    assert groups["random search options (random, random-ws)"] == {"random_samples"}
    actions = {a.dest: a for a in parser._actions}
    for strategy in STRATEGIES.values():
        for f in fields(strategy.Options):
            if not f.metadata["cli"]:
                assert f.name not in actions
                continue
            action = actions[f.name]
            assert action.option_strings == ["--" + f.name.replace("_", "-")]
            assert action.help == f.metadata["help"] and action.default is None
            assert action.metavar == f.metadata["metavar"]
            assert action.choices == f.metadata["choices"]
    assert actions["warmup_epochs"].type is int and actions["a_lr"].type is float
    # and what is given reaches the config
    started = []
    monkeypatch.setattr(importlib.import_module("nasp.engine.search"), "search",
                        lambda config, **kwargs: started.append(config))
    assert main(["search", "--preset", "tiny", "--a-lr", "0.01", "--warmup-epochs", "1",
                 "--size-penalty", "0.5", "--arch-mode", "reference", "--path-mix", "0.25",
                 "--a-lr-schedule", "cosine"]) == 0
    assert started[0].options == NASPOptions(
        a_lr=0.01, warmup_epochs=1, size_penalty=0.5, arch_mode="reference", path_mix=0.25,
        a_lr_schedule="cosine")
    assert main(["search", "--preset", "tiny", "--strategy", "random-ws",
                 "--random-samples", "3", "--unselected-weights", "frozen"]) == 0
    assert started[1].options == RandomOptions(random_samples=3)
    assert started[1].unselected_weights == "frozen"


def test_train_command_is_made_from_train_config(monkeypatch):
    trained = []
    monkeypatch.setattr(importlib.import_module("nasp.engine.train"), "train",
                        lambda genotype, config, **kwargs: trained.append(config))
    assert main(["train", "DARTS_V2", "--preset", "tiny", "--lr", "0.1", "--drop-path", "0.3",
                 "--label-smoothing", "0.1", "--deterministic", "--checkpoint-every", "5"]) == 0
    assert trained[0] == train_preset("tiny", lr=0.1, drop_path=0.3, label_smoothing=0.1,
                                      deterministic=True, checkpoint_every=5)


@dataclass
class _ToyOptions(ArchOptions):
    title: ClassVar[str] = "toy"
    temperature: float = option(10.0, metavar="TAU", help="toy: the initial temperature")

    def validate(self, run):
        super().validate(run)
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be positive, got {self.temperature!r}")


class _Toy(DARTS):
    name = "toy"
    Options = _ToyOptions


def test_a_new_strategy_is_one_class_and_one_registry_line(monkeypatch, tmp_path):
    """Registering a strategy is all it takes: its options are on the command line (their own
    group), in keyword construction and config files, checked by their class, and another
    strategy's file may hold them only at their defaults."""
    monkeypatch.setattr(STRATEGIES, "_classes", dict(STRATEGIES._classes))
    STRATEGIES.register(_Toy)
    parser = _search_actions()
    assert "toy options (toy)" in [g.title for g in parser._action_groups]
    assert "toy" in next(a for a in parser._actions if a.dest == "strategy").choices
    started = []
    monkeypatch.setattr(importlib.import_module("nasp.engine.search"), "search",
                        lambda config, **kwargs: started.append(config))
    assert main(["search", "--preset", "tiny", "--strategy", "toy", "--temperature", "2",
                 "--a-lr", "0.01"]) == 0
    assert started[0].options == _ToyOptions(temperature=2.0, a_lr=0.01)
    with pytest.raises(ConfigError, match="--temperature must be positive"):
        SearchConfig(strategy="toy", temperature=0.0)
    path = tmp_path / "config.yaml"
    path.write_text(started[0].to_yaml())
    assert load_config(path) == started[0]
    text = path.read_text()  # the run's keys, then the strategy's options: its own last
    assert "size_penalty" not in text and "random_samples" not in text
    assert text.endswith("warmup_epochs: 0\ntemperature: 2.0\n")
    # a NASP file: without the new key (the 0.1 layout); with it only at its default
    assert "temperature" not in SearchConfig().to_dict()
    path.write_text("strategy: nasp\ntemperature: 10.0\n")
    assert load_config(path) == SearchConfig()
    path.write_text("strategy: nasp\ntemperature: 2.0\n")
    with pytest.raises(ConfigError, match="temperature .* of strategy toy, not of nasp"):
        load_config(path)


def test_compare_gives_strategy_options_to_the_strategies_that_take_them(tmp_path):
    plan = ComparePlan(strategies=("nasp", "random"), seeds=(0,),
                       search=preset("tiny", space="nb201"), out=tmp_path, benchmark="t.csv",
                       strategy_options={"random_samples": 2, "size_penalty": None})
    assert plan.search_config("random", 0).options == RandomOptions(random_samples=2)
    assert plan.search_config("nasp", 0).options == NASPOptions()
    parser = build_parser()
    args = parser.parse_args(["compare", "--out", str(tmp_path), "--random-samples", "2"])
    assert args.strategy_options == ["random_samples"] and args.random_samples == 2


# --- the registry and the layers -----------------------------------------------------------------

def test_registry_lookup():
    things = Registry("thing")
    things.register(_Toy)
    things.register(NASP, name="other")
    assert list(things) == ["toy", "other"] and things["toy"] is _Toy and len(things) == 2
    assert things.lookup("other") is NASP and "toy" in things and "x" not in things
    with pytest.raises(ConfigError, match="unknown thing 'x'; choose one of toy, other"):
        things.lookup("x")
    with pytest.raises(ConfigError, match="unknown thing"):
        things.lookup(["unhashable"])
    with pytest.raises(ValueError, match="registered twice"):
        things.register(DARTS, name="toy")
    with pytest.raises(ConfigError, match="unknown strategy 'gdas'; choose one of darts, "
                                          "darts2, nasp, random, random-ws"):
        build_strategy("gdas", None, None, None)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == "nasp"}


def test_search_config_file_keys():
    added = {"bptt", "bptt_rule",  # run options added since (text corpora, budgets)
             "max_params", "max_flops", "max_latency", "latency_table"}
    assert SearchConfig.keys() == set(yaml.safe_load(OLD_DARTS2_FILE)) | added
