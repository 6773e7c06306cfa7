"""What a search prints and what its metrics name (nasp.engine.search_console): one line per
epoch within 120 columns for every strategy and space, the cell only when it changed, the summary
at the end, the progress bar of the whole run, --quiet; the measures each strategy reports (DARTS:
the supernet, and its child with BatchNorm statistics recomputed), computed here independently,
and that measuring them leaves the search unchanged."""

import copy
import importlib
import io
import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nasp import preset
from nasp.apps.cli import main
from nasp.core.measure import flop_count, parameter_count
from nasp.core.mixed import CellPlan
from nasp.data import load_dataset, search_split
from nasp.engine.checkpoints import model_info
from nasp.engine.search import (
    BATCHNORM_IMAGES,
    CHECKPOINT,
    batchnorm_recomputed,
    resume_search,
    search,
)
from nasp.engine.search_console import WIDTH, count_text
from nasp.engine.session import format_duration
from nasp.runtime.runs import RunDir
from nasp.spaces import build_space, genotype_from_dict
from nasp.spaces.nb201.genotype import NB201_PRIMITIVES, NB201Genotype

pytestmark = pytest.mark.usefixtures("one_thread")

# the modules (nasp.engine's face re-exports a function named search)
search_module = importlib.import_module("nasp.engine.search")
session_module = importlib.import_module("nasp.engine.session")

STRATEGIES = ["nasp", "darts", "darts2", "random", "random-ws"]
REPORTS_SUPERNET = {"darts", "darts2"}


def run(tmp_path, name, **changes):
    """A tiny search (1 step of 32 images per epoch) and the lines it printed."""
    lines = []
    config = preset("tiny", subset=64, out=str(tmp_path / name), device="cpu", **changes)
    result = search(config, progress=False, plots=False, log=lines.append)
    return config, result, lines


def epoch_lines(lines):
    return [line for line in lines if line.startswith("epoch ")]


def selection(space, record):
    return space.selection_of(genotype_from_dict(record["genotype"]))


