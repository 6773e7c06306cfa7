"""Long-running loops: the architecture search and training from scratch."""

from nasp.engine.search import SearchResult, search
from nasp.engine.session import evaluate_classifier, seed_everything
from nasp.engine.train import TrainResult, evaluate_checkpoint, resume, train

__all__ = [
    "SearchResult", "TrainResult", "evaluate_checkpoint", "evaluate_classifier", "resume",
    "search", "seed_everything", "train",
]
