"""Word-level corpora (Penn Treebank): reading, dictionary, batchify, windows, the resumable
token stream with its BPTT rules and carried state, and the errors of a missing or damaged
corpus."""

import pytest
import torch
from conftest import SHARED_DATA
from lm_fakes import write_corpus

from nasp.config import SearchConfig
from nasp.data import (
    TokenStream,
    batchify,
    fixed_windows,
    is_text_dataset,
    load_corpus,
    load_dataset,
)
from nasp.data.text import EOS, read_corpus
from nasp.data.tokens import MAX_EXTRA, draw_seq_len
from nasp.errors import ConfigError, DatasetError
from nasp.tasks import TokenWindow

PENN = SHARED_DATA / "penn"


def test_corpus_round_trip_and_dictionary_in_order_of_first_appearance(tmp_path):
    folder = write_corpus(tmp_path / "penn")
    corpus = load_corpus("ptb", tmp_path)  # found in root/penn
    words: dict[str, int] = {}
    for split in ("train", "valid", "test"):
        lines = (folder / f"{split}.txt").read_text().splitlines()
        tokens = [w for line in lines for w in line.split() + [EOS]]
        for w in tokens:
            words.setdefault(w, len(words))
        ids = corpus.split(split)
        assert ids.dtype == torch.int64 and ids.tolist() == [words[w] for w in tokens]
        assert corpus.text(ids) == "".join(" ".join(line.split()) + "\n" for line in lines)
    assert corpus.words == tuple(words) and corpus.vocab_size == len(words)
    assert read_corpus(folder).words == corpus.words  # the folder itself


@pytest.mark.skipif(not PENN.is_dir(), reason=f"Penn Treebank is not in {PENN} (see "
                                              f"shared/data/README.md)")
def test_penn_treebank_has_the_published_sizes():
    corpus = load_corpus("ptb", PENN)
    assert corpus.vocab_size == 10_000
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (
        929_589, 73_760, 82_430)
    assert corpus.words[corpus.train[-1]] == EOS and "<unk>" in corpus.words


def test_batchify_makes_columns_of_consecutive_tokens_and_windows_shift_the_targets():
    ids = torch.arange(23)
    data = batchify(ids, 4)  # 5 rows; the last 3 tokens dropped
    assert data.shape == (5, 4)
    for b in range(4):
        assert data[:, b].tolist() == list(range(5 * b, 5 * b + 5))
    windows = list(fixed_windows(data, 3))
    assert [w[0].shape[0] for w in windows] == [3, 1]  # rows 0-2, then 3 (its target is row 4)
    assert torch.equal(torch.cat([x for x, _ in windows]), data[:-1])
    assert torch.equal(torch.cat([y for _, y in windows]), data[1:].reshape(-1))
    with pytest.raises(DatasetError, match="fewer than 2 time steps"):
        batchify(torch.arange(5), 4)


def reference_pass(rows, bptt, rule, g):
    """The loops of DARTS's train_search.py / train.py with our draws: window starts, lengths."""
    windows, i = [], 0
    while i < rows - 1 - 1:
        u = float(torch.rand((), generator=g, dtype=torch.float64))
        b = bptt if u < 0.95 else bptt / 2.0
        if rule == "awd":
            seq_len = max(5, int(float(torch.randn((), generator=g, dtype=torch.float64)) * 5
                                 + b))
            seq_len = min(seq_len, bptt + 20)
        else:
            seq_len = int(b)
        windows.append((i, min(seq_len, rows - 1 - i)))
        i += seq_len
    return windows


@pytest.mark.parametrize("rule", ["darts", "awd"])
def test_stream_windows_follow_the_reference_loop_and_carry_the_state(rule):
    data = batchify(torch.arange(3 * 400), 3)
    stream = TokenStream(data, 10, torch.Generator().manual_seed(5), rule=rule,
                         window=TokenWindow)
    expected = reference_pass(400, 10, rule, torch.Generator().manual_seed(5))
    assert stream.begin_pass() == len(expected) == len(stream)
    previous = None
    for k, (i, n) in enumerate(expected):
        window, targets = next(stream)
        assert torch.equal(window.tokens, data[i:i + n])
        assert torch.equal(targets, data[i + 1:i + 1 + n].reshape(-1))
        if k == 0:
            assert window.state is None
        else:  # the last forward's final, detached
            assert torch.equal(window.state, previous.final) and not window.state.requires_grad
        window.final = torch.randn(3, 2, requires_grad=True) * 2
        previous = window
    window, _ = next(stream)  # a new pass starts from zeros
    assert window.state is None and torch.equal(window.tokens[0], data[0])