def changed(space, before, after):
    a, b = selection(space, before), selection(space, after)
    return sum(x != y for t in b for x, y in zip(a[t], b[t]))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A NAS-Bench-201 table holding every cell (made-up accuracies)."""
    path = tmp_path_factory.mktemp("bench") / "all.csv"
    rows = ["arch,cifar10"] + [f"{NB201Genotype(ops)},{n / 15625 * 100:.4f}" for n, ops in
                               enumerate(itertools.product(NB201_PRIMITIVES, repeat=6))]
    path.write_text("\n".join(rows) + "\n")
    return path


def check_epoch_lines(config, result, lines):
    """Every epoch's line: within WIDTH columns, its numbers named as in the record; the cell
    on the next line exactly when it changed (and in the first epoch)."""
    space = build_space(config.space, config.primitives)
    history = result.history
    shown = epoch_lines(lines)
    assert len(shown) == len(history) == config.epochs
    for i, (line, r) in enumerate(zip(shown, history)):
        assert len(line) <= WIDTH, line
        assert line.startswith(f"epoch {i + 1}/{config.epochs}  ")
        if r["train_loss"] is not None:
            assert (f"train loss {r['train_loss']:.3f} acc {100 * r['train_acc']:.1f}%"
                    in line)
        measure = r["val_measure"]
        if not result.strategy.trains:
            assert measure is None and " val " not in line
        else:
            assert measure == ("supernet" if config.strategy in REPORTS_SUPERNET else "child")
            assert f"  {measure} val {100 * r[f'{measure}_val_acc']:.1f}%  " in line
        if measure == "supernet":
            assert f"  child(BN) {100 * r['child_bn_val_acc']:.1f}%  " in line
        else:
            assert "child(BN)" not in line and "child_bn_val_acc" not in r
        if config.benchmark is not None:
            assert f"  bench {100 * r['benchmark_acc']:.2f}%  " in line
        if i:
            assert r["cell_changed_edges"] == changed(space, history[i - 1], r)
        assert f"  changed {r['cell_changed_edges']}  " in line
        assert f"  {format_duration(r['seconds'])}" in line
        assert ("  left " in line) == (i + 1 < config.epochs)
        after = lines[lines.index(line) + 1]
        cell = f"  cell: {genotype_from_dict(r['genotype']).compact()}"
        if i == 0 or r["cell_changed_edges"]:
            assert after == cell
        else:
            assert not after.startswith("  cell:")


@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_prints_one_named_line_per_epoch(tmp_path, strategy, space):
    config, result, lines = run(tmp_path, "run", strategy=strategy, space=space, epochs=2)
    check_epoch_lines(config, result, lines)


@pytest.mark.parametrize("strategy", ["nasp", "darts", "random"])
def test_the_benchmark_accuracy_is_on_the_line_and_in_the_summary(tmp_path, table, strategy):
    config, result, lines = run(tmp_path, "run", strategy=strategy, space="nb201", epochs=3,
                                benchmark=str(table), benchmark_column="cifar10")
    check_epoch_lines(config, result, lines)
    history = result.history
    values = [(r["benchmark_acc"], -r["epoch"]) for r in history]
    best, epoch = max(values)
    last = history[-1]
    row = next(line for line in lines if line.startswith("  benchmark cifar10"))
    assert row.split() == ["benchmark", "cifar10", f"{100 * last['benchmark_acc']:.2f}%",
                           "(percentile", f"{last['benchmark_percentile']:.1f})",
                           f"{100 * best:.2f}%", "(epoch", f"{-epoch})"]


def test_the_cell_is_printed_only_in_epochs_where_it_changed(tmp_path):
    """One candidate trained for three epochs: the cell never changes after the first."""
    config, result, lines = run(tmp_path, "run", strategy="random", epochs=3, random_samples=1)
    check_epoch_lines(config, result, lines)
    assert [r["cell_changed_edges"] for r in result.history][1:] == [0, 0]
    assert sum(line.startswith("  cell:") for line in lines) == 2  # the first epoch, the summary


@pytest.mark.parametrize("strategy, space", [("nasp", "darts"), ("darts", "nb201")])
def test_summary_table(tmp_path, strategy, space):
    config, result, lines = run(tmp_path, "run", strategy=strategy, space=space, epochs=3)
    history = result.history
    start = lines.index(next(line for line in lines if line.startswith("search done: ")))
    summary = lines[start:]
    assert summary[0] == (f"search done: 3 epochs in "
                          f"{format_duration(sum(r['seconds'] for r in history))}")
    measure = history[-1]["val_measure"]
    keys = [(f"{measure} val acc", f"{measure}_val_acc")]
    if measure == "supernet":
        keys.append(("child(BN) val acc", "child_bn_val_acc"))
    assert summary[1].split() == ["final", "best"]
    for (label, key), row in zip(keys, summary[2:]):
        best, epoch = max((r[key], -r["epoch"]) for r in history)
        assert row.split() == [*label.split(), f"{100 * history[-1][key]:.1f}%",
                               f"{100 * best:.1f}%", "(epoch", f"{-epoch})"]
    assert summary[2 + len(keys)] == f"  cell: {result.genotype.compact()}"
    # the found cell's evaluation network at its space's paper's sizes, counted two ways: by
    # the space and nasp.core.measure, and as `nasp info` counts it
    space_ = build_space(config.space, config.primitives)
    net = space_.build_evaluation_network(result.genotype, 1, 10,
                                          **space_.evaluation_sizes)
    parameters, flops = parameter_count(net), flop_count(net, (1, 8, 8))
    info = model_info(str(result.run_dir / "genotype.json"), dataset="digits")
    assert (parameters, flops) == (info["parameters"], info["flops"])
    assert (result.evaluation["parameters"], result.evaluation["flops"]) == (parameters, flops)
    assert summary[3 + len(keys)] == (
        f"  evaluation network ({space_.describe_sizes(**space_.evaluation_sizes)}, 1x8x8 "
        f"images, 10 classes): {count_text(parameters)} parameters, {count_text(flops)} FLOPs")
    files = " ".join(summary[4 + len(keys):])
    assert f"files in {result.run_dir}:" in files
    for name in ("arch.pt", "checkpoint.pt", "config.yaml", "genotype.json", "metrics.jsonl"):
        assert name in files
    assert summary[-1].startswith(f"  next: nasp train {result.run_dir}")


def normalised(half):
    mean = torch.tensor(half.mean).view(1, -1, 1, 1)
    std = torch.tensor(half.std).view(1, -1, 1, 1)
    return (half.images.float() / 255 - mean) / std


def loss_and_accuracy(net, x, y, plans):
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(x[i:i + 1], plans) for i in range(len(x))])
    correct = sum(int(row.argmax()) == int(label) for row, label in zip(logits, y))
    return F.cross_entropy(logits, y).item(), correct / len(y)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_darts_reports_its_supernet_and_the_child_with_batchnorm_recomputed(tmp_path, space):
    """DARTS's val accuracy is the softmax-mixed supernet's on the validation half (as DARTS's
    valid_acc); the child's is measured after its BatchNorm statistics are recomputed on the
    first training images. Both recomputed here image by image."""
    config, result, _ = run(tmp_path, "run", strategy="darts", space=space, epochs=1)
    last = result.history[-1]
    assert last["val_measure"] == "supernet"
    net = copy.deepcopy(result.strategy.net)
    train_half, val_half = search_split(load_dataset(config.dataset), config.subset,
                                        config.seed)
    x, y = normalised(val_half), val_half.labels
    arch = torch.load(result.run_dir / "arch.pt")
    supernet = {t: CellPlan("dense", torch.softmax(a, dim=-1)) for t, a in arch.items()}
    loss, accuracy = loss_and_accuracy(net, x, y, supernet)
    assert last["supernet_val_acc"] == pytest.approx(accuracy, abs=1e-9)
    assert last["supernet_val_loss"] == pytest.approx(loss, rel=1e-5)

    space_ = build_space(config.space, config.primitives)
    child = {t: CellPlan("discrete", selection=s)
             for t, s in space_.selection_of(result.genotype).items()}
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # the plain mean over the batches
    images = normalised(train_half)[:BATCHNORM_IMAGES]
    net.train()
    with torch.no_grad():
        for i in range(0, len(images), config.batch_size):
            net(images[i:i + config.batch_size], child)
    loss, accuracy = loss_and_accuracy(net, x, y, child)
    assert last["child_bn_val_acc"] == pytest.approx(accuracy, abs=1e-9)
    assert last["child_bn_val_loss"] == pytest.approx(loss, rel=1e-5)


def test_measuring_the_supernet_leaves_the_search_unchanged(tmp_path, monkeypatch):
    """The supernet and BatchNorm-recomputed evaluations of DARTS change no weight, buffer,
    architecture parameter or random draw: the search without them ends bit for bit alike."""
    config, measured, _ = run(tmp_path, "measured", strategy="darts", epochs=2)
    monkeypatch.setattr(search_module._SearchSession, "_evaluate_supernet", lambda self: {})
    _, plain, _ = run(tmp_path, "plain", strategy="darts", epochs=2)
    assert "supernet_val_acc" in measured.history[-1]
    assert "supernet_val_acc" not in plain.history[-1]
    for name in ("arch.pt", CHECKPOINT):
        a = torch.load(measured.run_dir / name, weights_only=False)
        b = torch.load(plain.run_dir / name, weights_only=False)
        if name == CHECKPOINT:
            a, b = a["strategy"]["net"], b["strategy"]["net"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for r, s in zip(measured.history, plain.history):
        for key in ("train_loss", "arch_loss", "child_val_loss", "child_val_acc"):
            assert r[key] == s[key], key


def test_batchnorm_recomputed_restores_everything(tiny):
    space, net, train, val = tiny
    plans = {t: CellPlan("discrete", selection=s)
             for t, s in space.selection_of(space.derive({
                 t: torch.zeros(shape) for t, shape in space.arch_shapes().items()})).items()}
    net.train()
    net(train[0], plans)  # running statistics of some history
    before = {k: v.clone() for k, v in net.named_buffers()}
    momenta = [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    rng = torch.get_rng_state()
    with batchnorm_recomputed(net, lambda x: net(x, plans), [val]):
        assert not net.training
        inside = dict(net.named_buffers())
        assert any(not torch.equal(before[k], inside[k]) for k in before)
        assert all(m.momentum is None for m in net.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.named_buffers())
    assert momenta == [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert torch.equal(rng, torch.get_rng_state())


class RecordedBar(tqdm):
    """tqdm writing into a string, remembering every bar made."""

    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, file=io.StringIO(), **kwargs)
        RecordedBar.made.append(self)


def test_the_progress_bar_counts_the_whole_run(tmp_path, monkeypatch):
    """One bar for the run: ``epochs x steps`` steps, and a resumed run's starts at its
    position."""
    monkeypatch.setattr(session_module, "tqdm", RecordedBar)
    RecordedBar.made = []
    config = preset("tiny", subset=32, batch_size=8, epochs=2, device="cpu",
                    out=str(tmp_path / "run"), checkpoint_every=1)
    search(config, progress=True, plots=False, log=lambda line: None)
    (bar,) = RecordedBar.made
    assert (bar.total, bar.initial, bar.n) == (4, 0, 4)  # 2 epochs of 2 steps
    assert bar.desc.startswith("epoch 2/2")

    # stopped after the checkpoint at step 1 of epoch 2 (step 3 of 4), then resumed
    RecordedBar.made = []
    save = RunDir.save_torch

    def save_then_stop(self, file, obj):
        path = save(self, file, obj)
        if file == CHECKPOINT and (obj["epoch"], obj["step"]) == (1, 1):
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(RunDir, "save_torch", save_then_stop)
    stopped = config.replace(out=str(tmp_path / "stopped"))
    with pytest.raises(KeyboardInterrupt):
        search(stopped, progress=True, plots=False, log=lambda line: None)
    assert RecordedBar.made[0].disable  # closed on the way out
    monkeypatch.setattr(RunDir, "save_torch", save)
    RecordedBar.made = []
    resume_search(stopped.out, progress=True, plots=False, log=lambda line: None)
    (bar,) = RecordedBar.made
    assert (bar.total, bar.initial, bar.n) == (4, 3, 4)

    RecordedBar.made = []
    one = config.replace(epochs=1, checkpoint_every=0)
    search(one.replace(out=str(tmp_path / "off")), progress=False, plots=False,
           log=lambda line: None)
    search(one.replace(out=str(tmp_path / "quiet")), progress=True, plots=False,
           log=lambda line: None, quiet=True)
    assert RecordedBar.made == []


def test_quiet_prints_only_the_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--preset", "tiny", "--subset", "64", "--device", "cpu", "--no-plots",
                 "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out.splitlines()
    assert printed[0].startswith("search done: 2 epochs")
    assert not any(line.startswith(("epoch", "searching", "each epoch")) for line in printed)
    assert "step" not in captured.err  # no progress bar
    assert any(line.startswith("  child val acc") for line in printed)
    assert any(line.startswith(f"  files in {out}") for line in printed)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2


def test_train_quiet_prints_only_the_result(tmp_path, capsys):
    out = tmp_path / "train"
    assert main(["train", "DARTS_V2", "--preset", "tiny", "--subset", "64", "--channels", "4",
                 "--epochs", "2", "--device", "cpu", "--out", str(out), "--no-plots",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "test accuracy" in printed and str(out) in printed
    assert not any(line.startswith(("epoch", "training", "on ")) for line in printed.splitlines())
    assert "step" not in captured.err  # no progress bar
