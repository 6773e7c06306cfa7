"""nasp: differentiable neural architecture search by proximal iterations (NASP), in PyTorch.

The public API::

    from nasp import SearchConfig, search
    result = search(SearchConfig(dataset="digits", epochs=5))
    print(result.genotype)
"""

from nasp.config import ConfigError, SearchConfig, load_config, preset
from nasp.genotype import BUILTIN_GENOTYPES, Genotype, GenotypeError, resolve_genotype
from nasp.loops.search import SearchResult, search
from nasp.mixed import CellPlan, MixedOp
from nasp.ops import OPS, PRIMITIVE_SETS
from nasp.prox import prox_c1, prox_c2
from nasp.runs import RunDirError
from nasp.spaces import ChildNetwork, DartsCNNSpace, SearchSpace, Supernet, build_space
from nasp.strategies import DARTS, DARTS2, NASP, STRATEGIES, Strategy, build_strategy

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_GENOTYPES", "DARTS", "DARTS2", "NASP", "OPS", "PRIMITIVE_SETS", "STRATEGIES",
    "CellPlan", "ChildNetwork", "ConfigError", "DartsCNNSpace", "Genotype", "GenotypeError",
    "MixedOp", "RunDirError", "SearchConfig", "SearchResult", "SearchSpace", "Strategy", "Supernet",
    "build_space", "build_strategy", "load_config", "preset", "prox_c1", "prox_c2",
    "resolve_genotype", "search",
]
