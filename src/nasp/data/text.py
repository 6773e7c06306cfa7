"""Word-level text corpora by name: Penn Treebank (``ptb``) as AWD-LSTM and DARTS read it.

A corpus is a folder with ``train.txt``, ``valid.txt`` and ``test.txt`` (or the names of the
Mikolov archive, ``ptb.train.txt``, ...), looked for in ``root/penn`` and in ``root`` itself.
Each line is split on whitespace and ends with the token ``<eos>``; the dictionary takes the words
in order of first appearance over train, then valid, then test (so word ids are those of the
reference code); each split becomes one int64 tensor of ids (:class:`Corpus`). Penn Treebank
has 10,000 words and 929,589 / 73,760 / 82,430 tokens in train / valid / test.

:func:`batchify` cuts a split into ``B`` parallel streams, ``(T, B)``, time first;
:func:`fixed_windows` walks such a tensor in windows of a fixed length (evaluation);
:class:`~nasp.data.tokens.TokenStream` in windows of a variable length (training).

Any problem with the files raises :class:`DatasetError` naming the folder or file and what to do:
a missing folder or file, a file that is not UTF-8 text (binary, damaged) or holds no token.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from nasp.data.base import _resolve_root
from nasp.errors import DatasetError

__all__ = ["EOS", "SPLIT_FILES", "TEXT_DATASETS", "VOCAB_SIZES", "Corpus", "batchify",
           "fixed_windows", "is_text_dataset", "load_corpus", "read_corpus"]

#: The end-of-sentence token appended to every line.
EOS = "<eos>"
#: The splits of a corpus and the file names each may have.
SPLIT_FILES = {"train": ("train.txt", "ptb.train.txt"), "valid": ("valid.txt", "ptb.valid.txt"),
               "test": ("test.txt", "ptb.test.txt")}
#: Where to get Penn Treebank (the archive AWD-LSTM's and DARTS's scripts fetch).
PTB_HINT = ("Get Penn Treebank from http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz "
            "(its data/ptb.train.txt, ptb.valid.txt, ptb.test.txt) and pass the folder holding "
            "them with --data-dir")


@dataclass(frozen=True)
class Corpus:
    """A word-level corpus: its ``words`` (id -> word) and the id tensors of its splits."""

    name: str
    words: tuple[str, ...]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLIT_FILES:
            raise DatasetError(f"unknown split {name!r} of corpus {self.name}; use train, valid "
                               f"or test")
        return getattr(self, name)

    def text(self, ids: torch.Tensor) -> str:
        """The words of ``ids``, one line per sentence (``<eos>`` ends a line)."""
        lines, line = [], []
        for i in ids.reshape(-1).tolist():
            word = self.words[i]
            if word == EOS:
                lines.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(word)
        return "".join(lines) + " ".join(line)


def _read_lines(path: Path) -> list[list[str]]:
    """The tokens of each line of ``path``; DatasetError for a file that is not text."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read {path} ({err.strerror or err}); check its "
                           f"permissions or copy the corpus again") from None
    bad = raw.find(b"\0")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = err.start if bad < 0 else min(bad, err.start)
    if bad >= 0:
        raise DatasetError(f"{path} is not a text file (a binary or damaged byte at offset "
                           f"{bad}); replace it with the corpus's own file")
    return [line.split() + [EOS] for line in text.splitlines()]


def _find_folder(root: Path, title: str, hint: str) -> Path:
    candidates = (root / "penn", root)
    for folder in candidates:
        if any((folder / f).is_file() for names in SPLIT_FILES.values() for f in names):
            return folder
    if not root.exists():
        raise DatasetError(f"{title}: the folder {root} does not exist. {hint}")
    raise DatasetError(f"{title} was not found: no train.txt, valid.txt or test.txt in "
                       f"{candidates[0]} or {candidates[1]}. {hint}")


def read_corpus(folder: str | os.PathLike, name: str = "text", title: str = "the corpus",
                hint: str = "") -> Corpus:
    """Read the corpus in ``folder`` (its own files, or in ``folder/penn``); see the module
    docstring. ``title`` and ``hint`` go into the error messages."""
    folder = _find_folder(Path(folder).expanduser(), title, hint)
    index: dict[str, int] = {}
    splits = {}
    for split, names in SPLIT_FILES.items():
        path = next((folder / f for f in names if (folder / f).is_file()), None)
        if path is None:
            raise DatasetError(f"{title} in {folder} has no {names[0]} (its {split} split); "
                               f"{hint or 'copy the whole corpus there'}")
        lines = _read_lines(path)
        if not any(len(tokens) > 1 for tokens in lines):
            raise DatasetError(f"{path} holds no words (an empty or truncated file); replace it "
                               f"with the corpus's own {names[0]}")
        ids = [index.setdefault(w, len(index)) for tokens in lines for w in tokens]
        splits[split] = torch.tensor(ids, dtype=torch.int64)
    return Corpus(name, tuple(index), **splits)


def _load_ptb(root: Path | None) -> Corpus:
    return read_corpus(_resolve_root(root), "ptb", "Penn Treebank", PTB_HINT)


TEXT_DATASETS: dict[str, Callable[[Path | None], Corpus]] = {"ptb": _load_ptb}
"""Registry: corpus name -> loader ``(root: Path | None) -> Corpus``."""

VOCAB_SIZES: dict[str, int] = {"ptb": 10_000}
"""The vocabulary of each corpus, known without reading it (``nasp info``)."""


def is_text_dataset(name: object) -> bool:
    """Whether ``name`` is a corpus of :data:`TEXT_DATASETS` (not an image data set)."""
    return isinstance(name, str) and name.strip().lower() in TEXT_DATASETS


def load_corpus(name: str, root: str | os.PathLike | None = None) -> Corpus:
    """The corpus ``name`` from ``root`` (default :func:`~nasp.data.base.default_data_dir`);
    :class:`DatasetError` for an unknown name or a missing or damaged corpus."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in TEXT_DATASETS:
        raise DatasetError(f"unknown text corpus {name!r}; known corpora: "
                           f"{', '.join(sorted(TEXT_DATASETS))}")
    return TEXT_DATASETS[key](None if root is None else Path(root).expanduser())


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``ids`` as ``batch_size`` parallel streams, ``(T, batch_size)`` with ``T = len //
    batch_size`` (the tail that does not fill a row is dropped): column ``b`` holds the tokens
    ``b T .. (b + 1) T - 1``, as AWD-LSTM's and DARTS's ``batchify``."""
    rows = ids.numel() // batch_size
    if rows < 2:
        raise DatasetError(f"{ids.numel()} tokens make fewer than 2 time steps of batch "
                           f"{batch_size}; lower --batch-size or use more text")
    return ids[:rows * batch_size].reshape(batch_size, rows).t().contiguous()


def fixed_windows(data: torch.Tensor, length: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(tokens, targets)`` windows of ``data`` ``(T, B)`` from its start: ``tokens =
    data[i:i + n]`` and ``targets = data[i + 1:i + 1 + n]`` flattened (time-major), ``n =
    min(length, T - 1 - i)``, for ``i = 0, length, 2 length, ...`` below ``T - 1``."""
    total = data.shape[0]
    for i in range(0, total - 1, length):
        n = min(length, total - 1 - i)
        yield data[i:i + n], data[i + 1:i + 1 + n].reshape(-1)
