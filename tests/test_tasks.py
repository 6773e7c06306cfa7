"""The task seam: the classification task's loss, evaluation and formats, its registry, and
that the strategies and loops take their loss from the task they are given."""

import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from torch import nn

from nasp.config import preset, train_preset
from nasp.errors import ConfigError
from nasp.strategies import DARTS, NASP, build_strategy
from nasp.tasks import TASKS, ClassificationTask, build_task


def batch(n=7, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_the_loss_is_the_cross_entropy_the_loops_used():
    logits, y = batch()
    assert torch.equal(ClassificationTask().loss(logits, y), F.cross_entropy(logits, y))
    smoothed = ClassificationTask(label_smoothing=0.1).loss(logits, y)
    # label smoothing by hand: (1 - eps) * CE + eps * mean over classes of -log p
    logp = logits.log_softmax(1)
    by_hand = (0.9 * -logp[torch.arange(len(y)), y] - 0.1 * logp.mean(1)).mean()
    assert torch.allclose(smoothed, by_hand)


def test_correct_counts_the_argmax_hits():
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0], [0.0, 5.0]])
    assert ClassificationTask().correct(logits, torch.tensor([1, 1, 1])).item() == 2


def test_evaluate_against_a_computation_by_hand():
    """loss, top-1 and top-5 of a fixed linear classifier over two batches of 7 classes."""
    torch.manual_seed(0)
    net = nn.Linear(5, 7)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(6, 5, generator=g), torch.randint(0, 7, (6,), generator=g))
               for _ in range(2)]
    net.train()
    result = ClassificationTask().evaluate(net, batches)
    assert net.training  # the mode comes back
    losses, top1, top5 = [], [], []
    for x, y in batches:
        for logits, label in zip(net(x).detach(), y):
            losses.append(-logits.log_softmax(0)[label].item())
            ranks = sorted(range(7), key=lambda k: -logits[k].item())
            top1.append(ranks[0] == label.item())
            top5.append(label.item() in ranks[:5])
    assert math.isclose(result["loss"], sum(losses) / 12, rel_tol=1e-5)
    assert result["top1"] == pytest.approx(sum(top1) / 12)
    assert result["top5"] == pytest.approx(sum(top5) / 12)
    assert set(result) == set(ClassificationTask.metrics)


def test_format_writes_what_the_logs_write():
    task = ClassificationTask()
    assert task.format({"loss": 1.23456, "top1": 0.5, "top5": 0.875}) == \
        "loss 1.235 acc 50.0% top-5 87.5%"
    assert task.format({"top1": None, "loss": None}) == "loss - acc -%"


def test_classification_carries_no_state_across_batches():
    task = ClassificationTask()
    assert task.initial_state() is None and task.carry(None) is None


def test_the_registry_builds_tasks_by_name():
    assert TASKS["classification"] is ClassificationTask
    assert build_task("classification", label_smoothing=0.2) == ClassificationTask(0.2)
    with pytest.raises(ConfigError, match="unknown task 'speech'.*classification"):
        build_task("speech")


class RecordingTask(ClassificationTask):
    """Half the cross-entropy (no strategy computes that by itself), remembering each loss."""

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "seen", [])

    def loss(self, output, target):
        value = 0.5 * super().loss(output, target)
        self.seen.append(value.detach())
        return value


@pytest.mark.parametrize("cls", [NASP, DARTS])
def test_strategies_take_the_loss_from_their_task(tiny, cls):
    """The architecture step and the weight step both optimise and report the task's loss."""
    space, net, train, val = tiny
    config = tiny_config(strategy=cls.name)
    assert type(build_strategy(cls.name, space, net, config).task) is ClassificationTask
    task = RecordingTask()
    strategy = build_strategy(cls.name, space, net, config, task=task)
    m = strategy.step(train, val)
    assert len(task.seen) == 2  # one architecture step, then one weight step
    assert torch.equal(m["arch_loss"], task.seen[0])
    assert torch.equal(m["train_loss"], task.seen[1])


class CountingTask(ClassificationTask):
    """The classification task, counting the losses and evaluations asked of it."""

    def __init__(self, **options):
        super().__init__(**options)
        object.__setattr__(self, "counts", {"loss": 0, "evaluate": 0})

    def loss(self, output, target):
        self.counts["loss"] += 1
        return super().loss(output, target)

    def evaluate(self, net, batches, forward=None):
        self.counts["evaluate"] += 1
        return super().evaluate(net, batches, forward)


@pytest.mark.usefixtures("one_thread")
def test_the_loops_ask_their_task(tmp_path, monkeypatch):
    """Training and the search take the loss and the evaluation from their task (and the
    search hands its task to the strategy)."""
    # (the modules, not the functions nasp.engine exports under the same names)
    search_module = importlib.import_module("nasp.engine.search")
    train_module = importlib.import_module("nasp.engine.train")

    tasks = []

    def counting_task_of(config):
        tasks.append(CountingTask(label_smoothing=config.label_smoothing,
                                  auxiliary_weight=config.auxiliary_weight))
        return tasks[-1]

    monkeypatch.setattr(train_module, "task_of", counting_task_of)
    config = train_preset("tiny", device="cpu", subset=32, batch_size=16, epochs=2,
                          out=str(tmp_path / "train"))
    train_module.train("DARTS_V2", config, progress=False, plots=False, log=lambda line: None)
    # 2 steps per epoch: the main head's loss (the auxiliary head's if the network has one);
    # the validation and the test split evaluated after each epoch
    per_step = 2 if config.auxiliary_weight else 1
    assert tasks[0].counts == {"loss": 2 * 2 * per_step, "evaluate": 2 * 2}

    monkeypatch.setattr(search_module, "build_task", lambda name: CountingTask())
    config = preset("tiny", device="cpu", subset=32, batch_size=8, epochs=1,
                    out=str(tmp_path / "search"))
    result = search_module.search(config, progress=False, plots=False, log=lambda line: None)
    assert isinstance(result.strategy.task, CountingTask)
    # 2 steps, each an architecture and a weight step; the child's evaluation
    assert result.strategy.task.counts == {"loss": 4, "evaluate": 1}
