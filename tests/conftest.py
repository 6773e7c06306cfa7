from pathlib import Path

import pytest
import torch

from nasp.config import SearchConfig
from nasp.spaces import DartsCNNSpace

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tiny():
    """A tiny seeded float64 supernet (3 cells, C 4, 8x8 RGB, 5 classes) and two batches."""
    return tiny_supernet("darts-7")


def tiny_supernet(primitives: str):
    """The ``tiny`` fixture's supernet and batches on another primitive set."""
    torch.manual_seed(0)
    space = DartsCNNSpace(primitives)
    net = space.build_supernet(3, 5, layers=3, channels=4).double()
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64),
             torch.randint(0, 5, (6,), generator=g))
    val = (torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64),
           torch.randint(0, 5, (6,), generator=g))
    return space, net, train, val


def tiny_config(**changes) -> SearchConfig:
    return SearchConfig(layers=3, channels=4, **changes)


@pytest.fixture
def one_thread():
    """Run a test on one CPU thread: on tiny tensors it is faster, and a core busy with another
    process cannot stall it in OpenMP barriers (seen to slow tiny forward passes 100x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