def test_bptt_rules_draw_lengths_as_described():
    g = torch.Generator().manual_seed(0)
    darts = [draw_seq_len("darts", 35, g) for _ in range(2000)]
    assert set(darts) == {35, 17} and 0.03 < darts.count(17) / 2000 < 0.07
    awd = [draw_seq_len("awd", 35, g) for _ in range(2000)]
    mean = sum(awd) / 2000  # 0.95 * 35 + 0.05 * 17.5 less about 0.5 (int() truncates)
    assert 5 <= min(awd) and max(awd) <= 35 + MAX_EXTRA and abs(mean - 33.6) < 0.5
    sd = (sum((n - mean) ** 2 for n in awd) / 2000) ** 0.5
    assert 5 < sd < 7  # the normal's 5 and the halved windows
    assert draw_seq_len("fixed", 35, g) == 35


def test_stream_continues_exactly_from_a_saved_state():
    g = torch.Generator().manual_seed(1)
    data = batchify(torch.randint(0, 50, (2 * 300,), generator=g), 2)

    def run(stream, n):
        out = []
        for _ in range(n):
            window, targets = next(stream)
            window.final = (window.tokens.float().sum(0, keepdim=True).t() + 1.0).requires_grad_()
            out.append((window.tokens, targets, window.state))
        return out

    gen = torch.Generator().manual_seed(7)
    first = TokenStream(data, 8, gen, rule="awd", window=TokenWindow)
    run(first, 40)  # past the end of the first pass
    state, gen_state = first.state_dict(), gen.get_state()
    expected = run(first, 50)
    gen2 = torch.Generator()
    gen2.set_state(gen_state)
    again = TokenStream(data, 8, gen2, rule="awd", window=TokenWindow)
    again.load_state_dict(state)
    got = run(again, 50)
    for (a, b, c), (x, y, z) in zip(expected, got):
        assert torch.equal(a, x) and torch.equal(b, y)
        assert (c is None and z is None) or torch.equal(c, z)
    with pytest.raises(ValueError, match="not this one"):
        TokenStream(data, 9, gen2, rule="awd", window=TokenWindow).load_state_dict(state)


def test_a_missing_or_damaged_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"Penn Treebank: the folder .*nowhere does not exist"
                                           r".*simple-examples.tgz.*--data-dir"):
        load_corpus("ptb", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no train.txt, valid.txt or test.txt"):
        load_corpus("ptb", tmp_path)
    folder = write_corpus(tmp_path / "penn")
    (folder / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"has no test.txt \(its test split\)"):
        load_corpus("ptb", tmp_path)
    (folder / "test.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"test.txt holds no words .*replace it"):
        load_corpus("ptb", tmp_path)
    (folder / "test.txt").write_bytes(b" a b \n c \x00\x01\xff d\n")
    with pytest.raises(DatasetError, match=r"test.txt is not a text file .*offset 9"):
        load_corpus("ptb", tmp_path)
    (folder / "test.txt").write_bytes(b" a b \n c \xff\xfe d\n")
    with pytest.raises(DatasetError, match=r"test.txt is not a text file .*offset 9"):
        load_corpus("ptb", tmp_path)
    with pytest.raises(DatasetError, match="unknown text corpus 'wiki'; known corpora: ptb"):
        load_corpus("wiki", tmp_path)
    with pytest.raises(DatasetError, match="ptb is a text corpus, not an image data set"):
        load_dataset("ptb", tmp_path)
    assert is_text_dataset("ptb") and not is_text_dataset("cifar10")


def test_the_config_pairs_text_corpora_with_recurrent_spaces():
    with pytest.raises(ConfigError, match="--dataset ptb is a text corpus and --space darts "
                                          "searches image cells: use --space darts-rnn"):
        SearchConfig(dataset="ptb")
    assert SearchConfig(dataset="ptb", space="darts-rnn", layers=1).dataset == "ptb"
    with pytest.raises(ConfigError, match="--space darts-rnn searches a language model on a "
                                          "text corpus; --dataset digits holds images"):
        SearchConfig(space="darts-rnn", layers=1)
    with pytest.raises(ConfigError, match="--bptt must be an integer of at least 2"):
        SearchConfig(bptt=1)
    with pytest.raises(ConfigError, match="--bptt-rule must be one of"):
        SearchConfig(bptt_rule="long")
