"""The cost of NASP's constrained projection (nasp.core.budget.best_within) on the spaces' real
cost tables (the evaluation networks, CIFAR-10 images), random A, budgets at 20% and 50% of the
way from the cheapest to the largest cell; docs/budgets.md quotes it.

    OMP_NUM_THREADS=1 python benchmarks/budget_timing.py
"""

import time

import torch

from nasp.core.budget import Budget, best_within
from nasp.spaces import build_space


def main() -> None:
    for name, prims in [("nb201", "nb201"), ("darts", "darts"), ("darts", "darts-7")]:
        space = build_space(name, prims)
        shapes = space.arch_shapes()
        for metric in ["params", "flops"]:
            table = space.cost_table(metric, (3, 32, 32), 10)
            rules = space.budget_rules()
            low = Budget(table, rules, 1e18).cheapest()
            high = table.constant + sum(t.max(dim=1).values.sum().item()
                                        for t in table.tables.values())
            g = torch.Generator().manual_seed(0)
            for frac in [0.2, 0.5]:
                b = Budget(table, rules, low + frac * (high - low))
                best_within({t: torch.rand(s, generator=g) for t, s in shapes.items()}, b)
                n, t0 = 20, time.perf_counter()
                for _ in range(n):
                    A = {t: torch.rand(s, generator=g) for t, s in shapes.items()}
                    assert b.costs.cost(best_within(A, b)) <= b.limit
                ms = (time.perf_counter() - t0) / n * 1e3
                print(f"{name}/{prims} {metric} budget at {frac:.0%}: {ms:.2f} ms per projection")


if __name__ == "__main__":
    main()
