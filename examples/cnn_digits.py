"""Search a small CNN's kernel sizes and activations on the 8x8 digits, then train the result.

    python examples/cnn_digits.py [--strategy nasp|darts|darts2|random|random-ws] [--epochs 6]

The model is ordinary PyTorch with ``nasp.nn.Choice`` where a decision is open: the kernel size
of each convolution (3 or 5) and one activation shared by both blocks (the label "act" ties the
two places). ``nasp.search`` runs the strategy on the first 1000 training images (500 train the
weights, 500 the architecture) and returns ``{label: choice}``; ``nasp.fix`` gives the plain
network, which is then trained briefly and evaluated on the held-out test images.
Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import nasp
from nasp.nn import Choice


def conv(c_in: int, c_out: int, label: str) -> Choice:
    """A convolution whose kernel size (3 or 5) the search chooses."""
    return Choice([nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_in, c_out, 5, padding=2)],
                  label=label)


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = conv(1, 16, "kernel1")
        self.act1 = Choice([nn.ReLU(), nn.Tanh(), nn.GELU()], label="act")
        self.conv2 = conv(16, 32, "kernel2")
        self.act2 = Choice([nn.ReLU(), nn.Tanh(), nn.GELU()], label="act")
        self.norm1, self.norm2 = nn.BatchNorm2d(16), nn.BatchNorm2d(32)
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.conv1(x)))
        x = F.max_pool2d(self.act2(self.norm2(self.conv2(x))), 2)
        return self.head(x.mean(dim=(2, 3)))


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return (x - 0.3) / 0.4, torch.tensor(bunch.target)


def train_and_test(net: nn.Module, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                   y_test: torch.Tensor, epochs: int = 5) -> float:
    """A few epochs of plain SGD on the fixed network; its test accuracy."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        net.train()
        for rows in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[rows]), y[rows]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return (net(x_test).argmax(1) == y_test).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="nasp")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = digits()
    order = torch.randperm(len(x))
    train, val, test = order[:500], order[500:1000], order[1000:]

    model = SmallCNN()
    out = args.out or tempfile.mkdtemp(prefix="nasp-cnn-digits-")
    arch = nasp.search(model, (x[train], y[train]), (x[val], y[val]), args.strategy,
                       epochs=args.epochs, batch_size=50, run_dir=out, overwrite=True,
                       device="cpu", progress=False, w_lr=0.1,
                       **({"a_lr": 0.05} if args.strategy != "random" else {}))
    print(f"architecture: {arch}  (run directory {out})")

    net = nasp.fix(model, arch)  # a plain nn.Module; its weights are those the search trained
    print(net)
    fresh = nasp.fix(SmallCNN(), arch)  # the same network, trained from scratch
    accuracy = train_and_test(fresh, x[order[:1000]], y[order[:1000]], x[test], y[test])
    print(f"fixed network trained from scratch for 5 epochs: test accuracy {100 * accuracy:.1f}%")
    torch.jit.script(fresh)  # it scripts like any module


if __name__ == "__main__":
    main()
