"""Search whether residual blocks keep their skip connection, then train the result.

    python examples/residual_skip.py [--strategy nasp|darts|darts2|random|random-ws]

Each block computes ``h = f(x)`` and then ``nasp.nn.InputChoice(2, keep=1)`` picks one of
``[h, h + x]``: the plain output or the residual one (an InputChoice returns the sum of the
inputs it keeps). The data is a synthetic regression whose target is close to the input, so a
skip connection helps; the loss is the user's own (mean squared error). ``nasp.fix`` turns the
architecture into a plain network (the InputChoice becomes a two-line sum of the chosen
inputs), which is then trained briefly and evaluated. Runs in a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

import nasp
from nasp.nn import InputChoice


class Block(nn.Module):
    def __init__(self, width: int, label: str):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
        self.skip = InputChoice(2, keep=1, label=label)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.f(x)
        return self.skip([h, h + x])


class ResidualMLP(nn.Module):
    def __init__(self, width: int = 16, blocks: int = 3):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(width, f"skip{i}") for i in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def data(n: int, width: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=g)
    return x, x + 0.1 * torch.sin(3 * x)  # nearly the identity: a skip connection helps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="nasp")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    torch.manual_seed(0)
    (x, y), (x_test, y_test) = data(1024), data(256, seed=1)
    model = ResidualMLP()
    out = args.out or tempfile.mkdtemp(prefix="nasp-residual-")
    arch = nasp.search(model, (x[:512], y[:512]), (x[512:], y[512:]), args.strategy,
                       epochs=args.epochs, batch_size=64, loss_fn=F.mse_loss, run_dir=out,
                       overwrite=True, device="cpu", progress=False, plots=False,
                       **({"a_lr": 0.05} if args.strategy != "random" else {}))
    print(f"architecture: {arch}  (1 = the block keeps its skip connection; run directory {out})")

    net = nasp.fix(ResidualMLP(), arch)  # a fresh plain network of that architecture
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        rows = torch.randint(len(x), (64,))
        opt.zero_grad()
        F.mse_loss(net(x[rows]), y[rows]).backward()
        opt.step()
    with torch.no_grad():
        print(f"fixed network trained briefly: test MSE {F.mse_loss(net(x_test), y_test):.4f}")
    print(net.blocks[0].skip)  # SumInputs(indices=[...]): plain code, scripts and exports


if __name__ == "__main__":
    main()
