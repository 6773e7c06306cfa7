"""The run engine (:mod:`nasp.engine.session`) and what it runs: the architecture search and
training from scratch."""

from nasp.engine import search_text  # noqa: F401  (registers the search on text corpora)
from nasp.engine.reproducibility import seed_everything
from nasp.engine.search import SearchResult, search
from nasp.engine.train import TrainResult, evaluate_checkpoint, resume, train
from nasp.tasks.classification import evaluate_classifier

__all__ = [
    "SearchResult", "TrainResult", "evaluate_checkpoint", "evaluate_classifier", "resume",
    "search", "seed_everything", "train",
]
