"""Long-running loops: the architecture search and training from scratch."""

from nasp.loops.common import evaluate_classifier, seed_everything
from nasp.loops.search import SearchResult, search
from nasp.loops.train import TrainResult, evaluate_checkpoint, resume, train

__all__ = [
    "SearchResult", "TrainResult", "evaluate_checkpoint", "evaluate_classifier", "resume",
    "search", "seed_everything", "train",
]
