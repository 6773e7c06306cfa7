"""Long-running loops: the architecture search."""

from nasp.loops.search import SearchResult, evaluate, resolve_device, search, seed_everything

__all__ = ["SearchResult", "evaluate", "resolve_device", "search", "seed_everything"]
