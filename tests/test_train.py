"""Training from scratch: the loop, checkpoints and resume, presets, and the train/test/info CLI."""

import importlib
import json

import pytest
import torch
import torch.nn.functional as F

from nasp.apps.cli import main
from nasp.config import TRAIN_PRESETS, TrainConfig, train_preset
from nasp.data import load_dataset, subset_of
from nasp.engine.checkpoints import BEST, LAST, data_shape, load_trained, model_info
from nasp.engine.train import (
    evaluate_checkpoint,
    resume,
    task_of,
    train,
    validation_split,
)
from nasp.engine.train_console import epoch_line
from nasp.errors import CheckpointError, ConfigError, DatasetError
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES
from nasp.tasks.classification import ClassificationTask

# the module, not the function nasp.engine exports under the same name
train_module = importlib.import_module("nasp.engine.train")

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = dict(progress=False, plots=False, log=lambda line: None)


def tiny(tmp_path, name="run", **changes) -> TrainConfig:
    return train_preset("tiny", device="cpu", out=str(tmp_path / name), **changes)


def test_paper_preset_is_the_darts_protocol():
    c = train_preset("paper")
    assert (c.dataset, c.layers, c.channels, c.epochs, c.batch_size) == ("cifar10", 20, 36, 600, 96)
    assert (c.lr, c.lr_min, c.lr_schedule, c.momentum, c.weight_decay, c.grad_clip) == (
        0.025, 0.0, "cosine", 0.9, 3e-4, 5.0)
    assert (c.cutout, c.drop_path, c.auxiliary_weight, c.network) == (16, 0.2, 0.4, "cifar")
    i = train_preset("imagenet")
    assert (i.network, i.layers, i.channels, i.label_smoothing, i.lr_schedule) == (
        "imagenet", 14, 48, 0.1, "exponential")
    assert set(TRAIN_PRESETS) >= {"quick", "paper", "imagenet"}


@pytest.mark.parametrize("change, option", [
    (dict(drop_path=1.0), "--drop-path"), (dict(channels=7), "--channels"),
    (dict(network="vgg"), "--network"), (dict(layers=2), "--layers"),
    (dict(auxiliary_weight=-1), "--auxiliary-weight"), (dict(lr_gamma=0), "--lr-gamma"),
])
def test_invalid_options_name_the_option(change, option):
    with pytest.raises(ConfigError, match=option):
        TrainConfig(**change)


def test_objective_adds_the_weighted_auxiliary_loss():
    g = torch.Generator().manual_seed(0)
    logits, aux = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    y = torch.randint(0, 4, (6,), generator=g)
    config = TrainConfig(auxiliary_weight=0.4, label_smoothing=0.1)
    total, main_loss, main_logits = task_of(config).objective((logits, aux), y)
    expected = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert torch.allclose(main_loss, expected) and main_logits is logits
    assert torch.allclose(total, expected + 0.4 * F.cross_entropy(aux, y, label_smoothing=0.1))
    # eval-style output: no auxiliary term
    total, main_loss, _ = task_of(config).objective(logits, y)
    assert torch.equal(total, main_loss)


