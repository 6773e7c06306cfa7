"""nasp: differentiable neural architecture search by proximal iterations (NASP), in PyTorch.

The public API::

    from nasp import SearchConfig, search
    result = search(SearchConfig(dataset="digits", epochs=5))
    print(result.genotype)

    from nasp import train, train_preset
    trained = train(result.genotype, train_preset("quick", out="runs/my-cell"))
    trained.net  # a plain nn.Module; runs/my-cell holds best.pt, last.pt, pictures

    # your own model with nasp.nn.Choice / InputChoice inside (docs/user-spaces.md)
    arch = search(model, (x_train, y_train), (x_val, y_val), strategy="nasp", epochs=10)
    net = fix(model, arch)  # an ordinary nn.Module
"""

from nasp.apps.compare import ComparePlan, run_comparison
from nasp.apps.export import export_checkpoint, export_model
from nasp.config import TRAIN_PRESETS, SearchConfig, TrainConfig, load_config, preset, train_preset
from nasp.core.measure import flop_count, parameter_count
from nasp.core.mixed import CellPlan, MixedOp
from nasp.core.ops import OPS
from nasp.core.prox import prox_c1, prox_c2
from nasp.engine.checkpoints import TrainedModel, load_trained, model_info
from nasp.engine.diagnostics import Diagnostics
from nasp.engine.model_search import search, search_model
from nasp.engine.search import SearchResult, resume_search
from nasp.engine.train import TrainResult, evaluate_checkpoint, resume, train
from nasp.errors import (
    BenchmarkError,
    CheckpointError,
    ConfigError,
    GenotypeError,
    NonFiniteError,
    NotEnoughMemoryError,
    RunDirError,
    RunFailedError,
    RunInterrupted,
    RunWriteError,
)
from nasp.nn import Choice, InputChoice, fix
from nasp.spaces import (
    PRIMITIVE_SETS,
    SPACES,
    ChildNetwork,
    DartsCNNSpace,
    NB201Space,
    SearchSpace,
    Supernet,
    build_space,
    load_genotype,
    resolve_genotype,
)
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES, Genotype
from nasp.spaces.darts_rnn import DartsRNNSpace, RecurrentDropouts, RecurrentGenotype
from nasp.spaces.nb201.benchmark_table import BenchmarkTable
from nasp.spaces.nb201.genotype import NB201Genotype
from nasp.strategies import DARTS, DARTS2, NASP, STRATEGIES, Strategy, build_strategy
from nasp.strategies.random import RandomSearch

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_GENOTYPES", "DARTS", "DARTS2", "NASP", "OPS", "PRIMITIVE_SETS", "STRATEGIES",
    "SPACES", "CellPlan", "ChildNetwork", "ConfigError", "DartsCNNSpace", "Genotype",
    "GenotypeError", "MixedOp", "RunDirError", "SearchConfig", "SearchResult", "SearchSpace",
    "Strategy", "Supernet", "build_space", "build_strategy", "load_config", "load_genotype",
    "preset", "prox_c1", "prox_c2", "resolve_genotype", "search",
    # training from scratch, testing, export
    "TRAIN_PRESETS", "CheckpointError", "TrainConfig", "TrainResult", "TrainedModel",
    "evaluate_checkpoint", "export_checkpoint", "export_model", "flop_count", "load_trained",
    "model_info", "parameter_count", "resume", "train", "train_preset",
    # random search, collapse diagnostics, comparisons
    "ComparePlan", "Diagnostics", "RandomSearch", "run_comparison",
    # NAS-Bench-201
    "BenchmarkError", "BenchmarkTable", "NB201Genotype", "NB201Space",
    # the DARTS recurrent cell
    "DartsRNNSpace", "RecurrentDropouts", "RecurrentGenotype",
    # long runs
    "NonFiniteError", "NotEnoughMemoryError", "RunFailedError", "RunInterrupted", "RunWriteError",
    "resume_search",
    # your own model's choices
    "Choice", "InputChoice", "fix", "search_model",
]