def test_run_directory_and_checkpoints(tmp_path):
    result = train("DARTS_V2", tiny(tmp_path, subset=64, channels=4), **QUIET)
    run = result.run_dir
    for name in ("config.yaml", "genotype.json", "metrics.jsonl", LAST, BEST):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["drop_path"] == 0.0 and records[1]["drop_path"] == pytest.approx(0.05)
    c = tiny(tmp_path)  # cosine from lr to lr_min over 2 epochs: lr, then the midpoint
    assert [r["lr"] for r in records] == pytest.approx([c.lr, (c.lr + c.lr_min) / 2])
    trained = load_trained(run / LAST)
    assert trained.epoch == 2 and trained.genotype == BUILTIN_GENOTYPES["DARTS_V2"]
    assert not trained.net.training
    # best.pt: the epoch of the best validation accuracy (then the lowest loss, the earliest)
    best = max(records, key=lambda r: (r["val_acc"], -r["val_loss"]))
    assert load_trained(run / BEST).epoch == best["epoch"]
    # nasp test on last.pt reproduces the last epoch's test metrics
    tested = evaluate_checkpoint(run / LAST, device="cpu")
    assert tested["top1"] == pytest.approx(records[-1]["test_acc"])
    assert tested["loss"] == pytest.approx(records[-1]["test_loss"], rel=1e-5)
    # and a plain loop over the test split, normalised by hand, gives the same figures
    test_set = load_dataset("digits", split="test")
    mean = torch.tensor(test_set.mean).view(1, -1, 1, 1)
    std = torch.tensor(test_set.std).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = trained.net((test_set.images.float() / 255 - mean) / std)
    labels = test_set.labels
    ranks = [(row > row[y]).sum().item() for row, y in zip(logits, labels)]  # logits above y's
    assert tested["top1"] == pytest.approx(sum(r == 0 for r in ranks) / len(labels))
    assert tested["top5"] == pytest.approx(sum(r < 5 for r in ranks) / len(labels))
    assert tested["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert tested["top5"] > tested["top1"]  # the two counts differ on this run


def test_resume_equals_an_uninterrupted_run(tmp_path):
    config = dict(subset=96, channels=4, epochs=3, cutout=3, drop_path=0.3, auxiliary_weight=0.4)
    straight = train("DARTS_V2", tiny(tmp_path, "straight", **config), **QUIET)

    def interrupt_after_epoch_1(line):
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("DARTS_V2", tiny(tmp_path, "resumed", **config), progress=False, plots=False,
              log=interrupt_after_epoch_1)
    torch.manual_seed(123)  # whatever happened to the global random state in between
    resumed = resume(tmp_path / "resumed", **QUIET)
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name

    def metrics(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    assert metrics(straight.run_dir) == metrics(resumed.run_dir)
    assert len(metrics(resumed.run_dir)) == 3


def test_resume_refuses_changed_options_and_missing_checkpoints(tmp_path):
    train("DARTS_V2", tiny(tmp_path, subset=32, channels=4, epochs=1), **QUIET)
    with pytest.raises(ConfigError, match="--epochs 5"):
        resume(tmp_path / "run", epochs=5, **QUIET)
    with pytest.raises(ConfigError, match="genotype"):
        resume(tmp_path / "run", genotype="DARTS_V1", **QUIET)
    with pytest.raises(CheckpointError, match="no last.pt"):
        resume(tmp_path / "elsewhere", **QUIET)


def test_existing_run_is_refused(tmp_path):
    train("DARTS_V2", tiny(tmp_path, subset=32, channels=4, epochs=1), **QUIET)
    assert main(["train", "DARTS_V2", "--preset", "tiny", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2


def test_quick_preset_learns_digits(tmp_path):
    # 3 of the quick preset's 10 epochs: well above the 10% of chance (measured: 95.8%)
    result = train("DARTS_V2", train_preset("quick", device="cpu", epochs=3,
                                           out=str(tmp_path / "q")), **QUIET)
    assert result.history[-1]["test_acc"] >= 0.6


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_trained(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_trained(tmp_path / "junk.pt")
    torch.save({"strategy": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="search checkpoint"):
        load_trained(tmp_path / "checkpoint.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not written by nasp train"):
        load_trained(tmp_path / "other.pt")


def test_data_shapes_without_reading_data():
    assert data_shape().input_shape == (3, 32, 32)
    assert data_shape(network="imagenet").input_shape == (3, 224, 224)
    assert data_shape("digits", image_size=16, num_classes=3) == (1, (16, 16), 3)
    ds = load_dataset("digits")
    assert data_shape("digits") == (ds.in_channels, ds.image_size, ds.num_classes)


def test_model_info_of_a_genotype_and_of_a_checkpoint(tmp_path):
    info = model_info("DARTS_V2")
    assert info["parameters"] == 3_349_342 and (info["config"].layers, info["config"].channels
                                                ) == (20, 36)
    # the 528M multiply-adds (2 FLOPs each) later papers report for DARTS_V2 on CIFAR-10
    # (e.g. Fair DARTS, DARTS-), counted with thop from convolutions and linear layers
    assert round(info["flops"] / 2e6) == 528
    train("DARTS_V2", tiny(tmp_path, subset=32, channels=4, epochs=1), **QUIET)
    small = model_info(tmp_path / "run" / BEST)
    assert small["shape"].input_shape == (1, 8, 8) and small["config"].channels == 4
    assert small["parameters"] == model_info("DARTS_V2", layers=3, channels=4,
                                             dataset="digits")["parameters"]


def test_cli_train_test_info_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "DARTS_V2", "--preset", "tiny", "--subset", "64", "--channels", "4",
            "--epochs", "1", "--device", "cpu", "--out", str(out), "--no-progress",
            "--no-plots"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "test accuracy" in printed and str(out) in printed
    assert main(["test", str(out / BEST), "--device", "cpu"]) == 0
    assert "top-1" in capsys.readouterr().out
    assert main(["info", "DARTS_V2"]) == 0
    assert "3.35M parameters" in capsys.readouterr().out
    assert main(["info", str(out / LAST), "--image-size", "16"]) == 0
    assert "1x16x16 input" in capsys.readouterr().out
    # --resume of a finished run trains nothing more
    assert main(["train", "--resume", "--out", str(out), "--no-progress", "--no-plots"]) == 0


@pytest.mark.parametrize("args, message", [
    (["train", "NOT_A_CELL", "--preset", "tiny"], "cannot resolve genotype"),
    (["train", "--preset", "tiny"], "needs the GENOTYPE"),
    (["train", "--resume", "--preset", "tiny"], "--resume"),
    (["test", "nowhere.pt"], "does not exist"),
    (["info", "NOT_A_CELL"], "cannot resolve genotype"),
])
def test_cli_user_errors_are_one_paragraph(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_tensorboard_logging(tmp_path):
    pytest.importorskip("tensorboard")
    train("DARTS_V2", tiny(tmp_path, subset=32, channels=4, epochs=1), tensorboard=True,
          **QUIET)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_a_searched_cell_is_trained_tested_exported_and_drawn(tmp_path, capsys):
    search_dir, train_dir = tmp_path / "search", tmp_path / "train"
    assert main(["search", "--preset", "tiny", "--epochs", "1", "--subset", "64", "--device",
                 "cpu", "--out", str(search_dir), "--no-progress"]) == 0
    assert main(["train", str(search_dir), "--preset", "tiny", "--subset", "64", "--channels",
                 "4", "--epochs", "1", "--device", "cpu", "--out", str(train_dir),
                 "--no-progress", "--no-plots"]) == 0
    searched = (search_dir / "genotype.json").read_text()
    assert (train_dir / "genotype.json").read_text() == searched
    assert main(["test", str(train_dir / BEST), "--device", "cpu"]) == 0
    assert main(["export", str(train_dir / BEST), "--format", "torchscript"]) == 0
    assert (train_dir / "model.ts").is_file()
    capsys.readouterr()
    pytest.importorskip("matplotlib")
    assert main(["plot", str(search_dir), "--no-dot"]) == 0
    drawn = capsys.readouterr().out
    for name in ("cell_normal.png", "curves.png", "genotype_evolution.png", "arch_weights.png"):
        assert name in drawn


def test_imagenet_preset_on_an_image_folder(tmp_path):
    image = pytest.importorskip("PIL.Image", reason="folder data sets need Pillow")
    g = torch.Generator().manual_seed(0)
    for split, count in (("train", 6), ("val", 2)):
        for label in ("cat", "dog"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
                image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    config = train_preset("imagenet", data_dir=str(tmp_path / "images"), layers=3, channels=8,
                          epochs=2, batch_size=4, device="cpu", out=str(tmp_path / "run"))
    result = train("DARTS_V2", config, **QUIET)
    assert result.net.auxiliary_head is not None and result.net.auxiliary_head.stride == 2
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx([0.1, 0.1 * 0.97])  # the DARTS ImageNet schedule
    assert load_trained(result.run_dir / LAST).shape.input_shape == (3, 32, 32)


# -- the validation split and the choice of best.pt ------------------------------------------

def _rows(ds):
    """The images of ``ds`` as a set of bytes (the digits' images are all different)."""
    return {bytes(image.numpy()) for image in ds.images}


@pytest.mark.parametrize("subset", [None, 300])
def test_validation_split_is_disjoint_stratified_and_seeded(subset):
    full, test_set = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    train_set, val_set = validation_split(full, subset, 0.1, seed=3)
    n = len(full) if subset is None else subset
    assert len(val_set) == round(0.1 * n) and len(train_set) + len(val_set) == n
    # disjoint from each other and from the test split; together the --subset sample
    assert not _rows(train_set) & _rows(val_set)
    assert not (_rows(train_set) | _rows(val_set)) & _rows(test_set)
    assert _rows(train_set) | _rows(val_set) <= _rows(full)
    # every class in proportion: within one image of its share
    shares = torch.bincount(full.labels, minlength=10).double() / len(full)
    for part in (val_set, train_set):
        counts = torch.bincount(part.labels, minlength=10).double()
        assert (counts - shares * len(part)).abs().max() <= 1, counts
    # seeded: the same seed gives the same parts, another seed others
    again = validation_split(full, subset, 0.1, seed=3)
    assert all(torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
               for a, b in zip((train_set, val_set), again))
    assert _rows(validation_split(full, subset, 0.1, seed=4)[1]) != _rows(val_set)
    # too few images left to train on is a clear error
    with pytest.raises(DatasetError, match="--val-fraction"):
        validation_split(full, 2, 0.9, seed=3)


class _ScriptedTask(ClassificationTask):
    """The classification task whose evaluations return scripted figures: per epoch
    ``(val_acc, val_loss, test_acc)``, told apart by the split's size (validation: 6 images)."""

    def __init__(self, script, **options):
        super().__init__(**options)
        object.__setattr__(self, "script", list(script))
        object.__setattr__(self, "calls", [])

    def evaluate(self, net, batches, forward=None):
        split = "val" if len(batches.dataset) == 6 else "test"
        self.calls.append(split)
        val_acc, val_loss, test_acc = self.script[self.calls.count(split) - 1]
        if split == "val":
            return {"loss": val_loss, "top1": val_acc, "top5": 1.0}
        return {"loss": 1.0, "top1": test_acc, "top5": 1.0}


def test_best_pt_is_chosen_by_validation_accuracy_not_by_test_accuracy(tmp_path, monkeypatch):
    # the test accuracy peaks at epoch 2, the validation accuracy at epochs 1, 3 and 4, where
    # epoch 3 has the lowest validation loss
    script = [(0.9, 1.0, 0.1), (0.5, 0.1, 0.95), (0.9, 0.5, 0.3), (0.9, 0.7, 0.2)]
    task = _ScriptedTask(script)
    monkeypatch.setattr(train_module, "task_of", lambda config: task)
    lines = []
    result = train("DARTS_V2", tiny(tmp_path, subset=64, channels=4, epochs=4),
                   progress=False, plots=False, log=lines.append)
    assert task.calls == ["val", "test"] * 4
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert [(r["val_acc"], r["val_loss"], r["test_acc"]) for r in records] == script
    assert load_trained(result.run_dir / BEST).epoch == 3
    assert result.best == {"epoch": 3, "val_acc": 0.9, "val_loss": 0.5, "test_acc": 0.3}
    assert torch.load(result.run_dir / BEST, weights_only=True)["best"] == result.best
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert ["(best)" in line for line in epochs] == [True, False, True, False]
    assert "test acc 95.00%" in epochs[1]
    assert "last.pt (the last epoch, 4): test accuracy 20.00%, val acc 90.00%" in lines
    assert "best.pt (epoch 3, the best val acc 90.00%): test accuracy 30.00%" in lines


def test_without_validation_split_training_is_as_before(tmp_path, monkeypatch):
    full = load_dataset("digits", split="train")
    train_set, val_set = validation_split(full, 64, 0.0, seed=3)
    expected = subset_of(full, 64, 3)  # the training images before --val-fraction existed
    assert val_set is None
    assert torch.equal(train_set.images, expected.images)
    assert torch.equal(train_set.labels, expected.labels)
    calls = []
    real_evaluate = ClassificationTask.evaluate

    def evaluate(self, net, batches, forward=None):
        calls.append(len(batches.dataset))
        return real_evaluate(self, net, batches, forward)

    monkeypatch.setattr(ClassificationTask, "evaluate", evaluate)
    lines = []
    result = train("DARTS_V2", tiny(tmp_path, subset=64, channels=4, val_fraction=0),
                   progress=False, plots=False, log=lines.append)
    assert calls == [360, 360]  # the test split only, once per epoch
    assert not (result.run_dir / BEST).exists() and result.best is None
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert [list(r) for r in records] == [[
        "epoch", "lr", "drop_path", "train_loss", "train_acc", "test_loss", "test_acc",
        "test_top5", "seconds"]] * 2
    assert "data: digits, 64 training images (no validation split), 360 test images of 1x8x8" in (
        lines)
    assert any(line.startswith("no best.pt") for line in lines)
    assert train_preset("paper").val_fraction == 0 == train_preset("imagenet").val_fraction
    assert train_preset("quick").val_fraction == 0.1 == train_preset("tiny").val_fraction


def _as_written_by_an_older_nasp(path):
    """Rewrite checkpoint ``path`` as nasp wrote it before the validation split existed."""
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["config"]["val_fraction"]
    if "best" in checkpoint:  # last.pt: the best epoch by test accuracy
        checkpoint["best"] = {"epoch": 1, "test_acc": checkpoint["history"][0]["test_acc"]}
    torch.save(checkpoint, path)


def test_checkpoints_of_an_older_nasp_load_and_resume(tmp_path, capsys):
    config = dict(subset=64, channels=4, epochs=3, val_fraction=0)
    straight = train("DARTS_V2", tiny(tmp_path, "straight", **config), **QUIET)

    def interrupt_after_epoch_1(line):
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("DARTS_V2", tiny(tmp_path, "old", **config), progress=False, plots=False,
              log=interrupt_after_epoch_1)
    old = tmp_path / "old"
    _as_written_by_an_older_nasp(old / LAST)
    (old / BEST).write_bytes((old / LAST).read_bytes())  # an older nasp's best.pt (by test)
    trained = load_trained(old / LAST)
    assert trained.epoch == 1 and trained.config.val_fraction == 0
    assert evaluate_checkpoint(old / BEST, device="cpu")["epoch"] == 1
    assert model_info(old / BEST)["config"].val_fraction == 0
    # resumed without a validation split, as it was started: the same weights and metrics
    lines = []
    resumed = resume(old, progress=False, plots=False, log=lines.append)
    assert resumed.config.val_fraction == 0
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in straight.history] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    assert any("chosen by its test accuracy by an older nasp" in line for line in lines)
    assert main(["test", str(old / BEST), "--device", "cpu"]) == 0
    assert main(["info", str(old / LAST)]) == 0
    # a resume may not add a validation split to a run that had none
    with pytest.raises(ConfigError, match="--val-fraction 0.1"):
        resume(old, val_fraction=0.1, **QUIET)


def test_the_epoch_line_fits_120_columns(tmp_path):
    widest = {"epoch": 600, "lr": 0.000123456, "train_loss": 12.3456, "train_acc": 1.0,
              "val_acc": 1.0, "test_acc": 1.0, "seconds": 3599.4}
    line = epoch_line(widest, 600, best=True, left=99 * 86400 + 23 * 3600)
    assert line == ("epoch 600/600  train loss 12.346 acc 100.0%  val acc 100.00% (best)  "
                    "test acc 100.00%  lr 0.000123  59m59s  99d23h left")
    assert len(line) <= 120
    lines = []
    train("DARTS_V2", tiny(tmp_path, subset=64, channels=4), progress=False, plots=False,
          log=lines.append)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(len(line) <= 120 for line in epochs)
    assert " left" in epochs[0] and " left" not in epochs[1]
